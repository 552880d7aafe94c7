//! [`Driver`] on real GPUs: each call binds the right context (restoring the
//! caller's after), checks its ordinals, and makes one driver call in `ffi`.

use super::ffi::{self, CUdevice_P2PAttribute, CUresult, CUstream};
use super::{handle_to_raw, raw_to_handle, CudaDriver};
use crate::{
    AllocKind, Backend, CopyDesc, DeviceAddr, DeviceInfo, Driver, Error, EventId, HostCopyDesc,
    PeerClaim, PoolId, Result, StreamId,
};

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
        let attribute = |attribute| ffi::peer::p2p_attribute(attribute, src, dst);
        Ok(PeerClaim {
            from,
            to,
            can_access_peer: ffi::peer::can_access_peer(src, dst)?,
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
        self.set_peer_access(accessor, owner, true)
    }

    fn disable_peer_access(&self, accessor: usize, owner: usize) -> Result<()> {
        self.set_peer_access(accessor, owner, false)
    }

    fn alloc_device(&self, device: usize, bytes: usize, kind: AllocKind) -> Result<DeviceAddr> {
        let _bound = self.bind(device)?;
        let size = bytes.max(1);
        let addr = match kind {
            AllocKind::Plain => ffi::memory::alloc(size),
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
        unsafe { ffi::memory::free(ptr.addr) }
    }

    fn alloc_pinned(&self, bytes: usize) -> Result<*mut u8> {
        let (device, _bound) = self.bind_for_pinning()?;
        let ptr = ffi::memory::host_alloc_portable(bytes.max(1)).map_err(|err| {
            if ffi::is_code(&err, CUresult::CUDA_ERROR_OUT_OF_MEMORY) {
                Error::OutOfMemory {
                    place: "pinned host memory".to_owned(),
                    bytes,
                }
            } else {
                err
            }
        })?;
        self.pinned_owners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(ptr as usize, device);
        Ok(ptr)
    }

    unsafe fn free_pinned(&self, ptr: *mut u8) -> Result<()> {
        let owner = self
            .pinned_owners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(ptr as usize));
        let Some(device) = owner else {
            return Err(Error::Unsupported(format!(
                "free_pinned: {ptr:p} is not pinned memory of this driver"
            )));
        };
        let _bound = self.bind(device)?;
        // SAFETY: the caller's contract: from our `alloc_pinned`, freed once,
        // unused; its context (bound) is the one that allocated it.
        unsafe { ffi::memory::free_host(ptr) }
    }

    fn pool_of(&self, ptr: DeviceAddr) -> Result<Option<PoolId>> {
        let _bound = self.bind(ptr.device)?;
        if !self.has_pools {
            return Ok(None);
        }
        match ffi::memory::pointer_pool(ptr.addr) {
            Ok(pool) if pool.is_null() => Ok(None),
            Ok(pool) => Ok(Some(PoolId {
                device: ptr.device,
                raw: handle_to_raw(pool),
            })),
            // Should the driver refuse the attribute for memory from no pool
            // instead of answering null, a valid device address still means "no pool".
            Err(err) if ffi::memory::pointer_device_ordinal(ptr.addr).is_ok() => {
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
        unsafe { ffi::peer::pool_set_access(raw_to_handle(pool.raw), self.states[accessor].handle) }
    }

    fn create_stream(&self, device: usize) -> Result<StreamId> {
        let _bound = self.bind(device)?;
        let stream = ffi::stream::create_non_blocking()?;
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
        unsafe { ffi::stream::destroy(raw_to_handle(stream.raw)) }
    }

    fn create_event(&self, device: usize) -> Result<EventId> {
        self.new_event(device, false)
    }

    fn create_timing_event(&self, device: usize) -> Result<EventId> {
        self.new_event(device, true)
    }

    unsafe fn destroy_event(&self, event: EventId) -> Result<()> {
        let _bound = self.bind(event.device)?;
        // SAFETY: the caller's contract: from our `create_event`, destroyed once.
        unsafe { ffi::event::destroy(raw_to_handle(event.raw)) }
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
            return unsafe { ffi::copy::dtod_async(dst.addr, src.addr, bytes, handle) };
        }
        let dst_context = self.held_context(dst.device)?.cu_ctx();
        let src_context = self.held_context(src.device)?.cu_ctx();
        // SAFETY: the caller's contract for the ranges and the stream; both
        // contexts are retained by us.
        unsafe {
            ffi::copy::peer_async(dst.addr, dst_context, src.addr, src_context, bytes, handle)
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
        let triples: Vec<(u64, u64, usize)> = copies
            .iter()
            .map(|copy| (copy.dst.addr, copy.src.addr, copy.bytes))
            .collect();
        // SAFETY: the caller's contract for every range.
        if unsafe { self.try_batch(&triples, stream)? } {
            return Ok(());
        }
        for copy in copies {
            // SAFETY: the caller's contract, copy by copy.
            unsafe { self.copy_peer_async(copy.dst, copy.src, copy.bytes, stream)? };
        }
        Ok(())
    }

    /// As `copy_batch_async`, with pinned host memory as the destinations
    /// (a pinned pointer is a device address under unified addressing).
    unsafe fn copy_batch_dtoh_async(
        &self,
        copies: &[HostCopyDesc],
        stream: StreamId,
    ) -> Result<()> {
        // SAFETY: forwarded caller contract.
        unsafe { self.host_batch(copies, stream, HostEnd::Destination) }
    }

    /// As `copy_batch_async`, with pinned host memory as the sources.
    unsafe fn copy_batch_htod_async(
        &self,
        copies: &[HostCopyDesc],
        stream: StreamId,
    ) -> Result<()> {
        // SAFETY: forwarded caller contract.
        unsafe { self.host_batch(copies, stream, HostEnd::Source) }
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
        unsafe { ffi::copy::dtoh_async(dst, src.addr, bytes, raw_to_handle(stream.raw)) }
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
        unsafe { ffi::copy::htod_async(dst.addr, src, bytes, raw_to_handle(stream.raw)) }
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
        unsafe { ffi::copy::memset_d8_async(dst.addr, value, bytes, raw_to_handle(stream.raw)) }
    }

    fn record_event(&self, event: EventId, stream: StreamId) -> Result<()> {
        self.check_device(event.device)?;
        let _bound = self.bind(stream.device)?;
        // SAFETY: `EventId`/`StreamId` values stand for live handles of their
        // devices (from `create_*` here or from the caller's own CUDA code);
        // the driver rejects an event and stream of different contexts.
        unsafe { ffi::event::record(raw_to_handle(event.raw), raw_to_handle(stream.raw)) }
    }

    fn stream_wait_event(&self, stream: StreamId, event: EventId) -> Result<()> {
        self.check_device(event.device)?;
        let _bound = self.bind(stream.device)?;
        // SAFETY: as in `record_event`; waiting on another device's event is allowed.
        unsafe { ffi::stream::wait_event(raw_to_handle(stream.raw), raw_to_handle(event.raw)) }
    }

    fn event_done(&self, event: EventId) -> Result<bool> {
        let _bound = self.bind(event.device)?;
        // SAFETY: as in `record_event`.
        unsafe { ffi::event::query(raw_to_handle(event.raw)) }
    }

    fn stream_done(&self, stream: StreamId) -> Result<bool> {
        let _bound = self.bind(stream.device)?;
        // SAFETY: as in `record_event`; raw 0 is the bound context's legacy stream.
        unsafe { ffi::stream::query(raw_to_handle(stream.raw)) }
    }

    fn default_pool(&self, device: usize) -> Result<Option<PoolId>> {
        self.check_device(device)?;
        if !self.has_pools {
            return Ok(None);
        }
        let _bound = self.bind(device)?;
        let pool = ffi::device::default_mem_pool(self.states[device].handle)?;
        Ok(Some(PoolId {
            device,
            raw: handle_to_raw(pool),
        }))
    }

    fn event_elapsed_ms(&self, start: EventId, end: EventId) -> Result<f32> {
        self.check_device(end.device)?;
        let _bound = self.bind(start.device)?;
        // SAFETY: as in `record_event`.
        unsafe { ffi::event::elapsed_ms(raw_to_handle(start.raw), raw_to_handle(end.raw)) }
    }

    fn synchronize_stream(&self, stream: StreamId) -> Result<()> {
        let _bound = self.bind(stream.device)?;
        // SAFETY: as in `record_event`; raw 0 is the bound context's legacy stream.
        unsafe { ffi::stream::synchronize(raw_to_handle(stream.raw)) }
    }
}

/// Which end of a batch's copies is pinned host memory.
#[derive(Clone, Copy)]
enum HostEnd {
    Source,
    Destination,
}

impl CudaDriver {
    /// `cuCtxEnablePeerAccess` (`enable`) or `cuCtxDisablePeerAccess` in
    /// `accessor`'s context for `owner`'s memory; nothing for a device and itself.
    fn set_peer_access(&self, accessor: usize, owner: usize, enable: bool) -> Result<()> {
        self.check_device(accessor)?;
        self.check_device(owner)?;
        if accessor == owner {
            return Ok(());
        }
        let owner_context = self.held_context(owner)?.cu_ctx();
        let _bound = self.bind(accessor)?;
        if enable {
            // SAFETY: both primary contexts are retained by us; the accessor's is current.
            unsafe { ffi::peer::enable_access(owner_context) }
        } else {
            // SAFETY: as above.
            unsafe { ffi::peer::disable_access(owner_context) }
        }
    }

    /// A batch between pinned host memory and devices, `host` being which
    /// end of every copy: one batch call where the driver has it, else one
    /// copy per call. 0-byte copies are dropped.
    ///
    /// # Safety
    /// As `Driver::copy_batch_dtoh_async` / `copy_batch_htod_async`.
    unsafe fn host_batch(
        &self,
        copies: &[HostCopyDesc],
        stream: StreamId,
        host: HostEnd,
    ) -> Result<()> {
        for copy in copies {
            self.check_device(copy.device.device)?;
        }
        let copies: Vec<&HostCopyDesc> = copies.iter().filter(|copy| copy.bytes > 0).collect();
        let triples: Vec<(u64, u64, usize)> = copies
            .iter()
            .map(|copy| match host {
                HostEnd::Destination => (copy.host as u64, copy.device.addr, copy.bytes),
                HostEnd::Source => (copy.device.addr, copy.host as u64, copy.bytes),
            })
            .collect();
        // SAFETY: the caller's contract for every range (the host ones pinned).
        if unsafe { self.try_batch(&triples, stream)? } {
            return Ok(());
        }
        for copy in copies {
            // SAFETY: the caller's contract, copy by copy.
            unsafe {
                match host {
                    HostEnd::Destination => {
                        self.copy_dtoh_async(copy.host, copy.device, copy.bytes, stream)?
                    }
                    HostEnd::Source => {
                        self.copy_htod_async(copy.device, copy.host, copy.bytes, stream)?
                    }
                }
            };
        }
        Ok(())
    }

    /// Queues `(dst, src, bytes)` copies as one `cuMemcpyBatchAsync` and
    /// returns `true`, where the driver has the call (12.8+), there are at
    /// least two copies and the stream is a real one (the call rejects the
    /// legacy default stream); else queues nothing and returns `false`.
    ///
    /// # Safety
    /// Every range is live device memory, or pinned host memory, for its
    /// bytes until the batch is done; no two copies overlap.
    #[cfg_attr(not(cuda_at_least_12080), allow(unused_variables))]
    unsafe fn try_batch(&self, copies: &[(u64, u64, usize)], stream: StreamId) -> Result<bool> {
        #[cfg(cuda_at_least_12080)]
        if copies.len() >= 2 && stream.raw != 0 && self.has_batch_copy {
            let _bound = self.bind(stream.device)?;
            let mut dsts: Vec<u64> = copies.iter().map(|copy| copy.0).collect();
            let mut srcs: Vec<u64> = copies.iter().map(|copy| copy.1).collect();
            let mut sizes: Vec<usize> = copies.iter().map(|copy| copy.2).collect();
            // SAFETY: the caller's contract for every range; the symbol is
            // there (`has_batch_copy`); the stream is not the legacy one
            // (checked above) and its context is bound.
            unsafe {
                ffi::copy::batch_async(&mut dsts, &mut srcs, &mut sizes, raw_to_handle(stream.raw))
            }?;
            return Ok(true);
        }
        Ok(false)
    }

    /// An event on `device`, with timing only when it is asked for.
    fn new_event(&self, device: usize, timing: bool) -> Result<EventId> {
        let _bound = self.bind(device)?;
        let event = ffi::event::create(timing)?;
        Ok(EventId {
            device,
            raw: handle_to_raw(event),
        })
    }
}
