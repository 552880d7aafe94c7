//! The executor: carries plans out on a [`Driver`], fast and ordered.
//!
//! A [`Mover`] owns what moves reuse: a copy stream in and out of each device,
//! pooled events, and a bounded pool of pinned staging buffers. Moves are
//! ordered with the caller's work through [`StreamOrder`]: the copy starts
//! after the work already queued on the source's and destination's streams,
//! and work queued on the destination's stream afterwards sees the bytes.

mod events;
mod raw;
mod raw_bytes;
mod scratch;
mod staging;
mod transfer;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use p2p_core::memory::DeviceBuffer;
use p2p_core::{CopyDesc, DeviceAddr, Driver, Location, PeerTable, PoolId, StreamId};

pub use raw_bytes::{MoveSource, MoveTarget, RawBytes, RawRange};
pub use transfer::{BatchCompletion, Completion, Transfer};

use crate::{plan, Error, Plan, Policy, Result, Route};
use events::{DeviceResources, PooledEvent};
use raw::RouteContext;
use scratch::ScratchPool;
use staging::StagingPool;

/// Streams the move must be ordered with. `None` = nothing to wait for on
/// that side (the bytes are ready; the result is read after a blocking move).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamOrder {
    /// The stream that last wrote the source (e.g. the framework's current
    /// stream on the source device). The copy waits for its queued work.
    pub src_stream: Option<StreamId>,
    /// The stream that will read the destination. The copy waits for its
    /// queued work (the memory may have been in use), and its later work
    /// waits for the copy.
    pub dst_stream: Option<StreamId>,
}

