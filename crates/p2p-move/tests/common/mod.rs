//! Shared helpers of the executor tests: machines, patterns, and the macro
//! that runs one body on every backend.

#![allow(dead_code)] // each test binary uses a different subset

use std::sync::Arc;
use std::time::Duration;

use p2p_core::memory::{DeviceBuffer, Stream};
use p2p_core::pattern::first_mismatch;
use p2p_core::sim::{SimOptions, Topology};
use p2p_core::{AllocKind, Config, Driver, ProbeOptions, SimDriver};

pub(crate) use p2p_core::pattern::bytes as pattern;

/// Four simulated GPUs of 512 MiB, all pairs fine: the executor tests force routes by policy.
pub(crate) fn healthy() -> Topology {
    let mut topology = Topology::fully_connected(4).named("four healthy GPUs");
    for gpu in &mut topology.gpus {
        gpu.memory_mib = 512;
    }
    topology
}

/// The healthy machine, deferred, under schedule seed `seed`.
pub(crate) fn sim_seeded(seed: u64) -> Arc<SimDriver> {
    Arc::new(SimDriver::with_options(
        healthy(),
        SimOptions::default().seed(seed),
    ))
}

/// The healthy machine under the default seed (for tests that run once).
pub(crate) fn sim_machine() -> Arc<dyn Driver> {
    sim_seeded(p2p_core::sim::DEFAULT_SEED)
}

/// Fails with every report (and the seed that replays it) if `sim` saw a
/// race, a use of freed memory, or a borrow released under a queued op.
pub(crate) fn assert_clean(sim: &SimDriver) {
    if let Err(problems) = sim.check_clean() {
        panic!("{problems}");
    }
}

/// Runs `body` on a fresh deferred healthy machine per schedule seed
/// ([`p2p_core::sim::for_each_seed`]), failing with every report, and the
/// seed, if one saw a problem.
pub(crate) fn for_each_seed(body: impl Fn(Arc<SimDriver>)) {
    let topology = healthy();
    let swept = p2p_core::sim::for_each_seed(|run| body(run.machine(&topology)));
    if let Err(problems) = swept {
        panic!("{problems}");
    }
}

#[cfg(feature = "cuda-tests")]
pub(crate) fn cuda_machine() -> Arc<dyn Driver> {
    match p2p_core::CudaDriver::new() {
        Ok(driver) => Arc::new(driver),
        Err(err) => panic!("[Unsupported: needs a CUDA GPU] {err}"),
    }
}

/// Fails (never passes silently) on a machine with too few GPUs.
pub(crate) fn require_gpus(driver: &Arc<dyn Driver>, n: usize) {
    let have = driver.device_count();
    assert!(have >= n, "[Unsupported: needs {n} GPUs, found {have}]");
}

/// Quick probes ([`ProbeOptions::quick`]) with a 500 ms deadline, no cache.
pub(crate) fn test_config() -> Config {
    Config {
        probe: ProbeOptions {
            deadline: Duration::from_millis(500),
            ..ProbeOptions::quick()
        },
        ..Config::default()
    }
}

pub(crate) fn complement(data: &[u8]) -> Vec<u8> {
    data.iter().map(|b| !b).collect()
}

pub(crate) fn device_with(
    driver: &Arc<dyn Driver>,
    device: usize,
    data: &[u8],
    kind: AllocKind,
) -> DeviceBuffer {
    let stream = Stream::new(driver, device).unwrap();
    DeviceBuffer::from_slice(driver, data, kind, &stream).unwrap()
}

pub(crate) fn read(driver: &Arc<dyn Driver>, buffer: &DeviceBuffer) -> Vec<u8> {
    buffer
        .read_to_vec(&Stream::new(driver, buffer.device()).unwrap())
        .unwrap()
}

/// Compares without printing megabytes on failure.
pub(crate) fn assert_bytes(found: &[u8], expected: &[u8], what: &str) {
    if let Some(mismatch) = first_mismatch(expected, found) {
        panic!("{what}: {mismatch} (of {} bytes)", expected.len());
    }
}

/// One `#[test]` per body on the simulated machine (deferred, over every
/// schedule seed, checked clean), and one on CUDA when
/// the `cuda-tests` feature is on (candle's `test_device!` in spirit).
/// `ignore = "why"` ignores the CUDA variants (needs hardware the usual GPU
/// machine lacks); the simulated ones always run.
#[macro_export]
macro_rules! backend_tests {
    ($group:ident => $($body:ident),+ $(,)?) => {
        $crate::backend_tests!(@expand $group, cfg_attr(any(), ignore), $($body),+);
    };
    ($group:ident, ignore = $why:literal => $($body:ident),+ $(,)?) => {
        $crate::backend_tests!(@expand $group, ignore = $why, $($body),+);
    };
    (@expand $group:ident, $cuda_attr:meta, $($body:ident),+) => {
        mod $group {
            mod sim {
                $(
                    #[test]
                    fn $body() {
                        $crate::common::for_each_seed(|sim| super::super::$body(sim));
                    }
                )+
            }
            #[cfg(feature = "cuda-tests")]
            mod cuda {
                $(
                    #[test]
                    #[$cuda_attr]
                    fn $body() {
                        super::super::$body($crate::common::cuda_machine());
                    }
                )+
            }
        }
    };
}

pub(crate) mod watched;
