//! Contract clauses between two devices: claims in both directions, peer
//! copies of plain and pool memory, batches across devices, and events that
//! order work across devices. Each needs two devices.

use std::sync::Arc;

use p2p_core::memory::{DeviceBuffer, Event, Stream};
use p2p_core::pattern::{self, first_mismatch};
use p2p_core::{AllocKind, CopyDesc, Driver};

use super::{check_peer_copy, require_gpus};

const BOTH_WAYS: [(usize, usize); 2] = [(0, 1), (1, 0)];

pub(crate) fn peer_claims_are_read_for_both_directions(driver: &Arc<dyn Driver>) {
    require_gpus(driver, 2);
    for (from, to) in BOTH_WAYS {
        let claim = driver.claim(from, to).unwrap();
        eprintln!("{claim:?}");
        assert_eq!((claim.from, claim.to), (from, to));
        assert!(claim.performance_rank >= 0);
    }
}

pub(crate) fn peer_copies_deliver_every_byte_both_ways(driver: &Arc<dyn Driver>) {
    require_gpus(driver, 2);
    for (from, to) in BOTH_WAYS {
        // Before this clause enables the pair (on CUDA, another test in
        // the process may have), then with the direct path open.
        check_peer_copy(driver, (from, to), to, (AllocKind::Plain, AllocKind::Plain));
        if driver.claim(from, to).unwrap().claimed() {
            driver.enable_peer_access(from, to).unwrap();
            driver.enable_peer_access(to, from).unwrap();
            // Twice is fine: "already enabled" is success.
            driver.enable_peer_access(to, from).unwrap();
        }
        let plain = (AllocKind::Plain, AllocKind::Plain);
        check_peer_copy(driver, (from, to), from, plain);
        check_peer_copy(driver, (from, to), to, plain);
    }
}

pub(crate) fn peer_copies_of_pool_memory_after_granting_access(driver: &Arc<dyn Driver>) {
    require_gpus(driver, 2);
    for (from, to) in BOTH_WAYS {
        let src = DeviceBuffer::new(driver, from, 1 << 20, AllocKind::Pool).unwrap();
        let dst = DeviceBuffer::new(driver, to, 1 << 20, AllocKind::Pool).unwrap();
        let pool_of = |buffer: &DeviceBuffer| {
            driver
                .pool_of(buffer.ptr())
                .unwrap()
                .expect("pool memory has a pool")
        };
        let (src_pool, dst_pool) = (pool_of(&src), pool_of(&dst));
        assert_ne!(src_pool, dst_pool);
        if driver.claim(from, to).unwrap().claimed() {
            driver.grant_pool_access(src_pool, to).unwrap();
            driver.grant_pool_access(dst_pool, from).unwrap();
        }
        check_peer_copy(driver, (from, to), from, (AllocKind::Pool, AllocKind::Pool));
        check_peer_copy(driver, (from, to), to, (AllocKind::Plain, AllocKind::Pool));
    }
}

pub(crate) fn batch_copies_across_devices_deliver_every_byte(driver: &Arc<dyn Driver>) {
    require_gpus(driver, 2);
    if driver.claim(0, 1).unwrap().claimed() {
        driver.enable_peer_access(0, 1).unwrap();
        driver.enable_peer_access(1, 0).unwrap();
    }
    let piece = 16 << 10;
    let count = 256;
    let len = piece * count;
    let want = pattern::bytes(len, 0x5a);
    let src_stream = Stream::new(driver, 0).unwrap();
    let src = DeviceBuffer::from_slice(driver, &want, AllocKind::Plain, &src_stream).unwrap();
    let dst = DeviceBuffer::new(driver, 1, len, AllocKind::Plain).unwrap();
    let stream = Stream::new(driver, 1).unwrap();
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
        first_mismatch(&want, &dst.read_to_vec(&stream).unwrap()),
        None
    );
}

pub(crate) fn events_order_work_across_devices(driver: &Arc<dyn Driver>) {
    require_gpus(driver, 2);
    let len = 64 << 20;
    let src = DeviceBuffer::new(driver, 0, len, AllocKind::Plain).unwrap();
    let dst = DeviceBuffer::new(driver, 1, len, AllocKind::Plain).unwrap();
    let s0 = Stream::new(driver, 0).unwrap();
    let s1 = Stream::new(driver, 1).unwrap();
    let filled = Event::new(driver, 0).unwrap();
    // SAFETY: both buffers outlive the synchronizes.
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
    // The source's stream is done too (the copy waited for it), so the
    // buffers can go.
    s0.synchronize().unwrap();
}
