//! Contract clauses about streams, events and threads: handles are distinct
//! and live, events order streams and time work, and one driver serves many
//! threads at once.

use std::sync::{Arc, Barrier};
use std::time::Duration;

use p2p_core::memory::{DeviceBuffer, Event, Stream};
use p2p_core::pattern::{self, first_mismatch};
use p2p_core::{AllocKind, Driver};

use super::{busy_bytes, queue_fills, KINDS};

pub(crate) fn streams_and_events_are_distinct_live_handles(driver: &Arc<dyn Driver>) {
    let a = driver.create_stream(0).unwrap();
    let b = driver.create_stream(0).unwrap();
    assert_ne!(a, b);
    assert!(a.raw != 0 && b.raw != 0, "0 is the default stream");
    let event = driver.create_event(0).unwrap();
    let other = driver.create_timing_event(0).unwrap();
    assert_ne!(event, other);
    assert!(
        driver.event_done(event).unwrap(),
        "a fresh event is done, as in CUDA"
    );
    let buffer = DeviceBuffer::new(driver, 0, 1 << 20, AllocKind::Plain).unwrap();
    // SAFETY: the buffer outlives the synchronize below.
    unsafe { driver.memset_async(buffer.ptr(), 3, 1 << 20, a).unwrap() };
    driver.record_event(event, a).unwrap();
    driver.stream_wait_event(b, event).unwrap();
    driver.synchronize_stream(b).unwrap();
    assert!(
        driver.event_done(event).unwrap(),
        "done once a stream that waits for it is"
    );
    driver.synchronize_stream(a).unwrap();
    assert!(driver.stream_done(a).unwrap());
    // SAFETY: each handle is ours, destroyed once, with nothing queued on it.
    unsafe {
        driver.destroy_event(event).unwrap();
        driver.destroy_event(other).unwrap();
        driver.destroy_stream(a).unwrap();
        driver.destroy_stream(b).unwrap();
    }
}

pub(crate) fn events_order_streams_and_time_work(driver: &Arc<dyn Driver>) {
    let device = driver.device_count() - 1;
    let len = busy_bytes(driver);
    let buffer = DeviceBuffer::new(driver, device, len, AllocKind::Plain).unwrap();
    let first = Stream::new(driver, device).unwrap();
    let second = Stream::new(driver, device).unwrap();
    let start = Event::with_timing(driver, device).unwrap();
    let end = Event::with_timing(driver, device).unwrap();

    start.record(&first).unwrap();
    // SAFETY: the buffer holds `len` bytes and outlives the waits below.
    unsafe { queue_fills(driver, buffer.ptr(), len, &first, 8) };
    end.record(&first).unwrap();
    // The second stream reads only after the fills: it waits on `end`.
    driver.stream_wait_event(second.id(), end.id()).unwrap();
    let mut tail = vec![0u8; 4096];
    // SAFETY: `tail` and the buffer outlive the synchronize.
    unsafe {
        driver
            .copy_dtoh_async(
                tail.as_mut_ptr(),
                buffer.ptr().offset(len - 4096),
                4096,
                second.id(),
            )
            .unwrap();
    }
    driver
        .wait_event(end.id(), Duration::from_secs(30))
        .unwrap();
    assert!(driver.event_done(end.id()).unwrap());
    second.synchronize().unwrap();
    assert!(
        tail.iter().all(|&b| b == 7),
        "the read did not wait for the fills"
    );

    let ms = driver.event_elapsed_ms(start.id(), end.id()).unwrap();
    eprintln!("8 fills of {len} bytes: {ms:.3} ms");
    assert!(ms > 0.0 && ms < 30_000.0, "elapsed {ms} ms");
}

pub(crate) fn one_driver_serves_many_threads_at_once(driver: &Arc<dyn Driver>) {
    // On a fresh CUDA driver the threads race to retain each device's
    // primary context and allocation stream.
    let threads = 8;
    let barrier = Barrier::new(threads);
    std::thread::scope(|scope| {
        for t in 0..threads {
            let barrier = &barrier;
            scope.spawn(move || {
                barrier.wait();
                for device in 0..driver.device_count() {
                    let kind = KINDS[t % 2];
                    let want = pattern::bytes((64 << 10) + t, t as u64);
                    let stream = Stream::new(driver, device).unwrap();
                    let mut buffer = DeviceBuffer::new(driver, device, want.len(), kind).unwrap();
                    buffer.write_from_slice(&want, &stream).unwrap();
                    let got = buffer.read_to_vec(&stream).unwrap();
                    assert_eq!(
                        first_mismatch(&want, &got),
                        None,
                        "thread {t} cuda:{device}"
                    );
                }
            });
        }
    });
}
