//! The CUDA backend on real GPUs (`--features cuda-tests`, run by `cargo xtask gpu-test`).
//!
//! Every test needs a GPU and fails, never passes, without one; the peer
//! tests need two and fail with "needs two GPUs" on a machine with fewer.
#![cfg(feature = "cuda-tests")]

use std::sync::Arc;
use std::time::Duration;

use p2p_core::memory::{DeviceBuffer, Event, PinnedBuffer, Stream};
use p2p_core::{AllocKind, CopyDesc, CudaDriver, DeviceAddr, Driver, Error, StreamId};

const KINDS: [AllocKind; 2] = [AllocKind::Plain, AllocKind::Pool];

/// The backend, or a failure that says why there is none.
fn driver() -> Arc<dyn Driver> {
    match CudaDriver::new() {
        Ok(driver) => Arc::new(driver),
        Err(err) => panic!("these tests need a CUDA GPU: {err}"),
    }
}

/// Fails the test, with the reason, on a machine with fewer than two GPUs.
fn two_gpu_driver() -> Arc<dyn Driver> {
    let driver = driver();
    assert!(
        driver.device_count() >= 2,
        "needs two GPUs: this machine shows {}",
        driver.device_count()
    );
    driver
}

/// Not zeros, not a constant, not periodic within a page: a wrong byte shows.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).rotate_right(13) as u8 ^ seed)
        .collect()
}

fn first_mismatch(got: &[u8], want: &[u8]) -> Option<usize> {
    assert_eq!(got.len(), want.len());
    got.iter().zip(want).position(|(a, b)| a != b)
}

#[test]
fn lists_devices_with_sane_facts() {
    let driver = driver();
    assert!(driver.device_count() >= 1);
    assert!(
        driver.driver_version() >= 11000,
        "driver {}",
        driver.driver_version()
    );
    for (ordinal, info) in driver.devices().iter().enumerate() {
        eprintln!("{info:?}");
        assert_eq!(info.ordinal, ordinal);
        assert!(!info.name.is_empty());
        let uuid = &info.uuid;
        assert!(uuid.starts_with("GPU-") && uuid.len() == 40, "uuid {uuid}");
        assert_eq!(uuid.matches('-').count(), 5, "uuid {uuid}");
        let pci = &info.pci_bus_id;
        assert_eq!(pci.len(), 12, "pci bus id {pci}");
        assert_eq!(pci, &pci.to_ascii_lowercase());
        assert!(info.compute_capability.0 >= 3, "{info:?}");
        assert!(info.total_memory_bytes >= 1 << 30, "{info:?}");
        assert!(info.copy_engines >= 1, "{info:?}");
    }
    let uuids: std::collections::HashSet<_> = driver.devices().iter().map(|d| &d.uuid).collect();
    assert_eq!(uuids.len(), driver.device_count(), "UUIDs are not unique");
}

#[test]
fn round_trips_a_pattern_through_plain_and_pool_memory_on_every_device() {
    let driver = driver();
    let len = (4 << 20) + 13; // several pages and an odd tail
    for device in 0..driver.device_count() {
        let stream = Stream::new(&driver, device).unwrap();
        for kind in KINDS {
            let want = pattern(len, device as u8 + 1);
            let mut buffer = DeviceBuffer::new(&driver, device, len, kind).unwrap();
            buffer.write_from_slice(&want, &stream).unwrap();
            let got = buffer.read_to_vec(&stream).unwrap();
            assert_eq!(first_mismatch(&got, &want), None, "cuda:{device} {kind:?}");

            // Through pinned memory, and a fill of the middle.
            let mut pinned = PinnedBuffer::new(&driver, len).unwrap();
            // SAFETY: both buffers hold `len` bytes and outlive the synchronize.
            unsafe {
                driver
                    .memset_async(buffer.ptr().offset(1000), 0xa5, 5000, stream.id())
                    .unwrap();
                driver
                    .copy_dtoh_async(pinned.as_mut_ptr(), buffer.ptr(), len, stream.id())
                    .unwrap();
            }
            stream.synchronize().unwrap();
            let mut want_filled = want.clone();
            want_filled[1000..6000].fill(0xa5);
            assert_eq!(
                first_mismatch(pinned.as_slice(), &want_filled),
                None,
                "cuda:{device} {kind:?} via pinned"
            );
        }
    }
}

