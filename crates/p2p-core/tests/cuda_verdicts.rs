//! Peer access and verdicts on real GPUs (`--features cuda-tests`, run by
//! `cargo xtask gpu-test`): directions open and close through the CUDA
//! driver, a downgrade closes its pair, a cached verdict is re-checked.
//!
//! Every test needs two GPUs and fails, never passes, with fewer.
#![cfg(feature = "cuda-tests")]

use std::sync::Arc;
use std::time::Duration;

use p2p_core::memory::{DeviceBuffer, Stream};
use p2p_core::{
    AllocKind, CacheSetting, Config, CudaDriver, Driver, PeerAccess, PeerTable, ProbeOptions,
    Reason,
};

/// The backend with two GPUs or more, or a failure that says why not.
fn two_gpu_driver() -> Arc<dyn Driver> {
    let driver: Arc<dyn Driver> = match CudaDriver::new() {
        Ok(driver) => Arc::new(driver),
        Err(err) => panic!("these tests need a CUDA GPU: {err}"),
    };
    assert!(
        driver.device_count() >= 2,
        "needs two GPUs: this machine shows {}",
        driver.device_count()
    );
    driver
}

fn config() -> Config {
    Config {
        probe: ProbeOptions {
            deadline: Duration::from_secs(5),
            ..ProbeOptions::default()
        },
        ..Config::default()
    }
}

/// Another library's `cuMemcpyPeerAsync` from `from` to `to`: whether the bytes arrived.
fn foreign_copy_is_correct(driver: &Arc<dyn Driver>, from: usize, to: usize) -> bool {
    let len = 8 << 20;
    let data = p2p_core::probe::probe_pattern(len, 0xC0FFEE);
    let mut src = DeviceBuffer::new(driver, from, len, AllocKind::Plain).unwrap();
    let mut dst = DeviceBuffer::new(driver, to, len, AllocKind::Plain).unwrap();
    let src_stream = Stream::new(driver, from).unwrap();
    let dst_stream = Stream::new(driver, to).unwrap();
    src.write_from_slice(&data, &src_stream).unwrap();
    dst.write_from_slice(&vec![0x5A; len], &dst_stream).unwrap();
    // SAFETY: both buffers hold `len` bytes and outlive the synchronize.
    unsafe {
        driver
            .copy_peer_async(dst.ptr(), src.ptr(), len, src_stream.id())
            .unwrap()
    };
    src_stream.synchronize().unwrap();
    dst.read_to_vec(&dst_stream).unwrap() == data
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
