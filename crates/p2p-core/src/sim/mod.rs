//! The simulated backend: N fake GPUs whose memory is host memory, described by a topology file, with fault injection.
//!
//! [`SimDriver`] implements [`Driver`] well enough that the whole stack —
//! probe, plan, execute, verify — runs on a machine without GPUs, and that
//! the broken peer paths seen on real machines can be reproduced at will.
//!
//! # The machine
//!
//! A [`Topology`] (see the `topology` module for the TOML format, or
//! [`BUILTIN_TOPOLOGY`]) lists the GPUs in ordinal order and the ordered
//! pairs the driver claims peer access for, with their speed and [`Fault`].
//! A pair with no `[[peer]]` entry is not claimed.
//!
//! # Memory
//!
//! * Device memory is host memory. `alloc_device` hands out made-up,
//!   256-byte-aligned, never-zero addresses, in a separate range per device
//!   (from `0x1000_0000 + ordinal * 2^40`), with a gap between allocations; a
//!   zero-byte allocation still gets its own address. Any address inside a
//!   live allocation can be used. A copy or memset touching memory outside one
//!   live allocation (out of bounds, freed, wrong device) fails with
//!   `CUDA_ERROR_INVALID_VALUE`, as CUDA's argument checks would. Fresh
//!   memory reads as zeros (real `cuMemAlloc` gives whatever was there).
//! * `memory_mib` is enforced: allocating past it is [`Error::OutOfMemory`] on `cuda:N`.
//! * [`AllocKind::Pool`] memory belongs to the device's one pool
//!   (`PoolId { device, raw: 1 }`); [`Driver::grant_pool_access`] records grants.
//! * Pinned memory is real, 64-byte-aligned host memory; [`SimDriver::stats`]
//!   counts it, so tests can see leaks. Dropping the driver frees what is left,
//!   as destroying a CUDA context does.
//!
//! # Copies and time
//!
//! Work is carried out the moment it is queued (the machine is in order and
//! instant in real time), and timed on a virtual clock in nanoseconds: each
//! stream has a clock, work starts at the later of its stream's clock and the
//! host's "now", and takes its launch latency plus `bytes / speed`:
//!
//! | work | speed | launch |
//! |---|---|---|
//! | host <-> device | the device's `host_gbps` | 8 µs |
//! | peer copy, peer path active | the pair's `gbps` (÷ 10 when it touches pool memory the other device has no grant for) | 5 µs |
//! | peer copy, peer path not active (the driver stages it) | min of the two `host_gbps` ÷ 2 | 5 µs |
//! | memset, same-device copy | 1000 GB/s | 2 µs |
//!
//! `record_event` stamps the event with its stream's clock;
//! `stream_wait_event` moves the stream's clock up to the event's stamp;
//! `event_elapsed_ms` is the virtual difference. `synchronize_stream`, and
//! `event_done` answering true, move the host's "now" up to the stream or the
//! event, so work queued after a synchronize starts after what it waited for.
//! A fresh, never-recorded event is done (as in CUDA). Stream `raw` 0 is each
//! device's default stream and needs no creating; event ids are never 0.
//!
//! # The peer path and faults
//!
//! A copy from device `a` to device `b != a` takes the direct peer path iff
//! peer access has been enabled for `(accessor a, owner b)` or `(accessor b,
//! owner a)`; otherwise the driver stages it and it is always correct. Faults
//! act only on copies that take the peer path of a pair whose entry for
//! `a -> b` has that fault (an entry with `both = true` counts for both
//! directions). This includes pool memory without a grant: it is slower, and
//! still faulty, so an executor that forgets the grant is not let off.
//!
//! * `zeros`: the destination gets zeros; `corrupt`: some bits are flipped
//!   (see [`Fault::Corrupt`]); `drop-tail`: the last quarter (at least one
//!   byte) of the destination is left unwritten.
//! * `hang`: the copy never completes and is never carried out. Its stream is
//!   hung for good: work queued on it later is accepted and not carried out,
//!   events recorded on it are never done, and a stream that waits on such an
//!   event is hung too. `synchronize_stream` on a hung stream returns
//!   [`Error::Timeout`] ("simulated hang on cuda:N", 0 ms) at once instead of
//!   blocking forever, `event_elapsed_ms` on a hung event returns
//!   `CUDA_ERROR_NOT_READY`, and [`Driver::wait_event`] times out at its deadline.
//! * `enable-fails`: `enable_peer_access(accessor = from, owner = to)` fails
//!   with `CUDA_ERROR_PEER_ACCESS_UNSUPPORTED` (217), as does enabling a pair
//!   that is not claimed. Enabling twice is fine; enabling a device for itself
//!   is a no-op.
//!
//! [`SimDriver::set_peer_fault`] changes a fault at run time.

