//! The verdict cache under stress: concurrent writers, stale entries, dead
//! writers' leftovers, hostile files, changed machines, failing probes and
//! verdicts that should not last. Every test runs over every schedule seed
//! and ends with the simulator's clean check.

mod support;

use std::path::Path;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use p2p_core::cache::{Fingerprint, VerdictCache};
use p2p_core::memory::DeviceBuffer;
use p2p_core::sim::{Fault, PeerSpec, Topology};
use p2p_core::{
    AllocKind, Config, Driver, Error, PeerTable, Reason, SimDriver, RETRY_BACKOFF_FIRST,
};
use support::{for_each_seed, quick_config, within_20s};

/// Five GPUs: 0 <-> 1 and 0 <-> 2 work, 0 -> 3 hangs, 1 -> 3 cannot be enabled,
/// 2 -> 3 and 3 -> 4 work; GPU 4 has 1 MiB of memory.
fn topology() -> Topology {
    let mut topology = Topology::with_gpus(5)
        .named("cache tests")
        .with_pair(0, 1)
        .with_pair(0, 2)
        .with_fault(0, 3, Fault::Hang)
        .with_fault(1, 3, Fault::EnableFails)
        .with_peer(PeerSpec::new(2, 3))
        .with_peer(PeerSpec::new(3, 4));
    topology.gpus[4].memory_mib = 1;
    topology
}

/// The eight distinct pairs of the concurrent writers (none hangs).
const EIGHT_PAIRS: [(usize, usize); 8] = [
    (0, 1),
    (1, 0),
    (0, 2),
    (2, 0),
    (1, 2),
    (2, 3),
    (1, 3),
    (3, 4),
];

/// The cache file of `topology` in `dir` (its fingerprint from a machine that does no work).
fn file_of(dir: &Path, topology: &Topology) -> VerdictCache {
    VerdictCache::new(dir, Fingerprint::of(&SimDriver::new(topology.clone())))
}

#[test]
fn eight_concurrent_writers_keep_all_eight_verdicts() {
    for_each_seed(|s| {
        for round in 0..4 {
            let dir = tempfile::tempdir().unwrap();
            let barrier = Arc::new(Barrier::new(EIGHT_PAIRS.len()));
            let writers: Vec<_> = EIGHT_PAIRS
                .iter()
                .map(|&(from, to)| {
                    let (barrier, dir) = (barrier.clone(), dir.path().to_path_buf());
                    // Each "process" has its own machine and table.
                    let machine = s.machine(&topology());
                    std::thread::spawn(move || {
                        let table = PeerTable::new(machine, quick_config(Some(&dir)));
                        barrier.wait();
                        table.verdict(from, to).unwrap();
                    })
                })
                .collect();
            for writer in writers {
                writer.join().unwrap();
            }
            let mut kept: Vec<_> = file_of(dir.path(), &topology())
                .load()
                .iter()
                .map(|e| (e.verdict.from, e.verdict.to))
                .collect();
            kept.sort();
            let mut all = EIGHT_PAIRS.to_vec();
            all.sort();
            assert_eq!(kept, all, "round {round}: a writer's verdict was lost");
        }
    });
}

#[test]
fn a_reprobe_is_not_undone_by_a_stale_writer() {
    for_each_seed(|s| {
        let dir = tempfile::tempdir().unwrap();
        PeerTable::new(s.machine(&topology()), quick_config(Some(dir.path())))
            .verdict(0, 1)
            .unwrap();
        // A long-lived process read `0 -> 1 verified` at its start.
        let stale = PeerTable::new(s.machine(&topology()), quick_config(Some(dir.path())));
        assert!(stale.verdict(0, 1).unwrap().is_verified());
        // Then the pair broke and another process re-probed it.
        let broken = s.machine(&topology());
        broken.set_peer_fault(0, 1, Fault::Zeros).unwrap();
        let reprobe = Config {
            reprobe: true,
            ..quick_config(Some(dir.path()))
        };
        std::thread::sleep(Duration::from_millis(5)); // a later time stamp
        let fresh = PeerTable::new(broken, reprobe);
        assert!(!fresh.verdict(0, 1).unwrap().is_verified());
        // The stale process writes again (a new pair): its old entry must lose.
        stale.verdict(0, 2).unwrap();
        let entries = file_of(dir.path(), &topology()).load();
        let entry = entries
            .iter()
            .find(|e| (e.verdict.from, e.verdict.to) == (0, 1))
            .unwrap();
        assert!(
            matches!(entry.verdict.reason, Reason::Corrupt { .. }),
            "the newer verdict wins: {entry:?}"
        );
        assert!(entries
            .iter()
            .any(|e| (e.verdict.from, e.verdict.to) == (0, 2)));
    });
}

