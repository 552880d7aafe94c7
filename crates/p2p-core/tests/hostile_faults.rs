//! A driver that fails one call, for every call of a probe, a `probe_all`,
//! a re-check of a cached verdict and a downgrade: never a panic or a hang,
//! never `verified` for a broken path, nothing cached that was not found,
//! no memory leaked but what a hung copy must keep, and no report from the
//! simulator.
//!
//! Each operation first runs clean, counting its calls of every kind; then
//! once per call, with that call failing (the `n`th call of its kind is the
//! `m`th call overall, so this is every call, and the failing kind is
//! known). The schedule is seeded, so the calls before the failing one are
//! those of the clean run.

mod support;

use std::path::Path;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use p2p_core::cache::{Fingerprint, VerdictCache};
use p2p_core::sim::{seeds, CallCounts, CallKind, Fault, Topology};
use p2p_core::{
    probe_pair, AllocKind, Config, Driver, PeerTable, PeerVerdict, Reason, SimDriver, StreamId,
};
use support::{seeded, tiny_config, tiny_probes};

/// 0 <-> 1 healthy; 1 -> 2 delivers zeros and 0 -> 2 hangs (their reverses
/// are not claimed, so nothing else opens their path).
fn topology() -> Topology {
    Topology::with_gpus(3)
        .named("hostile faults")
        .with_pair(0, 1)
        .with_fault(1, 2, Fault::Zeros)
        .with_fault(0, 2, Fault::Hang)
}

const BROKEN: [(usize, usize); 2] = [(1, 2), (0, 2)];
const HUNG: (usize, usize) = (0, 2);

fn config(dir: Option<&Path>, thorough: bool) -> Config {
    Config {
        probe: tiny_probes(thorough),
        ..tiny_config(dir)
    }
}

fn machine(seed: u64) -> Arc<SimDriver> {
    seeded(topology(), seed)
}

/// One run of an operation: its machine, and the failure planned in it.
struct Run {
    sim: Arc<SimDriver>,
    failing: Option<(CallKind, u64)>,
    armed_at: std::cell::RefCell<Option<CallCounts>>,
}

impl Run {
    /// Plans the failure (if any) from now on: the operation's setup is done.
    fn arm(&self) {
        *self.armed_at.borrow_mut() = Some(self.sim.call_counts());
        if let Some((kind, nth)) = self.failing {
            self.sim.fail_call(kind, nth);
        }
    }

    /// Calls made since [`Run::arm`].
    fn since_armed(&self) -> CallCounts {
        let armed = self.armed_at.borrow();
        let armed = armed.as_ref().expect("the body arms its run");
        self.sim.call_counts().since(armed)
    }

    /// Whether the planned failure has happened (false on the clean run).
    fn hit(&self) -> bool {
        self.failing
            .is_some_and(|(kind, nth)| self.since_armed().of(kind) >= nth)
    }

    /// Whether the failing call was of `kind` (a failed free keeps its memory).
    fn failed(&self, kind: CallKind) -> bool {
        self.hit() && self.failing.is_some_and(|(k, _)| k == kind)
    }

    fn label(&self) -> String {
        match self.failing {
            None => format!("clean run (seed {})", self.sim.seed()),
            Some((kind, nth)) => format!("call {kind} #{nth} failing (seed {})", self.sim.seed()),
        }
    }
}

/// Runs `body` clean, then once with each of its calls failing, under two
/// schedule seeds, on a watchdog thread: a hang fails the test.
fn sweep(name: &'static str, body: fn(&Run)) {
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || {
        for seed in seeds().into_iter().take(2) {
            let clean = Run {
                sim: machine(seed),
                failing: None,
                armed_at: Default::default(),
            };
            body(&clean);
            let counts = clean.since_armed();
            assert!(counts.total() > 0, "{name}: the operation made no call");
            for kind in CallKind::ALL {
                for nth in 1..=counts.of(kind) {
                    let run = Run {
                        sim: machine(seed),
                        failing: Some((kind, nth)),
                        armed_at: Default::default(),
                    };
                    body(&run);
                }
            }
        }
        let _ = done.send(());
    });
    // A panic on the thread drops `done` unsent: report it as the failure it is.
    match finished.recv_timeout(Duration::from_secs(60)) {
        Ok(()) => {}
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("{name}: a run failed (see above)"),
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{name}: hung"),
    }
}

