//! Faults on the simulated machine: broken pairs are never used, a pair that
//! breaks after its probe is caught by verify mode, a hang becomes an error.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use p2p_core::sim::Fault;
use p2p_core::{AllocKind, Driver, Error as CoreError, PeerTable, SimDriver};
use p2p_move::{Error, Mover, Policy, RawBytes, Route, StreamOrder};

fn sim() -> Arc<SimDriver> {
    Arc::new(SimDriver::new(healthy()))
}

fn mover_on(sim: &Arc<SimDriver>) -> Mover {
    let driver: Arc<dyn Driver> = sim.clone();
    Mover::new(
        Arc::new(PeerTable::new(driver, test_config())),
        Policy::default(),
    )
    .unwrap()
}

#[test]
fn broken_pairs_are_never_used() {
    let sim = Arc::new(SimDriver::builtin());
    let driver: Arc<dyn Driver> = sim.clone();
    let mover = Mover::new(
        Arc::new(PeerTable::new(driver.clone(), test_config())),
        Policy::default(),
    )
    .unwrap();
    let data = pattern((3 << 20) + 1, 1);
    let src = device_with(&driver, 2, &data, AllocKind::Plain);
    let mut dst = device_with(&driver, 3, &complement(&data), AllocKind::Plain);
    let plan = mover.copy(&src, &mut dst).unwrap();
    assert_eq!(
        plan.route,
        Route::Via { gpu: 0 },
        "2 -> 3 delivers zeros in the builtin machine"
    );
    assert_bytes(&read(&driver, &dst), &data, "destination");
    let peer_path = sim.stats().peer_path_copies_between(2, 3);
    assert_eq!(peer_path, 1, "only the probe's copy took the broken path");
}

#[test]
fn verify_mode_catches_a_pair_that_broke_after_its_probe() {
    let sim = sim();
    let driver: Arc<dyn Driver> = sim.clone();
    let mover = mover_on(&sim).with_verify(true);
    let data = pattern(100_000, 2);
    let src = device_with(&driver, 0, &data, AllocKind::Plain);
    let mut dst = device_with(&driver, 1, &complement(&data), AllocKind::Plain);
    mover.copy(&src, &mut dst).unwrap();
    sim.set_peer_fault(0, 1, Fault::Corrupt).unwrap();
    match mover.copy(&src, &mut dst) {
        Err(Error::VerifyFailed { offset, .. }) => assert!(offset < data.len()),
        other => panic!("verify mode let corruption through: {other:?}"),
    }
    assert_bytes(&read(&driver, &src), &data, "source untouched");
}

#[test]
fn a_copy_that_hangs_is_a_timeout_on_the_raw_api() {
    let sim = sim();
    let driver: Arc<dyn Driver> = sim.clone();
    let mover = mover_on(&sim);
    let data = pattern(4096, 3);
    let src = device_with(&driver, 0, &data, AllocKind::Plain);
    let mut dst = device_with(&driver, 1, &complement(&data), AllocKind::Plain);
    mover.copy(&src, &mut dst).unwrap();
    sim.set_peer_fault(0, 1, Fault::Hang).unwrap();
    let started = Instant::now();
    // SAFETY: both buffers are leaked below, since the hung copy may use them forever.
    let completion = unsafe {
        mover.copy_raw_async(
            RawBytes::Device(src.ptr()),
            RawBytes::Device(dst.ptr()),
            4096,
            StreamOrder::default(),
        )
    }
    .unwrap();
    match completion.wait() {
        Err(Error::Core(CoreError::Timeout { .. })) => {}
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_bytes(&read(&driver, &src), &data, "source untouched");
    // The safe API would keep waiting instead (it cannot release borrowed
    // memory under a running copy); the raw API's caller leaks it.
    std::mem::forget(src);
    std::mem::forget(dst);
}

#[test]
fn out_of_memory_on_the_middle_gpu_is_an_error() {
    let sim = sim();
    let driver: Arc<dyn Driver> = sim.clone();
    let table = PeerTable::new(
        driver.clone(),
        p2p_core::Config {
            disabled: p2p_core::DisabledPairs::parse("0<->1").unwrap(),
            ..test_config()
        },
    );
    let mover = Mover::new(Arc::new(table), Policy::default()).unwrap();
    mover.table().probe_all().unwrap();
    // Fill the middle GPU (cuda:2, 512 MiB) so the via route's scratch cannot fit.
    let hog = p2p_core::memory::DeviceBuffer::new(&driver, 2, (512 << 20) - 4096, AllocKind::Plain)
        .unwrap();
    let data = pattern(1 << 20, 4);
    let src = device_with(&driver, 0, &data, AllocKind::Plain);
    let mut dst = device_with(&driver, 1, &complement(&data), AllocKind::Plain);
    match mover.copy(&src, &mut dst) {
        Err(Error::Core(CoreError::OutOfMemory { .. })) => {}
        other => panic!("expected out of memory, got {other:?}"),
    }
    assert_bytes(&read(&driver, &src), &data, "source untouched");
    drop(hog);
    mover.copy(&src, &mut dst).unwrap();
    assert_bytes(&read(&driver, &dst), &data, "works once memory is free");
}
