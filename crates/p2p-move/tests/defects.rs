//! The executor defects of review issue #8, each with the test that caught it.

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use common::watched::Watched;
use common::*;
use p2p_core::memory::Stream;
use p2p_core::{AllocKind, Config, DisabledPairs, Driver, PeerTable};
use p2p_move::{Mover, Policy, Route, StreamOrder};

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

fn mover_with(driver: &Arc<dyn Driver>, disabled: &str) -> Mover {
    let config = Config {
        disabled: DisabledPairs::parse(disabled).unwrap(),
        ..test_config()
    };
    let policy = Policy {
        chunk_bytes: 64 << 10,
        min_chunk_bytes: 64 << 10,
        small_copy_bytes: 4 << 10,
        ..Policy::default()
    };
    Mover::new(Arc::new(PeerTable::new(driver.clone(), config)), policy).unwrap()
}

/// #8.6a: work queued on `src_stream` after the move waits for the copy,
/// so overwriting the source there at once is safe (peer, staged, via).
#[test]
fn src_stream_waits_for_the_copy() {
    for_each_seed(|sim| {
        let driver: Arc<dyn Driver> = sim.clone();
        for (disabled, route) in [
            ("none", Route::Peer),
            ("all", Route::Staged),
            ("0<->1", Route::Via { gpu: 2 }),
        ] {
            let mover = mover_with(&driver, disabled);
            let data = pattern((1 << 20) + 5, 3);
            let src = device_with(&driver, 0, &data, AllocKind::Plain);
            let mut dst = device_with(&driver, 1, &complement(&data), AllocKind::Plain);
            let producer = Stream::new(&driver, 0).unwrap();
            let order = StreamOrder {
                src_stream: Some(producer.id()),
                dst_stream: None,
            };
            let src_addr = src.ptr();
            // SAFETY: the transfer is waited for below.
            let transfer = unsafe { mover.copy_async(&src, &mut dst, order) }.unwrap();
            assert_eq!(transfer.plan().route, route);
            // SAFETY: the producer stream reuses the source only after the
            // copy, as the order promises; `src` outlives the synchronize.
            unsafe {
                driver
                    .memset_async(src_addr, 0xEE, data.len(), producer.id())
                    .unwrap()
            };
            producer.synchronize().unwrap();
            transfer.wait().unwrap();
            assert_bytes(
                &read(&driver, &dst),
                &data,
                "the copy read the source before its reuse",
            );
        }
    });
}

/// #8.6b: a host read of the source honours `src_stream`: a pageable
/// upload of host memory that the caller's download is still writing.
#[test]
fn host_reads_wait_for_src_stream() {
    for_each_seed(|sim| {
        let driver: Arc<dyn Driver> = sim.clone();
        let mover = mover_with(&driver, "none");
        let data = pattern(300_000, 4);
        let on_device = device_with(&driver, 0, &data, AllocKind::Plain);
        let mut host = vec![0u8; data.len()];
        let mut dst = device_with(&driver, 1, &complement(&data), AllocKind::Plain);
        let producer = Stream::new(&driver, 0).unwrap();
        // SAFETY: `host` outlives the transfer's wait below, which follows the producer.
        unsafe {
            driver
                .copy_dtoh_async(
                    host.as_mut_ptr(),
                    on_device.ptr(),
                    data.len(),
                    producer.id(),
                )
                .unwrap()
        };
        let order = StreamOrder {
            src_stream: Some(producer.id()),
            dst_stream: None,
        };
        // SAFETY: the transfer is waited for below.
        let transfer = unsafe { mover.copy_async(&host, &mut dst, order) }.unwrap();
        transfer.wait().unwrap();
        producer.synchronize().unwrap();
        assert_bytes(
            &read(&driver, &dst),
            &data,
            "the upload read the downloaded bytes",
        );
    });
}

/// #8.6c: a same-device copy waits for the caller's streams.
#[test]
fn same_device_copies_wait_for_the_caller() {
    for_each_seed(|sim| {
        let driver: Arc<dyn Driver> = sim.clone();
        let mover = mover_with(&driver, "none");
        let len = 100_000;
        let src = device_with(&driver, 0, &pattern(len, 5), AllocKind::Plain);
        let mut dst = device_with(&driver, 0, &pattern(len, 6), AllocKind::Plain);
        let producer = Stream::new(&driver, 0).unwrap();
        // SAFETY: `src` outlives the synchronize below.
        unsafe {
            driver
                .memset_async(src.ptr(), 0x77, len, producer.id())
                .unwrap()
        };
        let order = StreamOrder {
            src_stream: Some(producer.id()),
            dst_stream: None,
        };
        // SAFETY: the transfer is waited for below.
        let transfer = unsafe { mover.copy_async(&src, &mut dst, order) }.unwrap();
        assert_eq!(transfer.plan().route, Route::NoOp);
        transfer.wait().unwrap();
        producer.synchronize().unwrap();
        assert!(
            read(&driver, &dst).iter().all(|&b| b == 0x77),
            "copied after the memset"
        );
    });
}

