//! Contract clauses about devices and memory: what a driver says about its
//! devices, allocations of both kinds, copies and fills within a device,
//! pinned host memory, and the errors for what cannot be done.

use std::collections::HashSet;
use std::sync::Arc;

use p2p_core::memory::{DeviceBuffer, PinnedBuffer, Stream};
use p2p_core::pattern::{self, first_mismatch};
use p2p_core::StreamId;
use p2p_core::{AllocKind, CopyDesc, DeviceAddr, Driver, Error, EventId, InvalidDevice, PoolId};

use super::KINDS;

pub(crate) fn devices_are_described(driver: &Arc<dyn Driver>) {
    assert!(driver.device_count() >= 1);
    assert!(
        driver.driver_version() >= 11000,
        "driver {}",
        driver.driver_version()
    );
    for (ordinal, info) in driver.devices().iter().enumerate() {
        assert_eq!(info.ordinal, ordinal);
        assert!(!info.name.is_empty(), "{info:?}");
        assert!(info.uuid.starts_with("GPU-"), "{info:?}");
        let pci = &info.pci_bus_id;
        assert_eq!(pci.len(), 12, "pci bus id {pci}");
        assert_eq!(pci, &pci.to_ascii_lowercase());
        assert!(info.compute_capability.0 >= 3, "{info:?}");
        assert!(info.total_memory_bytes >= 1 << 30, "{info:?}");
        assert!(info.copy_engines >= 1, "{info:?}");
    }
    let uuids: HashSet<_> = driver.devices().iter().map(|d| &d.uuid).collect();
    assert_eq!(uuids.len(), driver.device_count(), "UUIDs are not unique");
    let pcis: HashSet<_> = driver.devices().iter().map(|d| &d.pci_bus_id).collect();
    assert_eq!(
        pcis.len(),
        driver.device_count(),
        "PCI addresses are not unique"
    );
}

pub(crate) fn a_device_claims_itself_fully(driver: &Arc<dyn Driver>) {
    for device in 0..driver.device_count() {
        let claim = driver.claim(device, device).unwrap();
        assert!(claim.claimed() && claim.native_atomics, "{claim:?}");
        assert_eq!((claim.from, claim.to), (device, device));
    }
}

pub(crate) fn bytes_round_trip_through_plain_and_pool_memory(driver: &Arc<dyn Driver>) {
    let len = (4 << 20) + 13; // several pages and an odd tail
    for device in 0..driver.device_count() {
        let stream = Stream::new(driver, device).unwrap();
        for kind in KINDS {
            let want = pattern::bytes(len, device as u64 + 1);
            let mut buffer = DeviceBuffer::new(driver, device, len, kind).unwrap();
            buffer.write_from_slice(&want, &stream).unwrap();
            let got = buffer.read_to_vec(&stream).unwrap();
            assert_eq!(first_mismatch(&want, &got), None, "cuda:{device} {kind:?}");

            // Through pinned memory, and a fill of the middle.
            let mut pinned = PinnedBuffer::new(driver, len).unwrap();
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
                first_mismatch(&want_filled, pinned.as_slice()),
                None,
                "cuda:{device} {kind:?} via pinned"
            );
        }
    }
}

pub(crate) fn the_default_stream_needs_no_creating(driver: &Arc<dyn Driver>) {
    for device in 0..driver.device_count() {
        let default = StreamId { device, raw: 0 };
        let want = pattern::bytes(1 << 20, 7);
        let mut got = vec![0u8; want.len()];
        let buffer = DeviceBuffer::new(driver, device, want.len(), AllocKind::Plain).unwrap();
        // SAFETY: both host vectors and the buffer outlive the synchronize.
        unsafe {
            driver
                .copy_htod_async(buffer.ptr(), want.as_ptr(), want.len(), default)
                .unwrap();
            driver
                .copy_dtoh_async(got.as_mut_ptr(), buffer.ptr(), got.len(), default)
                .unwrap();
        }
        driver.synchronize_stream(default).unwrap();
        assert_eq!(first_mismatch(&want, &got), None, "cuda:{device}");
    }
}

