//! The deferred simulator's own rules: FIFO streams, event versions, memory at execution time, address reuse and poison, the race detector, the borrow check, late copies, failing calls, slow queries.

mod support;

use std::time::Duration;

use p2p_core::pattern;
use p2p_core::sim::{CallKind, Execution, Fault, ReportKind, POISON};
use p2p_core::{AllocKind, DeviceAddr, Driver, Error, MemRange, SimDriver, StreamId};
use support::*;

fn memset(driver: &SimDriver, dst: DeviceAddr, value: u8, bytes: usize, stream: StreamId) {
    // SAFETY: the tests pass live allocations of at least `bytes`.
    unsafe { driver.memset_async(dst, value, bytes, stream).unwrap() }
}

fn kinds(driver: &SimDriver) -> Vec<ReportKind> {
    driver.reports().iter().map(|report| report.kind).collect()
}

#[test]
fn work_on_one_stream_runs_in_order() {
    for_each_seed(|s| {
        let driver = s.machine(&three_gpus());
        let stream = driver.create_stream(0).unwrap();
        let a = driver.alloc_device(0, 4096, AllocKind::Plain).unwrap();
        let b = driver.alloc_device(0, 4096, AllocKind::Plain).unwrap();
        memset(&driver, a, 1, 4096, stream);
        peer_copy(&driver, b, a, 4096, stream).unwrap();
        memset(&driver, a, 2, 4096, stream);
        memset(&driver, a, 3, 100, stream);
        driver.synchronize_stream(stream).unwrap();
        assert_eq!(download(&driver, b, 4096), vec![1u8; 4096]);
        let mut want = vec![2u8; 4096];
        want[..100].fill(3);
        assert_eq!(download(&driver, a, 4096), want);
    });
}

#[test]
fn nothing_runs_before_it_is_observed_on_the_lazy_schedule() {
    // Seed 0 never runs work in the background.
    let s = SeedRun::new(0);
    let driver = s.machine(&three_gpus());
    let stream = driver.create_stream(0).unwrap();
    let a = driver.alloc_device(0, 64, AllocKind::Plain).unwrap();
    memset(&driver, a, 5, 64, stream);
    let event = driver.create_event(0).unwrap();
    driver.record_event(event, stream).unwrap();
    for _ in 0..50 {
        driver.claim(0, 1).unwrap();
    }
    assert_eq!(driver.queued_operations(), 2);
    assert!(
        driver.event_done(event).unwrap(),
        "a query drives the work it asks about"
    );
    assert_eq!(driver.queued_operations(), 0);
    assert!(driver.stream_done(stream).unwrap());
    check(&s);
}

#[test]
fn host_memory_is_read_when_the_copy_runs() {
    let s = SeedRun::new(0);
    let driver = s.machine(&three_gpus());
    let stream = driver.create_stream(1).unwrap();
    let dst = driver.alloc_device(1, 8, AllocKind::Plain).unwrap();
    let mut host = [1u8; 8];
    // SAFETY: `host` lives until the synchronize below.
    unsafe {
        driver
            .copy_htod_async(dst, host.as_ptr(), 8, stream)
            .unwrap()
    };
    host.fill(9);
    driver.synchronize_stream(stream).unwrap();
    assert_eq!(
        download(&driver, dst, 8),
        vec![9u8; 8],
        "the bytes at run time arrive"
    );
    check(&s);

    // Eager execution copies at once.
    let eager = unchecked(s.seed(), Execution::Eager);
    let dst = eager.alloc_device(1, 8, AllocKind::Plain).unwrap();
    let stream = eager.create_stream(1).unwrap();
    host.fill(1);
    // SAFETY: as above.
    unsafe {
        eager
            .copy_htod_async(dst, host.as_ptr(), 8, stream)
            .unwrap()
    };
    host.fill(9);
    eager.synchronize_stream(stream).unwrap();
    assert_eq!(download(&eager, dst, 8), vec![1u8; 8]);
}

#[test]
fn a_stream_wait_holds_work_back_until_the_event_ran() {
    for_each_seed(|s| {
        // The copy's stream alone is synchronized before the bytes are read:
        // its wait made the upload run first.
        let driver = s.machine(&three_gpus());
        assert_eq!(upload_then_copy(&driver, true), pattern::bytes(50_000, 8));
    });
}

