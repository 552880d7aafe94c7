//! Virtual time on the simulated backend: copy speeds, events between streams, pool grants.

mod support;

use p2p_core::pattern;
use p2p_core::{AllocKind, DeviceAddr, Driver, PoolId, SimDriver, StreamId};
use support::*;

/// Virtual milliseconds that `work` takes on a fresh stream of `device`.
fn timed(driver: &SimDriver, device: usize, work: impl FnOnce(StreamId)) -> f32 {
    let stream = driver.create_stream(device).unwrap();
    let start = driver.create_timing_event(device).unwrap();
    let end = driver.create_timing_event(device).unwrap();
    driver.record_event(start, stream).unwrap();
    work(stream);
    driver.record_event(end, stream).unwrap();
    driver.synchronize_stream(stream).unwrap();
    driver.event_elapsed_ms(start, end).unwrap()
}

fn assert_close(got: f32, want: f64) {
    assert!(
        (f64::from(got) - want).abs() < 1e-4 * want.max(1.0),
        "got {got} ms, want {want} ms"
    );
}

#[test]
fn virtual_time_follows_the_speeds() {
    for_each_seed(|s| {
        let driver = s.machine(&three_gpus());
        let bytes = 5_000_000;
        let src = driver.alloc_device(0, bytes, AllocKind::Plain).unwrap();
        let dst = driver.alloc_device(1, bytes, AllocKind::Plain).unwrap();
        let host = driver.alloc_pinned(bytes).unwrap();
        // Host copies: device 0 at 25 GB/s, device 1 at 20 GB/s, plus 8 µs.
        let ms = timed(&driver, 0, |s| {
            // SAFETY: `host` and `src` hold `bytes`; `timed` synchronizes the stream.
            unsafe { driver.copy_dtoh_async(host, src, bytes, s).unwrap() }
        });
        assert_close(ms, 0.2 + 0.008);
        let ms = timed(&driver, 1, |s| {
            // SAFETY: `host` and `dst` hold `bytes`; `timed` synchronizes the stream.
            unsafe { driver.copy_htod_async(dst, host, bytes, s).unwrap() }
        });
        assert_close(ms, 0.25 + 0.008);
        // Staged by the driver: min(25, 20) / 2 = 10 GB/s, plus 5 µs.
        let ms = timed(&driver, 1, |s| {
            peer_copy(&driver, dst, src, bytes, s).unwrap()
        });
        assert_close(ms, 0.5 + 0.005);
        // Direct: the pair's 50 GB/s.
        driver.enable_peer_access(1, 0).unwrap();
        let ms = timed(&driver, 1, |s| {
            peer_copy(&driver, dst, src, bytes, s).unwrap()
        });
        assert_close(ms, 0.1 + 0.005);
        // Two copies back to back add up.
        let ms = timed(&driver, 1, |s| {
            peer_copy(&driver, dst, src, bytes, s).unwrap();
            peer_copy(&driver, dst, src, bytes, s).unwrap();
        });
        assert_close(ms, 0.21);
        // SAFETY: `host` is ours and no work uses it any more.
        unsafe { driver.free_pinned(host).unwrap() };
    });
}