mod device_memory;
mod fault;
mod host_memory;
mod machine;
mod timeline;
mod topology;
#[cfg(test)]
mod topology_tests;

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

pub use device_memory::{DEVICE_ADDRESS_STRIDE, DEVICE_ALLOC_ALIGN, FIRST_DEVICE_ADDRESS};
pub use fault::{Fault, CORRUPT_FIRST_OFFSET, CORRUPT_STRIDE};
pub use timeline::{
    HOST_LAUNCH_NS, LOCAL_GBPS, LOCAL_LAUNCH_NS, PEER_LAUNCH_NS, UNGRANTED_POOL_SLOWDOWN,
};
pub use topology::{
    GpuSpec, PeerSpec, Topology, DEFAULT_DRIVER_VERSION, DEFAULT_HOST_GBPS, DEFAULT_MACHINE_NAME,
    DEFAULT_MEMORY_MIB, DEFAULT_PEER_GBPS, SIM_COMPUTE_CAPABILITY, SIM_COPY_ENGINES,
};

use machine::Machine;

use crate::{
    AllocKind, Backend, DeviceAddr, DeviceInfo, Driver, Error, EventId, PeerClaim, PoolId, Result,
    StreamId,
};

/// The demo machine the CLI shows when there is no driver: four RTX 4090s on
/// PCIe, every pair claimed at 25 GB/s, and one broken direction: 2 -> 3
/// delivers zeros (3 -> 2 is fine), as on many real dual-4090 boxes.
pub const BUILTIN_TOPOLOGY: &str = r#"# The built-in simulated machine (p2p_core::sim::BUILTIN_TOPOLOGY).
[machine]
name = "4 x Simulated RTX 4090 on PCIe"
driver_version = 12080

[[gpu]]
name = "Simulated RTX 4090"
pci = "0000:01:00.0"
memory_mib = 24576
host_gbps = 25.0

[[gpu]]
name = "Simulated RTX 4090"
pci = "0000:21:00.0"
memory_mib = 24576
host_gbps = 25.0

[[gpu]]
name = "Simulated RTX 4090"
pci = "0000:41:00.0"
memory_mib = 24576
host_gbps = 25.0

[[gpu]]
name = "Simulated RTX 4090"
pci = "0000:61:00.0"
memory_mib = 24576
host_gbps = 25.0

[[peer]]
from = 0
to = 1
both = true
gbps = 25.0

[[peer]]
from = 0
to = 2
both = true
gbps = 25.0

[[peer]]
from = 0
to = 3
both = true
gbps = 25.0

[[peer]]
from = 1
to = 2
both = true
gbps = 25.0

[[peer]]
from = 1
to = 3
both = true
gbps = 25.0

# Claimed, enables, and delivers zeros.
[[peer]]
from = 2
to = 3
gbps = 25.0
fault = "zeros"

[[peer]]
from = 3
to = 2
gbps = 25.0
"#;

/// What the simulated machine has done so far, for tests and the CLI.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct SimStats {
    /// Calls to `enable_peer_access`, failed ones included.
    pub enable_calls: u64,
    /// `copy_peer_async` calls accepted, by (source device, destination device);
    /// same-device copies count under `(d, d)`.
    pub peer_copies: HashMap<(usize, usize), u64>,
    /// Those of `peer_copies` (of one byte or more, between two devices) that took the direct peer path.
    pub peer_path_copies: HashMap<(usize, usize), u64>,
    /// Device-to-host and host-to-device copies accepted.
    pub host_copies: u64,
    /// Pinned allocations not yet freed.
    pub live_pinned_allocations: usize,
    /// Bytes of every pinned allocation ever made.
    pub pinned_bytes_allocated_total: u64,
    /// Device allocations not yet freed, on all devices.
    pub live_device_allocations: usize,
}

