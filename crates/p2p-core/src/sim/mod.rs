//! The simulated backend: N fake GPUs whose memory is host memory, described by a topology file, that run queued work late and in adversarial orders, catch races, and fail on request.
//!
//! [`SimDriver`] implements [`Driver`] well enough that the whole stack —
//! probe, plan, execute, verify — runs on a machine without GPUs, that the
//! broken peer paths seen on real machines can be reproduced at will, and
//! that code which forgets a wait fails a test instead of passing by luck.
//!
//! # The machine
//!
//! A [`Topology`] (see [`Topology`] for the TOML format, or
//! [`BUILTIN_TOPOLOGY`]) lists the GPUs in ordinal order and the ordered
//! pairs the driver claims peer access for, with their speed and [`Fault`].
//! A pair with no `[[peer]]` entry is not claimed. Tests can build one in
//! code instead ([`Topology::with_gpus`], [`Topology::fully_connected`]).
//!
//! # Deferred streams and the scheduler
//!
//! Each stream is a FIFO of operations. Queuing a copy, memset, record or
//! wait checks its arguments (as CUDA's argument checks would) and runs
//! nothing. Operations run
//!
//! * when the host observes them: `synchronize_stream`, `wait_event`,
//!   `wait_stream`, `event_done`, `stream_done` drive just the work they
//!   look at (the stream, or the record of the event version, and whatever
//!   that waits for) and nothing else;
//! * in the background, at other driver calls, as a seeded scheduler
//!   chooses: at each call it may run a few operations, picking at random
//!   among the streams whose head can run. How often depends on
//!   `seed % 5` (never, 5 %, 20 %, 50 %, 90 % of calls), so a handful of
//!   seeds covers "only what is observed" to "almost at once".
//!
//! Any order is possible that keeps FIFO within a stream and event waits
//! across streams. [`SimOptions`] sets the seed (default: `P2P_SIM_SEED`,
//! else [`DEFAULT_SEED`]); the same seed and the same calls give the same
//! schedule, and [`SimDriver::check_clean`] prints the seed to replay.
//! [`seeds`] is the list of seeds a test should sweep, and [`for_each_seed`]
//! sweeps them, checking every machine clean. [`Execution::Eager`]
//! runs everything runnable after every call instead (fast, and blind).
//! [`SimDriver::settle`] runs everything runnable now.
//!
//! Destroying a stream or an event with work pending is allowed, as in
//! CUDA: the work still runs. Stream `raw` 0 is each device's default stream
//! and needs no creating; event ids are never 0.
//!
//! # Events
//!
//! As in CUDA, each `record_event` makes a new version of the event;
//! `stream_wait_event` waits for the version current when it is called
//! (later records do not change what it waits for); a query or host wait is
//! about the current version and is true once that version's record has run;
//! an event never recorded is complete. `event_elapsed_ms` runs nothing: it
//! is `CUDA_ERROR_NOT_READY` until both events' versions have run.
//!
//! # Memory
//!
//! * Device memory is host memory. `alloc_device` hands out made-up,
//!   256-byte-aligned, never-zero addresses, in a separate range per device
//!   (from `0x1000_0000 + ordinal * 2^40`), with a gap between allocations; a
//!   zero-byte allocation still gets its own address. Any address inside a
//!   live allocation can be used. Queuing a copy or memset touching memory
//!   outside one live allocation (out of bounds, freed, wrong device) fails
//!   with `CUDA_ERROR_INVALID_VALUE`.
//! * Fresh allocations, device and pinned, hold garbage (a seeded 8-byte
//!   pattern, not zeros). Freed memory is poisoned with [`POISON`], and
//!   freed addresses are reused, most recently freed first, by the next
//!   allocation that fits; so a reused block holds the poison.
//! * Bytes move when an operation runs, not when it is queued — host memory
//!   included, pinned or pageable: the simulator reads and writes the
//!   caller's pointer at execution time, so a host buffer changed after
//!   queuing changes what arrives, as on a GPU.
//! * An operation that runs on freed device or pinned memory is reported
//!   ([`ReportKind::UseAfterFree`]): reads deliver poison, writes are
//!   dropped. Freeing memory that queued work still uses, or whose last use
//!   the freeing thread never waited for, is reported
//!   ([`ReportKind::FreeWhileInUse`]); queued work then no longer touches
//!   freed pinned memory.
//! * `memory_mib` is enforced: allocating past it is [`Error::OutOfMemory`] on `cuda:N`.
//! * [`AllocKind::Pool`] memory belongs to the device's one pool
//!   (`PoolId { device, raw: 1 }`); [`Driver::grant_pool_access`] records grants.
//! * [`SimDriver::stats`] counts pinned and device allocations, so tests can
//!   see leaks. Dropping the driver frees what is left, as destroying a CUDA
//!   context does (queued work is dropped).
//!
//! # The race detector
//!
//! Every host thread and every stream has a vector clock. Queuing and
//! recording release (an operation carries its thread's clock, and its
//! stream acquires it when it runs); a stream wait acquires the clock of the
//! version it waits for; a synchronize, a successful host wait and a true
//! query acquire what they waited for. Two accesses to overlapping bytes,
//! one a write, neither ordered before the other, are a
//! [`ReportKind::Race`] naming both operations, the stream each ran on, the
//! thread and the driver call (by number) that queued each. The simulator
//! sees the bytes its own operations touch (device memory, and host memory
//! through copies); it cannot see the caller's own loads and stores, so the
//! host side is checked where the caller takes memory back: at a free and
//! at [`Driver::borrows_released`], which safe APIs call as they return.
//! There, every queued operation still touching a released range is a
//! [`ReportKind::BorrowReleasedWhileInUse`] (and loses its host memory, so
//! it can never write into memory the caller reuses), and so is every
//! access to a released host range that ran without the thread waiting for
//! it. [`SimOptions::shared_host_clock`] merges the host threads, for code
//! that orders them with its own locks.
//!
//! [`SimDriver::reports`] lists what was seen; [`SimDriver::check_clean`]
//! fails with all of it and the seed.
//!
//! # Copies and time
//!
//! Work is timed on a virtual clock in nanoseconds: each stream has a clock,
//! an operation starts at the later of its stream's clock and the host's
//! "now" when it was queued, and takes its launch latency plus `bytes / speed`:
//!
//! | work | speed | launch |
//! |---|---|---|
//! | host <-> device | the device's `host_gbps` | 8 µs |
//! | peer copy, peer path active | the pair's `gbps` (÷ 10 when it touches pool memory the other device has no grant for) | 5 µs |
//! | peer copy, peer path not active (the driver stages it) | min of the two `host_gbps` ÷ 2 | 5 µs |
//! | memset, same-device copy | 1000 GB/s | 2 µs |
//!
//! A record stamps its version with its stream's clock when it runs; a wait
//! moves its stream's clock up to the version's stamp; `event_elapsed_ms` is
//! the virtual difference. Observing work done moves the host's "now" up to
//! its end, so work queued after a synchronize starts after what it waited for.
//! `wait_event` and `wait_stream` wait in virtual time, without sleeping:
//! work that ends after the deadline (by the bandwidth model, or a late copy)
//! is [`Error::Timeout`], and the host's clock moves to the deadline. Each
//! query that answers "not yet" moves the host's clock by [`POLL_NS`].
//!
//! # The peer path and faults
//!
//! A copy from device `a` to device `b != a` takes the direct peer path iff
//! peer access has been enabled for `(accessor a, owner b)` or `(accessor b,
//! owner a)` when it is queued; otherwise the driver stages it and it is
//! always correct. Faults act only on copies that take the peer path of a
//! pair whose entry for `a -> b` has that fault (an entry with `both = true`
//! counts for both directions). This includes pool memory without a grant:
//! it is slower, and still faulty, so an executor that forgets the grant is
//! not let off.
//!
//! * `zeros`: the destination gets zeros; `corrupt`: some bits are flipped
//!   (see [`Fault::Corrupt`]); `drop-tail`: the last quarter (at least one
//!   byte) of the destination is left unwritten.
//! * `hang`: the copy never runs. Its stream is hung for good: work queued
//!   on it later never runs, events recorded on it are never done, and a
//!   stream that waits on such an event is hung too. `synchronize_stream` on
//!   a hung stream returns [`Error::Timeout`] ("simulated hang on cuda:N",
//!   0 ms) at once instead of blocking forever, `event_elapsed_ms` on a hung
//!   event returns `CUDA_ERROR_NOT_READY`, and `wait_event` times out at its
//!   deadline (at once in real time; with `Duration::MAX` the host's virtual
//!   clock saturates).
//! * `late` (with `late_ms = N`, [`Fault::Late`]): the copy runs, correctly,
//!   only once the host's virtual clock has passed N ms after its normal
//!   end. A host wait with a shorter deadline times out; the bytes are
//!   written later, when a later wait, synchronize or query lets virtual time pass.
//! * `enable-fails`: `enable_peer_access(accessor = from, owner = to)` fails
//!   with `CUDA_ERROR_PEER_ACCESS_UNSUPPORTED` (217), as does enabling a pair
//!   that is not claimed. Enabling twice is fine; enabling a device for itself
//!   is a no-op.
//!
//! [`SimDriver::set_peer_fault`] changes a fault at run time (for copies queued from then on).
//!
//! # Faults at any call
//!
//! [`SimDriver::fail_call`] makes the Nth call from now of a [`CallKind`]
//! (or of any kind) fail with a CUDA-like error (`CUDA_ERROR_UNKNOWN`, 999;
//! allocations fail with [`Error::OutOfMemory`]) without doing anything.
//! [`SimDriver::slow_queries`] makes the next N completion queries answer
//! "not yet" even when the work is done. [`SimDriver::call_counts`] counts
//! calls per kind.