#[test]
fn the_legacy_default_stream_works_without_being_created() {
    let driver = driver();
    for device in 0..driver.device_count() {
        let legacy = StreamId { device, raw: 0 };
        let want = pattern(1 << 20, 7);
        let mut got = vec![0u8; want.len()];
        let buffer = DeviceBuffer::new(&driver, device, want.len(), AllocKind::Plain).unwrap();
        // SAFETY: both host vectors and the buffer outlive the synchronize.
        unsafe {
            driver
                .copy_htod_async(buffer.ptr(), want.as_ptr(), want.len(), legacy)
                .unwrap();
            driver
                .copy_dtoh_async(got.as_mut_ptr(), buffer.ptr(), got.len(), legacy)
                .unwrap();
        }
        driver.synchronize_stream(legacy).unwrap();
        assert_eq!(first_mismatch(&got, &want), None, "cuda:{device}");
        // Destroying it is a no-op, not an error.
        // SAFETY: raw 0 is never destroyed by the backend.
        unsafe { driver.destroy_stream(legacy).unwrap() };
    }
}

#[test]
fn zero_byte_allocations_and_copies_work() {
    let driver = driver();
    let stream = Stream::new(&driver, 0).unwrap();
    for kind in KINDS {
        let empty = DeviceBuffer::new(&driver, 0, 0, kind).unwrap();
        assert!(empty.is_empty());
        assert_ne!(
            empty.ptr().addr,
            0,
            "a 0-byte allocation still has an address"
        );
        assert_eq!(empty.read_to_vec(&stream).unwrap(), Vec::<u8>::new());
        // SAFETY: 0-byte operations touch no memory.
        unsafe {
            driver
                .copy_peer_async(empty.ptr(), empty.ptr(), 0, stream.id())
                .unwrap();
            driver.memset_async(empty.ptr(), 1, 0, stream.id()).unwrap();
        }
    }
    let pinned = PinnedBuffer::new(&driver, 0).unwrap();
    assert!(pinned.is_empty());
}

#[test]
fn same_device_copy_and_batch_copy_deliver_the_bytes() {
    let driver = driver();
    let stream = Stream::new(&driver, 0).unwrap();
    let len = 1 << 20;
    let want = pattern(len, 3);
    let mut src = DeviceBuffer::new(&driver, 0, len, AllocKind::Plain).unwrap();
    let dst = DeviceBuffer::new(&driver, 0, len, AllocKind::Pool).unwrap();
    src.write_from_slice(&want, &stream).unwrap();
    // SAFETY: both buffers hold `len` bytes and outlive the synchronize.
    unsafe {
        driver
            .copy_peer_async(dst.ptr(), src.ptr(), len, stream.id())
            .unwrap()
    };
    assert_eq!(
        first_mismatch(&dst.read_to_vec(&stream).unwrap(), &want),
        None
    );

    // 64 pieces of 16 KiB in one batch, copied back to front.
    let piece = 16 << 10;
    let batch_dst = DeviceBuffer::new(&driver, 0, len, AllocKind::Plain).unwrap();
    let copies: Vec<CopyDesc> = (0..len / piece)
        .map(|i| CopyDesc {
            dst: batch_dst.ptr().offset(i * piece),
            src: src.ptr().offset(len - (i + 1) * piece),
            bytes: piece,
        })
        .collect();
    for target in [stream.id(), StreamId { device: 0, raw: 0 }] {
        // SAFETY: every range is inside a live buffer until the synchronize.
        unsafe {
            driver
                .memset_async(batch_dst.ptr(), 0, len, target)
                .unwrap();
            driver.copy_batch_async(&copies, target).unwrap();
        }
        driver.synchronize_stream(target).unwrap();
        let got = batch_dst.read_to_vec(&stream).unwrap();
        for i in 0..len / piece {
            let want_piece = &want[len - (i + 1) * piece..len - i * piece];
            assert_eq!(
                first_mismatch(&got[i * piece..(i + 1) * piece], want_piece),
                None,
                "piece {i} on stream {target:?}"
            );
        }
    }
}