impl SimStats {
    /// Accepted peer copies from `from` to `to` (0 if none).
    pub fn peer_copies_between(&self, from: usize, to: usize) -> u64 {
        self.peer_copies.get(&(from, to)).copied().unwrap_or(0)
    }

    /// Peer copies from `from` to `to` that took the direct peer path (0 if none).
    pub fn peer_path_copies_between(&self, from: usize, to: usize) -> u64 {
        self.peer_path_copies.get(&(from, to)).copied().unwrap_or(0)
    }
}

/// A simulated machine: see the [module docs](self) for what it does.
pub struct SimDriver {
    topology: Topology,
    devices: Vec<DeviceInfo>,
    machine: Mutex<Machine>,
}

impl SimDriver {
    /// A machine as `topology` describes it, with nothing allocated or enabled.
    ///
    /// Parsed topologies are valid; in one built by hand, `[[peer]]` entries
    /// that name GPUs it does not have are ignored.
    pub fn new(topology: Topology) -> SimDriver {
        SimDriver {
            devices: topology.device_infos(),
            machine: Mutex::new(Machine::new(&topology)),
            topology,
        }
    }

    /// Reads a topology file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<SimDriver> {
        Topology::from_file(path.as_ref()).map(SimDriver::new)
    }

    /// Parses topology text; `path_for_messages` names it in errors.
    pub fn from_toml_str(text: &str, path_for_messages: &Path) -> Result<SimDriver> {
        Topology::parse(text, path_for_messages).map(SimDriver::new)
    }

    /// The demo machine of [`BUILTIN_TOPOLOGY`].
    pub fn builtin() -> SimDriver {
        // The text is a constant of this crate and a test parses it, so a
        // failure here is a bug in this file, not something a user can cause.
        let topology = Topology::parse(BUILTIN_TOPOLOGY, Path::new("<builtin topology>"))
            .expect("the built-in topology parses");
        SimDriver::new(topology)
    }

    /// The machine as described (faults as at start; see [`SimDriver::set_peer_fault`]).
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// The machine's name from the topology file.
    pub fn machine_name(&self) -> &str {
        &self.topology.machine_name
    }

    /// Gives the direction `from -> to` a new fault (for copies queued from now on).
    pub fn set_peer_fault(&self, from: usize, to: usize, fault: Fault) -> Result<()> {
        self.lock().set_fault(from, to, fault)
    }

    /// Counters of what the machine has done so far.
    pub fn stats(&self) -> SimStats {
        self.lock().stats()
    }

    fn lock(&self) -> MutexGuard<'_, Machine> {
        // The state stays consistent across a panic (every operation checks
        // before it changes anything), so a poisoned lock is still usable.
        self.machine
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl fmt::Debug for SimDriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimDriver")
            .field("machine", &self.topology.machine_name)
            .field("driver_version", &self.topology.driver_version)
            .field("devices", &self.devices.len())
            .finish_non_exhaustive()
    }
}

/// A CUDA driver error, for the simulated machine to mimic CUDA's answers.
fn cuda_error(call: &'static str, code: u32, name: &str) -> Error {
    Error::Cuda {
        call,
        code,
        name: name.to_string(),
    }
}

fn invalid_value(call: &'static str) -> Error {
    cuda_error(call, 1, "CUDA_ERROR_INVALID_VALUE")
}

fn invalid_handle(call: &'static str) -> Error {
    cuda_error(call, 400, "CUDA_ERROR_INVALID_HANDLE")
}