pub(crate) fn zero_byte_allocations_and_copies_work(driver: &Arc<dyn Driver>) {
    let stream = Stream::new(driver, 0).unwrap();
    for kind in KINDS {
        let empty = DeviceBuffer::new(driver, 0, 0, kind).unwrap();
        let other = DeviceBuffer::new(driver, 0, 0, kind).unwrap();
        assert!(empty.is_empty());
        assert_ne!(
            empty.ptr().addr,
            0,
            "a 0-byte allocation still has an address"
        );
        assert_ne!(empty.ptr(), other.ptr(), "and one of its own");
        assert_eq!(empty.read_to_vec(&stream).unwrap(), Vec::<u8>::new());
        // SAFETY: 0-byte operations touch no memory.
        unsafe {
            driver
                .copy_peer_async(empty.ptr(), other.ptr(), 0, stream.id())
                .unwrap();
            driver.memset_async(empty.ptr(), 1, 0, stream.id()).unwrap();
        }
        stream.synchronize().unwrap();
    }
    let pinned = PinnedBuffer::new(driver, 0).unwrap();
    assert!(pinned.is_empty());
}

pub(crate) fn allocations_are_distinct_and_aligned(driver: &Arc<dyn Driver>) {
    let mut buffers = Vec::new();
    for device in 0..driver.device_count() {
        for bytes in [0usize, 0, 1, 255, 256, 257, 4096] {
            let buffer = DeviceBuffer::new(driver, device, bytes, AllocKind::Plain).unwrap();
            let ptr = buffer.ptr();
            assert_ne!(ptr.addr, 0);
            assert_eq!(ptr.addr % 256, 0, "{ptr:?} of {bytes} bytes");
            assert_eq!(ptr.device, device);
            buffers.push(buffer);
        }
    }
    let unique: HashSet<DeviceAddr> = buffers.iter().map(DeviceBuffer::ptr).collect();
    assert_eq!(unique.len(), buffers.len());
}

pub(crate) fn copies_land_at_offsets_inside_allocations(driver: &Arc<dyn Driver>) {
    let stream = Stream::new(driver, 0).unwrap();
    let data = pattern::bytes(4096, 1);
    let a = DeviceBuffer::from_slice(driver, &data, AllocKind::Plain, &stream).unwrap();
    let b = DeviceBuffer::from_slice(driver, &[0xee; 8192], AllocKind::Plain, &stream).unwrap();
    // SAFETY: both ranges lie inside their buffers, which outlive the synchronize.
    unsafe {
        driver
            .copy_peer_async(b.ptr().offset(100), a.ptr().offset(10), 4000, stream.id())
            .unwrap();
        driver
            .memset_async(b.ptr().offset(8000), 7, 192, stream.id())
            .unwrap();
    }
    stream.synchronize().unwrap();
    let mut want = vec![0xee; 8192];
    want[100..4100].copy_from_slice(&data[10..4010]);
    want[8000..].fill(7);
    assert_eq!(
        first_mismatch(&want, &b.read_to_vec(&stream).unwrap()),
        None
    );
}

pub(crate) fn same_device_and_batch_copies_deliver_every_byte(driver: &Arc<dyn Driver>) {
    let stream = Stream::new(driver, 0).unwrap();
    let len = 1 << 20;
    let want = pattern::bytes(len, 3);
    let src = DeviceBuffer::from_slice(driver, &want, AllocKind::Plain, &stream).unwrap();
    let dst = DeviceBuffer::new(driver, 0, len, AllocKind::Pool).unwrap();
    // SAFETY: both buffers hold `len` bytes and outlive the synchronize.
    unsafe {
        driver
            .copy_peer_async(dst.ptr(), src.ptr(), len, stream.id())
            .unwrap()
    };
    assert_eq!(
        first_mismatch(&want, &dst.read_to_vec(&stream).unwrap()),
        None
    );

    // 64 pieces of 16 KiB in one batch, copied back to front.
    let piece = 16 << 10;
    let batch_dst = DeviceBuffer::new(driver, 0, len, AllocKind::Plain).unwrap();
    let copies: Vec<CopyDesc> = (0..len / piece)
        .map(|i| CopyDesc {
            dst: batch_dst.ptr().offset(i * piece),
            src: src.ptr().offset(len - (i + 1) * piece),
            bytes: piece,
        })
        .collect();
    let mut reversed = Vec::with_capacity(len);
    for i in 0..len / piece {
        reversed.extend_from_slice(&want[len - (i + 1) * piece..len - i * piece]);
    }
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
        assert_eq!(
            first_mismatch(&reversed, &got),
            None,
            "on stream {target:?}"
        );
    }
}