#[test]
fn events_order_streams_in_virtual_time() {
    for_each_seed(|s| {
        let driver = s.machine(&three_gpus());
        let bytes = 2_500_000; // 0.1 ms at 25 GB/s, plus 8 µs
        let a = driver.alloc_device(0, bytes, AllocKind::Plain).unwrap();
        let b = driver.alloc_device(0, bytes, AllocKind::Plain).unwrap();
        let host = driver.alloc_pinned(bytes).unwrap();
        let other_host = driver.alloc_pinned(bytes).unwrap();
        let s1 = driver.create_stream(0).unwrap();
        let s2 = driver.create_stream(0).unwrap();
        let start = driver.create_timing_event(0).unwrap();
        let middle = driver.create_timing_event(0).unwrap();
        let end = driver.create_timing_event(0).unwrap();
        let copy = 0.108;

        // Chained by an event: the second copy starts when the first ends.
        driver.record_event(start, s1).unwrap();
        // SAFETY: `host` and the buffers hold `bytes`; everything is synchronized below.
        unsafe { driver.copy_dtoh_async(host, a, bytes, s1).unwrap() };
        driver.record_event(middle, s1).unwrap();
        driver.stream_wait_event(s2, middle).unwrap();
        // SAFETY: as above.
        unsafe { driver.copy_htod_async(b, host, bytes, s2).unwrap() };
        driver.record_event(end, s2).unwrap();
        // Event times exist once the events have run (CUDA: NOT_READY before).
        driver.synchronize_stream(s2).unwrap();
        assert_close(driver.event_elapsed_ms(start, middle).unwrap(), copy);
        assert_close(driver.event_elapsed_ms(start, end).unwrap(), 2.0 * copy);

        // Not chained: two streams overlap.
        let (s3, s4) = (
            driver.create_stream(0).unwrap(),
            driver.create_stream(0).unwrap(),
        );
        driver.record_event(start, s3).unwrap();
        // SAFETY: as above.
        unsafe {
            driver.copy_dtoh_async(host, a, bytes, s3).unwrap();
            // Into another buffer: two unordered writes to one would race.
            driver.copy_dtoh_async(other_host, b, bytes, s4).unwrap();
        }
        driver.record_event(end, s4).unwrap();
        driver.synchronize_stream(s3).unwrap();
        driver.synchronize_stream(s4).unwrap();
        assert_close(driver.event_elapsed_ms(start, end).unwrap(), copy);

        // A host synchronize in between: the second copy starts after the first.
        let (s5, s6) = (
            driver.create_stream(0).unwrap(),
            driver.create_stream(0).unwrap(),
        );
        driver.synchronize_stream(s3).unwrap();
        driver.synchronize_stream(s4).unwrap();
        driver.record_event(start, s5).unwrap();
        // SAFETY: as above.
        unsafe { driver.copy_dtoh_async(host, a, bytes, s5).unwrap() };
        driver.synchronize_stream(s5).unwrap();
        // SAFETY: as above.
        unsafe { driver.copy_htod_async(b, host, bytes, s6).unwrap() };
        driver.record_event(end, s6).unwrap();
        driver.synchronize_stream(s6).unwrap();
        assert_close(driver.event_elapsed_ms(start, end).unwrap(), 2.0 * copy);
        // SAFETY: `host` is ours and nothing uses it now.
        unsafe {
            driver.free_pinned(host).unwrap();
            driver.free_pinned(other_host).unwrap();
        }
    });
}

#[test]
fn pool_memory_needs_a_grant_for_full_peer_speed() {
    for_each_seed(|s| {
        let driver = s.machine(&three_gpus());
        let bytes = 5_000_000;
        let plain = driver.alloc_device(0, bytes, AllocKind::Plain).unwrap();
        let pooled = driver.alloc_device(0, bytes, AllocKind::Pool).unwrap();
        let dst = driver.alloc_device(1, bytes, AllocKind::Plain).unwrap();
        assert_eq!(driver.pool_of(plain).unwrap(), None);
        let pool = driver.pool_of(pooled.offset(1000)).unwrap().unwrap();
        assert_eq!(pool, PoolId { device: 0, raw: 1 });
        assert!(is_cuda_error(
            driver.pool_of(DeviceAddr { device: 0, addr: 8 }),
            "CUDA_ERROR_INVALID_VALUE"
        ));
        driver.enable_peer_access(1, 0).unwrap();

        let fast = timed(&driver, 1, |s| {
            peer_copy(&driver, dst, plain, bytes, s).unwrap()
        });
        let slow = timed(&driver, 1, |s| {
            peer_copy(&driver, dst, pooled, bytes, s).unwrap()
        });
        assert_close(fast, 0.1 + 0.005);
        assert_close(slow, 1.0 + 0.005);
        driver.grant_pool_access(pool, 1).unwrap();
        let granted = timed(&driver, 1, |s| {
            peer_copy(&driver, dst, pooled, bytes, s).unwrap()
        });
        assert_close(granted, 0.1 + 0.005);
        assert!(is_cuda_error(
            driver.grant_pool_access(PoolId { device: 0, raw: 7 }, 1),
            "CUDA_ERROR_INVALID_VALUE"
        ));
        // Correct bytes either way.
        let data = pattern::bytes(bytes, 4);
        let pooled_src = upload(&driver, 0, &data, AllocKind::Pool);
        peer_copy(&driver, dst, pooled_src, bytes, default_stream(1)).unwrap();
        assert_eq!(download(&driver, dst, bytes), data);
    });
}
