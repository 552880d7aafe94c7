//! `Driver` for `SimDriver`: each method is one counted call into the locked machine.

use std::time::Duration;

use super::calls::CallKind;
use super::{invalid_value, SimDriver};
use crate::{
    AllocKind, Backend, CopyDesc, DeviceAddr, DeviceInfo, Driver, EventId, HostCopyDesc, MemRange,
    PeerClaim, PoolId, Result, StreamId,
};

impl Driver for SimDriver {
    fn backend(&self) -> Backend {
        Backend::Simulated
    }

    fn driver_version(&self) -> i32 {
        self.topology.driver_version
    }

    fn devices(&self) -> &[DeviceInfo] {
        &self.devices
    }

    fn machine_state(&self) -> Vec<(String, String)> {
        // The whole validated topology (faults, speeds, claims): editing a
        // fault makes another machine for the verdict cache. The host's own
        // state does not matter to a simulated machine.
        vec![("topology".to_string(), format!("{:?}", self.topology))]
    }

    fn claim(&self, from: usize, to: usize) -> Result<PeerClaim> {
        self.call(CallKind::Claim, "cuDeviceCanAccessPeer", 0, |m| {
            m.claim(from, to)
        })
    }

    fn enable_peer_access(&self, accessor: usize, owner: usize) -> Result<()> {
        self.call(CallKind::EnablePeer, "cuCtxEnablePeerAccess", 0, |m| {
            m.enable_peer_access(accessor, owner)
        })
    }

    fn disable_peer_access(&self, accessor: usize, owner: usize) -> Result<()> {
        self.call(CallKind::DisablePeer, "cuCtxDisablePeerAccess", 0, |m| {
            m.disable_peer_access(accessor, owner)
        })
    }

    fn alloc_device(&self, device: usize, bytes: usize, kind: AllocKind) -> Result<DeviceAddr> {
        self.call(CallKind::AllocDevice, "cuMemAlloc", bytes, |m| {
            m.alloc_device(device, bytes, kind)
        })
    }

    unsafe fn free_device(&self, ptr: DeviceAddr) -> Result<()> {
        self.call(CallKind::FreeDevice, "cuMemFree", 0, |m| m.free_device(ptr))
    }

    fn alloc_pinned(&self, bytes: usize) -> Result<*mut u8> {
        self.call(CallKind::AllocPinned, "cuMemAllocHost", bytes, |m| {
            m.alloc_pinned(bytes)
        })
    }

    unsafe fn free_pinned(&self, ptr: *mut u8) -> Result<()> {
        self.call(CallKind::FreePinned, "cuMemFreeHost", 0, |m| {
            m.free_pinned(ptr)
        })
    }

    fn pool_of(&self, ptr: DeviceAddr) -> Result<Option<PoolId>> {
        self.call(CallKind::Pool, "cuPointerGetAttribute", 0, |m| {
            m.pool_of(ptr)
        })
    }

    fn grant_pool_access(&self, pool: PoolId, accessor: usize) -> Result<()> {
        self.call(CallKind::Pool, "cuMemPoolSetAccess", 0, |m| {
            m.grant_pool_access(pool, accessor)
        })
    }

    fn default_pool(&self, device: usize) -> Result<Option<PoolId>> {
        self.call(CallKind::Pool, "cuDeviceGetDefaultMemPool", 0, |m| {
            m.check(device)?;
            // Every simulated device has one pool, which `AllocKind::Pool` uses.
            Ok(Some(PoolId {
                device,
                raw: super::machine::DEFAULT_POOL_RAW,
            }))
        })
    }

    fn create_stream(&self, device: usize) -> Result<StreamId> {
        self.call(CallKind::CreateStream, "cuStreamCreate", 0, |m| {
            m.create_stream(device)
        })
    }

    unsafe fn destroy_stream(&self, stream: StreamId) -> Result<()> {
        self.call(CallKind::DestroyStream, "cuStreamDestroy", 0, |m| {
            m.destroy_stream(stream)
        })
    }

    fn create_event(&self, device: usize) -> Result<EventId> {
        self.call(CallKind::CreateEvent, "cuEventCreate", 0, |m| {
            m.create_event(device, false)
        })
    }

    fn create_timing_event(&self, device: usize) -> Result<EventId> {
        self.call(CallKind::CreateEvent, "cuEventCreate", 0, |m| {
            m.create_event(device, true)
        })
    }

    unsafe fn destroy_event(&self, event: EventId) -> Result<()> {
        self.call(CallKind::DestroyEvent, "cuEventDestroy", 0, |m| {
            m.destroy_event(event)
        })
    }

    unsafe fn copy_peer_async(
        &self,
        dst: DeviceAddr,
        src: DeviceAddr,
        bytes: usize,
        stream: StreamId,
    ) -> Result<()> {
        self.call(CallKind::Copy, "cuMemcpyPeerAsync", 0, |m| {
            m.copy_peer(dst, src, bytes, stream)
        })
    }

