//! A driver wrapper for executor tests: fails a chosen call, and tracks,
//! per stream, which queued copies are known finished (an event recorded
//! after them seen done, directly or through stream waits), so a test can
//! check that a safe API returned only once nothing it queued still ran.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use p2p_core::{
    AllocKind, Backend, CopyDesc, DeviceAddr, DeviceInfo, Driver, Error, EventId, MemRange,
    PeerClaim, PoolId, Result, StreamId,
};

/// What a stream has queued and what of it is known finished.
#[derive(Debug, Default, Clone)]
struct Lane {
    queued: u64,
    /// What this stream's later work waits for: (stream, copies queued there).
    deps: HashMap<StreamId, u64>,
}

/// Keeps the larger count per stream.
fn merge(into: &mut HashMap<StreamId, u64>, from: impl IntoIterator<Item = (StreamId, u64)>) {
    for (s, k) in from {
        let n = into.entry(s).or_default();
        *n = (*n).max(k);
    }
}

#[derive(Debug, Default)]
struct Track {
    lanes: HashMap<StreamId, Lane>,
    finished: HashMap<StreamId, u64>,
    /// Per event: its stream's count and deps at its recording.
    events: HashMap<EventId, (StreamId, u64, HashMap<StreamId, u64>)>,
}

impl Track {
    fn seen_done(&mut self, event: EventId) {
        if let Some((stream, n, deps)) = self.events.get(&event).cloned() {
            merge(&mut self.finished, std::iter::once((stream, n)).chain(deps));
        }
    }
}

/// The wrapper.
#[derive(Debug)]
pub(crate) struct Watched {
    inner: Arc<dyn Driver>,
    track: Mutex<Track>,
    /// Fail the n-th `create_event` (1-based; 0 = never).
    pub(crate) fail_event_at: AtomicUsize,
    events_made: AtomicUsize,
    /// Fail the n-th `alloc_pinned` (1-based; 0 = never).
    pub(crate) fail_pinned_at: AtomicUsize,
    pub(crate) pinned_made: AtomicUsize,
    /// Live pinned allocations and their sizes.
    pinned: Mutex<HashMap<usize, usize>>,
    /// Events a blocking wait is on: only those are seen done, so a
    /// non-blocking query (a pool looking) never counts as the move waiting.
    waiting: Mutex<Vec<EventId>>,
}

impl Watched {
    pub(crate) fn new(inner: Arc<dyn Driver>) -> Arc<Watched> {
        Arc::new(Watched {
            inner,
            track: Mutex::new(Track::default()),
            fail_event_at: AtomicUsize::new(0),
            events_made: AtomicUsize::new(0),
            fail_pinned_at: AtomicUsize::new(0),
            pinned_made: AtomicUsize::new(0),
            pinned: Mutex::new(HashMap::new()),
            waiting: Mutex::new(Vec::new()),
        })
    }

    /// Bytes of pinned memory allocated and not freed.
    pub(crate) fn live_pinned(&self) -> usize {
        self.pinned.lock().unwrap().values().sum()
    }

    /// Streams with copies not known to be finished.
    pub(crate) fn unfinished(&self) -> Vec<StreamId> {
        let track = self.track.lock().unwrap();
        track
            .lanes
            .iter()
            .filter(|(s, lane)| track.finished.get(s).copied().unwrap_or(0) < lane.queued)
            .map(|(s, _)| *s)
            .collect()
    }

    fn queued(&self, stream: StreamId) {
        self.track
            .lock()
            .unwrap()
            .lanes
            .entry(stream)
            .or_default()
            .queued += 1;
    }
}

