//! [`Loopback`]: one GPU shown as two devices, so that every route through
//! host memory runs for real on a machine with one GPU.
//!
//! cuda:0 and cuda:1 of a `Loopback` are both device 0 of the driver it
//! wraps: memory "on cuda:1" is allocated there, streams and events of
//! cuda:1 are made there, and every ordinal in a call, a [`DeviceAddr`], a
//! [`StreamId`], an [`EventId`] or a [`PoolId`] is mapped down before the
//! call and back up in what it returns. The pair 0 <-> 1 is reported as not
//! claimed (a GPU has no peer access to itself), so the probe says "not
//! claimed" and the planner stages through pinned host memory, as on a
//! machine whose peer copy is broken.
//!
//! What that measures: the device-to-host leg and the host-to-device leg
//! cross the same PCIe link in opposite directions at once (full duplex),
//! which is what a staged copy between two GPUs does on their two links. A
//! raw `copy_peer_async` between the two views is a device-to-device copy on
//! the one GPU, which is why the benchmark skips peer rows in this mode.

use std::sync::Arc;
use std::time::Duration;

use p2p_core::{
    AllocKind, Backend, CopyDesc, DeviceAddr, DeviceInfo, Driver, Error, EventId, HostCopyDesc,
    MemRange, PeerClaim, PoolId, Result, StreamId,
};

/// The words every output of a loopback run carries.
pub const LOOPBACK_LABEL: &str = "loopback: one GPU seen as two";

/// Device 0 of `inner` shown as two devices (see the module docs).
#[derive(Debug)]
pub struct Loopback {
    inner: Arc<dyn Driver>,
    /// What the views report: the physical device's information, renumbered.
    devices: Vec<DeviceInfo>,
}

impl Loopback {
    /// How many devices the one GPU is shown as.
    pub const VIEWS: usize = 2;
    /// The device of `inner` behind every view.
    pub const PHYSICAL: usize = 0;

    /// Shows device 0 of `inner` as cuda:0 and cuda:1.
    ///
    /// # Errors
    /// [`Error::InvalidDevice`] when `inner` has no device.
    pub fn new(inner: Arc<dyn Driver>) -> Result<Loopback> {
        inner.check_device(Self::PHYSICAL)?;
        let physical = inner.devices()[Self::PHYSICAL].clone();
        let devices = (0..Self::VIEWS)
            .map(|ordinal| DeviceInfo {
                ordinal,
                ..physical.clone()
            })
            .collect();
        Ok(Loopback { inner, devices })
    }

    /// The wrapped driver.
    pub fn inner(&self) -> &Arc<dyn Driver> {
        &self.inner
    }

    /// The physical device behind view `device`, or the error for an ordinal out of range.
    fn down(&self, device: usize) -> Result<usize> {
        self.check_device(device)?;
        Ok(Self::PHYSICAL)
    }

    fn addr(&self, addr: DeviceAddr) -> Result<DeviceAddr> {
        Ok(DeviceAddr {
            device: self.down(addr.device)?,
            addr: addr.addr,
        })
    }

    fn stream(&self, stream: StreamId) -> Result<StreamId> {
        Ok(StreamId {
            device: self.down(stream.device)?,
            raw: stream.raw,
        })
    }

    fn event(&self, event: EventId) -> Result<EventId> {
        Ok(EventId {
            device: self.down(event.device)?,
            raw: event.raw,
        })
    }

    /// Batched host copies under their physical ordinals.
    fn host_copies(&self, copies: &[HostCopyDesc]) -> Result<Vec<HostCopyDesc>> {
        copies
            .iter()
            .map(|copy| {
                Ok(HostCopyDesc {
                    device: self.addr(copy.device)?,
                    ..*copy
                })
            })
            .collect()
    }

    /// A pool of the physical device, as the pool of view `device`.
    fn pool_up(pool: Option<PoolId>, device: usize) -> Option<PoolId> {
        pool.map(|pool| PoolId {
            device,
            raw: pool.raw,
        })
    }
}

impl Driver for Loopback {
    fn backend(&self) -> Backend {
        self.inner.backend()
    }

    fn driver_version(&self) -> i32 {
        self.inner.driver_version()
    }

    fn devices(&self) -> &[DeviceInfo] {
        &self.devices
    }

    /// The wrapped machine's state and the loopback itself: verdicts cached
    /// for the real machine never apply to its loopback view, nor the reverse.
    fn machine_state(&self) -> Vec<(String, String)> {
        let mut state = self.inner.machine_state();
        state.push((
            "loopback".into(),
            format!(
                "cuda:{} of the driver shown as {} devices",
                Self::PHYSICAL,
                Self::VIEWS
            ),
        ));
        state
    }

