//! The one seam between this workspace and a GPU: the [`Driver`] trait.
//!
//! Handles are plain values (device ordinal + raw number) so that memory,
//! streams and events made elsewhere (PyTorch's current stream, a `cudarc`
//! buffer) can be used without wrapping them. Owning wrappers with `Drop`
//! live in `memory`. The CUDA backend maps each raw number to the driver's
//! own handle (`CUdeviceptr`, `CUstream`, `CUevent`); the simulated backend
//! to its own tables.

use std::fmt;
use std::time::{Duration, Instant};

use crate::{DeviceInfo, Error, PeerClaim, Result};

/// Which implementation a [`Driver`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// Real GPUs through the CUDA driver API.
    Cuda,
    /// Fake GPUs whose memory is host memory (tests, machines without GPUs).
    Simulated,
}

/// An address in one device's memory. `addr` is a `CUdeviceptr` on CUDA.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DeviceAddr {
    /// The ordinal of the device whose memory this is.
    pub device: usize,
    /// The address itself (a `CUdeviceptr` on CUDA; made up by the simulator).
    pub addr: u64,
}

impl DeviceAddr {
    /// The address `bytes` further on, on the same device. Nothing checks
    /// that it stays inside an allocation: that is the user's side of the
    /// `unsafe` calls that take it.
    pub fn offset(self, bytes: usize) -> DeviceAddr {
        DeviceAddr {
            device: self.device,
            addr: self.addr + bytes as u64,
        }
    }
}

/// A stream of one device. `raw` is a `CUstream` on CUDA (0 = legacy default stream).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StreamId {
    /// The ordinal of the device the stream belongs to.
    pub device: usize,
    /// The backend's handle, cast to a number.
    pub raw: u64,
}

/// An event created on one device. `raw` is a `CUevent` on CUDA.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EventId {
    /// The ordinal of the device the event was created on.
    pub device: usize,
    /// The backend's handle, cast to a number (never 0).
    pub raw: u64,
}

/// A stream-ordered memory pool (`CUmemoryPool`) that owns some device memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PoolId {
    /// The ordinal of the device whose memory the pool hands out.
    pub device: usize,
    /// The backend's handle, cast to a number.
    pub raw: u64,
}

/// A range of memory a safe API borrowed from its caller (see
/// [`Driver::borrows_released`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MemRange {
    /// `len` bytes of device memory from `addr`.
    Device {
        /// Where the range starts.
        addr: DeviceAddr,
        /// How many bytes.
        len: usize,
    },
    /// `len` bytes of host memory (pinned or pageable) from address `addr`.
    Host {
        /// Where the range starts, as a number (`ptr as usize`).
        addr: usize,
        /// How many bytes.
        len: usize,
    },
}

/// One device-to-device copy of a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CopyDesc {
    /// Where the bytes go.
    pub dst: DeviceAddr,
    /// Where the bytes come from.
    pub src: DeviceAddr,
    /// How many bytes.
    pub bytes: usize,
}

/// One copy between pinned host memory and a device, in a batch of
/// host-to-device or device-to-host copies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostCopyDesc {
    /// The host end: page-locked (pinned) memory.
    pub host: *mut u8,
    /// The device end.
    pub device: DeviceAddr,
    /// How many bytes.
    pub bytes: usize,
}

/// How device memory is allocated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AllocKind {
    /// `cuMemAlloc`: covered by `cuCtxEnablePeerAccess`.
    Plain,
    /// `cuMemAllocAsync` from the device's default pool (what `cudarc` and
    /// PyTorch's `cudaMallocAsync` backend use): peers need `cuMemPoolSetAccess`.
    Pool,
}

