//! The executor: carries plans out on a [`Driver`], fast and ordered.
//!
//! A move goes plan -> schedule -> submission: `routes` builds the
//! schedule (a value, see `schedule`), `order` puts the caller's streams
//! into it, `submit` queues it (the one place that touches memory the crate
//! does not own), and `parking` holds pinned and scratch buffers until the
//! move's `done` fence fires. A [`Mover`] owns what moves reuse: copy
//! streams in and out of each device, pooled events, and the buffer pools.

mod batch;
mod grants;
mod order;
mod parking;
mod raw_bytes;
mod routes;
mod schedule;
#[cfg(test)]
mod schedule_props;
mod scratch;
mod staging;
mod streams;
mod submit;
mod transfer;

use std::sync::Arc;
use std::time::Duration;

use p2p_core::{DeviceAddr, Driver, Location, MemRange, PeerTable, StreamId};

pub use order::StreamOrder;
pub use parking::{EventPool, Fence, Leaked, Parked};
pub use raw_bytes::{MoveSource, MoveTarget, RawBytes, RawRange};
pub use transfer::{BatchCompletion, BatchTransfer, Completion, Transfer};

use crate::{plan, Error, Plan, Policy, Result, Route};
use grants::PoolGrants;
use routes::Endpoint;
use schedule::{LaneKind, Schedule};
use scratch::ScratchPool;
use staging::StagingPool;
use streams::{CopyStreams, Direction};
use submit::Binding;

/// What moves and their completions share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) driver: Arc<dyn Driver>,
    table: Arc<PeerTable>,
    events: Arc<EventPool>,
    streams: CopyStreams,
    staging: StagingPool,
    scratch: ScratchPool,
    grants: PoolGrants,
}

impl Shared {
    /// A move on `streams` did not finish within `deadline`: retire them,
    /// so that later moves get new streams instead of queuing behind the
    /// hang, and downgrade the peer pairs it used directly to `timeout`, so
    /// that later plans route around them.
    pub(crate) fn report_hang(
        &self,
        streams: &[StreamId],
        pairs: &[(usize, usize)],
        deadline: Duration,
    ) {
        for &stream in streams {
            self.streams.retire(stream);
        }
        let after_ms = u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX);
        for &(from, to) in pairs {
            if let Err(err) = self
                .table
                .downgrade(from, to, p2p_core::Reason::Timeout { after_ms })
            {
                tracing::warn!("downgrading cuda:{from} -> cuda:{to} after a hang: {err}");
            }
        }
    }
}

/// Moves bytes between host memory and devices by the fastest verified route.
#[derive(Debug)]
pub struct Mover {
    shared: Arc<Shared>,
    policy: Policy,
    verify: bool,
}

/// Pinned bytes the staging pool keeps at most (beyond transient surplus):
/// two moves' worth of the default pipeline.
const DEFAULT_STAGING_BYTES: usize = 2 * 4 * (8 << 20);

impl Mover {
    /// A mover for the machine of `table`, with `policy`.
    pub fn new(table: Arc<PeerTable>, policy: Policy) -> Result<Mover> {
        policy.validate()?;
        let driver = table.driver().clone();
        let staging_bytes = DEFAULT_STAGING_BYTES.max(
            policy
                .chunk_bytes
                .saturating_mul(policy.pipeline_depth)
                .saturating_mul(2),
        );
        let shared = Shared {
            events: EventPool::new(driver.clone()),
            streams: CopyStreams::new(driver.clone()),
            staging: StagingPool::new(driver.clone(), staging_bytes),
            // The same bound as the pinned pool's, on each middle GPU.
            scratch: ScratchPool::new(driver.clone(), staging_bytes),
            grants: PoolGrants::new(driver.clone()),
            driver,
            table,
        };
        Ok(Mover {
            shared: Arc::new(shared),
            policy,
            verify: false,
        })
    }

    /// Reads every destination back after a blocking move (or at
    /// [`Transfer::wait`]) and compares it with the source: slow, for
    /// paranoid users and tests.
    pub fn with_verify(mut self, verify: bool) -> Mover {
        self.verify = verify;
        self
    }

    /// The driver moves run on.
    pub fn driver(&self) -> &Arc<dyn Driver> {
        &self.shared.driver
    }