#[test]
fn a_wait_is_for_the_version_current_when_it_was_queued() {
    for_each_seed(|s| {
        let driver = s.machine(&three_gpus());
        driver.set_peer_fault(1, 2, Fault::Hang).unwrap();
        driver.enable_peer_access(2, 1).unwrap();
        let event = driver.create_event(2).unwrap();
        // A never-recorded event is complete, and waiting on it waits for nothing.
        assert!(driver.event_done(event).unwrap());
        let first = driver.create_stream(2).unwrap();
        let a = driver.alloc_device(2, 64, AllocKind::Plain).unwrap();
        let b = driver.alloc_device(2, 64, AllocKind::Plain).unwrap();
        memset(&driver, a, 4, 64, first);
        driver.record_event(event, first).unwrap();
        let waiter = driver.create_stream(2).unwrap();
        driver.stream_wait_event(waiter, event).unwrap();
        // A second version, behind a copy that never finishes.
        let hung = driver.create_stream(2).unwrap();
        let src = driver.alloc_device(1, 64, AllocKind::Plain).unwrap();
        let dst = driver.alloc_device(2, 64, AllocKind::Plain).unwrap();
        peer_copy(&driver, dst, src, 64, hung).unwrap();
        driver.record_event(event, hung).unwrap();
        // The waiter still waits for the first version only.
        peer_copy(&driver, b, a, 64, waiter).unwrap();
        driver.synchronize_stream(waiter).unwrap();
        assert_eq!(download(&driver, b, 64), vec![4u8; 64]);
        // Queries are about the current version, which never runs.
        assert!(!driver.event_done(event).unwrap());
        let late_waiter = driver.create_stream(2).unwrap();
        driver.stream_wait_event(late_waiter, event).unwrap();
        assert!(matches!(
            driver.synchronize_stream(late_waiter),
            Err(Error::Timeout { .. })
        ));
    });
}

#[test]
fn freed_addresses_are_reused_most_recent_first_and_poisoned() {
    for_each_seed(|s| {
        let driver = s.machine(&three_gpus());
        let fresh = driver.alloc_device(0, 4096, AllocKind::Plain).unwrap();
        assert_ne!(
            download(&driver, fresh, 4096),
            vec![0u8; 4096],
            "fresh memory is garbage"
        );
        let a = driver.alloc_device(0, 1000, AllocKind::Plain).unwrap();
        let b = driver.alloc_device(0, 1000, AllocKind::Plain).unwrap();
        // SAFETY: both are ours, unused, freed once.
        unsafe {
            driver.free_device(a).unwrap();
            driver.free_device(b).unwrap();
        }
        let again_b = driver.alloc_device(0, 1000, AllocKind::Plain).unwrap();
        let again_a = driver.alloc_device(0, 900, AllocKind::Plain).unwrap();
        assert_eq!((again_b, again_a), (b, a), "most recently freed first");
        let poison: Vec<u8> = POISON.iter().copied().cycle().take(1000).collect();
        assert_eq!(download(&driver, again_b, 1000), poison);

        let pinned = driver.alloc_pinned(512).unwrap();
        // SAFETY: ours, unused, freed once.
        unsafe { driver.free_pinned(pinned).unwrap() };
        let reused = driver.alloc_pinned(500).unwrap();
        assert_eq!(reused, pinned);
        // SAFETY: `reused` holds 500 initialised bytes.
        let bytes = unsafe { std::slice::from_raw_parts(reused, 500) }.to_vec();
        assert_eq!(bytes, poison[..500]);
        // SAFETY: ours, unused, freed once.
        unsafe { driver.free_pinned(reused).unwrap() };
    });
}

/// Two streams of cuda:0: one uploads into `a`, the other copies `a` to `b`,
/// ordered by an event only if `ordered`.
fn upload_then_copy(driver: &SimDriver, ordered: bool) -> Vec<u8> {
    let (up, copy) = (
        driver.create_stream(0).unwrap(),
        driver.create_stream(0).unwrap(),
    );
    let data = pattern::bytes(50_000, 8);
    let a = driver
        .alloc_device(0, data.len(), AllocKind::Plain)
        .unwrap();
    let b = driver
        .alloc_device(0, data.len(), AllocKind::Plain)
        .unwrap();
    // SAFETY: `data` outlives the synchronizes below.
    unsafe {
        driver
            .copy_htod_async(a, data.as_ptr(), data.len(), up)
            .unwrap()
    };
    if ordered {
        let event = driver.create_event(0).unwrap();
        driver.record_event(event, up).unwrap();
        driver.stream_wait_event(copy, event).unwrap();
    }
    peer_copy(driver, b, a, data.len(), copy).unwrap();
    driver.synchronize_stream(copy).unwrap();
    let copied = download(driver, b, data.len());
    driver.synchronize_stream(up).unwrap();
    copied
}