/// Everything the probe and the executor need from a GPU backend.
///
/// All methods are callable from any thread. Methods that take raw addresses
/// are `unsafe`: the caller promises the memory is live and large enough
/// until the work queued on the stream has finished.
///
/// Two implementations come with the crate: [`crate::CudaDriver`] (real
/// GPUs) and [`crate::SimDriver`] (simulated ones). Code takes an
/// `Arc<dyn Driver>` so that it runs on either:
///
/// ```
/// use std::sync::Arc;
/// use p2p_core::{Backend, Driver, SimDriver};
///
/// let driver: Arc<dyn Driver> = Arc::new(SimDriver::builtin());
/// assert_eq!(driver.backend(), Backend::Simulated);
/// for device in driver.devices() {
///     println!("cuda:{} {} ({})", device.ordinal, device.name, device.pci_bus_id);
/// }
/// let claim = driver.claim(0, 1)?;
/// assert!(claim.claimed());
/// # Ok::<(), p2p_core::Error>(())
/// ```
pub trait Driver: Send + Sync + fmt::Debug {
    /// Which backend this is.
    fn backend(&self) -> Backend;

    /// Driver version as CUDA encodes it (`12080` = 12.8).
    fn driver_version(&self) -> i32;

    /// The visible devices, in ordinal order.
    fn devices(&self) -> &[DeviceInfo];

    /// What of the machine beyond its devices decides whether peer copy
    /// works, as `(name, value)` pairs for the verdict cache's fingerprint:
    /// a change means cached verdicts no longer apply. The default is the
    /// host's state (on Linux the boot id and
    /// the IOMMU state); the simulated backend gives its topology.
    fn machine_state(&self) -> Vec<(String, String)> {
        crate::cache::host_state()
    }

    /// Number of visible devices.
    fn device_count(&self) -> usize {
        self.devices().len()
    }

    /// `Err(InvalidDevice)` unless `ordinal` names a visible device.
    fn check_device(&self, ordinal: usize) -> Result<()> {
        let count = self.device_count();
        if ordinal < count {
            Ok(())
        } else {
            Err(crate::InvalidDevice {
                side: None,
                ordinal,
                count,
            }
            .into())
        }
    }

    /// What the driver claims about peer access from `from` to `to`.
    fn claim(&self, from: usize, to: usize) -> Result<PeerClaim>;

    /// Lets `accessor` reach memory allocated on `owner`
    /// (`cuCtxEnablePeerAccess` in `accessor`'s context). Already enabled is success.
    fn enable_peer_access(&self, accessor: usize, owner: usize) -> Result<()>;

    /// Stops `accessor` reaching memory allocated on `owner`
    /// (`cuCtxDisablePeerAccess` in `accessor`'s context), so that copies
    /// between them are staged by the driver instead of taking a direct path
    /// found broken. Not enabled is success.
    fn disable_peer_access(&self, accessor: usize, owner: usize) -> Result<()>;

    /// Allocates `bytes` (may be 0) on `device`.
    fn alloc_device(&self, device: usize, bytes: usize, kind: AllocKind) -> Result<DeviceAddr>;

    /// Frees memory from [`Driver::alloc_device`].
    ///
    /// # Safety
    /// `ptr` came from `alloc_device` of this driver, is freed once, and no
    /// queued work still uses it.
    unsafe fn free_device(&self, ptr: DeviceAddr) -> Result<()>;

    /// Allocates `bytes` of page-locked host memory, reachable by DMA from every device.
    fn alloc_pinned(&self, bytes: usize) -> Result<*mut u8>;

    /// Frees memory from [`Driver::alloc_pinned`].
    ///
    /// # Safety
    /// `ptr` came from `alloc_pinned` of this driver, is freed once, and no
    /// queued work still uses it.
    unsafe fn free_pinned(&self, ptr: *mut u8) -> Result<()>;

    /// The pool that owns `ptr`, or `None` for memory not from a stream-ordered pool.
    fn pool_of(&self, ptr: DeviceAddr) -> Result<Option<PoolId>>;

    /// The device's default stream-ordered pool (where `cuMemAllocAsync`,
    /// `cudarc` and PyTorch's `cudaMallocAsync` backend allocate), or `None`
    /// where the driver has no pools.
    fn default_pool(&self, device: usize) -> Result<Option<PoolId>> {
        self.check_device(device)?;
        Ok(None)
    }

    /// Lets `accessor` read and write memory of `pool` (`cuMemPoolSetAccess`).
    fn grant_pool_access(&self, pool: PoolId, accessor: usize) -> Result<()>;

    /// A new non-blocking stream on `device`.
    fn create_stream(&self, device: usize) -> Result<StreamId>;