    /// The verdicts moves are planned by.
    pub fn table(&self) -> &Arc<PeerTable> {
        &self.shared.table
    }

    /// The policy moves are planned with.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The mover's pool of events, for adapters that fence their own work.
    pub fn events(&self) -> &Arc<EventPool> {
        &self.shared.events
    }

    /// Pinned bytes held by the staging pool now: free, parked and in use.
    pub fn staging_bytes(&self) -> usize {
        self.shared.staging.allocated_bytes()
    }

    /// How many copy streams were retired after a hang.
    pub fn retired_streams(&self) -> usize {
        self.shared.streams.retired_count()
    }

    /// The plan a move of `bytes` from `src` to `dst` would follow (probing
    /// the pairs it depends on, if not known yet).
    pub fn plan(&self, src: Location, dst: Location, bytes: usize) -> Result<Plan> {
        Ok(plan(
            src,
            dst,
            bytes,
            self.shared.table.as_ref(),
            &self.policy,
        )?)
    }

    /// Copies `src` into `dst` and returns once the bytes are there. On
    /// error nothing of the move still runs: the source is intact and the
    /// destination may be touched again.
    pub fn copy<S, D>(&self, src: &S, dst: &mut D) -> Result<Plan>
    where
        S: MoveSource + ?Sized,
        D: MoveTarget + ?Sized,
    {
        let len = checked_len(src.byte_len(), dst.byte_len());
        let (src_raw, dst_raw) = (src.raw_bytes(), dst.raw_bytes_mut());
        let ranges = borrowed(&[(src_raw, dst_raw, *len.as_ref().unwrap_or(&0))]);
        let result = len.and_then(|len| {
            // SAFETY: the borrows of `src` and `dst` outlive the wait below,
            // and a failed queue waits for what it started (`Hold::Forever`).
            let completion = unsafe {
                self.queue(src_raw, dst_raw, len, StreamOrder::default(), Hold::Forever)
            }?;
            completion
                .wait_holding_borrows()
                .map(|mut plans| plans.swap_remove(0))
        });
        self.shared.driver.borrows_released(&ranges);
        result
    }

