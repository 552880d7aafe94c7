//! Batches: many moves queued together, peer copies from one device in one
//! batch call, staged moves between one pair of GPUs coalesced through
//! shared pinned slots, everything waited for (also after a failure part-way).

use std::collections::HashMap;

use p2p_core::Location;

use super::routes::coalesced::Between;
use super::schedule::{LaneKind, Schedule};
use super::{borrowed, checked_len, routes, transfer, Hold, Mover};
use super::{
    BatchCompletion, BatchTransfer, Completion, MoveSource, MoveTarget, RawBytes, StreamOrder,
};
use crate::{Plan, Result, Route};

impl Mover {
    /// Copies many ranges at once and returns when all are there: any
    /// iterator of `(source, target)` pairs (`&dyn` ones to mix kinds).
    /// Peer copies, and copies to and from pinned host memory, go out in
    /// one batch call per stream. Staged (and via) moves between one pair
    /// of GPUs travel together: packed back to back into shared pinned
    /// slots (scratch buffers on the middle GPU), one batched copy per leg
    /// and buffer, planned for their total size (so below
    /// [`Policy::host_relay_bytes`](crate::Policy::host_relay_bytes) in total
    /// the host relays one slot, and above it the slots are pipelined);
    /// each returned [`Plan`] is still the item's own.
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
        // SAFETY: forwarded caller contract.
        let result = unsafe { self.queue_batch_parts(items, order, hold, &mut batch) };
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

    /// Plans every item, queues the ones that travel alone, and submits the
    /// groups: single DMA copies (peer, to and from pinned host memory) as
    /// one batch per stream, staged and via moves per pair of GPUs
    /// coalesced into shared pinned slots or scratch buffers.
    ///
    /// # Safety
    /// As [`Mover::copy_batch_raw_async`].
    unsafe fn queue_batch_parts(
        &self,
        items: &[(RawBytes, RawBytes, usize)],
        order: StreamOrder,
        hold: Hold,
        batch: &mut BatchCompletion,
    ) -> Result<()> {
        // Many items share source, destination and size: plan each kind once.
        let mut plans: HashMap<(Location, Location, usize), Plan> = HashMap::new();
        // Single DMA copies (peer, pinned host), batched per lane.
        let mut dma = Group::default();
        let mut dma_lanes: Vec<(LaneKind, usize)> = Vec::new();
        // Staged and via moves, per (source, destination, route).
        let mut two_leg: Vec<((usize, usize, Route), Group)> = Vec::new();
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
                    dma_lanes.push((LaneKind::Outbound(sp.device), len));
                    dma.push(self.verify, s, d, len, plan);
                }
                // Pinned host memory moves by one DMA copy: batched per lane too.
                (RawBytes::Host { pinned: true, .. }, RawBytes::Device(dp), _) if len > 0 => {
                    dma_lanes.push((LaneKind::Inbound(dp.device), len));
                    dma.push(self.verify, s, d, len, plan);
                }
                (RawBytes::Device(sp), RawBytes::Host { pinned: true, .. }, _) if len > 0 => {
                    dma_lanes.push((LaneKind::Outbound(sp.device), len));
                    dma.push(self.verify, s, d, len, plan);
                }
                (RawBytes::Device(sp), RawBytes::Device(dp), Route::Staged | Route::Via { .. })
                    if len > 0 && s != d =>
                {
                    let key = (sp.device, dp.device, plan.route);
                    let at = match two_leg.iter().position(|(k, _)| *k == key) {
                        Some(at) => at,
                        None => {
                            two_leg.push((key, Group::default()));
                            two_leg.len() - 1
                        }
                    };
                    two_leg[at].1.push(self.verify, s, d, len, plan);
                }
                // SAFETY: forwarded caller contract.
                _ => batch
                    .parts
                    .push(unsafe { self.queue(s, d, len, order, hold)? }),
            }
        }
        if !dma.items.is_empty() {
            let lanes: Vec<_> = dma_lanes
                .iter()
                .enumerate()
                .map(|(i, &(lane, len))| (lane, i, len))
                .collect();
            let schedule = routes::batch(&lanes, order.sides(None, None));
            let pairs = dma.device_pairs();
            // SAFETY: forwarded caller contract.
            let part = unsafe { dma.submit(self, &schedule, order, hold, pairs)? };
            batch.parts.push(part);
        }
        for ((src, dst, route), group) in two_leg {
            let total = group.lens.iter().sum();
            let plan = self.plan(Location::Cuda(src), Location::Cuda(dst), total)?;
            let between = match plan.route {
                Route::Staged if route == Route::Staged => Some(Between::Host),
                Route::Via { gpu } if route == plan.route => Some(Between::Gpu { mid: gpu }),
                _ => None,
            };
            let Some(between) = between else {
                // The verdicts changed under the batch: each part on its own.
                for ((s, d), len) in group.items.into_iter().zip(group.lens) {
                    // SAFETY: forwarded caller contract.
                    batch
                        .parts
                        .push(unsafe { self.queue(s, d, len, order, hold)? });
                }
                continue;
            };
            let mut pairs = Vec::new();
            if let Between::Gpu { mid } = between {
                // As for peer batches: the default pools, no lookup per part.
                self.shared.grants.open_defaults(src, mid);
                self.shared.grants.open_defaults(mid, dst);
                pairs = vec![(src, mid), (mid, dst)];
            }
            let sides = order.sides(None, None);
            let schedule = routes::coalesced::build(&plan, &group.lens, src, dst, between, sides);
            // SAFETY: forwarded caller contract.
            let part = unsafe { group.submit(self, &schedule, order, hold, pairs)? };
            batch.parts.push(part);
        }
        Ok(())
    }
}

/// Items of a batch that travel together.
#[derive(Debug, Default)]
struct Group {
    items: Vec<(RawBytes, RawBytes)>,
    lens: Vec<usize>,
    plans: Vec<Plan>,
    verify: Vec<transfer::VerifyRequest>,
}

impl Group {
    fn push(&mut self, verify: bool, src: RawBytes, dst: RawBytes, len: usize, plan: Plan) {
        self.items.push((src, dst));
        self.lens.push(len);
        self.plans.push(plan);
        if verify {
            self.verify.push(transfer::VerifyRequest { src, dst, len });
        }
    }

    /// The direct (peer) pairs the group's copies use, once each.
    fn device_pairs(&self) -> Vec<(usize, usize)> {
        let mut pairs: Vec<(usize, usize)> = self
            .items
            .iter()
            .filter_map(|(s, d)| match (s, d) {
                (RawBytes::Device(s), RawBytes::Device(d)) => Some((s.device, d.device)),
                _ => None,
            })
            .collect();
        pairs.sort_unstable();
        pairs.dedup();
        pairs
    }

    /// # Safety
    /// As [`Mover::copy_batch_raw_async`], for every item.
    unsafe fn submit(
        self,
        mover: &Mover,
        schedule: &Schedule,
        order: StreamOrder,
        hold: Hold,
        pairs: Vec<(usize, usize)>,
    ) -> Result<Completion> {
        // SAFETY: forwarded caller contract.
        unsafe {
            mover.submit(
                self.plans,
                schedule,
                &self.items,
                order,
                hold,
                pairs,
                self.verify,
            )
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
