//! The `SimDriver` type: making a simulated machine, and the controls tests use (faults, failing calls, reports, the clock).
//!
//! It lives at the crate root (`p2p_core::SimDriver`, beside `CudaDriver`);
//! the rest of the simulator is the `sim` module.

use std::fmt;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use super::calls::injected_error;
use super::machine::Machine;
use super::{
    builtin_topology, CallCounts, CallKind, Execution, Fault, SimOptions, SimProblems, SimReport,
    SimStats, Topology,
};
#[cfg(doc)]
use super::{seeds, BUILTIN_TOPOLOGY, DEFAULT_SEED};
use crate::{DeviceInfo, Result};

/// A simulated machine: see the [`sim` module docs](crate::sim) for what it does.
pub struct SimDriver {
    pub(super) topology: Topology,
    pub(super) devices: Vec<DeviceInfo>,
    machine: Mutex<Machine>,
}

impl SimDriver {
    /// A machine as `topology` describes it, with nothing allocated or
    /// enabled, deferred, seeded from `P2P_SIM_SEED` or [`DEFAULT_SEED`].
    ///
    /// Parsed topologies are valid; in one built by hand, `[[peer]]` entries
    /// that name GPUs it does not have are ignored.
    pub fn new(topology: Topology) -> SimDriver {
        SimDriver::with_options(topology, SimOptions::default())
    }

    /// A machine as `topology` describes it, run as `options` say.
    ///
    /// Tests sweep the schedule seeds ([`seeds`]) and end with
    /// [`SimDriver::check_clean`], which fails on any race or use of memory
    /// the code under test did not wait for. Here two streams fill one
    /// buffer with nothing ordering them:
    ///
    /// ```
    /// use std::sync::Arc;
    /// use p2p_core::memory::{DeviceBuffer, Stream};
    /// use p2p_core::sim::{builtin_topology, ReportKind, SimOptions};
    /// use p2p_core::{AllocKind, Driver, SimDriver};
    ///
    /// let sim = Arc::new(SimDriver::with_options(builtin_topology(), SimOptions::default().seed(3)));
    /// let driver: Arc<dyn Driver> = sim.clone();
    /// let buffer = DeviceBuffer::new(&driver, 0, 256, AllocKind::Plain)?;
    /// let (a, b) = (Stream::new(&driver, 0)?, Stream::new(&driver, 0)?);
    /// // SAFETY: `buffer` holds 256 bytes and outlives both synchronizes below.
    /// unsafe {
    ///     driver.memset_async(buffer.ptr(), 1, 256, a.id())?;
    ///     driver.memset_async(buffer.ptr(), 2, 256, b.id())?; // no event orders it after the first
    /// }
    /// a.synchronize()?;
    /// b.synchronize()?;
    ///
    /// let problems = sim.check_clean().unwrap_err();
    /// println!("{problems}"); // the race, both operations, and the seed that replays it
    /// assert!(problems.reports.iter().any(|report| report.kind == ReportKind::Race));
    /// # Ok::<(), p2p_core::Error>(())
    /// ```
    pub fn with_options(topology: Topology, options: SimOptions) -> SimDriver {
        SimDriver {
            devices: topology.device_infos(),
            machine: Mutex::new(Machine::new(&topology, &options)),
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

    /// The demo machine of [`BUILTIN_TOPOLOGY`]: four GPUs, every pair
    /// claimed, and `2 -> 3` delivering zeros.
    pub fn builtin() -> SimDriver {
        SimDriver::new(builtin_topology())
    }

    /// The machine as described (faults as at start; see [`SimDriver::set_peer_fault`]).
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// The machine's name from the topology file.
    pub fn machine_name(&self) -> &str {
        &self.topology.machine_name
    }

    /// The schedule seed (print it to replay a failure: `P2P_SIM_SEED=<seed>`).
    pub fn seed(&self) -> u64 {
        self.lock().seed
    }

    /// Gives the direction `from -> to` a new fault (for copies queued from now on).
    pub fn set_peer_fault(&self, from: usize, to: usize, fault: Fault) -> Result<()> {
        self.lock().set_fault(from, to, fault)
    }

    /// Counters of what the machine has done so far.
    pub fn stats(&self) -> SimStats {
        self.lock().stats()
    }

    /// Everything the race detector and the memory checks have reported so far.
    pub fn reports(&self) -> Vec<SimReport> {
        let mut machine = self.lock();
        machine.reports.looked_at = true;
        machine.reports.kept.clone()
    }

    /// `Ok` if nothing has been reported; else every report and the seed that replays the schedule.
    pub fn check_clean(&self) -> std::result::Result<(), SimProblems> {
        let mut machine = self.lock();
        machine.reports.looked_at = true;
        if machine.reports.kept.is_empty() && machine.reports.dropped == 0 {
            return Ok(());
        }
        Err(SimProblems {
            seed: machine.seed,
            reports: machine.reports.kept.clone(),
            dropped: machine.reports.dropped,
        })
    }

    /// Makes the `nth` driver call of `kind` from now (1 = the next one;
    /// [`CallKind::Any`]: of any kind) fail without doing anything. `nth` 0
    /// plans nothing. Several plans may be pending at once.
    pub fn fail_call(&self, kind: CallKind, nth: u64) {
        self.lock().calls.plan_failure(kind, nth);
    }

    /// How many driver calls of each kind this machine has seen.
    pub fn call_counts(&self) -> CallCounts {
        self.lock().calls.counts()
    }

    /// The next `n` completion queries (`event_done`, `stream_done`, and each
    /// poll of `wait_event`/`wait_stream`) answer "not yet" even when the work is done.
    pub fn slow_queries(&self, n: u64) {
        self.lock().calls.slow_queries = n;
    }

    /// Runs everything that can run now (not late copies before their time, nor hung ones).
    pub fn settle(&self) {
        self.lock().run_all();
    }

    /// The host's virtual clock, in nanoseconds since the machine was made.
    pub fn virtual_now_ns(&self) -> u64 {
        self.lock().host_ns
    }

    /// Operations queued and not yet run, on all streams.
    pub fn queued_operations(&self) -> usize {
        self.lock()
            .streams
            .map
            .values()
            .map(|stream| stream.queue.len())
            .sum()
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Machine> {
        // The state stays consistent across a panic (every operation checks
        // before it changes anything), so a poisoned lock is still usable.
        self.machine
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// One driver call of `kind`: counted, maybe failed on purpose, with the
    /// scheduler's background work before it and, in eager mode, everything
    /// runnable after it.
    pub(super) fn call<T>(
        &self,
        kind: CallKind,
        call: &'static str,
        bytes: usize,
        body: impl FnOnce(&mut Machine) -> Result<T>,
    ) -> Result<T> {
        let mut machine = self.lock();
        let fails = machine.calls.enter(kind);
        machine.background();
        if fails {
            return Err(injected_error(kind, call, bytes));
        }
        let result = body(&mut machine);
        if machine.execution == Execution::Eager {
            machine.run_all();
        }
        result
    }
}

impl Drop for SimDriver {
    /// A machine dropped with problems nobody looked at says so on stderr
    /// (a test that forgot [`SimDriver::check_clean`] still leaves a trace
    /// under `--nocapture`).
    fn drop(&mut self) {
        let machine = self.lock();
        if machine.reports.looked_at || machine.reports.kept.is_empty() {
            return;
        }
        let problems = SimProblems {
            seed: machine.seed,
            reports: machine.reports.kept.clone(),
            dropped: machine.reports.dropped,
        };
        eprintln!(
            "simulated machine {:?} dropped unchecked: {problems}",
            self.topology.machine_name
        );
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
