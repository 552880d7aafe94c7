//! A bounded pool of pinned host buffers for staged copies, reused across moves.
//!
//! Pinning memory costs milliseconds per call, far more than a small copy, so
//! buffers are allocated once and kept. Buffers still in use by queued copies
//! are parked with the event that marks the end of that use, and reclaimed
//! once it has fired. The pool never holds more than its bound: a move that
//! would go past it waits for parked buffers instead.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use p2p_core::memory::PinnedBuffer;
use p2p_core::{Driver, Result};

use super::events::{release_parked, PooledEvent};

/// The smallest buffer the pool pins.
const MIN_CLASS: usize = 64 << 10;

/// Pinned buffers for staging, in size classes.
#[derive(Debug)]
pub(crate) struct StagingPool {
    driver: Arc<dyn Driver>,
    state: Mutex<PoolState>,
    max_bytes: usize,
}

#[derive(Debug, Default)]
struct PoolState {
    free: Vec<PinnedBuffer>,
    /// Buffers still in use by queued copies, with the event that ends that use.
    parked: Vec<(Vec<PinnedBuffer>, PooledEvent)>,
    /// Bytes allocated and not freed: free + parked + handed out.
    allocated: usize,
}

impl StagingPool {
    pub(crate) fn new(driver: Arc<dyn Driver>, max_bytes: usize) -> StagingPool {
        StagingPool {
            driver,
            state: Mutex::new(PoolState::default()),
            max_bytes,
        }
    }

    /// `count` buffers of at least `len` bytes each.
    pub(crate) fn acquire(&self, count: usize, len: usize) -> Result<Vec<PinnedBuffer>> {
        // Sizes in classes (powers of two from 64 KiB), so that moves of
        // varied sizes reuse buffers instead of freeing and pinning anew.
        let len = len
            .max(MIN_CLASS)
            .checked_next_power_of_two()
            .unwrap_or(len);
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::with_capacity(count);
        loop {
            state.reclaim();
            // Take free buffers that are large enough; drop smaller ones (policy changed).
            while out.len() < count {
                match state.free.iter().position(|b| b.len() >= len) {
                    Some(i) => out.push(state.free.swap_remove(i)),
                    None => break,
                }
            }
            while out.len() < count && state.allocated + len <= self.max_bytes.max(len * count) {
                out.push(PinnedBuffer::new(&self.driver, len)?);
                state.allocated += len;
            }
            if out.len() == count {
                return Ok(out);
            }
            if !state.free.is_empty() {
                // Free buffers that are too small: give them back to make room.
                let small = std::mem::take(&mut state.free);
                state.allocated -= small.iter().map(PinnedBuffer::len).sum::<usize>();
                continue;
            }
            if state.parked.is_empty() {
                // Everything is handed out to other moves; pin past the bound
                // rather than deadlock. The surplus is freed on release.
                while out.len() < count {
                    out.push(PinnedBuffer::new(&self.driver, len)?);
                    state.allocated += len;
                }
                return Ok(out);
            }
            // Wait for the oldest parked set, with the lock released meanwhile.
            let (buffers, event) = state.parked.remove(0);
            drop(state);
            let waited = event.wait(Duration::from_secs(60));
            state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            match waited {
                Ok(()) => state.free.extend(buffers),
                Err(err) => {
                    // A copy that never ends may still write them: never reuse.
                    tracing::warn!(
                        "a staged copy did not finish ({err}); leaking its pinned buffers"
                    );
                    state.allocated -= buffers.iter().map(PinnedBuffer::len).sum::<usize>();
                    std::mem::forget(buffers);
                }
            }
        }
    }

    /// Returns buffers whose last use is the work before `done`.
    pub(crate) fn release(&self, buffers: Vec<PinnedBuffer>, done: PooledEvent) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.parked.push((buffers, done));
        state.reclaim();
        state.trim(self.max_bytes);
    }

    /// Returns buffers no queued work uses.
    pub(crate) fn release_idle(&self, buffers: Vec<PinnedBuffer>) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.free.extend(buffers);
        state.trim(self.max_bytes);
    }

    /// Pinned bytes held now (for tests and reports).
    pub(crate) fn allocated_bytes(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .allocated
    }
}

impl PoolState {
    fn reclaim(&mut self) {
        let mut i = 0;
        while i < self.parked.len() {
            if self.parked[i].1.is_done() {
                let (buffers, _event) = self.parked.swap_remove(i);
                self.free.extend(buffers);
            } else {
                i += 1;
            }
        }
    }

    /// Frees free buffers beyond the bound (pinned past it under contention).
    fn trim(&mut self, max_bytes: usize) {
        while self.allocated > max_bytes {
            match self.free.pop() {
                Some(buffer) => self.allocated -= buffer.len(),
                None => break,
            }
        }
    }
}

impl Drop for StagingPool {
    fn drop(&mut self) {
        // Parked buffers may still be used by queued copies.
        let state = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        release_parked(std::mem::take(&mut state.parked), "staged copy");
    }
}
