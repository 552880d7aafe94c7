//! The probe, the verdict table and the cache, on simulated machines: each
//! reason arises from its fault, pairs are probed once, caches survive and fail safely.

mod support;

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use p2p_core::sim::{Fault, PeerSpec, Topology};
use p2p_core::{Config, DisabledPairs, Driver, Error, PairState, PeerTable, Reason};
use support::{for_each_seed, quick_config};

/// Six GPUs "A" to "F"; from cuda:0 one pair per fault, and a few more from cuda:1.
fn faulty() -> Topology {
    let mut topology = Topology::with_gpus(6)
        .named("every fault")
        .with_pair(0, 1)
        .with_fault(0, 2, Fault::Zeros)
        .with_peer(PeerSpec::new(2, 0))
        .with_fault(0, 3, Fault::Corrupt)
        .with_fault(0, 4, Fault::DropTail)
        .with_fault(0, 5, Fault::Hang)
        .with_peer(PeerSpec {
            claimed: false,
            ..PeerSpec::new(1, 2)
        })
        .with_fault(1, 3, Fault::EnableFails)
        .with_peer(PeerSpec {
            gbps: 0.5,
            ..PeerSpec::new(1, 4)
        });
    for (gpu, name) in topology.gpus.iter_mut().zip(["A", "B", "C", "D", "E", "F"]) {
        gpu.name = name.to_string();
    }
    topology
}

fn reason(table: &PeerTable, from: usize, to: usize) -> Reason {
    table.verdict(from, to).unwrap().reason
}

#[test]
fn each_reason_arises_from_its_fault() {
    for_each_seed(|s| {
        let table = PeerTable::new(s.machine(&faulty()), quick_config(None));
        assert_eq!(reason(&table, 0, 1), Reason::Verified);
        assert_eq!(reason(&table, 1, 0), Reason::Verified);
        assert_eq!(
            reason(&table, 2, 1),
            Reason::NotClaimed,
            "no [[peer]] entry means not claimed"
        );
        assert_eq!(reason(&table, 1, 2), Reason::NotClaimed);
        match reason(&table, 0, 2) {
            Reason::Corrupt { offset, found, .. } => {
                assert_eq!((offset, found), (0, 0), "zeros delivered")
            }
            other => panic!("zeros fault gave {other:?}"),
        }
        assert!(matches!(reason(&table, 0, 3), Reason::Corrupt { .. }));
        match reason(&table, 0, 4) {
            Reason::Corrupt { offset, .. } => {
                assert!(offset > 0, "drop-tail corrupts the end, not the start")
            }
            other => panic!("drop-tail fault gave {other:?}"),
        }
        assert!(matches!(reason(&table, 1, 3), Reason::EnableFailed { .. }));
        assert_eq!(
            reason(&table, 1, 4),
            Reason::Verified,
            "slow is still correct in quick mode"
        );
    });
}

#[test]
fn verdicts_are_directed() {
    for_each_seed(|s| {
        let table = PeerTable::new(s.machine(&faulty()), quick_config(None));
        assert!(!table.verdict(0, 2).unwrap().is_verified());
        assert!(table.verdict(2, 0).unwrap().is_verified());
    });
}

#[test]
fn a_hang_times_out_within_the_deadline() {
    for_each_seed(|s| {
        // The simulator waits in virtual time: the deadline passes on its clock, not the wall's.
        let sim = s.machine(&faulty());
        let table = PeerTable::new(sim.clone(), quick_config(None));
        let started = Instant::now();
        let verdict = table.verdict(0, 5).unwrap();
        let took = started.elapsed();
        assert_eq!(verdict.reason, Reason::Timeout { after_ms: 200 });
        assert_eq!(verdict.state(), PairState::Broken);
        assert!(
            sim.virtual_now_ns() >= 200_000_000,
            "returned before the deadline: {} virtual ns",
            sim.virtual_now_ns()
        );
        assert!(
            took < Duration::from_secs(5),
            "hung far past the deadline: {took:?}"
        );
    });
}

#[test]
fn thorough_mode_reports_a_peer_path_slower_than_staging() {
    for_each_seed(|s| {
        let mut config = quick_config(None);
        config.probe.thorough = true;
        let table = PeerTable::new(s.machine(&faulty()), config);
        match reason(&table, 1, 4) {
            Reason::SlowerThanStaging {
                peer_gbps,
                staged_gbps,
            } => assert!(peer_gbps < staged_gbps),
            other => panic!("slow pair gave {other:?}"),
        }
        let fast = table.verdict(0, 1).unwrap();
        assert!(fast.is_verified());
        assert!(
            fast.peer_gbps.is_some_and(|gbps| gbps > 0.0),
            "thorough mode measures: {fast:?}"
        );
    });
}

