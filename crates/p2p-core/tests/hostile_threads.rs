//! Many threads at once: 16 threads asking for the verdicts of every pair
//! on two tables (two "processes") sharing one cache folder, then
//! downgrading a pair and re-checking cached verdicts while the others keep
//! asking. Never a panic or a hang, never `verified` for a broken pair or
//! after a downgrade, a readable cache with the newest word on every pair,
//! and nothing reported by the simulators.

mod support;

use std::path::Path;
use std::sync::{mpsc, Arc, Barrier};
use std::time::Duration;

use p2p_core::cache::{Fingerprint, VerdictCache};
use p2p_core::sim::{seeds, Fault, PeerSpec, Topology};
use p2p_core::{Config, PeerTable, Reason, SimDriver};
use support::{seeded, tiny_config};

/// 0, 1, 2 reach each other; 2 -> 3 delivers zeros, 1 -> 3 hangs, 3 -> 2 works.
fn topology() -> Topology {
    Topology::with_gpus(4)
        .named("hostile threads")
        .with_pair(0, 1)
        .with_pair(0, 2)
        .with_pair(1, 2)
        .with_fault(2, 3, Fault::Zeros)
        .with_fault(1, 3, Fault::Hang)
        .with_peer(PeerSpec::new(3, 2))
}

const BROKEN: [(usize, usize); 2] = [(2, 3), (1, 3)];
const DOWNGRADED: (usize, usize) = (0, 1);
/// Healthy pairs that fresh tables re-check from the cache during the downgrades.
const RECHECKED: [(usize, usize); 3] = [(0, 2), (2, 0), (3, 2)];
const THREADS: usize = 16;

fn machine(seed: u64) -> Arc<SimDriver> {
    seeded(topology(), seed)
}

fn config(dir: &Path) -> Config {
    tiny_config(Some(dir))
}

fn pairs() -> impl Iterator<Item = (usize, usize)> {
    (0..4).flat_map(|a| (0..4).map(move |b| (a, b)))
}

/// Every pair's verdict from `table`, in an order that depends on `thread`
/// (so that threads meet on different pairs); none broken is verified.
fn ask_everything(table: &PeerTable, thread: usize, downgraded: bool) {
    let all: Vec<_> = pairs().collect();
    for i in 0..all.len() {
        let (from, to) = all[(i * 7 + thread) % all.len()];
        let verdict = table.verdict(from, to).expect("no probe error here");
        assert!(
            !(BROKEN.contains(&(from, to)) && verdict.is_verified()),
            "thread {thread}: broken {from} -> {to} verified"
        );
        if downgraded && (from, to) == DOWNGRADED {
            assert!(!verdict.is_verified(), "thread {thread}: downgrade undone");
        }
        assert!(
            from != to || verdict.is_verified(),
            "cuda:{from} with itself"
        );
    }
}

fn one_round(seed: u64) {
    let dir = tempfile::tempdir().unwrap();
    let machines = [machine(seed), machine(seed.wrapping_add(1))];
    let tables: Vec<Arc<PeerTable>> = machines
        .iter()
        .map(|m| Arc::new(PeerTable::new(m.clone(), config(dir.path()))))
        .collect();
    let start = Arc::new(Barrier::new(THREADS));
    let downgraded = Arc::new(Barrier::new(THREADS));
    let workers: Vec<_> = (0..THREADS)
        .map(|thread| {
            let table = tables[thread % 2].clone();
            let machine = machines[thread % 2].clone();
            let (start, downgraded) = (start.clone(), downgraded.clone());
            let dir = dir.path().to_path_buf();
            std::thread::spawn(move || {
                start.wait();
                ask_everything(&table, thread, false);
                match thread / 2 {
                    // Two threads per table downgrade the same pair at once.
                    0 | 1 => {
                        let (from, to) = DOWNGRADED;
                        table
                            .downgrade(from, to, Reason::Timeout { after_ms: 1 })
                            .unwrap();
                        assert!(!table.verdict(from, to).unwrap().is_verified());
                        downgraded.wait();
                    }
                    // Two threads per table re-check cached verdicts with a
                    // fresh table on the same machine.
                    2 | 3 => {
                        downgraded.wait();
                        let fresh = PeerTable::new(machine, config(&dir));
                        for (from, to) in RECHECKED {
                            assert!(fresh.verdict(from, to).unwrap().is_verified());
                        }
                        for (from, to) in BROKEN {
                            assert!(!fresh.verdict(from, to).unwrap().is_verified());
                        }
                    }
                    _ => {
                        downgraded.wait();
                        ask_everything(&table, thread, true);
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().expect("a worker thread panicked");
    }
    for table in &tables {
        assert_eq!(
            table.known(DOWNGRADED.0, DOWNGRADED.1).map(|v| v.reason),
            Some(Reason::Timeout { after_ms: 1 })
        );
        assert!(!table.peer_access().is_enabled(DOWNGRADED.0, DOWNGRADED.1));
    }
    let entries = VerdictCache::new(dir.path(), Fingerprint::of(machines[0].as_ref())).load();
    assert_eq!(entries.len(), 12, "every distinct pair, once: {entries:?}");
    for e in &entries {
        let pair = (e.verdict.from, e.verdict.to);
        assert!(
            !(BROKEN.contains(&pair) && e.verdict.is_verified()),
            "{e:?}"
        );
        if pair == DOWNGRADED {
            assert_eq!(e.verdict.reason.name(), "timeout", "the newest word");
        }
    }
    drop(tables);
    for m in &machines {
        if let Err(problems) = m.check_clean() {
            panic!("{problems}");
        }
        // Only what the hung pair's probes keep (one probe per table: the
        // fresh tables know the hang from the cache).
        let hung = m.stats().peer_copies_between(1, 3) as usize;
        assert!(hung <= 1, "1 -> 3 probed {hung} times in one process");
        assert!(m.stats().live_device_allocations <= 2 * hung);
        assert_eq!(m.stats().live_pinned_allocations, 0);
    }
}

#[test]
fn sixteen_threads_two_tables_one_cache() {
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || {
        for seed in seeds().into_iter().take(3) {
            one_round(seed);
        }
        let _ = done.send(());
    });
    match finished.recv_timeout(Duration::from_secs(60)) {
        Ok(()) => {}
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("a round failed (see above)"),
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("hung"),
    }
}