/// Whether a copy `from -> to` queued now takes the direct peer path, that
/// is whether some code left peer access open for the pair.
fn path_open(sim: &SimDriver, from: usize, to: usize) -> bool {
    let before = sim.stats().peer_path_copies_between(from, to);
    let src = sim.alloc_device(from, 64, AllocKind::Plain).unwrap();
    let dst = sim.alloc_device(to, 64, AllocKind::Plain).unwrap();
    let stream = StreamId {
        device: from,
        raw: 0,
    };
    // SAFETY: both allocations hold 64 bytes and are freed after the synchronize.
    unsafe { sim.copy_peer_async(dst, src, 64, stream).unwrap() };
    sim.synchronize_stream(stream).unwrap();
    // SAFETY: allocated above, no work queued on them any more.
    unsafe {
        sim.free_device(src).unwrap();
        sim.free_device(dst).unwrap();
    }
    sim.stats().peer_path_copies_between(from, to) > before
}

/// What every run must leave: no `verified` for a broken path, broken
/// paths closed, memory freed (but a hung copy's and a failed free's), and
/// no simulator report. `verdicts` are what the operation returned or knows.
fn check_machine(run: &Run, verdicts: &[PeerVerdict]) {
    let label = run.label();
    for v in verdicts {
        assert!(
            !(BROKEN.contains(&(v.from, v.to)) && v.is_verified()),
            "{label}: broken {} -> {} judged verified",
            v.from,
            v.to
        );
    }
    if let Err(problems) = run.sim.check_clean() {
        panic!("{label}: {problems}");
    }
    let stats = run.sim.stats();
    // A copy on the hung path may keep its source and destination (and a
    // thorough probe stops at the first hang).
    let hung = stats.peer_copies_between(HUNG.0, HUNG.1) > 0;
    let device_allowed = 2 * usize::from(hung) + usize::from(run.failed(CallKind::FreeDevice));
    assert!(
        stats.live_device_allocations <= device_allowed,
        "{label}: {} device allocations left, {device_allowed} allowed",
        stats.live_device_allocations
    );
    let pinned_allowed = usize::from(run.failed(CallKind::FreePinned));
    assert!(
        stats.live_pinned_allocations <= pinned_allowed,
        "{label}: {} pinned allocations left, {pinned_allowed} allowed",
        stats.live_pinned_allocations
    );
    if !run.hit() && run.failing.is_some() {
        return; // the planned failure is still pending: no more driver calls
    }
    assert!(
        !path_open(&run.sim, 1, 2),
        "{label}: the broken direction 1 -> 2 was left open"
    );
}

fn probe_one(run: &Run, from: usize, to: usize, thorough: bool) {
    let driver: Arc<dyn Driver> = run.sim.clone();
    run.arm();
    let result = probe_pair(&driver, from, to, &tiny_probes(thorough));
    drop(driver);
    if run.failing.is_none() {
        let verdict = result.as_ref().expect("the clean probe succeeds");
        assert_eq!(
            verdict.is_verified(),
            !BROKEN.contains(&(from, to)),
            "clean probe of {from} -> {to}: {verdict:?}"
        );
    }
    check_machine(run, result.as_ref().ok().cloned().as_slice());
}

#[test]
fn a_failing_call_anywhere_in_a_probe_of_a_healthy_pair() {
    sweep("probe 0 -> 1", |run| probe_one(run, 0, 1, false));
    sweep("thorough probe 0 -> 1", |run| probe_one(run, 0, 1, true));
}

#[test]
fn a_failing_call_anywhere_in_a_probe_of_a_broken_pair() {
    sweep("probe 1 -> 2 (zeros)", |run| probe_one(run, 1, 2, false));
    sweep("thorough probe 1 -> 2", |run| probe_one(run, 1, 2, true));
    sweep("probe 0 -> 2 (hang)", |run| probe_one(run, 0, 2, false));
}

/// The cached entries of the table's cache folder, by pair.
fn cached_entries(dir: &Path, sim: &SimDriver) -> Vec<p2p_core::cache::CachedVerdict> {
    VerdictCache::new(dir, Fingerprint::of(sim)).load()
}

/// What a table knows must agree with what it opened and what it wrote: with
/// `fresh_cache` (the folder was empty) every cached entry is one the table
/// found, else only the entries of pairs it knows must say what it knows.
fn check_table(run: &Run, table: &PeerTable, dir: &Path, fresh_cache: bool) {
    let label = run.label();
    let n = table.device_count();
    let known: Vec<PeerVerdict> = (0..n)
        .flat_map(|a| (0..n).map(move |b| (a, b)))
        .filter_map(|(a, b)| table.known(a, b))
        .collect();
    for (from, to) in table.peer_access().enabled() {
        assert!(
            table.known(from, to).is_some_and(|v| v.is_verified()),
            "{label}: {from} -> {to} is open without a verified verdict"
        );
    }
    for entry in cached_entries(dir, &run.sim) {
        let (from, to) = (entry.verdict.from, entry.verdict.to);
        let held = table.known(from, to);
        if held.is_none() && !fresh_cache {
            continue;
        }
        assert_eq!(
            held.as_ref().map(|v| v.reason.name()),
            Some(entry.verdict.reason.name()),
            "{label}: the cache holds {from} -> {to} as {}, the table {held:?}",
            entry.verdict.reason.name()
        );
    }
    check_machine(run, &known);
}

