//! The CUDA backend of [`Driver`]: real GPUs through the driver API (cudarc, loaded at run time).
//!
//! [`CudaDriver::new`] never panics on a machine without a driver: it checks
//! that `libcuda` can be loaded, and that it has every symbol we call, before
//! calling anything, and reports what is missing as [`Error::NoDriver`].
//!
//! Contexts: each device's *primary* context (the one PyTorch and cudarc use,
//! so peer access enabled by one is seen by the others) is retained the first
//! time the device is used, never before, so idle GPUs get no context. Every
//! call binds the right context to the calling thread first
//! (`cuCtxSetCurrent`, which costs nanoseconds), so the driver is callable
//! from any thread, whatever that thread had current before.
//!
//! Handles are the driver's own, cast to `u64`: `StreamId::raw` is a
//! `CUstream` (0 = the device's legacy default stream, usable without being
//! created), `EventId::raw` a `CUevent`, `PoolId::raw` a `CUmemoryPool`, so
//! streams and memory made by PyTorch or cudarc can be passed in as they are.
//!
//! Decisions, documented once:
//! * A 0-byte allocation allocates 1 byte: CUDA refuses 0-byte allocations,
//!   and a real, unique address keeps `free_device`, `pool_of` and the owning
//!   wrappers free of special cases. Copies and fills of 0 bytes make no call.
//! * `AllocKind::Pool` is `cuMemAllocFromPoolAsync` on the device's *default*
//!   pool (not whatever `cuDeviceSetMemPool` made current), queued on a private
//!   non-blocking stream of this driver that is then synchronized, so the
//!   memory is ready for any stream when the call returns and no one else's
//!   work is waited for. `free_device` uses `cuMemFree` for both kinds, which
//!   CUDA allows for pool memory (it does not synchronize: the caller's
//!   contract already says no queued work uses the memory).
//! * A driver that loads but cannot initialise (`cuInit` fails: no device
//!   visible, a stub library, a kernel-module mismatch) is `Error::NoDriver`
//!   with the driver's error name in `detail`: there is nothing this backend
//!   could do on such a machine, and every `CudaDriver` has at least one device.

mod discovery;
mod ffi;

use std::fmt;
use std::sync::OnceLock;

use ffi::{CUcontext, CUdevice, CUdevice_P2PAttribute, CUresult, CUstream};

use crate::{
    AllocKind, Backend, CopyDesc, DeviceAddr, DeviceInfo, Driver, Error, EventId, PeerClaim,
    PoolId, Result, StreamId,
};

/// Real GPUs through the CUDA driver API. See the module docs for the decisions.
pub struct CudaDriver {
    driver_version: i32,
    devices: Vec<DeviceInfo>,
    states: Vec<DeviceState>,
    /// The driver has the stream-ordered allocator (CUDA 11.2+).
    has_pools: bool,
    /// The driver has `cuMemcpyBatchAsync` (CUDA 12.8+).
    has_batch_copy: bool,
}

// SAFETY: the raw handles inside are primary contexts and a stream of them,
// which the CUDA driver makes process-wide and safe to use from any thread;
// the `OnceLock`s make their lazy creation race-free.
unsafe impl Send for CudaDriver {}
// SAFETY: as above; `&self` methods only read the handles and call the thread-safe driver.
unsafe impl Sync for CudaDriver {}

/// Restores the thread's previous context when dropped (see `CudaDriver::bind`).
struct Bound {
    previous: CUcontext,
    context: CUcontext,
}

impl Drop for Bound {
    fn drop(&mut self) {
        if self.previous != self.context {
            // SAFETY: `previous` was current on this thread a moment ago (or
            // null, which unbinds); a context someone else retained stays
            // valid while it is current. Errors cannot be reported from Drop.
            let _ = unsafe { ffi::ctx_set_current(self.previous) };
        }
    }
}

/// What the backend holds per device, created on first use.
struct DeviceState {
    handle: CUdevice,
    /// The retained primary context; `Drop` releases it.
    context: OnceLock<CUcontext>,
    /// A private non-blocking stream for pool allocations; `Drop` destroys it.
    alloc_stream: OnceLock<CUstream>,
}

