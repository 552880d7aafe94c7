//! Shared helpers of the executor tests: machines, patterns, and the macro
//! that runs one body on every backend.

#![allow(dead_code)] // each test binary uses a different subset

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use p2p_core::memory::{DeviceBuffer, Stream};
use p2p_core::sim::{seeds, SimOptions, Topology};
use p2p_core::{AllocKind, Config, Driver, ProbeOptions, SimDriver};

/// Four simulated GPUs, all pairs fine: the executor tests force routes by policy.
pub(crate) const HEALTHY: &str = r#"
[machine]
name = "four healthy GPUs"
[[gpu]]
memory_mib = 512
[[gpu]]
memory_mib = 512
[[gpu]]
memory_mib = 512
[[gpu]]
memory_mib = 512
[[peer]]
from = 0
to = 1
both = true
[[peer]]
from = 0
to = 2
both = true
[[peer]]
from = 0
to = 3
both = true
[[peer]]
from = 1
to = 2
both = true
[[peer]]
from = 1
to = 3
both = true
[[peer]]
from = 2
to = 3
both = true
"#;

/// The healthy machine, deferred, under schedule seed `seed`.
pub(crate) fn sim_seeded(seed: u64) -> Arc<SimDriver> {
    let topology = Topology::parse(HEALTHY, Path::new("healthy.toml")).unwrap();
    Arc::new(SimDriver::with_options(
        topology,
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

/// Runs `body` on a fresh deferred machine per schedule seed of
/// [`seeds`], checking each clean; a failure names its seed.
pub(crate) fn for_each_seed(body: impl Fn(Arc<SimDriver>)) {
    for seed in seeds() {
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
        let guard = SeedOnPanic(seed);
        let sim = sim_seeded(seed);
        body(sim.clone());
        assert_clean(&sim);
        drop(guard);
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

pub(crate) fn test_config() -> Config {
    Config {
        probe: ProbeOptions {
            deadline: Duration::from_millis(500),
            pattern_bytes: 256 << 10,
            ..ProbeOptions::default()
        },
        ..Config::default()
    }
}

pub(crate) fn pattern(len: usize, seed: u64) -> Vec<u8> {
    p2p_core::probe::probe_pattern(len, seed)
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
    let mut buffer = DeviceBuffer::new(driver, device, data.len(), kind).unwrap();
    buffer
        .write_from_slice(data, &Stream::new(driver, device).unwrap())
        .unwrap();
    buffer
}

pub(crate) fn read(driver: &Arc<dyn Driver>, buffer: &DeviceBuffer) -> Vec<u8> {
    buffer
        .read_to_vec(&Stream::new(driver, buffer.device()).unwrap())
        .unwrap()
}

/// Compares without printing megabytes on failure.
pub(crate) fn assert_bytes(found: &[u8], expected: &[u8], what: &str) {
    assert_eq!(found.len(), expected.len(), "{what}: length");
    if let Some(i) = found.iter().zip(expected).position(|(a, b)| a != b) {
        panic!(
            "{what}: byte {i} of {} is {:#04x}, expected {:#04x}",
            found.len(),
            found[i],
            expected[i]
        );
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
