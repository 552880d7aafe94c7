//! Running a test body once per schedule seed, on fresh simulated machines checked clean after each run.
//!
//! A test of code that queues GPU work should pass on every order the
//! deferred simulator can choose, not just one: [`for_each_seed`] runs its
//! body once per seed of [`seeds`], hands it a [`SeedRun`] that makes
//! machines under that seed, and after each run checks every machine it
//! made ([`SimDriver::check_clean`]). A body that forgets a wait fails
//! under some seed, and the failure names the seed that replays it:
//!
//! ```
//! use std::sync::Arc;
//! use p2p_core::memory::{DeviceBuffer, Stream};
//! use p2p_core::sim::{for_each_seed, Topology};
//! use p2p_core::{AllocKind, Driver};
//!
//! let topology = Topology::fully_connected(2);
//! for_each_seed(|run| {
//!     let driver: Arc<dyn Driver> = run.machine(&topology);
//!     let stream = Stream::new(&driver, 1).unwrap();
//!     let mut buffer = DeviceBuffer::new(&driver, 1, 4096, AllocKind::Plain).unwrap();
//!     buffer.write_from_slice(&[7; 4096], &stream).unwrap();
//!     assert_eq!(buffer.read_to_vec(&stream).unwrap(), vec![7; 4096]);
//! })?;
//! # Ok::<(), p2p_core::sim::SimProblems>(())
//! ```

use std::sync::{Arc, Mutex};

use super::options::{seeds, SimOptions};
use super::report::SimProblems;
use super::topology::Topology;
use super::SimDriver;

/// One run of [`for_each_seed`]: its schedule seed, and the machines made
/// for it, which [`SeedRun::check`] (called by `for_each_seed` after the
/// body) checks clean.
#[derive(Debug)]
pub struct SeedRun {
    seed: u64,
    machines: Mutex<Vec<Arc<SimDriver>>>,
}

impl SeedRun {
    /// A run under `seed`, for a test that wants one particular schedule
    /// (and calls [`SeedRun::check`] itself).
    pub fn new(seed: u64) -> SeedRun {
        SeedRun {
            seed,
            machines: Mutex::new(Vec::new()),
        }
    }

    /// The schedule seed of this run.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// A fresh deferred machine of `topology` under this run's seed, checked
    /// clean with the others.
    pub fn machine(&self, topology: &Topology) -> Arc<SimDriver> {
        self.machine_with(topology, SimOptions::default())
    }

    /// A fresh machine of `topology` run as `options` say, but under this
    /// run's seed, checked clean with the others.
    pub fn machine_with(&self, topology: &Topology, options: SimOptions) -> Arc<SimDriver> {
        let sim = Arc::new(SimDriver::with_options(
            topology.clone(),
            options.seed(self.seed),
        ));
        self.lock().push(sim.clone());
        sim
    }

    /// `Ok` if no machine made so far saw a problem; else the first one's
    /// problems (with the seed to replay them).
    pub fn check(&self) -> Result<(), SimProblems> {
        self.lock().iter().try_for_each(|sim| sim.check_clean())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<SimDriver>>> {
        // A body that panicked on another thread leaves the list as it was.
        self.machines
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Runs `body` once per seed of [`seeds`] (a handful; `P2P_SIM_SEEDS=N`
/// for more, `P2P_SIM_SEED=S` for one), each time with a fresh [`SeedRun`],
/// and checks the machines of each run after it. Stops at the first run
/// whose machines saw a race, a use of freed memory or a borrow released
/// under queued work, and returns those problems.
///
/// When `body` panics, the panic goes on, and stderr names the seed it
/// happened under (`P2P_SIM_SEED=<seed>` replays it).
pub fn for_each_seed(mut body: impl FnMut(&SeedRun)) -> Result<(), SimProblems> {
    for seed in seeds() {
        let guard = SeedOnPanic(seed);
        let run = SeedRun::new(seed);
        body(&run);
        drop(guard);
        run.check()?;
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{seeds, ReportKind};
    use crate::{AllocKind, Driver, StreamId};

    /// Two unordered fills of one buffer: a race on every seed.
    fn race(sim: &SimDriver) {
        let buffer = sim.alloc_device(0, 64, AllocKind::Plain).unwrap();
        let (a, b) = (sim.create_stream(0).unwrap(), sim.create_stream(0).unwrap());
        // SAFETY: `buffer` holds 64 bytes and is never freed before the synchronizes.
        unsafe {
            sim.memset_async(buffer, 1, 64, a).unwrap();
            sim.memset_async(buffer, 2, 64, b).unwrap();
        }
        sim.synchronize_stream(a).unwrap();
        sim.synchronize_stream(b).unwrap();
    }

    #[test]
    fn every_seed_runs_on_its_own_machines() {
        let mut seen = Vec::new();
        for_each_seed(|run| {
            let sim = run.machine(&Topology::with_gpus(1));
            assert_eq!(sim.seed(), run.seed());
            seen.push(run.seed());
        })
        .unwrap();
        assert_eq!(seen, seeds());
    }

    #[test]
    fn a_problem_stops_the_sweep_and_names_its_seed() {
        let mut runs = 0;
        let problems = for_each_seed(|run| {
            runs += 1;
            run.machine(&Topology::with_gpus(1));
            race(&run.machine(&Topology::with_gpus(1)));
        })
        .unwrap_err();
        assert_eq!(runs, 1, "the sweep stops at the first run with problems");
        assert_eq!(problems.seed, seeds()[0]);
        assert!(problems
            .reports
            .iter()
            .any(|report| report.kind == ReportKind::Race));
    }

    #[test]
    fn a_run_checks_every_machine_it_made() {
        let run = SeedRun::new(3);
        let clean = run.machine(&Topology::with_gpus(1));
        clean
            .synchronize_stream(StreamId { device: 0, raw: 0 })
            .unwrap();
        assert_eq!(run.check(), Ok(()));
        let eager = run.machine_with(
            &Topology::with_gpus(1),
            SimOptions::default()
                .seed(99)
                .execution(crate::sim::Execution::Eager),
        );
        assert_eq!(eager.seed(), 3, "the run's seed wins over the options'");
        race(&eager);
        assert_eq!(run.check().unwrap_err().seed, 3);
    }
}