impl CudaDriver {
    /// Loads the driver, initialises it and lists the visible devices.
    ///
    /// Creates no context: that waits until a device is first used.
    ///
    /// # Errors
    /// [`Error::NoDriver`] when `libcuda` is missing, too old (no CUDA 11.0
    /// symbols), fails `cuInit` (no device visible, a stub library, a
    /// driver/kernel mismatch) or shows no device; [`Error::Cuda`] when a
    /// device query fails.
    pub fn new() -> Result<CudaDriver> {
        let found = discovery::discover()?;
        let states = found
            .handles
            .iter()
            .map(|&handle| DeviceState {
                handle,
                context: OnceLock::new(),
                alloc_stream: OnceLock::new(),
            })
            .collect();
        Ok(CudaDriver {
            driver_version: found.driver_version,
            devices: found.devices,
            states,
            has_pools: found.has_pools,
            has_batch_copy: found.has_batch_copy,
        })
    }

    /// The device's primary context, retained on first use.
    fn context(&self, device: usize) -> Result<CUcontext> {
        self.check_device(device)?;
        let state = &self.states[device];
        if let Some(&context) = state.context.get() {
            return Ok(context);
        }
        let context = ffi::primary_ctx_retain(state.handle)?;
        if state.context.set(context).is_err() {
            // Another thread retained it first: give back our extra reference.
            // The handle is the same either way (one primary context per device).
            // SAFETY: we hold the reference just taken and keep using the
            // context only through the other thread's reference.
            if let Err(err) = unsafe { ffi::primary_ctx_release(state.handle) } {
                tracing::warn!(
                    "releasing a duplicate primary-context reference on cuda:{device}: {err}"
                );
            }
        }
        Ok(context)
    }

    /// Binds `device`'s primary context to the calling thread until the
    /// returned guard drops, which binds back whatever was current before:
    /// the CUDA runtime (PyTorch) reads its current device from the current
    /// context, so a call of ours must not change it behind the caller's back.
    fn bind(&self, device: usize) -> Result<Bound> {
        let context = self.context(device)?;
        let previous = ffi::ctx_get_current()?;
        if previous != context {
            // SAFETY: `context` is retained by us until `Drop`.
            unsafe { ffi::ctx_set_current(context)? };
        }
        Ok(Bound { previous, context })
    }

    /// Binds some context for calls that need one but no particular device
    /// (pinned host memory): one already in use if any, so that no idle GPU
    /// gets a context, else device 0's.
    fn bind_any(&self) -> Result<Bound> {
        let device = self
            .states
            .iter()
            .position(|s| s.context.get().is_some())
            .unwrap_or(0);
        self.bind(device)
    }

    /// The private stream for pool allocations on `device`; its context must be bound.
    fn alloc_stream(&self, device: usize) -> Result<CUstream> {
        let state = &self.states[device];
        if let Some(&stream) = state.alloc_stream.get() {
            return Ok(stream);
        }
        let stream = ffi::stream_create_non_blocking()?;
        let kept = *state.alloc_stream.get_or_init(|| stream);
        if kept != stream {
            // Another thread made one first: ours was never used.
            // SAFETY: `stream` is live, ours alone, and destroyed once here.
            if let Err(err) = unsafe { ffi::stream_destroy(stream) } {
                tracing::warn!("destroying a spare allocation stream on cuda:{device}: {err}");
            }
        }
        Ok(kept)
    }

    /// `cuMemAllocFromPoolAsync` on the default pool, ready for every stream on return.
    fn alloc_from_default_pool(&self, device: usize, bytes: usize) -> Result<u64> {
        if !self.has_pools {
            return Err(Error::Unsupported(format!(
                "pool allocation on cuda:{device}: this driver ({}) has no stream-ordered allocator (CUDA 11.2+)",
                self.driver_version
            )));
        }
        let pool = ffi::device_default_mem_pool(self.states[device].handle)?;
        let stream = self.alloc_stream(device)?;
        // SAFETY: `pool` is the device's default pool (lives as long as the
        // driver), `stream` is ours and of the bound context.
        let addr = unsafe { ffi::mem_alloc_from_pool_async(bytes, pool, stream)? };
        // SAFETY: `stream` is live.
        if let Err(err) = unsafe { ffi::stream_synchronize(stream) } {
            // SAFETY: nothing but the allocation itself was queued with `addr`.
            let _ = unsafe { ffi::mem_free(addr) };
            return Err(err);
        }
        Ok(addr)
    }
}

impl Driver for CudaDriver {
    fn backend(&self) -> Backend {
        Backend::Cuda
    }