    unsafe fn copy_dtoh_async(
        &self,
        dst: *mut u8,
        src: DeviceAddr,
        bytes: usize,
        stream: StreamId,
    ) -> Result<()> {
        self.call(CallKind::Copy, "cuMemcpyDtoHAsync", 0, |m| {
            if dst.is_null() && bytes > 0 {
                return Err(invalid_value("cuMemcpyDtoHAsync"));
            }
            // The pointer is kept as a number and written when the copy
            // runs; the caller promised it stays valid until then.
            m.copy_dtoh(dst as usize, src, bytes, stream)
        })
    }

    unsafe fn copy_htod_async(
        &self,
        dst: DeviceAddr,
        src: *const u8,
        bytes: usize,
        stream: StreamId,
    ) -> Result<()> {
        self.call(CallKind::Copy, "cuMemcpyHtoDAsync", 0, |m| {
            if src.is_null() && bytes > 0 {
                return Err(invalid_value("cuMemcpyHtoDAsync"));
            }
            m.copy_htod(dst, src as usize, bytes, stream)
        })
    }

    /// One call for the whole batch, as `cuMemcpyBatchAsync` is: it is
    /// counted once, and an injected failure fails it before any copy.
    unsafe fn copy_batch_async(&self, copies: &[CopyDesc], stream: StreamId) -> Result<()> {
        self.call(CallKind::Copy, "cuMemcpyBatchAsync", 0, |m| {
            for copy in copies {
                m.copy_peer(copy.dst, copy.src, copy.bytes, stream)?;
            }
            Ok(())
        })
    }

    /// One call for the whole batch, as [`SimDriver::copy_batch_async`].
    unsafe fn copy_batch_dtoh_async(
        &self,
        copies: &[HostCopyDesc],
        stream: StreamId,
    ) -> Result<()> {
        self.call(CallKind::Copy, "cuMemcpyBatchAsync", 0, |m| {
            for copy in checked_host_batch(copies)? {
                m.copy_dtoh(copy.host as usize, copy.device, copy.bytes, stream)?;
            }
            Ok(())
        })
    }

    /// One call for the whole batch, as [`SimDriver::copy_batch_async`].
    unsafe fn copy_batch_htod_async(
        &self,
        copies: &[HostCopyDesc],
        stream: StreamId,
    ) -> Result<()> {
        self.call(CallKind::Copy, "cuMemcpyBatchAsync", 0, |m| {
            for copy in checked_host_batch(copies)? {
                m.copy_htod(copy.device, copy.host as usize, copy.bytes, stream)?;
            }
            Ok(())
        })
    }

    unsafe fn memset_async(
        &self,
        dst: DeviceAddr,
        value: u8,
        bytes: usize,
        stream: StreamId,
    ) -> Result<()> {
        self.call(CallKind::Memset, "cuMemsetD8Async", 0, |m| {
            m.memset(dst, value, bytes, stream)
        })
    }

    fn record_event(&self, event: EventId, stream: StreamId) -> Result<()> {
        self.call(CallKind::Record, "cuEventRecord", 0, |m| {
            m.record_event(event, stream)
        })
    }

    fn stream_wait_event(&self, stream: StreamId, event: EventId) -> Result<()> {
        self.call(CallKind::Wait, "cuStreamWaitEvent", 0, |m| {
            m.stream_wait_event(stream, event)
        })
    }

    fn event_done(&self, event: EventId) -> Result<bool> {
        self.call(CallKind::Query, "cuEventQuery", 0, |m| m.event_done(event))
    }

    fn event_elapsed_ms(&self, start: EventId, end: EventId) -> Result<f32> {
        self.call(CallKind::Elapsed, "cuEventElapsedTime", 0, |m| {
            m.event_elapsed_ms(start, end)
        })
    }

    fn synchronize_stream(&self, stream: StreamId) -> Result<()> {
        self.call(CallKind::Synchronize, "cuStreamSynchronize", 0, |m| {
            m.synchronize_stream(stream)
        })
    }

    fn stream_done(&self, stream: StreamId) -> Result<bool> {
        self.call(CallKind::Query, "cuStreamQuery", 0, |m| {
            m.stream_done(stream)
        })
    }

    fn borrows_released(&self, ranges: &[MemRange]) {
        self.lock().borrows_released(ranges);
    }

    fn wait_event(&self, event: EventId, deadline: Duration) -> Result<()> {
        self.call(CallKind::HostWait, "cuEventQuery", 0, |m| {
            m.wait_event(event, deadline)
        })
    }

    fn wait_stream(&self, stream: StreamId, deadline: Duration) -> Result<()> {
        self.call(CallKind::HostWait, "cuStreamQuery", 0, |m| {
            m.wait_stream(stream, deadline)
        })
    }
}

/// The copies of a host batch, refused (before any is queued) if one names
/// no host memory.
fn checked_host_batch(copies: &[HostCopyDesc]) -> Result<&[HostCopyDesc]> {
    if copies
        .iter()
        .any(|copy| copy.host.is_null() && copy.bytes > 0)
    {
        return Err(invalid_value("cuMemcpyBatchAsync"));
    }
    Ok(copies)
}