/// Moves bytes between host memory and devices by the fastest verified route.
#[derive(Debug)]
pub struct Mover {
    driver: Arc<dyn Driver>,
    table: Arc<PeerTable>,
    policy: Policy,
    verify: bool,
    res: DeviceResources,
    staging: StagingPool,
    /// (pool, device) pairs already granted access, so each is asked once.
    pool_grants: Mutex<HashSet<(PoolId, usize)>>,
    /// Scratch buffers on middle GPUs for via moves.
    scratch: ScratchPool,
    /// Device pairs whose default pools were opened to each other.
    default_pool_grants: Mutex<HashSet<(usize, usize)>>,
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
        Ok(Mover {
            res: DeviceResources::new(driver.clone()),
            staging: StagingPool::new(driver.clone(), staging_bytes),
            scratch: ScratchPool::new(driver.clone()),
            driver,
            table,
            policy,
            verify: false,
            pool_grants: Mutex::new(HashSet::new()),
            default_pool_grants: Mutex::new(HashSet::new()),
        })
    }

    /// Reads every destination back after a blocking move (or at
    /// [`Transfer::wait`]) and compares it with the source: slow, for
    /// paranoid users and tests.
    pub fn with_verify(mut self, verify: bool) -> Mover {
        self.verify = verify;
        self
    }

    pub fn driver(&self) -> &Arc<dyn Driver> {
        &self.driver
    }

    pub fn table(&self) -> &Arc<PeerTable> {
        &self.table
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Pinned bytes held by the staging pool now.
    pub fn staging_bytes(&self) -> usize {
        self.staging.allocated_bytes()
    }

    /// The plan a move of `bytes` from `src` to `dst` would follow (probing
    /// the pairs it depends on, if not known yet).
    pub fn plan(&self, src: Location, dst: Location, bytes: usize) -> Result<Plan> {
        Ok(plan(src, dst, bytes, self.table.as_ref(), &self.policy)?)
    }

    /// Copies `src` into `dst` and returns once the bytes are there.
    pub fn copy<S, D>(&self, src: &S, dst: &mut D) -> Result<Plan>
    where
        S: MoveSource + ?Sized,
        D: MoveTarget + ?Sized,
    {
        let len = checked_len(src.byte_len(), dst.byte_len())?;
        let (src_raw, dst_raw) = (src.raw_bytes(), dst.raw_bytes_mut());
        let plan = self.plan(src_raw.location(), dst_raw.location(), len)?;
        if let (RawBytes::Device(s), RawBytes::Device(d), Route::Peer) =
            (src_raw, dst_raw, plan.route)
        {
            if len > 0 {
                // The latency-bound case: queue the copy and poll the stream,
                // without recording an event.
                self.grant_pools(s, d)?;
                let stream = self.res.outbound(s.device)?;
                // SAFETY: the borrows of `src` and `dst` outlive the wait below.
                unsafe { raw::peer_unmarked(&self.driver, d, s, len, stream)? };
                transfer::hold_until_done(self.wait_deadline(len), |deadline| {
                    self.driver.wait_stream(stream, deadline)
                })?;
                if self.verify {
                    transfer::verify_bytes(&self.driver, src_raw, dst_raw, len)?;
                }
                return Ok(plan);
            }
        }
        if let (RawBytes::Device(s), RawBytes::Device(d), Route::Staged) =
            (src_raw, dst_raw, plan.route)
        {
            if len > 0 && plan.pipeline_depth == Some(1) && plan.chunks.len() == 1 {
                // A small staged copy is latency-bound: two plain copies with
                // a host wait between them beat chaining streams by events.
                // SAFETY: the borrows of `src` and `dst` outlive this call.
                unsafe { self.staged_small_blocking(d, s, len)? };
                if self.verify {
                    transfer::verify_bytes(&self.driver, src_raw, dst_raw, len)?;
                }
                return Ok(plan);
            }
        }
        // SAFETY: the borrows of `src` and `dst` outlive the wait below.
        let completion =
            unsafe { self.queue_planned(plan, src_raw, dst_raw, len, StreamOrder::default())? };
        completion.wait_holding_borrows()
    }

    /// Device to host to device through one pinned buffer, waiting on the
    /// host in between.
    ///
    /// # Safety
    /// `src` and `dst` hold `len` bytes and stay valid until this returns.
    unsafe fn staged_small_blocking(
        &self,
        dst: DeviceAddr,
        src: DeviceAddr,
        len: usize,
    ) -> Result<()> {
        let mut slots = self.staging.acquire(1, len)?;
        let (out, inb) = (
            self.res.outbound(src.device)?,
            self.res.inbound(dst.device)?,
        );
        let deadline = self.wait_deadline(len);
        // SAFETY: forwarded caller contract; the slot holds at least `len` bytes.
        let result = unsafe {
            raw::bounce(
                &self.driver,
                dst,
                src,
                &mut slots[0],
                len,
                out,
                inb,
                deadline,
            )
        };
        match result {
            Ok(()) => self.staging.release_idle(slots),
            // A copy may still be queued on the slot: never reuse it.
            Err(_) => std::mem::forget(slots),
        }
        Ok(result?)
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
        let src_len = checked_len(src.byte_len(), dst.byte_len())?;
        let (src_raw, dst_raw) = (src.raw_bytes(), dst.raw_bytes_mut());
        // SAFETY: the borrows held by the Transfer keep both ranges valid and
        // exclusive until it has waited for the completion.
        let completion = unsafe { self.copy_raw_async(src_raw, dst_raw, src_len, order)? };
        Ok(Transfer::new(self, completion))
    }

    /// Queues a copy between raw ranges (for adapters that keep the memory
    /// alive themselves) and returns its [`Completion`].
    ///
    /// # Safety
    /// `src` must stay readable and `dst` writable (by nobody else) for
    /// `len` bytes until the completion is done.
    pub unsafe fn copy_raw_async(
        &self,
        src: RawBytes,
        dst: RawBytes,
        len: usize,
        order: StreamOrder,
    ) -> Result<Completion> {
        let plan = self.plan(src.location(), dst.location(), len)?;
        // SAFETY: forwarded caller contract.
        unsafe { self.queue_planned(plan, src, dst, len, order) }
    }

    /// Carries out `plan`, which was made for exactly these ranges.
    ///
    /// # Safety
    /// As [`Mover::copy_raw_async`].
    unsafe fn queue_planned(
        &self,
        plan: Plan,
        src: RawBytes,
        dst: RawBytes,
        len: usize,
        order: StreamOrder,
    ) -> Result<Completion> {
        if plan.route == Route::NoOp || len == 0 {
            if plan.route == Route::NoOp {
                // SAFETY: forwarded caller contract.
                let done = unsafe { self.copy_same_place(src, dst, len, order)? };
                let deadline = self.wait_deadline(len);
                return Ok(Completion::queued(plan, done, deadline, None));
            }
            return Ok(Completion::ready(plan));
        }
        let start = self.start_events(order)?;
        let cx = self.route_context(&start, len);
        let depth = plan.pipeline_depth.unwrap_or(1);
        let done = match (src, dst, plan.route) {
            (RawBytes::Device(s), RawBytes::Device(d), Route::Peer) => {
                self.grant_pools(s, d)?;
                // SAFETY: forwarded caller contract.
                Some(unsafe { raw::peer(&cx, d, s, len)? })
            }
            (RawBytes::Device(s), RawBytes::Device(d), Route::Staged) => {
                // SAFETY: forwarded caller contract.
                Some(unsafe { raw::staged(&cx, d, s, &plan.chunks, depth)? })
            }
            (RawBytes::Device(s), RawBytes::Device(d), Route::Via { gpu }) => {
                self.grant_pools(
                    s,
                    DeviceAddr {
                        device: gpu,
                        addr: 0,
                    },
                )?;
                self.grant_pools(
                    DeviceAddr {
                        device: gpu,
                        addr: 0,
                    },
                    d,
                )?;
                // SAFETY: forwarded caller contract.
                let chunk_len = plan.chunks.iter().map(|c| c.len).max().unwrap_or(0);
                let depth = depth.clamp(1, plan.chunks.len().max(1));
                let scratch = self.scratch.acquire(gpu, depth, chunk_len)?;
                let hops: Vec<DeviceAddr> = scratch.iter().map(DeviceBuffer::ptr).collect();
                // SAFETY: forwarded caller contract; the scratch buffers are
                // parked below until the work queued so far is done.
                let queued = unsafe { raw::via(&cx, d, s, &hops, &plan.chunks) };
                // Also after a failure: copies queued before it may still use them.
                let parked = match &queued {
                    Ok(done) => Ok(done.clone()),
                    Err(_) => {
                        let streams = [
                            (s.device, self.res.outbound(s.device)?),
                            (gpu, self.res.outbound(gpu)?),
                        ];
                        raw::after_all(&cx, &streams)
                    }
                };
                match parked {
                    Ok(event) => self.scratch.release(scratch, event),
                    Err(_) => std::mem::forget(scratch),
                }
                Some(queued?)
            }
            (RawBytes::Host { ptr, pinned: true }, RawBytes::Device(d), Route::HostToDevice) => {
                // SAFETY: forwarded caller contract.
                Some(unsafe { raw::upload_pinned(&cx, d, ptr, len)? })
            }
            (RawBytes::Host { ptr, pinned: false }, RawBytes::Device(d), Route::HostToDevice) => {
                // SAFETY: forwarded caller contract.
                Some(unsafe { raw::upload_pageable(&cx, d, ptr, &plan.chunks, depth)? })
            }
            (RawBytes::Device(s), RawBytes::Host { ptr, pinned: true }, Route::DeviceToHost) => {
                // SAFETY: forwarded caller contract.
                Some(unsafe { raw::download_pinned(&cx, ptr, s, len)? })
            }
            (RawBytes::Device(s), RawBytes::Host { ptr, pinned: false }, Route::DeviceToHost) => {
                // SAFETY: forwarded caller contract.
                unsafe { raw::download_pageable(&cx, ptr, s, &plan.chunks, depth)? };
                None
            }
            (src, dst, route) => {
                return Err(Error::Internal(format!(
                    "plan {} does not fit {src:?} -> {dst:?}",
                    route.name()
                )))
            }
        };
        if let (Some(done), Some(dst_stream)) = (&done, order.dst_stream) {
            if let Err(err) = self.driver.stream_wait_event(dst_stream, done.id()) {
                // The copy is queued: it must be over before the caller may
                // touch the memory again, error or not.
                let _ = transfer::hold_until_done(self.wait_deadline(len), |d| done.wait(d));
                return Err(err.into());
            }
        }
        let verify = self.verify.then(|| transfer::VerifyRequest {
            driver: self.driver.clone(),
            src,
            dst,
            len,
        });
        Ok(Completion::queued(plan, done, self.wait_deadline(len), verify).after(start))
    }

    /// Copies many ranges at once and returns when all are there. Peer
    /// copies from one device go out in one batch call, and nothing waits on
    /// the host until everything is queued.
    pub fn copy_batch(
        &self,
        items: &mut [(&dyn MoveSource, &mut dyn MoveTarget)],
    ) -> Result<Vec<Plan>> {
        let mut ranges = Vec::with_capacity(items.len());
        for (src, dst) in items.iter_mut() {
            let (src_len, dst_len) = (src.byte_len(), dst.byte_len());
            if src_len != dst_len {
                return Err(Error::SizeMismatch {
                    src_bytes: src_len,
                    dst_bytes: dst_len,
                });
            }
            ranges.push((src.raw_bytes(), dst.raw_bytes_mut(), src_len));
        }
        // SAFETY: the exclusive borrows of `items` outlive the wait below,
        // and on error `copy_batch_raw_async` waits for what it queued.
        let batch = unsafe { self.copy_batch_raw_async(&ranges, StreamOrder::default())? };
        batch.wait_holding_borrows()
    }

    /// Queues many copies between raw ranges, ordered with `order` as one
    /// move would be. If queuing fails part-way, waits for what was queued
    /// before returning the error, so no copy outlives the call's failure.
    ///
    /// # Safety
    /// As [`Mover::copy_raw_async`], for every `(src, dst, len)`.
    pub unsafe fn copy_batch_raw_async(
        &self,
        items: &[(RawBytes, RawBytes, usize)],
        order: StreamOrder,
    ) -> Result<BatchCompletion> {
        let mut batch = BatchCompletion::default();
        // SAFETY: forwarded caller contract.
        match unsafe { self.queue_batch(items, order, &mut batch) } {
            Ok(()) => Ok(batch),
            Err(err) => {
                batch.wait_quietly();
                Err(err)
            }
        }
    }

    /// # Safety
    /// As [`Mover::copy_batch_raw_async`].
    unsafe fn queue_batch(
        &self,
        items: &[(RawBytes, RawBytes, usize)],
        order: StreamOrder,
        batch: &mut BatchCompletion,
    ) -> Result<()> {
        let mut peer_groups: Vec<(usize, Vec<CopyDesc>)> = Vec::new();
        let mut verify = Vec::new();
        // Many items share source, destination and size: plan each kind once.
        let mut plans: std::collections::HashMap<(Location, Location, usize), Plan> =
            Default::default();
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
            match (s, d, plan.route) {
                (RawBytes::Device(sp), RawBytes::Device(dp), Route::Peer) if len > 0 => {
                    self.grant_default_pools(sp.device, dp.device)?;
                    let copy = CopyDesc {
                        dst: dp,
                        src: sp,
                        bytes: len,
                    };
                    match peer_groups.iter_mut().find(|(from, _)| *from == sp.device) {
                        Some((_, group)) => group.push(copy),
                        None => peer_groups.push((sp.device, vec![copy])),
                    }
                    if self.verify {
                        verify.push(transfer::VerifyRequest {
                            driver: self.driver.clone(),
                            src: s,
                            dst: d,
                            len,
                        });
                    }
                }
                // SAFETY: forwarded caller contract.
                _ => batch
                    .parts
                    .push(unsafe { self.copy_raw_async(s, d, len, order)? }),
            }
            batch.plans.push(plan);
        }
        if peer_groups.is_empty() {
            return Ok(());
        }
        let start = self.start_events(order)?;
        let cx = self.route_context(&start, 0);
        for (from, copies) in &peer_groups {
            let bytes: usize = copies.iter().map(|c| c.bytes).sum();
            // SAFETY: forwarded caller contract.
            let done = unsafe { raw::peer_batch(&cx, *from, copies)? };
            // Recorded before anything else can fail, so that a failure
            // still waits for this copy (`wait_quietly`).
            batch.events.push((done.clone(), self.wait_deadline(bytes)));
            if let Some(stream) = order.dst_stream {
                self.driver.stream_wait_event(stream, done.id())?;
            }
        }
        batch.after.extend(start);
        batch.verify = verify;
        Ok(())
    }

    /// Same location: a device-to-device copy on the device, or a host memcpy.
    ///
    /// # Safety
    /// As [`Mover::copy_raw_async`].
    unsafe fn copy_same_place(
        &self,
        src: RawBytes,
        dst: RawBytes,
        len: usize,
        order: StreamOrder,
    ) -> Result<Option<PooledEvent>> {
        if len == 0 || src == dst {
            return Ok(None);
        }
        match (src, dst) {
            (RawBytes::Device(s), RawBytes::Device(d)) => {
                let start = self.start_events(order)?;
                let cx = self.route_context(&start, len);
                // SAFETY: forwarded caller contract.
                let done = unsafe { raw::peer(&cx, d, s, len)? };
                if let Some(stream) = order.dst_stream {
                    if let Err(err) = self.driver.stream_wait_event(stream, done.id()) {
                        let _ =
                            transfer::hold_until_done(self.wait_deadline(len), |t| done.wait(t));
                        return Err(err.into());
                    }
                }
                Ok(Some(done))
            }
            (RawBytes::Host { ptr: s, .. }, RawBytes::Host { ptr: d, .. }) => {
                // SAFETY: the caller guarantees both ranges; `copy` allows overlap.
                unsafe { std::ptr::copy(s, d, len) };
                Ok(None)
            }
            _ => Err(Error::Internal(
                "no-op plan between different locations".into(),
            )),
        }
    }

    /// What the route functions share, for a move of `len` bytes queued after `start`.
    fn route_context<'a>(&'a self, start: &'a [PooledEvent], len: usize) -> RouteContext<'a> {
        RouteContext {
            driver: &self.driver,
            res: &self.res,
            staging: &self.staging,
            start,
            deadline: self.wait_deadline(len),
        }
    }

    /// Events marking the caller's queued work on the streams we must follow.
    fn start_events(&self, order: StreamOrder) -> Result<Vec<PooledEvent>> {
        [order.src_stream, order.dst_stream]
            .into_iter()
            .flatten()
            .map(|stream| {
                let event = self.res.event(stream.device)?;
                event.record(stream)?;
                Ok(event)
            })
            .collect()
    }

    /// Memory from a stream-ordered pool is not covered by peer access:
    /// without a grant, the driver quietly stages it (38 vs 394 GB/s).
    fn grant_pools(&self, a: DeviceAddr, b: DeviceAddr) -> Result<()> {
        if a.device == b.device {
            return Ok(());
        }
        self.grant_default_pools(a.device, b.device)?;
        for (ptr, other) in [(a, b.device), (b, a.device)] {
            if ptr.addr == 0 {
                continue;
            }
            if let Some(pool) = self.driver.pool_of(ptr)? {
                let mut granted = self.pool_grants.lock().unwrap_or_else(|e| e.into_inner());
                if !granted.contains(&(pool, other)) {
                    match self.driver.grant_pool_access(pool, other) {
                        Ok(()) => {
                            granted.insert((pool, other));
                        }
                        // Still correct without it, by the driver's slower path.
                        Err(err) => tracing::warn!(
                            "opening a pool of cuda:{} to cuda:{other}: {err}",
                            pool.device
                        ),
                    }
                }
            }
        }
        Ok(())
    }

    /// Opens the default pools of `a` and `b` to each other, once per pair.
    /// Batches rely on this alone (no per-pointer lookup): memory from
    /// other pools is still copied correctly, by the driver's slower path.
    fn grant_default_pools(&self, a: usize, b: usize) -> Result<()> {
        let key = (a.min(b), a.max(b));
        let mut granted = self
            .default_pool_grants
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if granted.contains(&key) {
            return Ok(());
        }
        for (owner, accessor) in [(a, b), (b, a)] {
            // A failed grant is not fatal: such memory is still copied
            // correctly, by the driver's slower path; the pair is not asked again.
            match self.driver.default_pool(owner) {
                Ok(Some(pool)) => match self.driver.grant_pool_access(pool, accessor) {
                    Ok(()) => {
                        self.pool_grants
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert((pool, accessor));
                    }
                    Err(err) => tracing::warn!(
                        "opening cuda:{owner}'s default pool to cuda:{accessor}: {err}"
                    ),
                },
                Ok(None) => {}
                Err(err) => tracing::warn!("finding cuda:{owner}'s default pool: {err}"),
            }
        }
        granted.insert(key);
        Ok(())
    }

    /// A copy on a verified route that takes longer than this is called hung:
    /// the probe deadline plus one second per GB (far below any real link).
    fn wait_deadline(&self, bytes: usize) -> Duration {
        self.table.config().probe.deadline + Duration::from_nanos(bytes as u64)
    }
}

/// The common length of a source and a destination, or why there is none.
fn checked_len(src_bytes: usize, dst_bytes: usize) -> Result<usize> {
    if src_bytes == dst_bytes {
        Ok(src_bytes)
    } else {
        Err(Error::SizeMismatch {
            src_bytes,
            dst_bytes,
        })
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