#[test]
fn sixteen_threads_probe_a_pair_once() {
    for_each_seed(|s| {
        let sim = s.machine(&faulty());
        let driver: Arc<dyn Driver> = sim.clone();
        let table = Arc::new(PeerTable::new(driver, quick_config(None)));
        let barrier = Arc::new(Barrier::new(16));
        let handles: Vec<_> = (0..16)
            .map(|_| {
                let (table, barrier) = (table.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    table.verdict(0, 1).unwrap()
                })
            })
            .collect();
        let verdicts: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert!(verdicts
            .iter()
            .all(|v| v == &verdicts[0] && v.is_verified()));
        let stats = sim.stats();
        assert_eq!(
            stats.peer_copies_between(0, 1),
            1,
            "one probe copy, not sixteen"
        );
        assert_eq!(
            stats.enable_calls, 1,
            "one probe enables the direction it tests, once"
        );
        assert_eq!(
            stats.peer_copies_between(1, 0),
            0,
            "only the pair asked about is probed"
        );
    });
}

#[test]
fn probe_all_covers_every_ordered_pair() {
    for_each_seed(|s| {
        let table = PeerTable::new(s.machine(&faulty()), quick_config(None));
        let all = table.probe_all().unwrap();
        assert_eq!(all.len(), 6 * 5);
        assert!(all.iter().all(|v| v.from != v.to));
    });
}

#[test]
fn policy_disables_pairs_without_probing() {
    for_each_seed(|s| {
        let sim = s.machine(&faulty());
        let driver: Arc<dyn Driver> = sim.clone();
        let config = Config {
            disabled: DisabledPairs::parse("0->1").unwrap(),
            ..quick_config(None)
        };
        let table = PeerTable::new(driver, config);
        let verdict = table.verdict(0, 1).unwrap();
        assert_eq!(verdict.reason, Reason::DisabledByPolicy);
        assert_eq!(verdict.state(), PairState::Disabled);
        assert!(verdict.claimed);
        assert_eq!(sim.stats().peer_copies_between(0, 1), 0);
        assert!(
            table.verdict(1, 0).unwrap().is_verified(),
            "only 0->1 was disabled"
        );
    });
}

#[test]
fn invalid_devices_are_errors() {
    for_each_seed(|s| {
        let table = PeerTable::new(s.machine(&faulty()), quick_config(None));
        assert!(matches!(
            table.verdict(0, 9),
            Err(Error::InvalidDevice(p2p_core::InvalidDevice {
                ordinal: 9,
                count: 6,
                ..
            }))
        ));
        assert!(!table.is_verified(7, 0));
    });
}

#[test]
fn cache_round_trip_skips_the_probe() {
    for_each_seed(|s| {
        let dir = tempfile::tempdir().unwrap();
        let first = PeerTable::new(s.machine(&faulty()), quick_config(Some(dir.path())));
        let verdicts: Vec<_> = [(0, 1), (0, 2), (1, 3)]
            .iter()
            .map(|&(a, b)| first.verdict(a, b).unwrap())
            .collect();
        let path = first.cache_path().unwrap().to_path_buf();
        assert!(path.exists());

        let sim = s.machine(&faulty());
        let second = PeerTable::new(sim.clone(), quick_config(Some(dir.path())));
        assert_eq!(second.cache_path(), Some(path.as_path()));
        for v in &verdicts {
            assert_eq!(&second.verdict(v.from, v.to).unwrap(), v);
        }
        assert_eq!(
            sim.stats().peer_copies_between(0, 1),
            1,
            "answered from the cache after one check copy"
        );
        assert_eq!(
            sim.stats().peer_copies_between(0, 2),
            0,
            "a cached broken pair needs no copy"
        );
        // Peer access is per process: the verified cached pair (0 -> 1) is
        // opened again, that direction only; the broken ones (0 -> 2, 1 -> 3) are not.
        assert_eq!(sim.stats().enable_calls, 1);
        let data = p2p_core::pattern::bytes(4096, 9);
        let mut src = p2p_core::memory::DeviceBuffer::new(
            &(sim.clone() as Arc<dyn Driver>),
            0,
            4096,
            p2p_core::AllocKind::Plain,
        )
        .unwrap();
        let dst = p2p_core::memory::DeviceBuffer::new(
            &(sim.clone() as Arc<dyn Driver>),
            1,
            4096,
            p2p_core::AllocKind::Plain,
        )
        .unwrap();
        let stream = p2p_core::memory::Stream::new(&(sim.clone() as Arc<dyn Driver>), 0).unwrap();
        src.write_from_slice(&data, &stream).unwrap();
        // SAFETY: both buffers hold 4096 bytes and outlive the synchronize.
        unsafe {
            sim.copy_peer_async(dst.ptr(), src.ptr(), 4096, stream.id())
                .unwrap()
        };
        stream.synchronize().unwrap();
        assert_eq!(
            sim.stats().peer_path_copies_between(0, 1),
            2,
            "the check copy and a copy after it take the peer path"
        );

        let third_sim = s.machine(&faulty());
        let reprobe = Config {
            reprobe: true,
            ..quick_config(Some(dir.path()))
        };
        let third = PeerTable::new(third_sim.clone(), reprobe);
        assert!(third.verdict(0, 1).unwrap().is_verified());
        assert_eq!(
            third_sim.stats().peer_copies_between(0, 1),
            1,
            "reprobe ignores the cache"
        );
    });
}