    /// Destroys a stream from [`Driver::create_stream`]. Work still queued
    /// on it runs to the end, as in CUDA.
    ///
    /// # Safety
    /// `stream` came from `create_stream` of this driver and is destroyed once.
    unsafe fn destroy_stream(&self, stream: StreamId) -> Result<()>;

    /// A new event on `device` for ordering only (`CU_EVENT_DISABLE_TIMING`:
    /// cheaper to record and to wait on). [`Driver::event_elapsed_ms`] refuses it.
    fn create_event(&self, device: usize) -> Result<EventId>;

    /// A new event on `device` with timing enabled, for [`Driver::event_elapsed_ms`].
    fn create_timing_event(&self, device: usize) -> Result<EventId>;

    /// Destroys an event from [`Driver::create_event`] or
    /// [`Driver::create_timing_event`] (a recorded event may be destroyed
    /// before it completes).
    ///
    /// # Safety
    /// `event` came from `create_event` or `create_timing_event` of this
    /// driver and is destroyed once.
    unsafe fn destroy_event(&self, event: EventId) -> Result<()>;

    /// Queues a copy between two devices' memory (`cuMemcpyPeerAsync`).
    /// `src.device == dst.device` is a plain device-to-device copy.
    ///
    /// # Safety
    /// Both ranges are live allocations of at least `bytes` until the copy is done.
    unsafe fn copy_peer_async(
        &self,
        dst: DeviceAddr,
        src: DeviceAddr,
        bytes: usize,
        stream: StreamId,
    ) -> Result<()>;

    /// Queues many device-to-device copies on one stream. The CUDA backend
    /// uses one `cuMemcpyBatchAsync` call where the driver has it (12.8+);
    /// the default queues them one by one.
    ///
    /// # Safety
    /// As [`Driver::copy_peer_async`], for every copy.
    unsafe fn copy_batch_async(&self, copies: &[CopyDesc], stream: StreamId) -> Result<()> {
        for copy in copies {
            // SAFETY: the caller upholds `copy_peer_async`'s contract for each copy.
            unsafe { self.copy_peer_async(copy.dst, copy.src, copy.bytes, stream)? };
        }
        Ok(())
    }

    /// Queues many device-to-host copies on one stream, each from `device`
    /// into `host`. The CUDA backend uses one `cuMemcpyBatchAsync` call where
    /// the driver has it (12.8+); the default queues them one by one.
    ///
    /// # Safety
    /// As [`Driver::copy_dtoh_async`], for every copy; every host range is
    /// pinned memory (a batch may be carried out by the copy engines alone).
    unsafe fn copy_batch_dtoh_async(
        &self,
        copies: &[HostCopyDesc],
        stream: StreamId,
    ) -> Result<()> {
        for copy in copies {
            // SAFETY: the caller upholds `copy_dtoh_async`'s contract for each copy.
            unsafe { self.copy_dtoh_async(copy.host, copy.device, copy.bytes, stream)? };
        }
        Ok(())
    }

    /// Queues many host-to-device copies on one stream, each from `host`
    /// into `device`; as [`Driver::copy_batch_dtoh_async`] otherwise.
    ///
    /// # Safety
    /// As [`Driver::copy_htod_async`], for every copy; every host range is pinned memory.
    unsafe fn copy_batch_htod_async(
        &self,
        copies: &[HostCopyDesc],
        stream: StreamId,
    ) -> Result<()> {
        for copy in copies {
            // SAFETY: the caller upholds `copy_htod_async`'s contract for each copy.
            unsafe { self.copy_htod_async(copy.device, copy.host, copy.bytes, stream)? };
        }
        Ok(())
    }

    /// Queues a device-to-host copy.
    ///
    /// # Safety
    /// `dst` is valid for `bytes` writes and `src` for `bytes` reads until the copy is done.
    unsafe fn copy_dtoh_async(
        &self,
        dst: *mut u8,
        src: DeviceAddr,
        bytes: usize,
        stream: StreamId,
    ) -> Result<()>;

    /// Queues a host-to-device copy.
    ///
    /// # Safety
    /// `src` is valid for `bytes` reads and `dst` for `bytes` writes until the copy is done.
    unsafe fn copy_htod_async(
        &self,
        dst: DeviceAddr,
        src: *const u8,
        bytes: usize,
        stream: StreamId,
    ) -> Result<()>;

