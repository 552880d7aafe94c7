//! Helpers shared by p2p-core's integration tests: the seed sweep that
//! fails a test, the small machines, probe settings, and driver shortcuts.

// Each test crate uses a different subset of these helpers.
#![allow(dead_code)]

use std::path::Path;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use p2p_core::memory::{DeviceBuffer, Stream};
use p2p_core::pattern;
use p2p_core::sim::{Execution, PeerSpec, SimOptions, Topology};
use p2p_core::{
    AllocKind, CacheSetting, Config, DeviceAddr, Driver, Error, ProbeOptions, SimDriver, StreamId,
};

pub(crate) use p2p_core::sim::SeedRun;

#[cfg(feature = "cuda-tests")]
pub(crate) mod cuda;

/// Runs `body` once per schedule seed ([`p2p_core::sim::for_each_seed`]),
/// and fails the test with every report if a machine it made saw a race or
/// a memory problem.
pub(crate) fn for_each_seed(body: impl FnMut(&SeedRun)) {
    if let Err(problems) = p2p_core::sim::for_each_seed(body) {
        panic!("{problems}");
    }
}

/// Fails the test if a machine of `run` saw a problem (for tests that run one seed).
pub(crate) fn check(run: &SeedRun) {
    if let Err(problems) = run.check() {
        panic!("{problems}");
    }
}

/// Three GPUs "A", "B", "C" (driver 12040): 0 <-> 1 healthy at 50 GB/s,
/// 1 -> 2 claimed at 40 GB/s with a fault set per test, 2 -> 1 fine,
/// nothing between 0 and 2; gpu 1 copies to and from the host at 20 GB/s,
/// the others at 25; gpu 2 has 1 MiB of memory.
pub(crate) fn three_gpus() -> Topology {
    let mut topology = Topology::with_gpus(3)
        .named("test box")
        .with_pair(0, 1)
        .with_peer(PeerSpec {
            gbps: 40.0,
            ..PeerSpec::new(1, 2)
        })
        .with_peer(PeerSpec::new(2, 1));
    topology.driver_version = 12040;
    for (gpu, name) in topology.gpus.iter_mut().zip(["A", "B", "C"]) {
        gpu.name = name.to_string();
    }
    topology.gpus[1].host_gbps = 20.0;
    topology.gpus[2].memory_mib = 1;
    topology
}

/// A deferred machine of `topology` under `seed`, for a test that checks it itself.
pub(crate) fn seeded(topology: Topology, seed: u64) -> Arc<SimDriver> {
    Arc::new(SimDriver::with_options(
        topology,
        SimOptions::default().seed(seed),
    ))
}

/// [`three_gpus`] under `seed`, run as `execution` says, for a test that
/// makes problems on purpose: not checked.
pub(crate) fn unchecked(seed: u64, execution: Execution) -> SimDriver {
    SimDriver::with_options(
        three_gpus(),
        SimOptions::default().seed(seed).execution(execution),
    )
}

/// Quick probes ([`ProbeOptions::quick`]), with the cache in `dir` or none.
pub(crate) fn quick_config(dir: Option<&Path>) -> Config {
    Config {
        cache: dir.map_or(CacheSetting::Off, |dir| {
            CacheSetting::Dir(dir.to_path_buf())
        }),
        probe: ProbeOptions::quick(),
        ..Config::default()
    }
}

/// Probes of a few KiB, for tests that repeat an operation once per
/// driver call it makes (thorough ones time 8 KiB).
pub(crate) fn tiny_probes(thorough: bool) -> ProbeOptions {
    ProbeOptions {
        deadline: Duration::from_millis(50),
        pattern_bytes: 4 << 10,
        thorough,
        thorough_bytes: 8 << 10,
    }
}

/// [`tiny_probes`] (not thorough), with the cache in `dir` or none.
pub(crate) fn tiny_config(dir: Option<&Path>) -> Config {
    Config {
        probe: tiny_probes(false),
        ..quick_config(dir)
    }
}

/// Fails (never passes) on a machine with fewer than `n` devices: a GPU
/// test that found too few GPUs must not count as passed.
pub(crate) fn require_gpus(driver: &Arc<dyn Driver>, n: usize) {
    let have = driver.device_count();
    assert!(have >= n, "[Unsupported: needs {n} GPUs, found {have}]");
}

/// Runs `work` on a thread and fails the test if it takes more than 20 s
/// (or panics): a hang becomes a failure, not a stuck test run.
pub(crate) fn within_20s<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    let (done, wait) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(work());
    });
    wait.recv_timeout(Duration::from_secs(20))
        .expect("hung (or panicked)")
}

pub(crate) fn default_stream(device: usize) -> StreamId {
    StreamId { device, raw: 0 }
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
    let data = pattern::bytes(len, 0x5a);
    let src = upload(driver, from, &data, AllocKind::Plain);
    let dst = upload(driver, to, &vec![0xee; len], AllocKind::Plain);
    peer_copy(driver, dst, src, len, default_stream(to)).unwrap();
    driver.synchronize_stream(default_stream(to)).unwrap();
    (data, download(driver, dst, len))
}

/// What another library in the process does: a plain `cuMemcpyPeerAsync`
/// of `len` bytes from `from` to `to`, trusting the driver. Whether the
/// bytes arrived.
pub(crate) fn foreign_copy_is_correct(
    driver: &Arc<dyn Driver>,
    (from, to): (usize, usize),
    len: usize,
) -> bool {
    let data = pattern::bytes(len, 0xF0_4E16);
    let mut src = DeviceBuffer::new(driver, from, len, AllocKind::Plain).unwrap();
    let mut dst = DeviceBuffer::new(driver, to, len, AllocKind::Plain).unwrap();
    let src_stream = Stream::new(driver, from).unwrap();
    let dst_stream = Stream::new(driver, to).unwrap();
    src.write_from_slice(&data, &src_stream).unwrap();
    dst.write_from_slice(&vec![0xEE; len], &dst_stream).unwrap();
    // SAFETY: both buffers hold `len` bytes and outlive the synchronize.
    unsafe {
        driver
            .copy_peer_async(dst.ptr(), src.ptr(), len, src_stream.id())
            .unwrap()
    };
    src_stream.synchronize().unwrap();
    dst.read_to_vec(&dst_stream).unwrap() == data
}