#[test]
fn a_race_is_reported_with_both_sides() {
    for_each_seed(|s| {
        let racy = unchecked(s.seed(), Execution::Deferred);
        upload_then_copy(&racy, false);
        let reports = racy.reports();
        assert_eq!(kinds(&racy), [ReportKind::Race], "{reports:#?}");
        let text = reports[0].to_string();
        for needle in [
            "cuMemcpyHtoDAsync of 50000 bytes (writes) on stream cuda:0#1",
            "cuMemcpyPeerAsync of 50000 bytes (reads) on stream cuda:0#2",
            "queued by host thread",
            "driver call #",
        ] {
            assert!(text.contains(needle), "{needle:?} not in {text}");
        }
        let problems = racy.check_clean().unwrap_err().to_string();
        assert!(
            problems.contains(&format!("P2P_SIM_SEED={}", s.seed())),
            "{problems}"
        );
    });
}

#[test]
fn the_same_seed_gives_the_same_schedule() {
    let run = |seed| {
        let s = SeedRun::new(seed);
        let racy = unchecked(s.seed(), Execution::Deferred);
        let bytes = upload_then_copy(&racy, false);
        (bytes, racy.reports(), racy.virtual_now_ns())
    };
    for seed in p2p_core::sim::seeds() {
        assert_eq!(run(seed), run(seed), "seed {seed}");
    }
}

#[test]
fn returning_with_work_queued_on_a_borrowed_range_is_reported() {
    for_each_seed(|s| {
        let driver = unchecked(s.seed(), Execution::Deferred);
        let src = upload(&driver, 0, &pattern::bytes(4096, 1), AllocKind::Plain);
        let stream = driver.create_stream(0).unwrap();
        let mut out = vec![0u8; 4096];
        // SAFETY: `out` outlives the copy (it is detached at the release below).
        unsafe {
            driver
                .copy_dtoh_async(out.as_mut_ptr(), src, 4096, stream)
                .unwrap()
        };
        let range = MemRange::Host {
            addr: out.as_mut_ptr() as usize,
            len: 4096,
        };
        // Whether the copy ran in the background or not, nobody waited for it.
        driver.borrows_released(&[range]);
        assert_eq!(kinds(&driver), [ReportKind::BorrowReleasedWhileInUse]);
        driver.synchronize_stream(stream).unwrap();

        // Waiting before the release is clean.
        let good = s.machine(&three_gpus());
        let src = upload(&good, 0, &pattern::bytes(4096, 1), AllocKind::Plain);
        let stream = good.create_stream(0).unwrap();
        // SAFETY: as above; synchronized before the release.
        unsafe {
            good.copy_dtoh_async(out.as_mut_ptr(), src, 4096, stream)
                .unwrap()
        };
        good.synchronize_stream(stream).unwrap();
        good.borrows_released(&[range]);
        assert_eq!(out, pattern::bytes(4096, 1));
    });
}

#[test]
fn freeing_memory_in_use_and_using_freed_memory_are_reported() {
    for_each_seed(|s| {
        let driver = unchecked(s.seed(), Execution::Deferred);
        let stream = driver.create_stream(0).unwrap();
        let a = driver.alloc_device(0, 256, AllocKind::Plain).unwrap();
        memset(&driver, a, 1, 256, stream);
        // SAFETY: deliberately freed under queued work; the simulator copes.
        unsafe { driver.free_device(a).unwrap() };
        driver.synchronize_stream(stream).unwrap();
        let found = kinds(&driver);
        assert_eq!(found[0], ReportKind::FreeWhileInUse, "{found:?}");
        if driver.reports().len() > 1 {
            assert_eq!(found[1..], [ReportKind::UseAfterFree]);
        }
    });
}

#[test]
fn a_late_copy_times_out_and_completes_after_the_deadline() {
    for_each_seed(|s| {
        let driver = s.machine(&three_gpus());
        driver.set_peer_fault(1, 2, Fault::Late { ms: 50 }).unwrap();
        driver.enable_peer_access(2, 1).unwrap();
        let data = pattern::bytes(4096, 6);
        let src = upload(&driver, 1, &data, AllocKind::Plain);
        let dst = upload(&driver, 2, &[0xee; 4096], AllocKind::Plain);
        let stream = driver.create_stream(2).unwrap();
        peer_copy(&driver, dst, src, 4096, stream).unwrap();
        let done = driver.create_event(2).unwrap();
        driver.record_event(done, stream).unwrap();
        let before = driver.virtual_now_ns();
        match driver.wait_event(done, Duration::from_millis(10)) {
            Err(Error::Timeout { after_ms, .. }) => assert_eq!(after_ms, 10),
            other => panic!("expected a timeout, got {other:?}"),
        }
        assert!(driver.virtual_now_ns() >= before + 10_000_000);
        assert_eq!(driver.queued_operations(), 2, "the copy has not run");
        assert!(!driver.event_done(done).unwrap());
        driver.wait_event(done, Duration::from_millis(100)).unwrap();
        assert!(driver.virtual_now_ns() >= before + 50_000_000);
        assert_eq!(
            download(&driver, dst, 4096),
            data,
            "written late, and correct"
        );
    });
}