    fn driver_version(&self) -> i32 {
        self.driver_version
    }

    fn devices(&self) -> &[DeviceInfo] {
        &self.devices
    }

    /// Needs no context: these are device queries.
    /// `can_access_peer` asks whether `from` can access `to`'s memory; the
    /// attributes are those of the link from `from` to `to`.
    fn claim(&self, from: usize, to: usize) -> Result<PeerClaim> {
        self.check_device(from)?;
        self.check_device(to)?;
        if from == to {
            return Ok(PeerClaim {
                from,
                to,
                can_access_peer: true,
                access_supported: true,
                performance_rank: 0,
                native_atomics: true,
            });
        }
        let (src, dst) = (self.states[from].handle, self.states[to].handle);
        let attribute = |attribute| ffi::device_p2p_attribute(attribute, src, dst);
        Ok(PeerClaim {
            from,
            to,
            can_access_peer: ffi::device_can_access_peer(src, dst)?,
            access_supported: attribute(
                CUdevice_P2PAttribute::CU_DEVICE_P2P_ATTRIBUTE_ACCESS_SUPPORTED,
            )? != 0,
            performance_rank: attribute(
                CUdevice_P2PAttribute::CU_DEVICE_P2P_ATTRIBUTE_PERFORMANCE_RANK,
            )?,
            native_atomics: attribute(
                CUdevice_P2PAttribute::CU_DEVICE_P2P_ATTRIBUTE_NATIVE_ATOMIC_SUPPORTED,
            )? != 0,
        })
    }

    fn enable_peer_access(&self, accessor: usize, owner: usize) -> Result<()> {
        self.check_device(accessor)?;
        self.check_device(owner)?;
        if accessor == owner {
            return Ok(());
        }
        let owner_context = self.context(owner)?;
        let _bound = self.bind(accessor)?;
        // SAFETY: both primary contexts are retained by us; the accessor's is current.
        unsafe { ffi::ctx_enable_peer_access(owner_context) }
    }

    fn disable_peer_access(&self, accessor: usize, owner: usize) -> Result<()> {
        self.check_device(accessor)?;
        self.check_device(owner)?;
        if accessor == owner {
            return Ok(());
        }
        let owner_context = self.context(owner)?;
        let _bound = self.bind(accessor)?;
        // SAFETY: both primary contexts are retained by us; the accessor's is current.
        unsafe { ffi::ctx_disable_peer_access(owner_context) }
    }

    fn alloc_device(&self, device: usize, bytes: usize, kind: AllocKind) -> Result<DeviceAddr> {
        let _bound = self.bind(device)?;
        let size = bytes.max(1);
        let addr = match kind {
            AllocKind::Plain => ffi::mem_alloc(size),
            AllocKind::Pool => self.alloc_from_default_pool(device, size),
        }
        .map_err(|err| {
            if ffi::is_code(&err, CUresult::CUDA_ERROR_OUT_OF_MEMORY) {
                Error::OutOfMemory {
                    place: format!("cuda:{device}"),
                    bytes,
                }
            } else {
                err
            }
        })?;
        Ok(DeviceAddr { device, addr })
    }

    unsafe fn free_device(&self, ptr: DeviceAddr) -> Result<()> {
        let _bound = self.bind(ptr.device)?;
        // SAFETY: the caller's contract: from our `alloc_device`, freed once, unused.
        unsafe { ffi::mem_free(ptr.addr) }
    }

    fn alloc_pinned(&self, bytes: usize) -> Result<*mut u8> {
        let _bound = self.bind_any()?;
        ffi::mem_host_alloc_portable(bytes.max(1)).map_err(|err| {
            if ffi::is_code(&err, CUresult::CUDA_ERROR_OUT_OF_MEMORY) {
                Error::OutOfMemory {
                    place: "pinned host memory".to_owned(),
                    bytes,
                }
            } else {
                err
            }
        })
    }

    unsafe fn free_pinned(&self, ptr: *mut u8) -> Result<()> {
        let _bound = self.bind_any()?;
        // SAFETY: the caller's contract: from our `alloc_pinned`, freed once, unused.
        unsafe { ffi::mem_free_host(ptr) }
    }