    /// A view and itself: what the driver says of the device and itself.
    /// Two views: not claimed, as `cuDeviceCanAccessPeer` says of a device
    /// that cannot reach the other's memory directly.
    fn claim(&self, from: usize, to: usize) -> Result<PeerClaim> {
        let physical = self.down(from)?;
        self.down(to)?;
        if from == to {
            let claim = self.inner.claim(physical, physical)?;
            return Ok(PeerClaim { from, to, ..claim });
        }
        Ok(PeerClaim {
            from,
            to,
            can_access_peer: false,
            access_supported: false,
            performance_rank: 0,
            native_atomics: false,
        })
    }

    fn enable_peer_access(&self, accessor: usize, owner: usize) -> Result<()> {
        let physical = self.down(accessor)?;
        self.down(owner)?;
        if accessor == owner {
            return self.inner.enable_peer_access(physical, physical);
        }
        Err(Error::Unsupported(format!(
            "{LOOPBACK_LABEL}: cuda:{accessor} and cuda:{owner} are one GPU, which has no peer access to itself"
        )))
    }

    /// Between two views: peer access was never enabled, which is success.
    fn disable_peer_access(&self, accessor: usize, owner: usize) -> Result<()> {
        let physical = self.down(accessor)?;
        self.down(owner)?;
        if accessor == owner {
            return self.inner.disable_peer_access(physical, physical);
        }
        Ok(())
    }

    fn alloc_device(&self, device: usize, bytes: usize, kind: AllocKind) -> Result<DeviceAddr> {
        let addr = self.inner.alloc_device(self.down(device)?, bytes, kind)?;
        Ok(DeviceAddr {
            device,
            addr: addr.addr,
        })
    }

    unsafe fn free_device(&self, ptr: DeviceAddr) -> Result<()> {
        let ptr = self.addr(ptr)?;
        // SAFETY: the caller's contract; the address is the wrapped driver's own.
        unsafe { self.inner.free_device(ptr) }
    }

    fn alloc_pinned(&self, bytes: usize) -> Result<*mut u8> {
        self.inner.alloc_pinned(bytes)
    }

    unsafe fn free_pinned(&self, ptr: *mut u8) -> Result<()> {
        // SAFETY: the caller's contract; pinned memory is the wrapped driver's own.
        unsafe { self.inner.free_pinned(ptr) }
    }

    fn pool_of(&self, ptr: DeviceAddr) -> Result<Option<PoolId>> {
        let pool = self.inner.pool_of(self.addr(ptr)?)?;
        Ok(Self::pool_up(pool, ptr.device))
    }

    fn default_pool(&self, device: usize) -> Result<Option<PoolId>> {
        let pool = self.inner.default_pool(self.down(device)?)?;
        Ok(Self::pool_up(pool, device))
    }

    /// Every view is the device that owns the pool, which always has access
    /// to it: nothing to grant.
    fn grant_pool_access(&self, pool: PoolId, accessor: usize) -> Result<()> {
        self.down(pool.device)?;
        self.down(accessor)?;
        Ok(())
    }

    fn create_stream(&self, device: usize) -> Result<StreamId> {
        let stream = self.inner.create_stream(self.down(device)?)?;
        Ok(StreamId {
            device,
            raw: stream.raw,
        })
    }

    unsafe fn destroy_stream(&self, stream: StreamId) -> Result<()> {
        let stream = self.stream(stream)?;
        // SAFETY: the caller's contract; the handle is the wrapped driver's own.
        unsafe { self.inner.destroy_stream(stream) }
    }

    fn create_event(&self, device: usize) -> Result<EventId> {
        let event = self.inner.create_event(self.down(device)?)?;
        Ok(EventId {
            device,
            raw: event.raw,
        })
    }

    fn create_timing_event(&self, device: usize) -> Result<EventId> {
        let event = self.inner.create_timing_event(self.down(device)?)?;
        Ok(EventId {
            device,
            raw: event.raw,
        })
    }

    unsafe fn destroy_event(&self, event: EventId) -> Result<()> {
        let event = self.event(event)?;
        // SAFETY: the caller's contract; the handle is the wrapped driver's own.
        unsafe { self.inner.destroy_event(event) }
    }