#[test]
fn a_late_copy_writes_after_the_caller_gave_up() {
    let s = SeedRun::new(0);
    let driver = unchecked(s.seed(), Execution::Deferred);
    driver.set_peer_fault(1, 2, Fault::Late { ms: 50 }).unwrap();
    driver.enable_peer_access(2, 1).unwrap();
    let src = upload(&driver, 1, &pattern::bytes(64, 6), AllocKind::Plain);
    let dst = driver.alloc_device(2, 64, AllocKind::Plain).unwrap();
    let stream = driver.create_stream(2).unwrap();
    peer_copy(&driver, dst, src, 64, stream).unwrap();
    assert!(driver
        .wait_stream(stream, Duration::from_millis(5))
        .is_err());
    // Giving up and freeing the destination is a bug the late write exposes.
    // SAFETY: deliberately freed under a queued copy; the simulator copes.
    unsafe { driver.free_device(dst).unwrap() };
    driver.synchronize_stream(stream).unwrap();
    assert_eq!(
        kinds(&driver),
        [ReportKind::FreeWhileInUse, ReportKind::UseAfterFree]
    );
}

#[test]
fn deadlines_pass_in_virtual_time_by_the_bandwidth_model() {
    for_each_seed(|s| {
        let driver = s.machine(&three_gpus());
        // 20 MB staged by the driver from 0 to 1: min(25, 20) / 2 = 10 GB/s, 2 ms.
        let bytes = 20_000_000;
        let src = driver.alloc_device(0, bytes, AllocKind::Plain).unwrap();
        let dst = driver.alloc_device(1, bytes, AllocKind::Plain).unwrap();
        let stream = driver.create_stream(1).unwrap();
        peer_copy(&driver, dst, src, bytes, stream).unwrap();
        assert!(matches!(
            driver.wait_stream(stream, Duration::from_millis(1)),
            Err(Error::Timeout { after_ms: 1, .. })
        ));
        driver.wait_stream(stream, Duration::from_secs(1)).unwrap();
        assert!(driver.virtual_now_ns() >= 2_000_000);
    });
}

#[test]
fn the_nth_call_fails_with_a_cuda_error() {
    for_each_seed(|s| {
        let driver = s.machine(&three_gpus());
        let a = driver.alloc_device(0, 64, AllocKind::Plain).unwrap();
        let stream = driver.create_stream(0).unwrap();
        driver.fail_call(CallKind::Copy, 2);
        peer_copy(&driver, a, a, 64, stream).unwrap();
        assert!(is_cuda_error(
            peer_copy(&driver, a, a, 64, stream),
            "CUDA_ERROR_UNKNOWN"
        ));
        peer_copy(&driver, a, a, 64, stream).unwrap();
        driver.fail_call(CallKind::Any, 1);
        assert!(is_cuda_error(driver.create_event(0), "CUDA_ERROR_UNKNOWN"));
        driver.create_event(0).unwrap();
        driver.fail_call(CallKind::AllocDevice, 1);
        assert!(matches!(
            driver.alloc_device(0, 64, AllocKind::Plain),
            Err(Error::OutOfMemory { bytes: 64, .. })
        ));
        driver.fail_call(CallKind::Record, 1);
        let event = driver.create_event(0).unwrap();
        assert!(driver.record_event(event, stream).is_err());
        driver.record_event(event, stream).unwrap();
        let counts = driver.call_counts();
        assert_eq!(counts.of(CallKind::Copy), 3);
        assert_eq!(counts.of(CallKind::CreateEvent), 3);
        assert_eq!(counts.of(CallKind::Record), 2);
        driver.synchronize_stream(stream).unwrap();
        assert_eq!(driver.call_counts().since(&counts).total(), 1);
    });
}

#[test]
fn slow_queries_say_not_yet_for_a_while() {
    for_each_seed(|s| {
        let driver = s.machine(&three_gpus());
        let stream = driver.create_stream(0).unwrap();
        let a = driver.alloc_device(0, 64, AllocKind::Plain).unwrap();
        memset(&driver, a, 1, 64, stream);
        let event = driver.create_event(0).unwrap();
        driver.record_event(event, stream).unwrap();
        driver.slow_queries(3);
        let answers: Vec<bool> = (0..4).map(|_| driver.event_done(event).unwrap()).collect();
        assert_eq!(answers, [false, false, false, true]);
        driver.slow_queries(1000);
        assert!(matches!(
            driver.wait_event(event, Duration::from_millis(1)),
            Err(Error::Timeout { .. })
        ));
        driver.slow_queries(2);
        driver.wait_event(event, Duration::from_secs(1)).unwrap();
        assert!(driver.stream_done(stream).unwrap());
    });
}