fn not_ready(call: &'static str) -> Error {
    cuda_error(call, 600, "CUDA_ERROR_NOT_READY")
}

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
        self.lock().claim(from, to)
    }

    fn enable_peer_access(&self, accessor: usize, owner: usize) -> Result<()> {
        self.lock().enable_peer_access(accessor, owner)
    }

    fn disable_peer_access(&self, accessor: usize, owner: usize) -> Result<()> {
        self.lock().disable_peer_access(accessor, owner)
    }

    fn alloc_device(&self, device: usize, bytes: usize, kind: AllocKind) -> Result<DeviceAddr> {
        self.lock().alloc_device(device, bytes, kind)
    }

    unsafe fn free_device(&self, ptr: DeviceAddr) -> Result<()> {
        self.lock().free_device(ptr)
    }

    fn alloc_pinned(&self, bytes: usize) -> Result<*mut u8> {
        self.lock().alloc_pinned(bytes)
    }

    unsafe fn free_pinned(&self, ptr: *mut u8) -> Result<()> {
        self.lock().free_pinned(ptr)
    }

    fn pool_of(&self, ptr: DeviceAddr) -> Result<Option<PoolId>> {
        self.lock().pool_of(ptr)
    }

    fn grant_pool_access(&self, pool: PoolId, accessor: usize) -> Result<()> {
        self.lock().grant_pool_access(pool, accessor)
    }

    fn default_pool(&self, device: usize) -> Result<Option<PoolId>> {
        self.check_device(device)?;
        // Every simulated device has one pool, which `AllocKind::Pool` uses.
        Ok(Some(PoolId { device, raw: 1 }))
    }

    fn create_stream(&self, device: usize) -> Result<StreamId> {
        self.lock().create_stream(device)
    }

    unsafe fn destroy_stream(&self, stream: StreamId) -> Result<()> {
        self.lock().destroy_stream(stream)
    }

    fn create_event(&self, device: usize) -> Result<EventId> {
        self.lock().create_event(device, false)
    }

    fn create_timing_event(&self, device: usize) -> Result<EventId> {
        self.lock().create_event(device, true)
    }

    unsafe fn destroy_event(&self, event: EventId) -> Result<()> {
        self.lock().destroy_event(event)
    }

    unsafe fn copy_peer_async(
        &self,
        dst: DeviceAddr,
        src: DeviceAddr,
        bytes: usize,
        stream: StreamId,
    ) -> Result<()> {
        self.lock().copy_peer(dst, src, bytes, stream)
    }

    unsafe fn copy_dtoh_async(
        &self,
        dst: *mut u8,
        src: DeviceAddr,
        bytes: usize,
        stream: StreamId,
    ) -> Result<()> {
        if dst.is_null() && bytes > 0 {
            return Err(invalid_value("cuMemcpyDtoHAsync"));
        }
        self.lock().copy_dtoh(src, bytes, stream, |device_bytes| {
            // SAFETY: the caller promises `dst` is valid for `bytes` writes,
            // and `device_bytes` is exactly `bytes` long.
            unsafe { host_memory::copy_to_host(dst, device_bytes) }
        })
    }

    unsafe fn copy_htod_async(
        &self,
        dst: DeviceAddr,
        src: *const u8,
        bytes: usize,
        stream: StreamId,
    ) -> Result<()> {
        if src.is_null() && bytes > 0 {
            return Err(invalid_value("cuMemcpyHtoDAsync"));
        }
        self.lock().copy_htod(dst, bytes, stream, |device_bytes| {
            // SAFETY: the caller promises `src` is valid for `bytes` reads,
            // and `device_bytes` is exactly `bytes` long.
            unsafe { host_memory::copy_from_host(device_bytes, src) }
        })
    }

    unsafe fn memset_async(
        &self,
        dst: DeviceAddr,
        value: u8,
        bytes: usize,
        stream: StreamId,
    ) -> Result<()> {
        self.lock().memset(dst, value, bytes, stream)
    }

    fn record_event(&self, event: EventId, stream: StreamId) -> Result<()> {
        self.lock().record_event(event, stream)
    }

    fn stream_wait_event(&self, stream: StreamId, event: EventId) -> Result<()> {
        self.lock().stream_wait_event(stream, event)
    }

    fn event_done(&self, event: EventId) -> Result<bool> {
        self.lock().event_done(event)
    }

    fn event_elapsed_ms(&self, start: EventId, end: EventId) -> Result<f32> {
        self.lock().event_elapsed_ms(start, end)
    }

    fn synchronize_stream(&self, stream: StreamId) -> Result<()> {
        self.lock().synchronize_stream(stream)
    }
}