#[test]
fn pool_of_tells_pool_memory_from_plain_memory() {
    let driver = driver();
    for device in 0..driver.device_count() {
        let plain = DeviceBuffer::new(&driver, device, 1 << 20, AllocKind::Plain).unwrap();
        assert_eq!(
            driver.pool_of(plain.ptr()).unwrap(),
            None,
            "cuda:{device} plain"
        );
        let pooled = DeviceBuffer::new(&driver, device, 1 << 20, AllocKind::Pool).unwrap();
        let pool = driver.pool_of(pooled.ptr()).unwrap();
        let pool =
            pool.unwrap_or_else(|| panic!("cuda:{device}: pool memory reported as from no pool"));
        assert_eq!(pool.device, device);
        assert_ne!(pool.raw, 0);
        // An address inside the allocation belongs to the same pool.
        assert_eq!(
            driver.pool_of(pooled.ptr().offset(4096)).unwrap(),
            Some(pool)
        );
        // Granting the owner its own pool is a no-op.
        driver.grant_pool_access(pool, device).unwrap();
    }
}

#[test]
fn events_order_streams_and_time_work() {
    let driver = driver();
    let device = driver.device_count() - 1;
    let len = 256 << 20;
    let buffer = DeviceBuffer::new(&driver, device, len, AllocKind::Plain).unwrap();
    let first = Stream::new(&driver, device).unwrap();
    let second = Stream::new(&driver, device).unwrap();
    let start = Event::with_timing(&driver, device).unwrap();
    let end = Event::with_timing(&driver, device).unwrap();

    start.record(&first).unwrap();
    for value in 0..8u8 {
        // SAFETY: the buffer holds `len` bytes and outlives the waits below.
        unsafe {
            driver
                .memset_async(buffer.ptr(), value, len, first.id())
                .unwrap()
        };
    }
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
    eprintln!("8 fills of 256 MiB: {ms:.3} ms");
    assert!(ms > 0.0 && ms < 30_000.0, "elapsed {ms} ms");
}

#[test]
fn an_event_not_yet_reached_is_not_done() {
    let driver = driver();
    let len = 1 << 30;
    let buffer = DeviceBuffer::new(&driver, 0, len, AllocKind::Plain).unwrap();
    let stream = Stream::new(&driver, 0).unwrap();
    let event = Event::new(&driver, 0).unwrap();
    for value in 0..32u8 {
        // SAFETY: the buffer outlives the synchronize.
        unsafe {
            driver
                .memset_async(buffer.ptr(), value, len, stream.id())
                .unwrap()
        };
    }
    event.record(&stream).unwrap();
    // 32 GiB of fills take milliseconds: the query right after queuing sees them running.
    let done_at_once = driver.event_done(event.id()).unwrap();
    stream.synchronize().unwrap();
    assert!(driver.event_done(event.id()).unwrap());
    assert!(
        !done_at_once,
        "the event was done before 32 GiB of fills could run"
    );
}

#[test]
fn an_absurd_allocation_is_out_of_memory() {
    let driver = driver();
    let bytes = 1usize << 50; // 1 PiB
    for kind in KINDS {
        match driver.alloc_device(0, bytes, kind) {
            Err(Error::OutOfMemory {
                place,
                bytes: asked,
            }) => {
                assert_eq!(place, "cuda:0");
                assert_eq!(asked, bytes);
            }
            Err(other) => panic!("{kind:?}: expected OutOfMemory, got {other}"),
            Ok(ptr) => {
                // SAFETY: just allocated, unused.
                let _ = unsafe { driver.free_device(ptr) };
                panic!("{kind:?}: 1 PiB allocation succeeded");
            }
        }
    }
    // The device is still usable afterwards.
    let stream = Stream::new(&driver, 0).unwrap();
    let mut buffer = DeviceBuffer::new(&driver, 0, 4096, AllocKind::Pool).unwrap();
    buffer.write_from_slice(&pattern(4096, 9), &stream).unwrap();
}

