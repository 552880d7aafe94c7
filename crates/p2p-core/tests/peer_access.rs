//! Peer access follows the verdicts: verified directions open, broken ones
//! closed (so that other code in the process never takes a broken path),
//! and a move's downgrade closes its pair at once. Every test runs over
//! every schedule seed and ends with the simulator's clean check.

mod support;

use std::sync::{Arc, Barrier};

use p2p_core::sim::{builtin_topology, Topology};
use p2p_core::{Driver, Error, PeerAccess, PeerTable, Reason};
use support::{for_each_seed, quick_config};

/// What another library's copy from `from` to `to` finds (64 KiB).
fn foreign_copy_is_correct(driver: &Arc<dyn Driver>, from: usize, to: usize) -> bool {
    support::foreign_copy_is_correct(driver, (from, to), 64 << 10)
}

#[test]
fn probing_a_broken_direction_leaves_it_closed() {
    for_each_seed(|s| {
        let sim = s.machine(&builtin_topology());
        let driver: Arc<dyn Driver> = sim.clone();
        assert!(
            foreign_copy_is_correct(&driver, 2, 3),
            "before any probe the driver stages 2 -> 3"
        );
        let table = PeerTable::new(driver.clone(), quick_config(None));
        assert!(matches!(
            table.verdict(2, 3).unwrap().reason,
            Reason::Corrupt { .. }
        ));
        let after_probe = sim.stats().peer_path_copies_between(2, 3);
        assert!(
            foreign_copy_is_correct(&driver, 2, 3),
            "after the probe found 2 -> 3 broken, another library's copy is still correct"
        );
        assert_eq!(
            sim.stats().peer_path_copies_between(2, 3),
            after_probe,
            "and the driver staged it"
        );
        assert!(
            table.peer_access().enabled().is_empty(),
            "nothing left open"
        );
        assert_eq!(table.peer_access().disabled(), vec![(2, 3)]);
    });
}

#[test]
fn a_cached_broken_reverse_is_not_enabled_when_loading() {
    for_each_seed(|s| {
        let dir = tempfile::tempdir().unwrap();
        let first = PeerTable::new(
            s.machine(&builtin_topology()),
            quick_config(Some(dir.path())),
        );
        assert!(first.verdict(3, 2).unwrap().is_verified());
        assert!(!first.verdict(2, 3).unwrap().is_verified());
        assert_eq!(first.peer_access().enabled(), vec![(3, 2)]);

        let sim = s.machine(&builtin_topology());
        let second = PeerTable::new(sim.clone(), quick_config(Some(dir.path())));
        assert!(second.verdict(3, 2).unwrap().is_verified());
        assert!(!second.verdict(2, 3).unwrap().is_verified());
        assert_eq!(
            sim.stats().enable_calls,
            1,
            "only the verified direction 3 -> 2 is enabled, not its broken reverse"
        );
        assert_eq!(second.peer_access().enabled(), vec![(3, 2)]);
        assert!(!second.peer_access().is_enabled(2, 3));
    });
}

#[test]
fn peer_access_remembers_what_it_did() {
    for_each_seed(|s| {
        let sim = s.machine(&Topology::fully_connected(2));
        let access = PeerAccess::new(sim.clone());
        access.enable(0, 1).unwrap();
        access.enable(0, 1).unwrap();
        assert_eq!(
            sim.stats().enable_calls,
            1,
            "an open direction is not asked again"
        );
        assert!(access.is_enabled(0, 1) && !access.is_enabled(1, 0));
        access.disable(0, 1).unwrap();
        assert!(!access.is_enabled(0, 1));
        assert_eq!(access.disabled(), vec![(0, 1)]);
        access.enable(0, 1).unwrap();
        assert_eq!(sim.stats().enable_calls, 2, "reopened after a close");
        access.enable(1, 1).unwrap();
        assert_eq!(
            sim.stats().enable_calls,
            2,
            "a device with itself needs nothing"
        );
        let pool = sim
            .default_pool(0)
            .unwrap()
            .expect("the simulator has pools");
        access.grant_pool(pool, 1).unwrap();
        access.grant_pool(pool, 1).unwrap();
        assert!(access.is_granted(pool, 1) && !access.is_granted(pool, 0));
        assert!(matches!(
            access.enable(0, 7),
            Err(Error::InvalidDevice(p2p_core::InvalidDevice {
                ordinal: 7,
                ..
            }))
        ));
    });
}