impl Driver for Watched {
    fn backend(&self) -> Backend {
        self.inner.backend()
    }
    fn driver_version(&self) -> i32 {
        self.inner.driver_version()
    }
    fn devices(&self) -> &[DeviceInfo] {
        self.inner.devices()
    }
    fn claim(&self, from: usize, to: usize) -> Result<PeerClaim> {
        self.inner.claim(from, to)
    }
    fn enable_peer_access(&self, accessor: usize, owner: usize) -> Result<()> {
        self.inner.enable_peer_access(accessor, owner)
    }
    fn disable_peer_access(&self, accessor: usize, owner: usize) -> Result<()> {
        self.inner.disable_peer_access(accessor, owner)
    }
    fn alloc_device(&self, device: usize, bytes: usize, kind: AllocKind) -> Result<DeviceAddr> {
        self.inner.alloc_device(device, bytes, kind)
    }
    unsafe fn free_device(&self, ptr: DeviceAddr) -> Result<()> {
        // SAFETY: forwarded caller contract.
        unsafe { self.inner.free_device(ptr) }
    }
    fn alloc_pinned(&self, bytes: usize) -> Result<*mut u8> {
        let n = self.pinned_made.fetch_add(1, Ordering::SeqCst) + 1;
        if n == self.fail_pinned_at.load(Ordering::SeqCst) {
            return Err(Error::OutOfMemory {
                place: "pinned host memory (injected)".into(),
                bytes,
            });
        }
        let ptr = self.inner.alloc_pinned(bytes)?;
        self.pinned
            .lock()
            .unwrap()
            .insert(ptr as usize, bytes.max(1));
        Ok(ptr)
    }
    unsafe fn free_pinned(&self, ptr: *mut u8) -> Result<()> {
        self.pinned.lock().unwrap().remove(&(ptr as usize));
        // SAFETY: forwarded caller contract.
        unsafe { self.inner.free_pinned(ptr) }
    }
    fn pool_of(&self, ptr: DeviceAddr) -> Result<Option<PoolId>> {
        self.inner.pool_of(ptr)
    }
    fn default_pool(&self, device: usize) -> Result<Option<PoolId>> {
        self.inner.default_pool(device)
    }
    fn grant_pool_access(&self, pool: PoolId, accessor: usize) -> Result<()> {
        self.inner.grant_pool_access(pool, accessor)
    }
    fn create_stream(&self, device: usize) -> Result<StreamId> {
        self.inner.create_stream(device)
    }
    unsafe fn destroy_stream(&self, stream: StreamId) -> Result<()> {
        // SAFETY: forwarded caller contract.
        unsafe { self.inner.destroy_stream(stream) }
    }
    fn create_event(&self, device: usize) -> Result<EventId> {
        let n = self.events_made.fetch_add(1, Ordering::SeqCst) + 1;
        if n == self.fail_event_at.load(Ordering::SeqCst) {
            return Err(Error::Unsupported("injected: event creation fails".into()));
        }
        self.inner.create_event(device)
    }
    fn create_timing_event(&self, device: usize) -> Result<EventId> {
        self.inner.create_timing_event(device)
    }
    unsafe fn destroy_event(&self, event: EventId) -> Result<()> {
        // SAFETY: forwarded caller contract.
        unsafe { self.inner.destroy_event(event) }
    }
    unsafe fn copy_peer_async(
        &self,
        dst: DeviceAddr,
        src: DeviceAddr,
        bytes: usize,
        stream: StreamId,
    ) -> Result<()> {
        self.queued(stream);
        // SAFETY: forwarded caller contract.
        unsafe { self.inner.copy_peer_async(dst, src, bytes, stream) }
    }
    unsafe fn copy_batch_async(&self, copies: &[CopyDesc], stream: StreamId) -> Result<()> {
        self.queued(stream);
        // SAFETY: forwarded caller contract.
        unsafe { self.inner.copy_batch_async(copies, stream) }
    }
    unsafe fn copy_dtoh_async(
        &self,
        dst: *mut u8,
        src: DeviceAddr,
        bytes: usize,
        stream: StreamId,
    ) -> Result<()> {
        self.queued(stream);
        // SAFETY: forwarded caller contract.
        unsafe { self.inner.copy_dtoh_async(dst, src, bytes, stream) }
    }
    unsafe fn copy_htod_async(
        &self,
        dst: DeviceAddr,
        src: *const u8,
        bytes: usize,
        stream: StreamId,
    ) -> Result<()> {
        self.queued(stream);
        // SAFETY: forwarded caller contract.
        unsafe { self.inner.copy_htod_async(dst, src, bytes, stream) }
    }
    unsafe fn memset_async(
        &self,
        dst: DeviceAddr,
        value: u8,
        bytes: usize,
        stream: StreamId,
    ) -> Result<()> {
        // SAFETY: forwarded caller contract.
        unsafe { self.inner.memset_async(dst, value, bytes, stream) }
    }
    fn record_event(&self, event: EventId, stream: StreamId) -> Result<()> {
        self.inner.record_event(event, stream)?;
        let mut track = self.track.lock().unwrap();
        let lane = track.lanes.entry(stream).or_default().clone();
        track.events.insert(event, (stream, lane.queued, lane.deps));
        Ok(())
    }
    fn stream_wait_event(&self, stream: StreamId, event: EventId) -> Result<()> {
        self.inner.stream_wait_event(stream, event)?;
        let mut track = self.track.lock().unwrap();
        if let Some((s, n, deps)) = track.events.get(&event).cloned() {
            let lane = track.lanes.entry(stream).or_default();
            merge(&mut lane.deps, std::iter::once((s, n)).chain(deps));
        }
        Ok(())
    }
    fn event_done(&self, event: EventId) -> Result<bool> {
        if !self.waiting.lock().unwrap().contains(&event) {
            return Ok(false);
        }
        let done = self.inner.event_done(event)?;
        if done {
            self.track.lock().unwrap().seen_done(event);
        }
        Ok(done)
    }
    fn event_elapsed_ms(&self, start: EventId, end: EventId) -> Result<f32> {
        self.inner.event_elapsed_ms(start, end)
    }
    fn synchronize_stream(&self, stream: StreamId) -> Result<()> {
        self.inner.synchronize_stream(stream)?;
        let mut track = self.track.lock().unwrap();
        let lane = track.lanes.entry(stream).or_default().clone();
        merge(
            &mut track.finished,
            std::iter::once((stream, lane.queued)).chain(lane.deps),
        );
        Ok(())
    }
    fn borrows_released(&self, ranges: &[MemRange]) {
        self.inner.borrows_released(ranges)
    }
    fn wait_event(&self, event: EventId, deadline: Duration) -> Result<()> {
        self.waiting.lock().unwrap().push(event);
        let waited = p2p_core::poll_until(deadline, || self.event_done(event));
        let mut waiting = self.waiting.lock().unwrap();
        if let Some(i) = waiting.iter().position(|e| *e == event) {
            waiting.swap_remove(i);
        }
        waited
    }
}
