//! Scratch buffers on middle GPUs for via moves, reused across moves.
//!
//! `cuMemAlloc` and `cuMemFree` cost tens to hundreds of microseconds and
//! `cuMemFree` synchronises the device, more than a small via move itself.
//! Buffers still used by queued copies are parked behind the fence that
//! ends that use.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use p2p_core::memory::DeviceBuffer;
use p2p_core::{AllocKind, Driver, Result};

use super::parking::{Fence, Parked};

/// Free buffers kept per device, beyond which returned buffers are freed.
const KEEP_PER_DEVICE: usize = 8;

/// How long dropping the pool waits for each parked set.
const DROP_DEADLINE: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub(crate) struct ScratchPool {
    driver: Arc<dyn Driver>,
    buffers: Mutex<Parked<DeviceBuffer>>,
}

impl ScratchPool {
    pub(crate) fn new(driver: Arc<dyn Driver>) -> ScratchPool {
        ScratchPool {
            driver,
            buffers: Mutex::new(Parked::new(DROP_DEADLINE)),
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
            let mut buffers = self.buffers.lock().unwrap_or_else(|e| e.into_inner());
            buffers.reclaim();
            let free = buffers.free_mut();
            while out.len() < count {
                match free
                    .iter()
                    .position(|b| b.device() == device && b.len() >= len)
                {
                    Some(i) => out.push(free.swap_remove(i)),
                    None => break,
                }
            }
        }
        while out.len() < count {
            match DeviceBuffer::new(&self.driver, device, len, AllocKind::Plain) {
                Ok(buffer) => out.push(buffer),
                Err(err) => {
                    self.release_idle(out);
                    return Err(err);
                }
            }
        }
        Ok(out)
    }

    /// Returns buffers whose last use is the work before `done`.
    pub(crate) fn release(&self, buffers: Vec<DeviceBuffer>, done: Fence) {
        let mut parked = self.buffers.lock().unwrap_or_else(|e| e.into_inner());
        parked.park(buffers, done);
        parked.reclaim();
        keep_largest(parked.free_mut());
    }

    /// Returns buffers no queued work uses.
    pub(crate) fn release_idle(&self, buffers: Vec<DeviceBuffer>) {
        let mut parked = self.buffers.lock().unwrap_or_else(|e| e.into_inner());
        parked.put_free(buffers);
        keep_largest(parked.free_mut());
    }
}

/// Keeps the largest few free buffers per device.
fn keep_largest(free: &mut Vec<DeviceBuffer>) {
    free.sort_by_key(|b| (b.device(), std::cmp::Reverse(b.len())));
    let mut kept_on = (usize::MAX, 0);
    free.retain(|b| {
        if kept_on.0 != b.device() {
            kept_on = (b.device(), 0);
        }
        kept_on.1 += 1;
        kept_on.1 <= KEEP_PER_DEVICE
    });
}