    /// Queues a copy of `src` into `dst`, ordered with `order`, and returns
    /// once it is queued. The borrows last until the [`Transfer`] is waited
    /// for or dropped (dropping waits), so neither side can be freed or
    /// touched while the copy runs. Moves from or to pageable host memory
    /// return only once the host side is done.
    ///
    /// # Safety
    /// The [`Transfer`] must be waited for or dropped, never leaked
    /// (`std::mem::forget`, a reference cycle): a leaked transfer ends the
    /// borrows while the device may still read `src` and write `dst`.
    /// [`Mover::copy`] is the safe, blocking form.
    pub unsafe fn copy_async<'a, S, D>(
        &'a self,
        src: &'a S,
        dst: &'a mut D,
        order: StreamOrder,
    ) -> Result<Transfer<'a>>
    where
        S: MoveSource + ?Sized,
        D: MoveTarget + ?Sized,
    {
        let len = checked_len(src.byte_len(), dst.byte_len())?;
        let (src_raw, dst_raw) = (src.raw_bytes(), dst.raw_bytes_mut());
        let ranges = borrowed(&[(src_raw, dst_raw, len)]);
        // SAFETY: the borrows held by the Transfer keep both ranges valid and
        // exclusive until it has waited for the completion; a failed queue
        // waits for what it started.
        match unsafe { self.queue(src_raw, dst_raw, len, order, Hold::Forever) } {
            Ok(completion) => Ok(Transfer::new(self, completion, ranges)),
            Err(err) => {
                self.shared.driver.borrows_released(&ranges);
                Err(err)
            }
        }
    }

    /// Queues a copy between raw ranges (for adapters that keep the memory
    /// alive themselves) and returns its [`Completion`]. If queuing fails
    /// part-way, waits (up to the move's deadline) for what was queued
    /// before returning the error; a [`p2p_core::Error::Timeout`] then means
    /// a copy may still run, and the memory must be kept (or leaked).
    ///
    /// # Safety
    /// `src` must stay readable and `dst` writable (by nobody else) for
    /// `len` bytes until the completion is done (or, on a timeout error,
    /// for ever).
    pub unsafe fn copy_raw_async(
        &self,
        src: RawBytes,
        dst: RawBytes,
        len: usize,
        order: StreamOrder,
    ) -> Result<Completion> {
        // SAFETY: forwarded caller contract.
        unsafe { self.queue(src, dst, len, order, Hold::Deadline) }
    }

    /// Plans, schedules and submits one move.
    ///
    /// # Safety
    /// As [`Mover::copy_raw_async`].
    pub(crate) unsafe fn queue(
        &self,
        src: RawBytes,
        dst: RawBytes,
        len: usize,
        order: StreamOrder,
        hold: Hold,
    ) -> Result<Completion> {
        let plan = self.plan(src.location(), dst.location(), len)?;
        let mut laid_out = plan.clone();
        if src == dst {
            // The same bytes: nothing to copy.
            laid_out.layout = crate::Layout::Empty;
            laid_out.bytes = 0;
        }
        let sides = order.sides(src.location().device(), dst.location().device());
        let schedule =
            routes::build(&laid_out, endpoint(src), endpoint(dst), sides).map_err(|m| {
                Error::RouteMismatch {
                    route: m.route,
                    src: m.src.location(),
                    dst: m.dst.location(),
                }
            })?;
        let pairs = match (src, dst, plan.route) {
            (RawBytes::Device(s), RawBytes::Device(d), Route::Peer) => {
                self.shared.grants.open(s, d);
                vec![(s.device, d.device)]
            }
            (RawBytes::Device(s), RawBytes::Device(d), Route::Via { gpu }) => {
                let mid = DeviceAddr {
                    device: gpu,
                    addr: 0,
                };
                self.shared.grants.open_defaults(s.device, gpu);
                self.shared.grants.open_defaults(gpu, d.device);
                self.shared.grants.open(s, mid);
                self.shared.grants.open(mid, d);
                vec![(s.device, gpu), (gpu, d.device)]
            }
            _ => Vec::new(),
        };
        let verify = self
            .verify
            .then_some(transfer::VerifyRequest { src, dst, len })
            .into_iter()
            .collect();
        // SAFETY: forwarded caller contract.
        unsafe {
            self.submit(
                vec![plan],
                &schedule,
                &[(src, dst)],
                order,
                hold,
                pairs,
                verify,
            )
        }
    }

    /// Binds `schedule` to streams and buffers, submits it, and parks the
    /// buffers behind its end.
    ///
    /// # Safety
    /// As [`Mover::copy_raw_async`], for every item.
    #[allow(clippy::too_many_arguments)] // the move's parts, each needed once
    pub(crate) unsafe fn submit(
        &self,
        plans: Vec<Plan>,
        schedule: &Schedule,
        items: &[(RawBytes, RawBytes)],
        order: StreamOrder,
        hold: Hold,
        pairs: Vec<(usize, usize)>,
        verify: Vec<transfer::VerifyRequest>,
    ) -> Result<Completion> {
        let shared = &self.shared;
        let mut streams = Vec::with_capacity(schedule.lanes.len());
        for &kind in &schedule.lanes {
            streams.push(match kind {
                LaneKind::Outbound(device) => shared.streams.get(device, Direction::Outbound)?,
                LaneKind::Inbound(device) => shared.streams.get(device, Direction::Inbound)?,
                LaneKind::CallerSrc => order.src_stream.ok_or(Error::MissingStream)?,
                LaneKind::CallerDst => order.dst_stream.ok_or(Error::MissingStream)?,
            });
        }
        let (slot_count, slot_len) = schedule.slots;
        let mut slots = shared.staging.acquire(slot_count, slot_len)?;
        let scratch = match schedule.scratch {
            Some((device, count, len)) => match shared.scratch.acquire(device, count, len) {
                Ok(scratch) => scratch,
                Err(err) => {
                    shared.staging.release_idle(slots);
                    return Err(err.into());
                }
            },
            None => Vec::new(),
        };
        let ours: Vec<StreamId> = streams
            .iter()
            .zip(&schedule.lanes)
            .filter(|(_, kind)| !kind.is_callers())
            .map(|(&stream, _)| stream)
            .collect();
        let deadline = self.wait_deadline(plans.iter().map(|p| p.bytes).sum());
        let lane_ends = streams
            .iter()
            .zip(&schedule.lanes)
            .map(|(&stream, kind)| {
                if kind.is_callers() {
                    None
                } else {
                    shared.streams.end_of(stream)
                }
            })
            .collect();
        let bind = Binding {
            driver: &shared.driver,
            events: &shared.events,
            lane_ends,
            streams,
            items,
            slots: slots.iter_mut().map(|slot| slot.as_mut_ptr()).collect(),
            scratch: scratch.iter().map(|buffer| buffer.ptr()).collect(),
            deadline,
        };
        // SAFETY: forwarded caller contract for the items; the slots and
        // scratch buffers are ours and parked below until `done` fires (or,
        // after a failure, until nothing can still use them).
        match unsafe { submit::submit(schedule, &bind) } {
            Ok(submitted) => {
                for (stream, end) in &submitted.ends {
                    shared.streams.set_end(*stream, end.clone());
                }
                match &submitted.done {
                    Some(done) => {
                        shared.staging.release(slots, done.clone());
                        shared.scratch.release(scratch, done.clone());
                    }
                    None => {
                        shared.staging.release_idle(slots);
                        shared.scratch.release_idle(scratch);
                    }
                }
                Ok(Completion {
                    plans,
                    done: submitted.done,
                    ahead: submitted.ahead,
                    deadline,
                    verify,
                    streams: ours,
                    pairs,
                    shared: self.shared.clone(),
                })
            }
            Err(failed) => {
                if failed.pending.is_empty() && failed.hung.is_empty() {
                    shared.staging.release_idle(slots);
                    shared.scratch.release_idle(scratch);
                    return Err(failed.error.into());
                }
                shared.report_hang(&failed.hung, &pairs, deadline);
                match hold {
                    Hold::Forever => {
                        for fence in &failed.pending {
                            transfer::hold(fence);
                        }
                        // Lanes fenced without an event were polled only
                        // up to the deadline: wait for them for good.
                        for stream in &failed.hung {
                            transfer::hold_stream(shared.driver.as_ref(), *stream);
                        }
                        shared.staging.release_idle(slots);
                        shared.scratch.release_idle(scratch);
                    }
                    Hold::Deadline => {
                        // A copy may still use them: never reuse, never free.
                        shared.staging.leak(slots);
                        std::mem::forget(scratch);
                    }
                }
                Err(failed.error.into())
            }
        }
    }

    /// A copy on a verified route that takes longer than this, once the
    /// work queued ahead of it is done, is called hung: the probe deadline
    /// plus one second per GB (far below any real link).
    fn wait_deadline(&self, bytes: usize) -> Duration {
        self.shared.table.config().probe.deadline + Duration::from_nanos(bytes as u64)
    }
}

