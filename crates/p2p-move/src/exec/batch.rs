//! Batches: many moves queued together, peer copies from one device in one
//! batch call, everything waited for (also after a failure part-way).

use p2p_core::Location;

use super::{borrowed, checked_len, routes, transfer, Hold, Mover};
use super::{BatchCompletion, BatchTransfer, MoveSource, MoveTarget, RawBytes, StreamOrder};
use crate::{Plan, Result, Route};

impl Mover {
    /// Copies many ranges at once and returns when all are there: any
    /// iterator of `(source, target)` pairs (`&dyn` ones to mix kinds).
    /// Peer copies from one device go out in one batch call, and nothing
    /// waits on the host until everything is queued.
    pub fn copy_batch<'a, S, D, I>(&self, items: I) -> Result<Vec<Plan>>
    where
        S: MoveSource + ?Sized + 'a,
        D: MoveTarget + ?Sized + 'a,
        I: IntoIterator<Item = (&'a S, &'a mut D)>,
    {
        let ranges = batch_ranges(items)?;
        let borrowed_ranges = borrowed(&ranges);
        // SAFETY: the borrows of the items outlive the wait below, and on
        // error the batch waits for what it queued.
        let result = unsafe { self.queue_batch(&ranges, StreamOrder::default(), Hold::Forever) }
            .and_then(BatchCompletion::wait_holding_borrows);
        self.shared.driver.borrows_released(&borrowed_ranges);
        result
    }

    /// Queues many copies, ordered with `order`, borrowing every source and
    /// target until the returned [`BatchTransfer`] is waited for or dropped
    /// (dropping waits).
    ///
    /// # Safety
    /// As [`Mover::copy_async`]: the [`BatchTransfer`] must not be leaked.
    pub unsafe fn copy_batch_async<'a, S, D, I>(
        &'a self,
        items: I,
        order: StreamOrder,
    ) -> Result<BatchTransfer<'a>>
    where
        S: MoveSource + ?Sized + 'a,
        D: MoveTarget + ?Sized + 'a,
        I: IntoIterator<Item = (&'a S, &'a mut D)>,
    {
        let ranges = batch_ranges(items)?;
        let borrowed_ranges = borrowed(&ranges);
        // SAFETY: the BatchTransfer holds the borrows until it has waited.
        match unsafe { self.queue_batch(&ranges, order, Hold::Forever) } {
            Ok(batch) => Ok(BatchTransfer::new(self, batch, borrowed_ranges)),
            Err(err) => {
                self.shared.driver.borrows_released(&borrowed_ranges);
                Err(err)
            }
        }
    }

    /// Queues many copies between raw ranges, ordered with `order` as one
    /// move would be. If queuing fails part-way, waits for what was queued
    /// before returning the error, as [`Mover::copy_raw_async`] does.
    ///
    /// # Safety
    /// As [`Mover::copy_raw_async`], for every `(src, dst, len)`.
    pub unsafe fn copy_batch_raw_async(
        &self,
        items: &[(RawBytes, RawBytes, usize)],
        order: StreamOrder,
    ) -> Result<BatchCompletion> {
        // SAFETY: forwarded caller contract.
        unsafe { self.queue_batch(items, order, Hold::Deadline) }
    }

    /// # Safety
    /// As [`Mover::copy_batch_raw_async`].
    unsafe fn queue_batch(
        &self,
        items: &[(RawBytes, RawBytes, usize)],
        order: StreamOrder,
        hold: Hold,
    ) -> Result<BatchCompletion> {
        let mut batch = BatchCompletion::default();
        let result = (|| {
            // Many items share source, destination and size: plan each kind once.
            let mut plans: std::collections::HashMap<(Location, Location, usize), Plan> =
                Default::default();
            let mut peers = Vec::new();
            let mut peer_items = Vec::new();
            let mut peer_plans = Vec::new();
            let mut verify = Vec::new();
            for &(s, d, len) in items {
                let key = (s.location(), d.location(), len);
                let plan = match plans.get(&key) {
                    Some(plan) => plan.clone(),
                    None => {
                        let plan = self.plan(key.0, key.1, len)?;
                        plans.insert(key, plan.clone());
                        plan
                    }
                };
                batch.plans.push(plan.clone());
                match (s, d, plan.route) {
                    (RawBytes::Device(sp), RawBytes::Device(dp), Route::Peer) if len > 0 => {
                        self.shared.grants.open_defaults(sp.device, dp.device);
                        peers.push((sp.device, peer_items.len(), len));
                        peer_items.push((s, d));
                        peer_plans.push(plan);
                        if self.verify {
                            verify.push(transfer::VerifyRequest {
                                src: s,
                                dst: d,
                                len,
                            });
                        }
                    }
                    // SAFETY: forwarded caller contract.
                    _ => batch
                        .parts
                        .push(unsafe { self.queue(s, d, len, order, hold)? }),
                }
            }
            if !peers.is_empty() {
                let schedule = routes::batch(&peers, order.sides(None, None));
                let mut pairs: Vec<(usize, usize)> = peer_items
                    .iter()
                    .filter_map(|(s, d)| match (s, d) {
                        (RawBytes::Device(s), RawBytes::Device(d)) => Some((s.device, d.device)),
                        _ => None,
                    })
                    .collect();
                pairs.sort_unstable();
                pairs.dedup();
                // SAFETY: forwarded caller contract.
                let part = unsafe {
                    self.submit(
                        peer_plans,
                        &schedule,
                        &peer_items,
                        order,
                        hold,
                        pairs,
                        verify,
                    )?
                };
                batch.parts.push(part);
            }
            Ok(())
        })();
        match result {
            Ok(()) => Ok(batch),
            Err(err) => {
                // What was queued before the failure must be over first.
                let parts = std::mem::take(&mut batch.parts);
                for part in parts {
                    let _ = match hold {
                        Hold::Forever => part.wait_holding_borrows().map(drop),
                        Hold::Deadline => part.wait().map(drop),
                    };
                }
                Err(err)
            }
        }
    }
}

/// The raw ranges of a batch, every pair checked for equal sizes.
fn batch_ranges<'a, S, D>(
    items: impl IntoIterator<Item = (&'a S, &'a mut D)>,
) -> Result<Vec<(RawBytes, RawBytes, usize)>>
where
    S: MoveSource + ?Sized + 'a,
    D: MoveTarget + ?Sized + 'a,
{
    items
        .into_iter()
        .map(|(src, dst)| {
            let len = checked_len(src.byte_len(), dst.byte_len())?;
            Ok((src.raw_bytes(), dst.raw_bytes_mut(), len))
        })
        .collect()
}