#[test]
fn probe_all_writes_the_cache_once() {
    for_each_seed(|s| {
        let dir = tempfile::tempdir().unwrap();
        let thirty = Topology::with_gpus(30).named("thirty").with_pair(0, 1);
        let table = PeerTable::new(s.machine(&thirty), quick_config(Some(dir.path())));
        assert_eq!(table.probe_all().unwrap().len(), 30 * 29);
        assert_eq!(table.cache_writes(), 1, "one write for the whole batch");
        assert_eq!(file_of(dir.path(), &thirty).load().len(), 30 * 29);
        table.probe_all().unwrap();
        assert_eq!(table.cache_writes(), 1, "nothing new, nothing written");
    });
}

#[test]
fn temp_files_of_killed_writers_are_removed() {
    for_each_seed(|s| {
        let dir = tempfile::tempdir().unwrap();
        let table = PeerTable::new(s.machine(&topology()), quick_config(Some(dir.path())));
        let name = table
            .cache_path()
            .unwrap()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let hash = name
            .strip_prefix("verdicts-")
            .and_then(|n| n.strip_suffix(".json"))
            .unwrap();
        let dead = dir.path().join(format!(".verdicts-{hash}-4000000-7.tmp"));
        std::fs::write(&dead, b"half a file").unwrap();
        let unrelated = dir.path().join("notes.txt");
        std::fs::write(&unrelated, b"mine").unwrap();
        table.verdict(0, 1).unwrap();
        assert!(!dead.exists(), "a dead writer's temp file is cleaned up");
        assert!(unrelated.exists(), "other files are left alone");
    });
}

#[test]
fn transient_verdicts_expire_from_the_cache() {
    for_each_seed(|s| {
        let dir = tempfile::tempdir().unwrap();
        let first = PeerTable::new(s.machine(&topology()), quick_config(Some(dir.path())));
        assert!(matches!(
            first.verdict(0, 3).unwrap().reason,
            Reason::Timeout { .. }
        ));
        assert!(matches!(
            first.verdict(1, 3).unwrap().reason,
            Reason::EnableFailed { .. }
        ));
        assert!(first.verdict(0, 1).unwrap().is_verified());
        let path = first.cache_path().unwrap().to_path_buf();
        let entries = file_of(dir.path(), &topology()).load();
        for entry in &entries {
            assert_eq!(
                entry.expires_ms.is_some(),
                entry.verdict.reason.is_transient(),
                "{entry:?}"
            );
        }
        // Let the file's transient entries reach their expiry.
        let mut doc: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for entry in doc["verdicts"].as_array_mut().unwrap() {
            if !entry["expires_ms"].is_null() {
                entry["expires_ms"] = 1.into();
            }
        }
        std::fs::write(&path, doc.to_string()).unwrap();
        let machine = s.machine(&topology());
        let later = PeerTable::new(machine.clone(), quick_config(Some(dir.path())));
        assert!(later.verdict(0, 1).unwrap().is_verified(), "kept");
        let before = machine.stats().enable_calls;
        assert!(matches!(
            later.verdict(1, 3).unwrap().reason,
            Reason::EnableFailed { .. }
        ));
        assert_eq!(
            machine.stats().enable_calls,
            before + 1,
            "an expired enable failure is tried again"
        );
        assert!(matches!(
            later.verdict(0, 3).unwrap().reason,
            Reason::Timeout { .. }
        ));
        assert_eq!(
            machine.stats().peer_copies_between(0, 3),
            1,
            "an expired timeout is probed again"
        );
    });
}

