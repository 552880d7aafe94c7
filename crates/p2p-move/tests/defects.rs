//! The executor defects of review issue #8, each with the test that caught it.

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use common::watched::Watched;
use common::*;
use p2p_core::{AllocKind, Config, DisabledPairs, Driver, PeerTable};
use p2p_move::{Mover, Policy, Route};

fn staged_mover(driver: Arc<dyn Driver>) -> Mover {
    let config = Config {
        disabled: DisabledPairs::parse("all").unwrap(),
        ..test_config()
    };
    let policy = Policy {
        chunk_bytes: 64 << 10,
        min_chunk_bytes: 64 << 10,
        pipeline_depth: 2,
        small_copy_bytes: 0,
        ..Policy::default()
    };
    Mover::new(Arc::new(PeerTable::new(driver, config)), policy).unwrap()
}

/// #8.1: an event creation failing part-way through a 16-chunk staged copy:
/// `copy` returns the error only once every copy it queued is known done.
#[test]
fn a_failed_copy_returns_only_after_its_queued_copies() {
    for nth in 1..=12 {
        let watched = Watched::new(sim_machine());
        let driver: Arc<dyn Driver> = watched.clone();
        let mover = staged_mover(driver.clone());
        let data = pattern(16 << 16, 1);
        let src = device_with(&driver, 0, &data, AllocKind::Plain);
        let mut dst = device_with(&driver, 1, &complement(&data), AllocKind::Plain);
        assert_eq!(
            mover
                .plan(
                    p2p_core::Location::Cuda(0),
                    p2p_core::Location::Cuda(1),
                    data.len()
                )
                .unwrap()
                .route,
            Route::Staged
        );
        watched.fail_event_at.store(nth, Ordering::SeqCst);
        let result = mover.copy(&src, &mut dst);
        assert_eq!(
            watched.unfinished(),
            Vec::new(),
            "event {nth} failing: {result:?} returned with copies unfinished"
        );
        assert_bytes(&read(&driver, &src), &data, "source intact");
    }
}

/// #8.7: pinned bookkeeping matches the live buffers after failures.
#[test]
fn staging_bytes_match_the_live_buffers_after_failures() {
    let watched = Watched::new(sim_machine());
    let driver: Arc<dyn Driver> = watched.clone();
    let mover = staged_mover(driver.clone());
    let data = pattern(16 << 16, 2);
    let src = device_with(&driver, 0, &data, AllocKind::Plain);
    let mut dst = device_with(&driver, 1, &complement(&data), AllocKind::Plain);
    mover.copy(&src, &mut dst).unwrap();
    assert_eq!(mover.staging_bytes(), watched.live_pinned());
    for nth in 1..=6 {
        watched.fail_event_at.store(nth, Ordering::SeqCst);
        let _ = mover.copy(&src, &mut dst);
        watched.fail_event_at.store(0, Ordering::SeqCst);
        assert_eq!(
            mover.staging_bytes(),
            watched.live_pinned(),
            "after failing event {nth}"
        );
    }
    // A fresh mover whose second pin fails part-way through an acquire.
    let fresh = staged_mover(driver.clone());
    let before = watched.live_pinned();
    let made = watched.pinned_made.load(Ordering::SeqCst);
    watched.fail_pinned_at.store(made + 2, Ordering::SeqCst);
    assert!(
        fresh.copy(&src, &mut dst).is_err(),
        "the pin failure is an error"
    );
    assert_eq!(
        fresh.staging_bytes(),
        watched.live_pinned() - before,
        "the count matches the live buffers"
    );
    mover.copy(&src, &mut dst).unwrap();
    assert_bytes(&read(&driver, &dst), &data, "works after failures");
}
