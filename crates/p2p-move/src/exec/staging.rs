//! A bounded pool of pinned host buffers for staged copies, reused across moves.
//!
//! Pinning memory costs milliseconds per call, far more than a small copy, so
//! buffers are allocated once and kept. Buffers still in use by queued copies
//! are parked behind the fence that ends that use. The count of pinned bytes
//! always matches the live buffers: free, parked and handed out.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use p2p_core::memory::PinnedBuffer;
use p2p_core::{Driver, Result};

use super::parking::{Fence, Parked};

/// The smallest buffer the pool pins.
const MIN_CLASS: usize = 64 << 10;

/// How long an acquire waits for a parked set before pinning past the bound
/// instead: a parked set behind a hung copy must not block later moves.
const PARKED_WAIT: Duration = Duration::from_millis(50);

/// How long dropping the pool waits for each parked set.
const DROP_DEADLINE: Duration = Duration::from_secs(60);

/// Pinned buffers for staging, in size classes.
#[derive(Debug)]
pub(crate) struct StagingPool {
    driver: Arc<dyn Driver>,
    state: Mutex<PoolState>,
    max_bytes: usize,
}

#[derive(Debug)]
struct PoolState {
    buffers: Parked<PinnedBuffer>,
    /// Bytes of live buffers (free + parked + handed out), and of buffers
    /// being pinned with the lock released.
    allocated: usize,
}

impl StagingPool {
    pub(crate) fn new(driver: Arc<dyn Driver>, max_bytes: usize) -> StagingPool {
        StagingPool {
            driver,
            state: Mutex::new(PoolState {
                buffers: Parked::new(DROP_DEADLINE),
                allocated: 0,
            }),
            max_bytes,
        }
    }

    /// `count` buffers of at least `len` bytes each.
    ///
    /// Pinning takes milliseconds, so it happens with the lock released:
    /// the bytes are counted (reserved) first, so that two threads cannot
    /// both pin past the bound, and given back for buffers that failed.
    pub(crate) fn acquire(&self, count: usize, len: usize) -> Result<Vec<PinnedBuffer>> {
        if count == 0 {
            return Ok(Vec::new());
        }
        // Sizes in classes (powers of two from 64 KiB), so that moves of
        // varied sizes reuse buffers instead of freeing and pinning anew.
        let len = len
            .max(MIN_CLASS)
            .checked_next_power_of_two()
            .unwrap_or(len);
        let mut out = Vec::with_capacity(count);
        let mut state = self.lock();
        let result = loop {
            state.buffers.reclaim();
            let free = state.buffers.free_mut();
            while out.len() < count {
                match free.iter().position(|b| b.len() >= len) {
                    Some(i) => out.push(free.swap_remove(i)),
                    None => break,
                }
            }
            if out.len() == count {
                break Ok(());
            }
            let bound = self.max_bytes.max(len * count);
            let room = bound.saturating_sub(state.allocated) / len;
            let wanted = (count - out.len()).min(room);
            if wanted > 0 {
                let pinned;
                (state, pinned) = self.pin_unlocked(state, wanted, len, &mut out);
                match pinned {
                    Ok(()) => continue,
                    Err(err) => break Err(err),
                }
            }
            if !state.buffers.free().is_empty() {
                // Free buffers that are too small: give them back to make room.
                let small = state.buffers.take_free();
                state.allocated -= small.iter().map(PinnedBuffer::len).sum::<usize>();
                continue;
            }
            // Wait a little for the oldest parked set, with the lock released.
            if let Some((buffers, fence)) = state.buffers.take_oldest() {
                drop(state);
                let fired = fence.wait(PARKED_WAIT).is_ok();
                state = self.lock();
                if fired {
                    state.buffers.put_free(buffers);
                    continue;
                }
                // Still busy (maybe hung): park it again and pin past the bound.
                state.buffers.park(buffers, fence);
            }
            // Everything is handed out or busy: pin past the bound rather
            // than wait. The surplus is freed on release.
            let pinned;
            (state, pinned) = self.pin_unlocked(state, count - out.len(), len, &mut out);
            break pinned;
        };
        match result {
            Ok(()) => Ok(out),
            Err(err) => {
                // The ones taken so far are idle: keep them (still counted).
                state.buffers.put_free(out);
                state.trim(self.max_bytes);
                Err(err)
            }
        }
    }

    /// Pins `wanted` buffers of `len` bytes into `out` with the lock
    /// released, their bytes counted beforehand; bytes of buffers that could
    /// not be pinned are given back. Returns the lock again.
    fn pin_unlocked<'a>(
        &'a self,
        mut state: MutexGuard<'a, PoolState>,
        wanted: usize,
        len: usize,
        out: &mut Vec<PinnedBuffer>,
    ) -> (MutexGuard<'a, PoolState>, Result<()>) {
        state.allocated += wanted * len;
        drop(state);
        let before = out.len();
        let mut pinned = Ok(());
        while out.len() - before < wanted {
            match PinnedBuffer::new(&self.driver, len) {
                Ok(buffer) => out.push(buffer),
                Err(err) => {
                    pinned = Err(err);
                    break;
                }
            }
        }
        let mut state = self.lock();
        state.allocated -= (wanted - (out.len() - before)) * len;
        (state, pinned)
    }

    fn lock(&self) -> MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Returns buffers whose last use is the work before `done`.
    pub(crate) fn release(&self, buffers: Vec<PinnedBuffer>, done: Fence) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.buffers.park(buffers, done);
        state.buffers.reclaim();
        state.trim(self.max_bytes);
    }

    /// Returns buffers no queued work uses.
    pub(crate) fn release_idle(&self, buffers: Vec<PinnedBuffer>) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.buffers.put_free(buffers);
        state.trim(self.max_bytes);
    }

    /// Gives up buffers a hung copy may still use: never freed, no longer counted.
    pub(crate) fn leak(&self, buffers: Vec<PinnedBuffer>) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.allocated -= buffers.iter().map(PinnedBuffer::len).sum::<usize>();
        std::mem::forget(buffers);
    }

    /// Pinned bytes held now: free, parked and handed out (for tests and reports).
    pub(crate) fn allocated_bytes(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .allocated
    }
}

impl PoolState {
    /// Frees free buffers beyond the bound (pinned past it under contention).
    fn trim(&mut self, max_bytes: usize) {
        while self.allocated > max_bytes {
            match self.buffers.free_mut().pop() {
                Some(buffer) => self.allocated -= buffer.len(),
                None => break,
            }
        }
    }
}
