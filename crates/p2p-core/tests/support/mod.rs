//! Helpers shared by the simulated-backend tests: one body over every schedule seed with a clean check, a small machine, upload/download shortcuts.

// Each test crate uses a different subset of these helpers.
#![allow(dead_code)]

use std::cell::RefCell;
use std::path::Path;
use std::sync::Arc;

use p2p_core::sim::{seeds, Execution, SimDriver, SimOptions, Topology};
use p2p_core::{AllocKind, DeviceAddr, Driver, Error, StreamId};

/// The machines one run of a test body made, all checked clean after it.
pub(crate) struct Seeded {
    pub(crate) seed: u64,
    machines: RefCell<Vec<Arc<SimDriver>>>,
}

impl Seeded {
    /// A context for one seed, for a test that checks its machines itself ([`Seeded::check`]).
    pub(crate) fn with_seed(seed: u64) -> Seeded {
        Seeded {
            seed,
            machines: RefCell::new(Vec::new()),
        }
    }

    /// Fails if any machine made through [`Seeded::sim_of`] reported a problem.
    pub(crate) fn check(&self) {
        for sim in self.machines.borrow().iter() {
            if let Err(problems) = sim.check_clean() {
                panic!("{problems}");
            }
        }
    }

    /// A deferred machine of `text` under this run's seed, checked clean when the body returns.
    pub(crate) fn sim_of(&self, text: &str) -> Arc<SimDriver> {
        let topology = Topology::parse(text, Path::new("test.toml")).unwrap();
        let sim = Arc::new(SimDriver::with_options(
            topology,
            SimOptions::default().seed(self.seed),
        ));
        self.machines.borrow_mut().push(sim.clone());
        sim
    }

    /// [`THREE_GPUS`], checked clean when the body returns.
    pub(crate) fn machine(&self) -> Arc<SimDriver> {
        self.sim_of(THREE_GPUS)
    }

    /// The built-in machine, checked clean when the body returns.
    pub(crate) fn builtin(&self) -> Arc<SimDriver> {
        self.sim_of(p2p_core::sim::BUILTIN_TOPOLOGY)
    }

    /// A machine of `text` for a test that makes problems on purpose: not checked.
    pub(crate) fn unchecked(&self, text: &str, execution: Execution) -> SimDriver {
        let topology = Topology::parse(text, Path::new("test.toml")).unwrap();
        SimDriver::with_options(
            topology,
            SimOptions::default().seed(self.seed).execution(execution),
        )
    }
}

/// Says which seed failed when a body panics (the panic message itself is above it).
struct SeedOnPanic(u64);

impl Drop for SeedOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "(failed under schedule seed {0}: replay with P2P_SIM_SEED={0})",
                self.0
            );
        }
    }
}

/// Runs `body` once per schedule seed of [`seeds`] (a handful; `P2P_SIM_SEEDS=N`
/// for more, `P2P_SIM_SEED=S` for one), and fails if any machine it made
/// through its [`Seeded`] reported a race or a memory problem.
pub(crate) fn for_each_seed(body: impl Fn(&Seeded)) {
    for seed in seeds() {
        let guard = SeedOnPanic(seed);
        let seeded = Seeded::with_seed(seed);
        body(&seeded);
        seeded.check();
        drop(guard);
    }
}

/// Three GPUs: 0 <-> 1 healthy at 50 GB/s, 1 -> 2 claimed with a fault set
/// per test, 2 -> 1 fine, nothing between 0 and 2; gpu 2 has 1 MiB of memory.
pub(crate) const THREE_GPUS: &str = r#"
[machine]
name = "test box"
driver_version = 12040
[[gpu]]
name = "A"
host_gbps = 25.0
[[gpu]]
name = "B"
host_gbps = 20.0
[[gpu]]
name = "C"
memory_mib = 1
[[peer]]
from = 0
to = 1
both = true
gbps = 50.0
[[peer]]
from = 1
to = 2
gbps = 40.0
[[peer]]
from = 2
to = 1
"#;

pub(crate) fn machine() -> SimDriver {
    SimDriver::from_toml_str(THREE_GPUS, Path::new("three.toml")).unwrap()
}

pub(crate) fn default_stream(device: usize) -> StreamId {
    StreamId { device, raw: 0 }
}

/// Bytes that are neither zeros nor a constant.
pub(crate) fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).wrapping_shr(13) as u8 ^ seed)
        .collect()
}

pub(crate) fn upload(
    driver: &SimDriver,
    device: usize,
    data: &[u8],
    kind: AllocKind,
) -> DeviceAddr {
    let ptr = driver.alloc_device(device, data.len(), kind).unwrap();
    // SAFETY: `ptr` holds `data.len()` bytes; the default stream is synchronized below.
    unsafe {
        driver
            .copy_htod_async(ptr, data.as_ptr(), data.len(), default_stream(device))
            .unwrap()
    };
    driver.synchronize_stream(default_stream(device)).unwrap();
    ptr
}

pub(crate) fn download(driver: &SimDriver, ptr: DeviceAddr, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    // SAFETY: `out` holds `len` bytes and outlives the synchronize below.
    unsafe {
        driver
            .copy_dtoh_async(out.as_mut_ptr(), ptr, len, default_stream(ptr.device))
            .unwrap()
    };
    driver
        .synchronize_stream(default_stream(ptr.device))
        .unwrap();
    out
}

pub(crate) fn peer_copy(
    driver: &SimDriver,
    dst: DeviceAddr,
    src: DeviceAddr,
    bytes: usize,
    stream: StreamId,
) -> p2p_core::Result<()> {
    // SAFETY: the tests pass live allocations (or deliberately bad ones, which the simulator rejects).
    unsafe { driver.copy_peer_async(dst, src, bytes, stream) }
}

pub(crate) fn is_cuda_error(result: p2p_core::Result<impl std::fmt::Debug>, wanted: &str) -> bool {
    matches!(result, Err(Error::Cuda { ref name, .. }) if name == wanted)
}

/// Copies `len` pattern bytes from `from` to `to` and returns what arrived.
pub(crate) fn deliver(
    driver: &SimDriver,
    from: usize,
    to: usize,
    len: usize,
) -> (Vec<u8>, Vec<u8>) {
    let data = pattern(len, 0x5a);
    let src = upload(driver, from, &data, AllocKind::Plain);
    let dst = upload(driver, to, &vec![0xee; len], AllocKind::Plain);
    peer_copy(driver, dst, src, len, default_stream(to)).unwrap();
    driver.synchronize_stream(default_stream(to)).unwrap();
    (data, download(driver, dst, len))
}