mod calls;
mod device_memory;
mod driver_impl;
mod enqueue;
mod events;
mod exec;
mod fault;
mod host_memory;
mod machine;
mod observe;
mod ops;
mod options;
mod race;
mod report;
mod scheduler;
pub(super) mod sim_driver;
mod sweep;
mod timeline;
mod topology;
mod topology_build;
#[cfg(test)]
mod topology_tests;

use std::collections::HashMap;
use std::path::Path;

pub use calls::{CallCounts, CallKind};
pub use device_memory::POISON;
pub use fault::{Fault, CORRUPT_FIRST_OFFSET, CORRUPT_STRIDE};
pub use options::{
    env_seed, seeds, Execution, SimOptions, DEFAULT_SEED, DEFAULT_SEED_COUNT, SEEDS_ENV, SEED_ENV,
};
pub use report::{AccessKind, Actor, ReportKind, SimProblems, SimReport};
pub use sweep::{for_each_seed, SeedRun};
pub use timeline::{
    HOST_LAUNCH_NS, LOCAL_GBPS, LOCAL_LAUNCH_NS, PEER_LAUNCH_NS, POLL_NS, UNGRANTED_POOL_SLOWDOWN,
};
pub use topology::{
    GpuSpec, PeerSpec, Topology, DEFAULT_DRIVER_VERSION, DEFAULT_HOST_GBPS, DEFAULT_MACHINE_NAME,
    DEFAULT_MEMORY_MIB, DEFAULT_PEER_GBPS, SIM_COMPUTE_CAPABILITY, SIM_COPY_ENGINES,
};

// At the crate root (`p2p_core::SimDriver`) only; named here for the
// simulator's own modules and docs.
use sim_driver::SimDriver;

use crate::Error;
#[cfg(doc)]
use crate::{AllocKind, Driver};

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

/// The parsed [`BUILTIN_TOPOLOGY`].
pub fn builtin_topology() -> Topology {
    // The text is a constant of this crate and a test parses it, so a
    // failure here is a bug in this file, not something a user can cause.
    Topology::parse(BUILTIN_TOPOLOGY, Path::new("<builtin topology>"))
        .expect("the built-in topology parses")
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