#[test]
fn downgrade_reroutes_closes_access_and_caches_a_transient_verdict() {
    for_each_seed(|s| {
        let dir = tempfile::tempdir().unwrap();
        let sim = s.machine(&Topology::fully_connected(2));
        let driver: Arc<dyn Driver> = sim.clone();
        let table = PeerTable::new(driver.clone(), quick_config(Some(dir.path())));
        assert!(table.is_verified(0, 1));
        assert!(table.peer_access().is_enabled(0, 1));
        let timeout = Reason::Timeout { after_ms: 500 };
        table.downgrade(0, 1, timeout.clone()).unwrap();
        assert_eq!(table.verdict(0, 1).unwrap().reason, timeout);
        assert_eq!(table.known(0, 1).unwrap().reason, timeout);
        assert!(
            !table.is_verified(0, 1),
            "later plans route around the pair"
        );
        assert!(!table.peer_access().is_enabled(0, 1));
        let peer_path = sim.stats().peer_path_copies_between(0, 1);
        assert!(foreign_copy_is_correct(&driver, 0, 1));
        assert_eq!(
            sim.stats().peer_path_copies_between(0, 1),
            peer_path,
            "the driver stages copies over a downgraded pair"
        );
        // (Asked only now: the simulator lets an open 1 -> 0 carry 0 -> 1 copies too.)
        assert!(table.is_verified(1, 0), "the other direction is untouched");

        let later_sim = s.machine(&Topology::fully_connected(2));
        let later = PeerTable::new(later_sim.clone(), quick_config(Some(dir.path())));
        assert_eq!(later.verdict(0, 1).unwrap().reason, timeout, "cached");
        assert_eq!(later_sim.stats().peer_copies_between(0, 1), 0, "not probed");
        let cache = p2p_core::cache::VerdictCache::new(
            dir.path(),
            p2p_core::cache::Fingerprint::of(later_sim.as_ref()),
        );
        let entry = cache
            .load()
            .into_iter()
            .find(|e| (e.verdict.from, e.verdict.to) == (0, 1))
            .unwrap();
        assert!(
            entry.expires_ms.is_some(),
            "a downgrade is transient: {entry:?}"
        );
    });
}

#[test]
fn downgrade_refuses_what_is_not_a_downgrade() {
    for_each_seed(|s| {
        let table = PeerTable::new(s.machine(&Topology::fully_connected(2)), quick_config(None));
        assert!(matches!(
            table.downgrade(0, 1, Reason::Verified),
            Err(Error::Unsupported(_))
        ));
        assert!(matches!(
            table.downgrade(1, 1, Reason::Timeout { after_ms: 1 }),
            Err(Error::Unsupported(_))
        ));
        assert!(matches!(
            table.downgrade(0, 5, Reason::Timeout { after_ms: 1 }),
            Err(Error::InvalidDevice(p2p_core::InvalidDevice {
                ordinal: 5,
                ..
            }))
        ));
        assert!(table.known(0, 1).is_none(), "nothing was probed or changed");
    });
}

#[test]
fn downgrades_and_lookups_from_many_threads_agree() {
    for_each_seed(|s| {
        let table = Arc::new(PeerTable::new(
            s.machine(&Topology::fully_connected(2)),
            quick_config(None),
        ));
        let barrier = Arc::new(Barrier::new(8));
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let (table, barrier) = (table.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    if i % 2 == 0 {
                        table
                            .downgrade(0, 1, Reason::Timeout { after_ms: i })
                            .unwrap();
                    } else {
                        let _ = table.verdict(0, 1).unwrap();
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.join().unwrap();
        }
        // Every downgrade has returned: whatever order the probe ran in, the
        // pair is no longer trusted.
        let last = table.verdict(0, 1).unwrap();
        assert!(matches!(last.reason, Reason::Timeout { .. }), "{last:?}");
        assert!(!table.peer_access().is_enabled(0, 1));
    });
}
