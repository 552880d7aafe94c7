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
    /// Bytes of free buffers kept per device: memory on a middle GPU that
    /// the caller never asked for, so it stays bounded (a move needing more
    /// allocates, and the surplus is freed when it comes back).
    keep_bytes: usize,
}

impl ScratchPool {
    pub(crate) fn new(driver: Arc<dyn Driver>, keep_bytes: usize) -> ScratchPool {
        ScratchPool {
            driver,
            buffers: Mutex::new(Parked::new(DROP_DEADLINE)),
            keep_bytes,
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
        keep_largest(parked.free_mut(), self.keep_bytes);
    }

    /// Returns buffers no queued work uses.
    pub(crate) fn release_idle(&self, buffers: Vec<DeviceBuffer>) {
        let mut parked = self.buffers.lock().unwrap_or_else(|e| e.into_inner());
        parked.put_free(buffers);
        keep_largest(parked.free_mut(), self.keep_bytes);
    }

    /// Bytes of free buffers kept on `device` now (for tests).
    #[cfg(test)]
    fn kept_bytes(&self, device: usize) -> usize {
        let mut parked = self.buffers.lock().unwrap_or_else(|e| e.into_inner());
        parked.reclaim();
        parked
            .free()
            .iter()
            .filter(|b| b.device() == device)
            .map(DeviceBuffer::len)
            .sum()
    }
}

/// Keeps the largest free buffers per device, at most [`KEEP_PER_DEVICE`]
/// of them and `keep_bytes` in all; the others are freed (dropped).
fn keep_largest(free: &mut Vec<DeviceBuffer>, keep_bytes: usize) {
    free.sort_by_key(|b| (b.device(), std::cmp::Reverse(b.len())));
    // (device, buffers kept, bytes kept) of the device being walked.
    let mut kept_on = (usize::MAX, 0, 0);
    free.retain(|b| {
        if kept_on.0 != b.device() {
            kept_on = (b.device(), 0, 0);
        }
        let keep = kept_on.1 < KEEP_PER_DEVICE && kept_on.2 + b.len() <= keep_bytes;
        if keep {
            kept_on.1 += 1;
            kept_on.2 += b.len();
        }
        keep
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use p2p_core::sim::{Execution, SimOptions};
    use p2p_core::SimDriver;

    #[test]
    fn free_scratch_kept_on_a_middle_gpu_stays_within_its_bound() {
        let sim = Arc::new(SimDriver::with_options(
            p2p_core::sim::builtin_topology(),
            SimOptions::default().execution(Execution::Eager),
        ));
        let driver: Arc<dyn Driver> = sim.clone();
        let pool = ScratchPool::new(driver, 3 << 20);
        // Four concurrent moves' worth: each needs its own buffers now...
        let sets: Vec<_> = (0..4)
            .map(|_| pool.acquire(1, 2, 1 << 20).unwrap())
            .collect();
        assert_eq!(sim.stats().live_device_allocations, 8);
        // ...but what is kept afterwards is bounded, and the rest is freed.
        for set in sets {
            pool.release_idle(set);
        }
        assert_eq!(pool.kept_bytes(1), 3 << 20);
        assert_eq!(sim.stats().live_device_allocations, 3);
        // Kept buffers are reused.
        let again = pool.acquire(1, 3, 1 << 20).unwrap();
        assert_eq!(sim.stats().live_device_allocations, 3);
        pool.release_idle(again);
        sim.check_clean().unwrap();
    }
}