    fn pool_of(&self, ptr: DeviceAddr) -> Result<Option<PoolId>> {
        let _bound = self.bind(ptr.device)?;
        if !self.has_pools {
            return Ok(None);
        }
        match ffi::pointer_mempool(ptr.addr) {
            Ok(pool) if pool.is_null() => Ok(None),
            Ok(pool) => Ok(Some(PoolId {
                device: ptr.device,
                raw: handle_to_raw(pool),
            })),
            // Should the driver refuse the attribute for memory from no pool
            // instead of answering null, a valid device address still means "no pool".
            Err(err) if ffi::pointer_device_ordinal(ptr.addr).is_ok() => {
                tracing::debug!(
                    "pool_of: {err}; the address is device memory, so it is from no pool"
                );
                Ok(None)
            }
            Err(err) => Err(err),
        }
    }

    fn grant_pool_access(&self, pool: PoolId, accessor: usize) -> Result<()> {
        self.check_device(accessor)?;
        let _bound = self.bind(pool.device)?;
        if accessor == pool.device {
            // The owning device always has access, and the driver refuses to change it.
            return Ok(());
        }
        if !self.has_pools {
            return Err(Error::Unsupported(format!(
                "pool access: this driver ({}) has no stream-ordered allocator (CUDA 11.2+)",
                self.driver_version
            )));
        }
        // SAFETY: `pool.raw` is a pool handle that `pool_of` (or the caller) took from the driver.
        unsafe { ffi::mem_pool_set_access(raw_to_handle(pool.raw), self.states[accessor].handle) }
    }

    fn create_stream(&self, device: usize) -> Result<StreamId> {
        let _bound = self.bind(device)?;
        let stream = ffi::stream_create_non_blocking()?;
        Ok(StreamId {
            device,
            raw: handle_to_raw(stream),
        })
    }

    unsafe fn destroy_stream(&self, stream: StreamId) -> Result<()> {
        let _bound = self.bind(stream.device)?;
        if stream.raw == 0 {
            // The legacy default stream is not ours to destroy.
            return Ok(());
        }
        // SAFETY: the caller's contract: from our `create_stream`, destroyed once.
        unsafe { ffi::stream_destroy(raw_to_handle(stream.raw)) }
    }

    fn create_event(&self, device: usize) -> Result<EventId> {
        let _bound = self.bind(device)?;
        let event = ffi::event_create(false)?;
        Ok(EventId {
            device,
            raw: handle_to_raw(event),
        })
    }

    fn create_timing_event(&self, device: usize) -> Result<EventId> {
        let _bound = self.bind(device)?;
        let event = ffi::event_create(true)?;
        Ok(EventId {
            device,
            raw: handle_to_raw(event),
        })
    }

    unsafe fn destroy_event(&self, event: EventId) -> Result<()> {
        let _bound = self.bind(event.device)?;
        // SAFETY: the caller's contract: from our `create_event`, destroyed once.
        unsafe { ffi::event_destroy(raw_to_handle(event.raw)) }
    }

    unsafe fn copy_peer_async(
        &self,
        dst: DeviceAddr,
        src: DeviceAddr,
        bytes: usize,
        stream: StreamId,
    ) -> Result<()> {
        self.check_device(dst.device)?;
        self.check_device(src.device)?;
        if bytes == 0 {
            return Ok(());
        }
        let _bound = self.bind(stream.device)?;
        let handle: CUstream = raw_to_handle(stream.raw);
        if dst.device == src.device {
            // SAFETY: the caller's contract; the stream is live (or null).
            return unsafe { ffi::memcpy_dtod_async(dst.addr, src.addr, bytes, handle) };
        }
        let (dst_context, src_context) = (self.context(dst.device)?, self.context(src.device)?);
        // SAFETY: the caller's contract for the ranges and the stream; both
        // contexts are retained by us.
        unsafe {
            ffi::memcpy_peer_async(dst.addr, dst_context, src.addr, src_context, bytes, handle)
        }
    }