#[test]
fn a_failed_probe_is_remembered_and_retried_after_a_backoff() {
    for_each_seed(|s| {
        let machine = s.machine(&topology());
        let driver: Arc<dyn Driver> = machine.clone();
        // GPU 4 is nearly full: the probe's 256 KiB destination does not fit.
        let hog = DeviceBuffer::new(&driver, 4, 900 << 10, AllocKind::Plain).unwrap();
        let table = PeerTable::new(
            driver.clone(),
            quick_config(Some(tempfile::tempdir().unwrap().path())),
        );
        assert!(matches!(
            table.verdict(3, 4),
            Err(Error::OutOfMemory { .. })
        ));
        drop(hog);
        // Ten plans in a row: none probes again, though memory is free now.
        for _ in 0..10 {
            assert!(!table.is_verified(3, 4));
        }
        match table.verdict(3, 4) {
            Err(Error::ProbeFailed {
                from: 3,
                to: 4,
                detail,
                retry_in_ms,
            }) => {
                assert!(detail.contains("out of memory"), "{detail}");
                assert!(retry_in_ms <= RETRY_BACKOFF_FIRST.as_millis() as u64);
            }
            other => panic!("expected the remembered failure, got {other:?}"),
        }
        assert_eq!(machine.stats().peer_copies_between(3, 4), 0);
        assert!(table.known(3, 4).is_none());
        std::thread::sleep(RETRY_BACKOFF_FIRST + Duration::from_millis(20));
        assert!(
            table.verdict(3, 4).unwrap().is_verified(),
            "after the backoff the pair is probed again"
        );
    });
}

#[test]
fn editing_a_fault_makes_another_machine() {
    for_each_seed(|s| {
        let dir = tempfile::tempdir().unwrap();
        let first = PeerTable::new(s.machine(&topology()), quick_config(Some(dir.path())));
        assert!(first.verdict(2, 3).unwrap().is_verified());
        // Same machine name, same GPUs: only the pair's fault differs.
        let edited = topology().with_fault(2, 3, Fault::Zeros);
        assert_ne!(edited, topology());
        let machine = s.machine(&edited);
        let second = PeerTable::new(machine.clone(), quick_config(Some(dir.path())));
        assert_ne!(second.cache_path(), first.cache_path());
        assert!(matches!(
            second.verdict(2, 3).unwrap().reason,
            Reason::Corrupt { .. }
        ));
    });
}

#[test]
fn a_cached_verified_is_checked_before_it_is_trusted() {
    for_each_seed(|s| {
        let dir = tempfile::tempdir().unwrap();
        let first = PeerTable::new(s.machine(&topology()), quick_config(Some(dir.path())));
        assert!(first.verdict(0, 1).unwrap().is_verified());
        assert!(first.verdict(0, 2).unwrap().is_verified());

        // The same machine, but the paths broke in a way no fingerprint sees.
        let machine = s.machine(&topology());
        machine.set_peer_fault(0, 1, Fault::Corrupt).unwrap();
        machine.set_peer_fault(0, 2, Fault::Hang).unwrap();
        let second = PeerTable::new(machine.clone(), quick_config(Some(dir.path())));
        assert!(matches!(
            second.verdict(0, 1).unwrap().reason,
            Reason::Corrupt { .. }
        ));
        assert!(!second.peer_access().is_enabled(0, 1));
        assert!(matches!(
            second.verdict(0, 2).unwrap().reason,
            Reason::Timeout { .. }
        ));
        assert_eq!(
            machine.stats().peer_copies_between(0, 2),
            1,
            "a check copy that hangs is the verdict: no second hang"
        );
        let entries = file_of(dir.path(), &topology()).load();
        let reason = |pair| {
            entries
                .iter()
                .find(|e| (e.verdict.from, e.verdict.to) == pair)
                .map(|e| e.verdict.reason.name())
        };
        assert_eq!(reason((0, 1)), Some("corrupt"), "the cache learns it");
        assert_eq!(reason((0, 2)), Some("timeout"));
    });
}

#[cfg(unix)]
#[test]
fn special_files_as_the_cache_are_refused() {
    for_each_seed(|s| {
        let dir = tempfile::tempdir().unwrap();
        let path = PeerTable::new(s.machine(&topology()), quick_config(Some(dir.path())))
            .cache_path()
            .unwrap()
            .to_path_buf();
        let made = std::process::Command::new("mkfifo")
            .arg(&path)
            .status()
            .expect("mkfifo runs");
        assert!(made.success());
        let dir_path = dir.path().to_path_buf();
        let machine = s.machine(&topology());
        let verified = within_20s(move || {
            let table = PeerTable::new(machine, quick_config(Some(&dir_path)));
            table.verdict(0, 1).unwrap().is_verified()
        });
        assert!(verified, "probed instead of reading the FIFO");
        assert!(
            std::fs::metadata(&path).unwrap().is_file(),
            "the FIFO was replaced by a regular file"
        );

        std::fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink("/dev/zero", &path).unwrap();
        let dir_path = dir.path().to_path_buf();
        let loaded = within_20s(move || file_of(&dir_path, &topology()).load().len());
        assert_eq!(loaded, 0, "/dev/zero is not read");
    });
}