#[test]
fn invalid_ordinals_are_rejected_before_the_driver() {
    let driver = driver();
    let count = driver.device_count();
    assert!(matches!(
        driver.alloc_device(count, 16, AllocKind::Plain),
        Err(Error::InvalidDevice(p2p_core::InvalidDevice { ordinal, count: c, .. })) if ordinal == count && c == count
    ));
    assert!(matches!(
        driver.create_stream(count + 5),
        Err(Error::InvalidDevice(_))
    ));
    assert!(matches!(
        driver.claim(0, count),
        Err(Error::InvalidDevice(_))
    ));
    assert!(matches!(
        driver.enable_peer_access(count, 0),
        Err(Error::InvalidDevice(_))
    ));
    let bogus = DeviceAddr {
        device: count,
        addr: 0x1000,
    };
    assert!(matches!(
        driver.pool_of(bogus),
        Err(Error::InvalidDevice(_))
    ));
}

#[test]
fn one_driver_is_usable_from_many_threads_at_once() {
    // Fresh driver, no context yet: the threads race to retain each device's
    // primary context and allocation stream.
    let driver = driver();
    let threads = 8;
    let barrier = std::sync::Barrier::new(threads);
    std::thread::scope(|scope| {
        for t in 0..threads {
            let (driver, barrier) = (&driver, &barrier);
            scope.spawn(move || {
                barrier.wait();
                for device in 0..driver.device_count() {
                    let kind = KINDS[t % 2];
                    let want = pattern(64 << 10, t as u8);
                    let stream = Stream::new(driver, device).unwrap();
                    let mut buffer = DeviceBuffer::new(driver, device, want.len(), kind).unwrap();
                    buffer.write_from_slice(&want, &stream).unwrap();
                    let got = buffer.read_to_vec(&stream).unwrap();
                    assert_eq!(
                        first_mismatch(&got, &want),
                        None,
                        "thread {t} cuda:{device}"
                    );
                }
            });
        }
    });
}

#[test]
fn claim_of_a_device_with_itself_is_all_true() {
    let driver = driver();
    let claim = driver.claim(0, 0).unwrap();
    assert!(claim.claimed() && claim.native_atomics);
}

// ---------------------------------------------------------------------------
// Two GPUs
// ---------------------------------------------------------------------------

/// Copies a pattern `from` -> `to` with `copy_peer_async` on a stream of
/// `stream_device`, into a poisoned buffer, and checks every byte.
fn check_peer_copy(
    driver: &Arc<dyn Driver>,
    from: usize,
    to: usize,
    stream_device: usize,
    kinds: (AllocKind, AllocKind),
) {
    let len = (8 << 20) + 7;
    let want = pattern(len, 0x3c);
    let mut src = DeviceBuffer::new(driver, from, len, kinds.0).unwrap();
    let mut dst = DeviceBuffer::new(driver, to, len, kinds.1).unwrap();
    let src_stream = Stream::new(driver, from).unwrap();
    let dst_stream = Stream::new(driver, to).unwrap();
    src.write_from_slice(&want, &src_stream).unwrap();
    dst.write_from_slice(&pattern(len, 0xc3), &dst_stream)
        .unwrap();

    let stream = Stream::new(driver, stream_device).unwrap();
    // SAFETY: both buffers hold `len` bytes and outlive the synchronize.
    unsafe {
        driver
            .copy_peer_async(dst.ptr(), src.ptr(), len, stream.id())
            .unwrap()
    };
    stream.synchronize().unwrap();
    let got = dst.read_to_vec(&dst_stream).unwrap();
    assert_eq!(
        first_mismatch(&got, &want),
        None,
        "cuda:{from} -> cuda:{to} ({kinds:?}, stream on cuda:{stream_device})"
    );
}

#[test]
fn peer_claims_are_read_for_both_directions() {
    let driver = two_gpu_driver();
    for (from, to) in [(0, 1), (1, 0)] {
        let claim = driver.claim(from, to).unwrap();
        eprintln!("{claim:?}");
        assert_eq!((claim.from, claim.to), (from, to));
        assert!(claim.performance_rank >= 0);
    }
}