    /// One `cuMemcpyBatchAsync` for the whole batch where the driver has it
    /// (12.8+) and the stream is a real one (the call rejects the legacy
    /// default stream); otherwise, and for a single copy, one
    /// `copy_peer_async` per copy. 0-byte copies are dropped.
    unsafe fn copy_batch_async(&self, copies: &[CopyDesc], stream: StreamId) -> Result<()> {
        for copy in copies {
            self.check_device(copy.dst.device)?;
            self.check_device(copy.src.device)?;
        }
        let copies: Vec<&CopyDesc> = copies.iter().filter(|copy| copy.bytes > 0).collect();
        if copies.len() < 2 || stream.raw == 0 || !self.has_batch_copy {
            for copy in copies {
                // SAFETY: the caller's contract, copy by copy.
                unsafe { self.copy_peer_async(copy.dst, copy.src, copy.bytes, stream)? };
            }
            return Ok(());
        }
        let _bound = self.bind(stream.device)?;
        let mut dsts: Vec<u64> = copies.iter().map(|copy| copy.dst.addr).collect();
        let mut srcs: Vec<u64> = copies.iter().map(|copy| copy.src.addr).collect();
        let mut sizes: Vec<usize> = copies.iter().map(|copy| copy.bytes).collect();
        // SAFETY: the caller's contract for every range; the stream is not
        // the legacy one (checked above) and its context is bound.
        unsafe {
            ffi::memcpy_batch_async(&mut dsts, &mut srcs, &mut sizes, raw_to_handle(stream.raw))
        }
    }

    unsafe fn copy_dtoh_async(
        &self,
        dst: *mut u8,
        src: DeviceAddr,
        bytes: usize,
        stream: StreamId,
    ) -> Result<()> {
        self.check_device(src.device)?;
        if bytes == 0 {
            return Ok(());
        }
        let _bound = self.bind(stream.device)?;
        // SAFETY: the caller's contract.
        unsafe { ffi::memcpy_dtoh_async(dst, src.addr, bytes, raw_to_handle(stream.raw)) }
    }

    unsafe fn copy_htod_async(
        &self,
        dst: DeviceAddr,
        src: *const u8,
        bytes: usize,
        stream: StreamId,
    ) -> Result<()> {
        self.check_device(dst.device)?;
        if bytes == 0 {
            return Ok(());
        }
        let _bound = self.bind(stream.device)?;
        // SAFETY: the caller's contract.
        unsafe { ffi::memcpy_htod_async(dst.addr, src, bytes, raw_to_handle(stream.raw)) }
    }

    unsafe fn memset_async(
        &self,
        dst: DeviceAddr,
        value: u8,
        bytes: usize,
        stream: StreamId,
    ) -> Result<()> {
        self.check_device(dst.device)?;
        if bytes == 0 {
            return Ok(());
        }
        let _bound = self.bind(stream.device)?;
        // SAFETY: the caller's contract.
        unsafe { ffi::memset_d8_async(dst.addr, value, bytes, raw_to_handle(stream.raw)) }
    }

    fn record_event(&self, event: EventId, stream: StreamId) -> Result<()> {
        self.check_device(event.device)?;
        let _bound = self.bind(stream.device)?;
        // SAFETY: `EventId`/`StreamId` values stand for live handles of their
        // devices (from `create_*` here or from the caller's own CUDA code);
        // the driver rejects an event and stream of different contexts.
        unsafe { ffi::event_record(raw_to_handle(event.raw), raw_to_handle(stream.raw)) }
    }

    fn stream_wait_event(&self, stream: StreamId, event: EventId) -> Result<()> {
        self.check_device(event.device)?;
        let _bound = self.bind(stream.device)?;
        // SAFETY: as in `record_event`; waiting on another device's event is allowed.
        unsafe { ffi::stream_wait_event(raw_to_handle(stream.raw), raw_to_handle(event.raw)) }
    }

    fn event_done(&self, event: EventId) -> Result<bool> {
        let _bound = self.bind(event.device)?;
        // SAFETY: as in `record_event`.
        unsafe { ffi::event_query(raw_to_handle(event.raw)) }
    }

    fn stream_done(&self, stream: StreamId) -> Result<bool> {
        let _bound = self.bind(stream.device)?;
        // SAFETY: as in `record_event`; raw 0 is the bound context's legacy stream.
        unsafe { ffi::stream_query(raw_to_handle(stream.raw)) }
    }

    fn default_pool(&self, device: usize) -> Result<Option<PoolId>> {
        self.check_device(device)?;
        if !self.has_pools {
            return Ok(None);
        }
        let _bound = self.bind(device)?;
        let pool = ffi::device_default_mem_pool(self.states[device].handle)?;
        Ok(Some(PoolId {
            device,
            raw: handle_to_raw(pool),
        }))
    }

    fn event_elapsed_ms(&self, start: EventId, end: EventId) -> Result<f32> {
        self.check_device(end.device)?;
        let _bound = self.bind(start.device)?;
        // SAFETY: as in `record_event`.
        unsafe { ffi::event_elapsed_ms(raw_to_handle(start.raw), raw_to_handle(end.raw)) }
    }