/// #8.4: after a copy hangs, its streams are retired, the pair is
/// downgraded (later plans avoid it), and a later move from the same device
/// does not queue behind it.
#[test]
fn a_hang_does_not_block_later_moves() {
    let sim = sim_seeded(p2p_core::sim::DEFAULT_SEED);
    let driver: Arc<dyn Driver> = sim.clone();
    let mover = mover_with(&driver, "none");
    let data = pattern(4096, 7);
    let src = device_with(&driver, 0, &data, AllocKind::Plain);
    let mut dst = device_with(&driver, 1, &complement(&data), AllocKind::Plain);
    mover.copy(&src, &mut dst).unwrap();
    sim.set_peer_fault(0, 1, p2p_core::sim::Fault::Hang)
        .unwrap();
    // SAFETY: both buffers are leaked below: the hung copy may use them for ever.
    let completion = unsafe {
        mover.copy_raw_async(
            p2p_move::RawBytes::Device(src.ptr()),
            p2p_move::RawBytes::Device(dst.ptr()),
            data.len(),
            StreamOrder::default(),
        )
    }
    .unwrap();
    assert!(matches!(
        completion.wait(),
        Err(p2p_move::Error::Core(p2p_core::Error::Timeout { .. }))
    ));
    assert!(mover.retired_streams() >= 1, "the hung stream is retired");
    let replanned = mover
        .plan(
            p2p_core::Location::Cuda(0),
            p2p_core::Location::Cuda(1),
            4096,
        )
        .unwrap();
    assert_ne!(
        replanned.route,
        Route::Peer,
        "the hung pair is downgraded: {replanned}"
    );
    // cuda:0 -> cuda:2 goes out on cuda:0's outbound stream too.
    let mut other = device_with(&driver, 2, &complement(&data), AllocKind::Plain);
    mover.copy(&src, &mut other).unwrap();
    assert_bytes(&read(&driver, &other), &data, "a later move from cuda:0");
    std::mem::forget(src);
    std::mem::forget(dst);
}

/// #8.2: a batch whose queuing fails part-way returns only once every copy
/// it queued (peer batch and staged parts alike) is known done.
#[test]
fn a_failed_batch_returns_only_after_its_queued_copies() {
    for nth in 1..=10 {
        let watched = Watched::new(sim_machine());
        let driver: Arc<dyn Driver> = watched.clone();
        let mover = mover_with(&driver, "1->0");
        let data = pattern(300_000, 8);
        let a = device_with(&driver, 0, &data, AllocKind::Plain);
        let b = device_with(&driver, 1, &data, AllocKind::Plain);
        let mut to_b = device_with(&driver, 1, &complement(&data), AllocKind::Plain);
        let mut to_a = device_with(&driver, 0, &complement(&data), AllocKind::Plain);
        watched.fail_event_at.store(nth, Ordering::SeqCst);
        let items: Vec<(
            &p2p_core::memory::DeviceBuffer,
            &mut p2p_core::memory::DeviceBuffer,
        )> = vec![(&a, &mut to_b), (&b, &mut to_a)];
        let result = mover.copy_batch(items);
        assert_eq!(
            watched.unfinished(),
            Vec::new(),
            "event {nth} failing: {result:?} returned with copies unfinished"
        );
    }
}

/// `Drop` records errors (cudarc's record_err / check_err): a failed free
/// in a drop is visible to the program.
#[test]
fn a_failed_free_in_drop_is_recorded() {
    let sim = sim_seeded(p2p_core::sim::DEFAULT_SEED);
    let driver: Arc<dyn Driver> = sim.clone();
    let buffer = p2p_core::memory::DeviceBuffer::new(&driver, 0, 4096, AllocKind::Plain).unwrap();
    sim.fail_call(p2p_core::sim::CallKind::FreeDevice, 1);
    drop(buffer);
    let recorded = p2p_core::memory::check_drop_errors();
    let (errors, _) = recorded.expect_err("the failed free is recorded");
    assert!(
        errors
            .iter()
            .any(|(what, _)| what.contains("freeing 4096 bytes on cuda:0")),
        "{errors:?}"
    );
    assert!(p2p_core::memory::check_drop_errors().is_ok(), "taken once");
}