#[test]
fn peer_copy_between_devices_0_and_1_delivers_every_byte() {
    let driver = two_gpu_driver();
    for (from, to) in [(0, 1), (1, 0)] {
        if driver.claim(from, to).unwrap().claimed() {
            driver.enable_peer_access(from, to).unwrap();
            driver.enable_peer_access(to, from).unwrap();
            // Twice is fine: "already enabled" is success.
            driver.enable_peer_access(to, from).unwrap();
        }
        check_peer_copy(
            &driver,
            from,
            to,
            from,
            (AllocKind::Plain, AllocKind::Plain),
        );
        check_peer_copy(&driver, from, to, to, (AllocKind::Plain, AllocKind::Plain));
    }
}

#[test]
fn peer_copy_of_pool_memory_after_granting_access() {
    let driver = two_gpu_driver();
    for (from, to) in [(0, 1), (1, 0)] {
        let src = DeviceBuffer::new(&driver, from, 1 << 20, AllocKind::Pool).unwrap();
        let dst = DeviceBuffer::new(&driver, to, 1 << 20, AllocKind::Pool).unwrap();
        let src_pool = driver
            .pool_of(src.ptr())
            .unwrap()
            .expect("pool memory has a pool");
        let dst_pool = driver
            .pool_of(dst.ptr())
            .unwrap()
            .expect("pool memory has a pool");
        assert_ne!(src_pool, dst_pool);
        if driver.claim(from, to).unwrap().claimed() {
            driver.grant_pool_access(src_pool, to).unwrap();
            driver.grant_pool_access(dst_pool, from).unwrap();
        }
        check_peer_copy(&driver, from, to, from, (AllocKind::Pool, AllocKind::Pool));
        check_peer_copy(&driver, from, to, to, (AllocKind::Plain, AllocKind::Pool));
    }
}

#[test]
fn batch_copy_across_devices_delivers_every_byte() {
    let driver = two_gpu_driver();
    if driver.claim(0, 1).unwrap().claimed() {
        driver.enable_peer_access(0, 1).unwrap();
        driver.enable_peer_access(1, 0).unwrap();
    }
    let piece = 16 << 10;
    let count = 256;
    let len = piece * count;
    let want = pattern(len, 0x5a);
    let mut src = DeviceBuffer::new(&driver, 0, len, AllocKind::Plain).unwrap();
    let dst = DeviceBuffer::new(&driver, 1, len, AllocKind::Plain).unwrap();
    let stream = Stream::new(&driver, 1).unwrap();
    src.write_from_slice(&want, &stream).unwrap();
    let copies: Vec<CopyDesc> = (0..count)
        .map(|i| CopyDesc {
            dst: dst.ptr().offset(i * piece),
            src: src.ptr().offset(i * piece),
            bytes: piece,
        })
        .collect();
    // SAFETY: every range is inside a live buffer until the synchronize.
    unsafe { driver.copy_batch_async(&copies, stream.id()).unwrap() };
    stream.synchronize().unwrap();
    assert_eq!(
        first_mismatch(&dst.read_to_vec(&stream).unwrap(), &want),
        None
    );
}

#[test]
fn events_order_work_across_devices() {
    let driver = two_gpu_driver();
    let len = 64 << 20;
    let src = DeviceBuffer::new(&driver, 0, len, AllocKind::Plain).unwrap();
    let dst = DeviceBuffer::new(&driver, 1, len, AllocKind::Plain).unwrap();
    let s0 = Stream::new(&driver, 0).unwrap();
    let s1 = Stream::new(&driver, 1).unwrap();
    let filled = Event::new(&driver, 0).unwrap();
    // SAFETY: both buffers outlive the synchronize.
    unsafe { driver.memset_async(src.ptr(), 0x77, len, s0.id()).unwrap() };
    filled.record(&s0).unwrap();
    driver.stream_wait_event(s1.id(), filled.id()).unwrap();
    // SAFETY: as above.
    unsafe {
        driver
            .copy_peer_async(dst.ptr(), src.ptr(), len, s1.id())
            .unwrap()
    };
    s1.synchronize().unwrap();
    assert!(dst.read_to_vec(&s1).unwrap().iter().all(|&b| b == 0x77));
}
