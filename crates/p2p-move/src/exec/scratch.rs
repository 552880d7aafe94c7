//! Scratch buffers on middle GPUs for via moves, reused across moves.
//!
//! `cuMemAlloc` and `cuMemFree` cost tens to hundreds of microseconds and
//! `cuMemFree` synchronises the device, more than a small via move itself.
//! Buffers still used by queued copies are parked with the event that ends
//! that use and come back once it has fired.

use std::sync::{Arc, Mutex};

use p2p_core::memory::DeviceBuffer;
use p2p_core::{AllocKind, Driver, Result};

use super::events::{release_parked, PooledEvent};

/// Free buffers kept per device, beyond which returned buffers are freed.
const KEEP_PER_DEVICE: usize = 8;

#[derive(Debug)]
pub(crate) struct ScratchPool {
    driver: Arc<dyn Driver>,
    state: Mutex<ScratchState>,
}

#[derive(Debug, Default)]
struct ScratchState {
    free: Vec<DeviceBuffer>,
    parked: Vec<(Vec<DeviceBuffer>, PooledEvent)>,
}

impl ScratchPool {
    pub(crate) fn new(driver: Arc<dyn Driver>) -> ScratchPool {
        ScratchPool {
            driver,
            state: Mutex::new(ScratchState::default()),
        }
    }

    /// `count` buffers of at least `len` bytes on `device`.
    pub(crate) fn acquire(
        &self,
        device: usize,
        count: usize,
        len: usize,
    ) -> Result<Vec<DeviceBuffer>> {
        let mut out = Vec::with_capacity(count);
        {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            state.reclaim();
            while out.len() < count {
                let found = state
                    .free
                    .iter()
                    .position(|b| b.device() == device && b.len() >= len);
                match found {
                    Some(i) => out.push(state.free.swap_remove(i)),
                    None => break,
                }
            }
        }
        while out.len() < count {
            out.push(DeviceBuffer::new(
                &self.driver,
                device,
                len,
                AllocKind::Plain,
            )?);
        }
        Ok(out)
    }

    /// Returns buffers whose last use is the work before `done`.
    pub(crate) fn release(&self, buffers: Vec<DeviceBuffer>, done: PooledEvent) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.parked.push((buffers, done));
        state.reclaim();
    }
}

impl ScratchState {
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
        // Keep the largest few per device.
        self.free
            .sort_by_key(|b| (b.device(), std::cmp::Reverse(b.len())));
        let mut kept_on = (usize::MAX, 0);
        self.free.retain(|b| {
            if kept_on.0 != b.device() {
                kept_on = (b.device(), 0);
            }
            kept_on.1 += 1;
            kept_on.1 <= KEEP_PER_DEVICE
        });
    }
}

impl Drop for ScratchPool {
    fn drop(&mut self) {
        // Parked buffers may still be used by queued copies.
        let state = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        release_parked(std::mem::take(&mut state.parked), "via copy");
    }
}