    /// Between two views: a device-to-device copy on the one GPU.
    unsafe fn copy_peer_async(
        &self,
        dst: DeviceAddr,
        src: DeviceAddr,
        bytes: usize,
        stream: StreamId,
    ) -> Result<()> {
        let (dst, src, stream) = (self.addr(dst)?, self.addr(src)?, self.stream(stream)?);
        // SAFETY: the caller's contract, for the same memory under its physical ordinal.
        unsafe { self.inner.copy_peer_async(dst, src, bytes, stream) }
    }

    unsafe fn copy_batch_async(&self, copies: &[CopyDesc], stream: StreamId) -> Result<()> {
        let copies = copies
            .iter()
            .map(|copy| {
                Ok(CopyDesc {
                    dst: self.addr(copy.dst)?,
                    src: self.addr(copy.src)?,
                    bytes: copy.bytes,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let stream = self.stream(stream)?;
        // SAFETY: the caller's contract, for every copy under its physical ordinals.
        unsafe { self.inner.copy_batch_async(&copies, stream) }
    }

    unsafe fn copy_batch_dtoh_async(
        &self,
        copies: &[HostCopyDesc],
        stream: StreamId,
    ) -> Result<()> {
        let (copies, stream) = (self.host_copies(copies)?, self.stream(stream)?);
        // SAFETY: the caller's contract, for every copy under its physical ordinal.
        unsafe { self.inner.copy_batch_dtoh_async(&copies, stream) }
    }

    unsafe fn copy_batch_htod_async(
        &self,
        copies: &[HostCopyDesc],
        stream: StreamId,
    ) -> Result<()> {
        let (copies, stream) = (self.host_copies(copies)?, self.stream(stream)?);
        // SAFETY: the caller's contract, for every copy under its physical ordinal.
        unsafe { self.inner.copy_batch_htod_async(&copies, stream) }
    }

    unsafe fn copy_dtoh_async(
        &self,
        dst: *mut u8,
        src: DeviceAddr,
        bytes: usize,
        stream: StreamId,
    ) -> Result<()> {
        let (src, stream) = (self.addr(src)?, self.stream(stream)?);
        // SAFETY: the caller's contract.
        unsafe { self.inner.copy_dtoh_async(dst, src, bytes, stream) }
    }

    unsafe fn copy_htod_async(
        &self,
        dst: DeviceAddr,
        src: *const u8,
        bytes: usize,
        stream: StreamId,
    ) -> Result<()> {
        let (dst, stream) = (self.addr(dst)?, self.stream(stream)?);
        // SAFETY: the caller's contract.
        unsafe { self.inner.copy_htod_async(dst, src, bytes, stream) }
    }

    unsafe fn memset_async(
        &self,
        dst: DeviceAddr,
        value: u8,
        bytes: usize,
        stream: StreamId,
    ) -> Result<()> {
        let (dst, stream) = (self.addr(dst)?, self.stream(stream)?);
        // SAFETY: the caller's contract.
        unsafe { self.inner.memset_async(dst, value, bytes, stream) }
    }

    fn record_event(&self, event: EventId, stream: StreamId) -> Result<()> {
        self.inner
            .record_event(self.event(event)?, self.stream(stream)?)
    }

    fn stream_wait_event(&self, stream: StreamId, event: EventId) -> Result<()> {
        self.inner
            .stream_wait_event(self.stream(stream)?, self.event(event)?)
    }

    fn event_done(&self, event: EventId) -> Result<bool> {
        self.inner.event_done(self.event(event)?)
    }

    fn event_elapsed_ms(&self, start: EventId, end: EventId) -> Result<f32> {
        self.inner
            .event_elapsed_ms(self.event(start)?, self.event(end)?)
    }

    fn synchronize_stream(&self, stream: StreamId) -> Result<()> {
        self.inner.synchronize_stream(self.stream(stream)?)
    }

    fn stream_done(&self, stream: StreamId) -> Result<bool> {
        self.inner.stream_done(self.stream(stream)?)
    }

    /// The ranges under their physical ordinals, so that a simulated
    /// driver's checks see the memory it handed out.
    fn borrows_released(&self, ranges: &[MemRange]) {
        let ranges: Vec<MemRange> = ranges
            .iter()
            .map(|range| match *range {
                MemRange::Device { addr, len } => MemRange::Device {
                    addr: self.addr(addr).unwrap_or(addr),
                    len,
                },
                host => host,
            })
            .collect();
        self.inner.borrows_released(&ranges);
    }

    fn wait_event(&self, event: EventId, deadline: Duration) -> Result<()> {
        self.inner.wait_event(self.event(event)?, deadline)
    }

    fn wait_stream(&self, stream: StreamId, deadline: Duration) -> Result<()> {
        self.inner.wait_stream(self.stream(stream)?, deadline)
    }
}
