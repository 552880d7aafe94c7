//! Peer access and verdicts on real GPUs (`--features cuda-tests`, run by
//! `cargo xtask gpu-test`): directions open and close through the CUDA
//! driver, a downgrade closes its pair, a cached verdict is re-checked.
//!
//! Every test needs two GPUs and fails, never passes, with fewer.
#![cfg(feature = "cuda-tests")]

mod support;

use std::sync::Arc;
use std::time::Duration;

use p2p_core::{CacheSetting, Config, Driver, PeerAccess, PeerTable, ProbeOptions, Reason};
use support::cuda::two_gpu_driver;

fn config() -> Config {
    Config {
        probe: ProbeOptions {
            deadline: Duration::from_secs(5),
            ..ProbeOptions::default()
        },
        ..Config::default()
    }
}

/// Another library's `cuMemcpyPeerAsync` of 8 MiB from `from` to `to`: whether the bytes arrived.
fn foreign_copy_is_correct(driver: &Arc<dyn Driver>, from: usize, to: usize) -> bool {
    support::foreign_copy_is_correct(driver, (from, to), 8 << 20)
}

#[test]
fn peer_access_opens_and_closes_through_the_driver() {
    let driver = two_gpu_driver();
    // "Not enabled" is success, as is "already enabled".
    driver.disable_peer_access(0, 1).unwrap();
    driver.disable_peer_access(0, 1).unwrap();
    let access = PeerAccess::new(driver.clone());
    access.enable(0, 1).unwrap();
    driver.enable_peer_access(0, 1).unwrap();
    assert!(access.is_enabled(0, 1));
    assert!(foreign_copy_is_correct(&driver, 0, 1), "direct");
    access.disable(0, 1).unwrap();
    assert!(!access.is_enabled(0, 1));
    assert!(
        foreign_copy_is_correct(&driver, 0, 1),
        "staged by the driver once closed"
    );
    access.enable(0, 1).unwrap();
    assert!(foreign_copy_is_correct(&driver, 0, 1), "direct again");
}

#[test]
fn a_downgrade_closes_the_pair_and_copies_stay_correct() {
    let driver = two_gpu_driver();
    let table = PeerTable::new(driver.clone(), config());
    let verdict = table.verdict(0, 1).unwrap();
    eprintln!("cuda:0 -> cuda:1: {}", verdict.reason.describe());
    assert_eq!(
        table.peer_access().is_enabled(0, 1),
        verdict.is_verified(),
        "open exactly when verified"
    );
    table
        .downgrade(0, 1, Reason::Timeout { after_ms: 5000 })
        .unwrap();
    assert!(!table.is_verified(0, 1));
    assert!(!table.peer_access().is_enabled(0, 1));
    assert!(foreign_copy_is_correct(&driver, 0, 1));
}

#[test]
fn a_cached_verified_is_checked_and_reopened() {
    let dir = tempfile::tempdir().unwrap();
    let cached = Config {
        cache: CacheSetting::Dir(dir.path().to_path_buf()),
        ..config()
    };
    let driver = two_gpu_driver();
    let first = PeerTable::new(driver.clone(), cached.clone());
    let verdict = first.verdict(1, 0).unwrap();
    eprintln!("cuda:1 -> cuda:0: {}", verdict.reason.describe());
    drop(first);
    driver.disable_peer_access(1, 0).unwrap();
    let second = PeerTable::new(driver.clone(), cached);
    assert_eq!(second.verdict(1, 0).unwrap().reason, verdict.reason);
    assert_eq!(
        second.peer_access().is_enabled(1, 0),
        verdict.is_verified(),
        "a cached verified is opened again after its check copy"
    );
    assert!(foreign_copy_is_correct(&driver, 1, 0));
}