    /// Queues a fill of `bytes` bytes with `value`.
    ///
    /// # Safety
    /// `dst` is a live allocation of at least `bytes`.
    unsafe fn memset_async(
        &self,
        dst: DeviceAddr,
        value: u8,
        bytes: usize,
        stream: StreamId,
    ) -> Result<()>;

    /// Records `event` at the current end of `stream`.
    fn record_event(&self, event: EventId, stream: StreamId) -> Result<()>;

    /// Makes later work on `stream` wait for `event` (no host blocking).
    fn stream_wait_event(&self, stream: StreamId, event: EventId) -> Result<()>;

    /// Whether the work before `event` has finished.
    fn event_done(&self, event: EventId) -> Result<bool>;

    /// Milliseconds between two completed events, both from
    /// [`Driver::create_timing_event`].
    fn event_elapsed_ms(&self, start: EventId, end: EventId) -> Result<f32>;

    /// Blocks until everything queued on `stream` has finished (no deadline).
    fn synchronize_stream(&self, stream: StreamId) -> Result<()>;

    /// Whether everything queued on `stream` so far has finished
    /// (`cuStreamQuery`). The default records and queries a throwaway event.
    fn stream_done(&self, stream: StreamId) -> Result<bool> {
        let event = self.create_event(stream.device)?;
        let done = self
            .record_event(event, stream)
            .and_then(|()| self.event_done(event));
        // SAFETY: the event was created above and is destroyed once; a
        // recorded event may be destroyed before it completes.
        unsafe { self.destroy_event(event)? };
        done
    }

    /// Told by a safe API as it returns that the caller may touch `ranges`
    /// again. The CUDA backend does nothing; the simulated backend reports
    /// every queued operation that still touches one of them (a move that
    /// returned while its copies still run), beside its race reports.
    fn borrows_released(&self, ranges: &[MemRange]) {
        let _ = ranges;
    }

    /// Blocks until `event` is done or `deadline` has passed.
    ///
    /// Polls, so that a hung copy becomes a [`Error::Timeout`] instead of a hung
    /// process. See [`poll_until`] for how often.
    fn wait_event(&self, event: EventId, deadline: Duration) -> Result<()> {
        poll_until(deadline, || self.event_done(event)).map_err(|err| match err {
            Error::Timeout { after_ms, .. } => Error::Timeout {
                what: format!("work on cuda:{}", event.device),
                after_ms,
            },
            other => other,
        })
    }

    /// Blocks until `stream` is idle or `deadline` has passed (see [`Driver::wait_event`]).
    fn wait_stream(&self, stream: StreamId, deadline: Duration) -> Result<()> {
        poll_until(deadline, || self.stream_done(stream)).map_err(|err| match err {
            Error::Timeout { after_ms, .. } => Error::Timeout {
                what: format!("work on a stream of cuda:{}", stream.device),
                after_ms,
            },
            other => other,
        })
    }
}

/// Calls `done` until it answers true, or fails with a timeout after `deadline`.
///
/// Spins (yielding the core to other threads) for the first 10 ms: a sleep
/// on Linux lasts at least ~60 µs whatever is asked, which would add a
/// quarter to a 64 MiB peer copy (~170 µs). Past 10 ms it sleeps 1/64 of the
/// time waited so far (up to 1 ms), an overshoot of under 2 %, and leaves
/// the core alone.
pub fn poll_until(deadline: Duration, mut done: impl FnMut() -> Result<bool>) -> Result<()> {
    let start = Instant::now();
    loop {
        if done()? {
            return Ok(());
        }
        let waited = start.elapsed();
        if waited >= deadline {
            return Err(Error::Timeout {
                what: "work on a device".into(),
                after_ms: deadline.as_millis() as u64,
            });
        }
        if waited < Duration::from_millis(10) {
            std::hint::spin_loop();
            std::thread::yield_now();
        } else {
            let nap = (waited / 64).min(Duration::from_millis(1));
            std::thread::sleep(nap.min(deadline - waited));
        }
    }
}