    fn synchronize_stream(&self, stream: StreamId) -> Result<()> {
        let _bound = self.bind(stream.device)?;
        // SAFETY: as in `record_event`; raw 0 is the bound context's legacy stream.
        unsafe { ffi::stream_synchronize(raw_to_handle(stream.raw)) }
    }
}

impl Drop for CudaDriver {
    fn drop(&mut self) {
        for (ordinal, state) in self.states.iter_mut().enumerate() {
            let Some(context) = state.context.take() else {
                continue;
            };
            if let Some(stream) = state.alloc_stream.take() {
                // SAFETY: the context is still retained by us; the stream was
                // made in it, is ours alone, and is destroyed once here.
                let destroyed = unsafe {
                    ffi::ctx_set_current(context).and_then(|()| ffi::stream_destroy(stream))
                };
                if let Err(err) = destroyed {
                    tracing::warn!("destroying the allocation stream of cuda:{ordinal}: {err}");
                }
            }
            // SAFETY: we took exactly one reference (duplicates were given
            // back at once) and use no handle through it after this.
            if let Err(err) = unsafe { ffi::primary_ctx_release(state.handle) } {
                tracing::warn!("releasing the primary context of cuda:{ordinal}: {err}");
            }
        }
    }
}

impl fmt::Debug for CudaDriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let in_use: Vec<usize> = (0..self.states.len())
            .filter(|&d| self.states[d].context.get().is_some())
            .collect();
        f.debug_struct("CudaDriver")
            .field("driver_version", &self.driver_version)
            .field("devices", &self.devices)
            .field("contexts_retained", &in_use)
            .field("has_pools", &self.has_pools)
            .field("has_batch_copy", &self.has_batch_copy)
            .finish()
    }
}

/// A driver handle (`CUstream`, `CUevent`, `CUmemoryPool`) as the `u64` our ids carry.
fn handle_to_raw<T>(handle: *mut T) -> u64 {
    handle as usize as u64
}

/// The driver handle an id's `u64` stands for (0 = null: the legacy default stream).
fn raw_to_handle<T>(raw: u64) -> *mut T {
    raw as usize as *mut T
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_reports_no_driver_without_libcuda_or_lists_devices_with_it() {
        let present = ffi::library_present();
        match CudaDriver::new() {
            Err(Error::NoDriver { detail }) if !present => {
                assert!(detail.contains("libcuda"), "unhelpful detail: {detail}");
            }
            Ok(driver) if present => {
                assert!(driver.device_count() > 0);
                assert!(driver.driver_version() > 0);
                for (ordinal, info) in driver.devices().iter().enumerate() {
                    assert_eq!(info.ordinal, ordinal);
                    assert!(
                        info.uuid.starts_with("GPU-") && info.uuid.len() == 40,
                        "{info:?}"
                    );
                    assert!(info.total_memory_bytes > 0, "{info:?}");
                }
            }
            // A driver library with no GPU behind it (a container without
            // devices): the typed error is the behaviour under test.
            Err(Error::NoDriver { detail })
                if present && detail.contains("CUDA_ERROR_NO_DEVICE") =>
            {
                eprintln!("libcuda is present but shows no device: {detail}");
            }
            other => panic!("libcuda present: {present}; CudaDriver::new() gave {other:?}"),
        }
    }

    #[test]
    fn handles_round_trip_through_raw_ids() {
        assert!(raw_to_handle::<u8>(0).is_null());
        let x = 7u8;
        let p = &x as *const u8 as *mut u8;
        assert_eq!(raw_to_handle::<u8>(handle_to_raw(p)), p);
    }

    #[test]
    fn driver_errors_carry_the_enum_name_and_code() {
        let err = ffi::cuda_error("cuMemAlloc", CUresult::CUDA_ERROR_OUT_OF_MEMORY);
        assert!(ffi::is_code(&err, CUresult::CUDA_ERROR_OUT_OF_MEMORY));
        match err {
            Error::Cuda { call, code, name } => {
                assert_eq!(
                    (call, code, name.as_str()),
                    ("cuMemAlloc", 2, "CUDA_ERROR_OUT_OF_MEMORY")
                );
            }
            other => panic!("{other:?}"),
        }
    }
}