#[test]
fn a_failing_call_anywhere_in_probe_all() {
    sweep("probe_all", |run| {
        let dir = tempfile::tempdir().unwrap();
        let table = PeerTable::new(run.sim.clone(), config(Some(dir.path()), false));
        run.arm();
        let result = table.probe_all();
        if run.failing.is_none() {
            assert_eq!(result.as_ref().map(Vec::len).unwrap_or(0), 6, "{result:?}");
        }
        check_table(run, &table, dir.path(), true);
        drop(table);
    });
}

/// A cache written by a clean machine of the same fingerprint, with every pair.
fn warm_cache(dir: &Path) {
    let sim = machine(0);
    let table = PeerTable::new(sim.clone(), config(Some(dir), false));
    table.probe_all().unwrap();
    drop(table);
    assert!(sim.check_clean().is_ok());
}

#[test]
fn a_failing_call_anywhere_in_the_recheck_of_a_cached_verdict() {
    sweep("re-check of a cached verified", |run| {
        let dir = tempfile::tempdir().unwrap();
        warm_cache(dir.path());
        let table = PeerTable::new(run.sim.clone(), config(Some(dir.path()), false));
        run.arm();
        let result = table.verdict(0, 1);
        if run.failing.is_none() {
            assert!(result.as_ref().is_ok_and(PeerVerdict::is_verified));
        }
        check_table(run, &table, dir.path(), false);
    });
    sweep("re-check of a cached verified that broke since", |run| {
        let dir = tempfile::tempdir().unwrap();
        warm_cache(dir.path());
        // Cached as verified, but delivering zeros now (no fingerprint sees it).
        run.sim
            .set_peer_fault(0, 1, p2p_core::sim::Fault::Zeros)
            .unwrap();
        let table = PeerTable::new(run.sim.clone(), config(Some(dir.path()), false));
        run.arm();
        let result = table.verdict(0, 1);
        let label = run.label();
        assert!(
            !result.as_ref().is_ok_and(PeerVerdict::is_verified),
            "{label}: a cached verified that now delivers zeros was trusted: {result:?}"
        );
        assert!(
            !table.known(0, 1).is_some_and(|v| v.is_verified()),
            "{label}"
        );
        for entry in cached_entries(dir.path(), &run.sim) {
            if (entry.verdict.from, entry.verdict.to) == (0, 1) && result.is_err() {
                // Nothing new was found: the old entry may stay, but the
                // process must not trust it (checked above).
                continue;
            }
            if (entry.verdict.from, entry.verdict.to) == (0, 1) {
                assert!(!entry.verdict.is_verified(), "{label}: cache kept verified");
            }
        }
        check_machine(run, result.as_ref().ok().cloned().as_slice());
        if run.hit() || run.failing.is_none() {
            assert!(!path_open(&run.sim, 0, 1), "{label}: 0 -> 1 left open");
        }
    });
}

#[test]
fn a_failing_call_anywhere_in_a_downgrade() {
    sweep("downgrade", |run| {
        let dir = tempfile::tempdir().unwrap();
        let table = PeerTable::new(run.sim.clone(), config(Some(dir.path()), false));
        assert!(table.verdict(0, 1).unwrap().is_verified());
        run.arm();
        let result = table.downgrade(0, 1, Reason::Timeout { after_ms: 7 });
        let label = run.label();
        if run.failing.is_none() {
            result.as_ref().expect("the clean downgrade succeeds");
        }
        assert_eq!(
            table.known(0, 1).map(|v| v.reason),
            Some(Reason::Timeout { after_ms: 7 }),
            "{label}: the downgrade is the verdict whatever failed ({result:?})"
        );
        let entries = cached_entries(dir.path(), &run.sim);
        let entry = entries
            .iter()
            .find(|e| (e.verdict.from, e.verdict.to) == (0, 1));
        assert_eq!(
            entry.map(|e| e.verdict.reason.name()),
            Some("timeout"),
            "{label}: the cache must hear of the downgrade"
        );
        check_table(run, &table, dir.path(), true);
        if result.is_ok() && (run.hit() || run.failing.is_none()) {
            assert!(!path_open(&run.sim, 0, 1), "{label}: 0 -> 1 left open");
        }
        // Later lookups keep the downgrade.
        if run.hit() || run.failing.is_none() {
            assert!(!table.verdict(0, 1).unwrap().is_verified(), "{label}");
        }
    });
}