pub(crate) fn pool_memory_is_told_from_plain_memory(driver: &Arc<dyn Driver>) {
    for device in 0..driver.device_count() {
        let plain = DeviceBuffer::new(driver, device, 1 << 20, AllocKind::Plain).unwrap();
        assert_eq!(
            driver.pool_of(plain.ptr()).unwrap(),
            None,
            "cuda:{device} plain"
        );
        let pooled = DeviceBuffer::new(driver, device, 1 << 20, AllocKind::Pool).unwrap();
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

pub(crate) fn an_impossible_allocation_is_out_of_memory(driver: &Arc<dyn Driver>) {
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
    let stream = Stream::new(driver, 0).unwrap();
    let data = pattern::bytes(4096, 9);
    let buffer = DeviceBuffer::from_slice(driver, &data, AllocKind::Pool, &stream).unwrap();
    assert_eq!(buffer.read_to_vec(&stream).unwrap(), data);
}

pub(crate) fn invalid_devices_are_rejected_everywhere(driver: &Arc<dyn Driver>) {
    let count = driver.device_count();
    let bad = count + 2;
    let invalid = |result: p2p_core::Result<()>| {
        matches!(
            result,
            Err(Error::InvalidDevice(InvalidDevice { ordinal, count: c, .. }))
                if ordinal == bad && c == count
        )
    };
    let ok = DeviceBuffer::new(driver, 0, 16, AllocKind::Plain).unwrap();
    let bad_ptr = DeviceAddr {
        device: bad,
        addr: ok.ptr().addr,
    };
    let bad_stream = StreamId {
        device: bad,
        raw: 0,
    };
    assert!(invalid(
        driver.alloc_device(bad, 16, AllocKind::Plain).map(drop)
    ));
    assert!(invalid(driver.create_stream(bad).map(drop)));
    assert!(invalid(driver.create_event(bad).map(drop)));
    assert!(invalid(driver.enable_peer_access(0, bad)));
    assert!(invalid(driver.enable_peer_access(bad, 0)));
    assert!(invalid(driver.claim(bad, 0).map(drop)));
    assert!(invalid(driver.claim(0, bad).map(drop)));
    assert!(invalid(driver.pool_of(bad_ptr).map(drop)));
    assert!(invalid(
        driver.grant_pool_access(PoolId { device: 0, raw: 1 }, bad)
    ));
    assert!(invalid(driver.synchronize_stream(bad_stream)));
    assert!(invalid(
        driver
            .event_done(EventId {
                device: bad,
                raw: 1
            })
            .map(drop)
    ));
    // SAFETY: each is rejected before the driver touches any memory or handle.
    unsafe {
        assert!(invalid(driver.copy_peer_async(
            bad_ptr,
            ok.ptr(),
            16,
            StreamId { device: 0, raw: 0 }
        )));
        assert!(invalid(driver.copy_peer_async(
            ok.ptr(),
            ok.ptr(),
            16,
            bad_stream
        )));
        assert!(invalid(driver.free_device(bad_ptr)));
    }
}

pub(crate) fn pinned_memory_round_trips_through_a_device(driver: &Arc<dyn Driver>) {
    let device = driver.device_count() - 1;
    let stream = Stream::new(driver, device).unwrap();
    let data = pattern::bytes(100_000, 5);
    let mut sent = PinnedBuffer::new(driver, data.len()).unwrap();
    let mut back = PinnedBuffer::new(driver, data.len()).unwrap();
    assert_eq!(sent.as_ptr() as usize % 64, 0, "pinned memory is aligned");
    assert_ne!(sent.as_ptr(), back.as_ptr());
    sent.as_mut_slice().copy_from_slice(&data);
    back.as_mut_slice().fill(0xee);
    let buffer = DeviceBuffer::new(driver, device, data.len(), AllocKind::Pool).unwrap();
    // SAFETY: all three buffers hold `data.len()` bytes and outlive the synchronize.
    unsafe {
        driver
            .copy_htod_async(buffer.ptr(), sent.as_ptr(), data.len(), stream.id())
            .unwrap();
        driver
            .copy_dtoh_async(back.as_mut_ptr(), buffer.ptr(), data.len(), stream.id())
            .unwrap();
    }
    stream.synchronize().unwrap();
    assert_eq!(first_mismatch(&data, back.as_slice()), None);
}