/// How a failed submission waits for what it queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Hold {
    /// Until it is over, however long: the safe APIs, whose borrows end on return.
    Forever,
    /// Up to the move's deadline; then the error says timeout and the
    /// caller keeps (or leaks) the memory: the raw APIs.
    Deadline,
}

fn endpoint(raw: RawBytes) -> Endpoint {
    match raw {
        RawBytes::Device(addr) => Endpoint::Device(addr.device),
        RawBytes::Host { pinned, .. } => Endpoint::Host { pinned },
    }
}

/// The ranges a safe API borrowed, for [`Driver::borrows_released`].
pub(crate) fn borrowed(items: &[(RawBytes, RawBytes, usize)]) -> Vec<MemRange> {
    let range = |raw: RawBytes, len: usize| match raw {
        RawBytes::Device(addr) => MemRange::Device { addr, len },
        RawBytes::Host { ptr, .. } => MemRange::Host {
            addr: ptr as usize,
            len,
        },
    };
    items
        .iter()
        .flat_map(|&(s, d, len)| [range(s, len), range(d, len)])
        .collect()
}

/// The common length of a source and a destination, or why there is none.
pub(crate) fn checked_len(src_bytes: usize, dst_bytes: usize) -> Result<usize> {
    if src_bytes == dst_bytes {
        Ok(src_bytes)
    } else {
        Err(p2p_core::Error::SizeMismatch {
            src_bytes,
            dst_bytes,
        }
        .into())
    }
}

/// The live table answers the planner, probing a pair the first time it is asked.
impl crate::PeerVerdicts for PeerTable {
    fn device_count(&self) -> usize {
        PeerTable::device_count(self)
    }

    fn is_verified(&self, from: usize, to: usize) -> bool {
        PeerTable::is_verified(self, from, to)
    }
}