#[test]
fn corrupt_cache_file_means_probe_again() {
    for_each_seed(|s| {
        let dir = tempfile::tempdir().unwrap();
        let first = PeerTable::new(s.machine(&faulty()), quick_config(Some(dir.path())));
        first.verdict(0, 1).unwrap();
        let path = first.cache_path().unwrap().to_path_buf();
        for garbage in ["{ not json", "", "{\"format\": 1}", "\u{0}\u{1}binary"] {
            std::fs::write(&path, garbage).unwrap();
            let sim = s.machine(&faulty());
            let table = PeerTable::new(sim.clone(), quick_config(Some(dir.path())));
            assert!(table.verdict(0, 1).unwrap().is_verified());
            assert_eq!(
                sim.stats().peer_copies_between(0, 1),
                1,
                "probed again after {garbage:?}"
            );
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(text.contains("\"format\""), "rewritten with a valid file");
        }
    });
}

#[test]
fn another_machines_cache_is_not_used() {
    for_each_seed(|s| {
        let dir = tempfile::tempdir().unwrap();
        let first = PeerTable::new(s.machine(&faulty()), quick_config(Some(dir.path())));
        first.verdict(0, 1).unwrap();
        let first_path = first.cache_path().unwrap().to_path_buf();

        let mut other = faulty();
        other.driver_version = 13000;
        let sim = s.machine(&other);
        let probe_other = PeerTable::new(sim.clone(), quick_config(Some(dir.path())));
        let other_path = probe_other.cache_path().unwrap().to_path_buf();
        assert_ne!(first_path, other_path, "the fingerprint names the file");
        // Even a file of another machine under this machine's name is refused.
        std::fs::copy(&first_path, &other_path).unwrap();
        let table = PeerTable::new(sim.clone(), quick_config(Some(dir.path())));
        assert!(table.verdict(0, 1).unwrap().is_verified());
        assert_eq!(
            sim.stats().peer_copies_between(0, 1),
            1,
            "probed, not taken from another machine's file"
        );
    });
}

#[test]
fn policy_verdicts_are_not_cached() {
    for_each_seed(|s| {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            disabled: DisabledPairs::All,
            ..quick_config(Some(dir.path()))
        };
        let table = PeerTable::new(s.machine(&faulty()), config);
        assert_eq!(
            table.verdict(0, 1).unwrap().reason,
            Reason::DisabledByPolicy
        );
        let sim = s.machine(&faulty());
        let later = PeerTable::new(sim.clone(), quick_config(Some(dir.path())));
        assert!(
            later.verdict(0, 1).unwrap().is_verified(),
            "lifting the policy brings the pair back"
        );
    });
}

#[test]
fn two_processes_sharing_a_cache_keep_each_others_verdicts() {
    for_each_seed(|s| {
        let dir = tempfile::tempdir().unwrap();
        let first = PeerTable::new(s.machine(&faulty()), quick_config(Some(dir.path())));
        let second = PeerTable::new(s.machine(&faulty()), quick_config(Some(dir.path())));
        first.verdict(0, 1).unwrap();
        second.verdict(0, 2).unwrap(); // read the file before `first` wrote 0 -> 1
        let sim = s.machine(&faulty());
        let third = PeerTable::new(sim.clone(), quick_config(Some(dir.path())));
        assert!(third.verdict(0, 1).unwrap().is_verified());
        assert!(!third.verdict(0, 2).unwrap().is_verified());
        assert_eq!(
            sim.stats().peer_copies_between(0, 1),
            1,
            "both answers came from the file (a verified one after a check copy)"
        );
        assert_eq!(sim.stats().peer_copies_between(0, 2), 0);
    });
}

#[test]
fn thorough_verdicts_survive_the_cache() {
    for_each_seed(|s| {
        let dir = tempfile::tempdir().unwrap();
        let mut config = quick_config(Some(dir.path()));
        config.probe.thorough = true;
        let first = PeerTable::new(s.machine(&faulty()), config.clone());
        let slow = first.verdict(1, 4).unwrap();
        assert_eq!(slow.reason.name(), "slower-than-staging");
        let fast = first.verdict(0, 1).unwrap();
        assert!(fast.peer_gbps.is_some_and(f64::is_finite), "{fast:?}");

        let sim = s.machine(&faulty());
        let second = PeerTable::new(sim.clone(), config);
        assert_eq!(second.verdict(1, 4).unwrap(), slow);
        assert_eq!(second.verdict(0, 1).unwrap(), fast);
        assert_eq!(
            sim.stats().peer_copies_between(1, 4),
            0,
            "the slow pair came from the file, not from another thorough probe"
        );
    });
}
