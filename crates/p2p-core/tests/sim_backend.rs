//! The simulated backend's own behaviour through the public `Driver` API
//! (its faults, hangs, error codes for misuse, memory limits, counters),
//! and the `Driver` contract (`contract/`) run on it over every schedule seed.

mod contract;
mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use p2p_core::pattern::{self, first_mismatch};
use p2p_core::sim::{builtin_topology, Fault, PeerSpec, Topology, CORRUPT_FIRST_OFFSET};
use p2p_core::{AllocKind, Backend, DeviceAddr, Driver, Error, EventId, SimDriver, StreamId};

use support::*;

/// Runs a contract clause on a deferred machine of three healthy GPUs,
/// once per schedule seed, each machine checked clean.
fn on_the_simulator(clause: fn(&Arc<dyn Driver>)) {
    let topology = Topology::fully_connected(3);
    for_each_seed(|s| {
        let driver: Arc<dyn Driver> = s.machine(&topology);
        clause(&driver);
    });
}

mod driver_contract {
    crate::contract::driver_contract!(super::on_the_simulator);
}

#[test]
fn it_is_send_sync_and_debug() {
    for_each_seed(|s| {
        fn assert_send_sync<T: Send + Sync + std::fmt::Debug>() {}
        assert_send_sync::<SimDriver>();
        let shown = format!("{:?}", s.machine(&three_gpus()));
        assert!(shown.contains("test box"), "{shown}");
    });
}

#[test]
fn describes_its_devices() {
    for_each_seed(|s| {
        let driver = s.machine(&three_gpus());
        assert_eq!(driver.backend(), Backend::Simulated);
        assert_eq!(driver.driver_version(), 12040);
        assert_eq!(driver.device_count(), 3);
        let names: Vec<&str> = driver.devices().iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["A", "B", "C"]);
        assert_eq!(driver.devices()[2].total_memory_bytes, 1 << 20);
        assert_eq!(driver.machine_name(), "test box");

        let builtin = s.machine(&builtin_topology());
        assert_eq!(builtin.device_count(), 4);
        assert_eq!(builtin.driver_version(), 12080);
        assert!(builtin
            .devices()
            .iter()
            .all(|d| d.name == "Simulated RTX 4090"));
    });
}

#[test]
fn claims_follow_the_topology() {
    for_each_seed(|s| {
        let driver = s.machine(&three_gpus());
        assert!(driver.claim(0, 1).unwrap().claimed());
        assert!(driver.claim(1, 0).unwrap().claimed());
        assert!(driver.claim(1, 2).unwrap().claimed());
        let unclaimed = driver.claim(0, 2).unwrap();
        assert!(!unclaimed.can_access_peer && !unclaimed.access_supported);
        assert_eq!(
            (unclaimed.from, unclaimed.to, unclaimed.performance_rank),
            (0, 2, 0)
        );
        let own = driver.claim(2, 2).unwrap();
        assert!(own.can_access_peer && own.access_supported && own.native_atomics);
        assert!(matches!(
            driver.claim(0, 3),
            Err(Error::InvalidDevice(p2p_core::InvalidDevice {
                ordinal: 3,
                count: 3,
                ..
            }))
        ));

        let explicit = s.machine(&Topology::with_gpus(2).with_peer(PeerSpec {
            claimed: false,
            ..PeerSpec::new(0, 1)
        }));
        assert!(!explicit.claim(0, 1).unwrap().claimed());
        assert!(is_cuda_error(
            explicit.enable_peer_access(0, 1),
            "CUDA_ERROR_PEER_ACCESS_UNSUPPORTED"
        ));
        assert!(matches!(
            driver.set_peer_fault(0, 5, Fault::Zeros),
            Err(Error::InvalidDevice(p2p_core::InvalidDevice {
                ordinal: 5,
                ..
            }))
        ));
    });
}

#[test]
fn copies_really_copy_on_every_path() {
    for_each_seed(|s| {
        let driver = s.machine(&three_gpus());
        let len = 300_000;
        // Staged by the driver (peer access not enabled), then direct.
        assert_eq!(deliver(&driver, 0, 1, len).0, deliver(&driver, 0, 1, len).1);
        driver.enable_peer_access(1, 0).unwrap();
        let (sent, got) = deliver(&driver, 0, 1, len);
        assert_eq!(sent, got);
        // Within one device: counted under (0, 0), never a peer-path copy.
        let a = upload(&driver, 0, &sent, AllocKind::Plain);
        let b = driver.alloc_device(0, len, AllocKind::Plain).unwrap();
        peer_copy(&driver, b, a, len, default_stream(0)).unwrap();
        assert_eq!(download(&driver, b, len), sent);
        let stats = driver.stats();
        assert_eq!(stats.peer_copies_between(0, 1), 3);
        assert_eq!(stats.peer_path_copies_between(0, 1), 1);
        assert_eq!(stats.peer_copies_between(0, 0), 1);
    });
}

#[test]
fn bad_ranges_are_rejected_like_cuda_would() {
    for_each_seed(|s| {
        let driver = s.machine(&three_gpus());
        let a = driver.alloc_device(0, 1000, AllocKind::Plain).unwrap();
        let b = driver.alloc_device(1, 1000, AllocKind::Plain).unwrap();
        let s = default_stream(0);
        assert!(is_cuda_error(
            peer_copy(&driver, b, a, 1001, s),
            "CUDA_ERROR_INVALID_VALUE"
        ));
        assert!(is_cuda_error(
            peer_copy(&driver, b.offset(1), a, 1000, s),
            "CUDA_ERROR_INVALID_VALUE"
        ));
        // The right address with the wrong device ordinal.
        let wrong = DeviceAddr {
            device: 1,
            addr: a.addr,
        };
        assert!(is_cuda_error(
            peer_copy(&driver, b, wrong, 10, s),
            "CUDA_ERROR_INVALID_VALUE"
        ));
        let mut host = vec![0u8; 2000];
        // SAFETY: `host` holds 2000 bytes; the simulator rejects the device range first.
        let overrun = unsafe { driver.copy_dtoh_async(host.as_mut_ptr(), a, 1001, s) };
        assert!(is_cuda_error(overrun, "CUDA_ERROR_INVALID_VALUE"));
        // SAFETY: rejected before any host memory is touched.
        let null = unsafe { driver.copy_dtoh_async(std::ptr::null_mut(), a, 10, s) };
        assert!(is_cuda_error(null, "CUDA_ERROR_INVALID_VALUE"));
        // Freed memory, double free, interior free.
        // SAFETY: `a` is ours and nothing uses it.
        unsafe { driver.free_device(a).unwrap() };
        assert!(is_cuda_error(
            peer_copy(&driver, b, a, 10, s),
            "CUDA_ERROR_INVALID_VALUE"
        ));
        // SAFETY: the simulator rejects the second free.
        let double_free = unsafe { driver.free_device(a) };
        assert!(is_cuda_error(double_free, "CUDA_ERROR_INVALID_VALUE"));
        // SAFETY: the simulator rejects a pointer into the middle of an allocation.
        let interior_free = unsafe { driver.free_device(b.offset(8)) };
        assert!(is_cuda_error(interior_free, "CUDA_ERROR_INVALID_VALUE"));
        // SAFETY: the simulator rejects a pointer it never handed out.
        let foreign_free = unsafe { driver.free_pinned(host.as_mut_ptr()) };
        assert!(is_cuda_error(foreign_free, "CUDA_ERROR_INVALID_VALUE"));
    });
}

#[test]
fn memory_limits_are_enforced() {
    for_each_seed(|s| {
        let driver = s.machine(&three_gpus());
        let first = driver.alloc_device(2, 600 << 10, AllocKind::Plain).unwrap();
        match driver.alloc_device(2, 600 << 10, AllocKind::Pool) {
            Err(Error::OutOfMemory { place, bytes }) => {
                assert_eq!(place, "cuda:2");
                assert_eq!(bytes, 600 << 10);
            }
            other => panic!("expected out of memory, got {other:?}"),
        }
        // SAFETY: `first` is ours and unused.
        unsafe { driver.free_device(first).unwrap() };
        driver.alloc_device(2, 1 << 20, AllocKind::Pool).unwrap();
        assert!(matches!(
            driver.alloc_device(2, 1, AllocKind::Plain),
            Err(Error::OutOfMemory { .. })
        ));
        // Other devices are unaffected.
        driver.alloc_device(1, 1 << 20, AllocKind::Plain).unwrap();
    });
}

#[test]
fn streams_and_events_are_handles() {
    for_each_seed(|s| {
        let driver = s.machine(&three_gpus());
        let a = driver.create_stream(0).unwrap();
        let b = driver.create_stream(0).unwrap();
        assert_ne!(a, b);
        assert_ne!(a.raw, 0);
        driver.synchronize_stream(default_stream(2)).unwrap();
        // A stream of device 0 named as if it were device 1's.
        let foreign = StreamId {
            device: 1,
            raw: a.raw,
        };
        assert!(is_cuda_error(
            driver.synchronize_stream(foreign),
            "CUDA_ERROR_INVALID_HANDLE"
        ));
        let event = driver.create_event(0).unwrap();
        assert_ne!(event.raw, 0);
        assert!(
            driver.event_done(event).unwrap(),
            "a fresh event is done, as in CUDA"
        );
        assert!(is_cuda_error(
            driver.event_elapsed_ms(event, event),
            "CUDA_ERROR_INVALID_HANDLE"
        ));
        assert!(is_cuda_error(
            driver.record_event(event, default_stream(1)),
            "CUDA_ERROR_INVALID_HANDLE"
        ));
        driver.record_event(event, a).unwrap();
        assert!(driver.event_done(event).unwrap());
        assert!(is_cuda_error(
            driver.event_done(EventId { device: 0, raw: 0 }),
            "CUDA_ERROR_INVALID_HANDLE"
        ));
        // SAFETY: each handle is ours and destroyed once (the failures destroy nothing).
        unsafe {
            driver.destroy_stream(a).unwrap();
            assert!(is_cuda_error(
                driver.destroy_stream(a),
                "CUDA_ERROR_INVALID_HANDLE"
            ));
            assert!(is_cuda_error(
                driver.destroy_stream(default_stream(0)),
                "CUDA_ERROR_INVALID_HANDLE"
            ));
            driver.destroy_event(event).unwrap();
            assert!(is_cuda_error(
                driver.destroy_event(event),
                "CUDA_ERROR_INVALID_HANDLE"
            ));
        }
        assert!(is_cuda_error(
            driver.synchronize_stream(a),
            "CUDA_ERROR_INVALID_HANDLE"
        ));
    });
}

#[test]
fn faults_act_only_on_the_enabled_peer_path() {
    for_each_seed(|s| {
        let len = 100_000;
        for fault in [Fault::Zeros, Fault::Corrupt, Fault::DropTail] {
            let driver = s.machine(&three_gpus());
            driver.set_peer_fault(1, 2, fault).unwrap();
            // Not enabled: the driver stages the copy, and it is correct.
            let (sent, got) = deliver(&driver, 1, 2, len);
            assert_eq!(sent, got, "{fault} without peer access");
            driver.enable_peer_access(2, 1).unwrap();
            let (sent, got) = deliver(&driver, 1, 2, len);
            match fault {
                Fault::Zeros => assert_eq!(got, vec![0u8; len]),
                Fault::Corrupt => {
                    let first_bad = first_mismatch(&sent, &got).map(|bad| bad.offset);
                    assert_eq!(first_bad, Some(CORRUPT_FIRST_OFFSET));
                    assert_eq!(got[CORRUPT_FIRST_OFFSET], sent[CORRUPT_FIRST_OFFSET] ^ 0x10);
                }
                Fault::DropTail => {
                    let keep = len - len / 4;
                    assert_eq!(got[..keep], sent[..keep]);
                    assert_eq!(
                        got[keep..],
                        vec![0xee; len - keep][..],
                        "the tail keeps its poison"
                    );
                }
                _ => unreachable!(),
            }
            // The other direction has no fault.
            let (sent, got) = deliver(&driver, 2, 1, len);
            assert_eq!(sent, got, "{fault}: 2 -> 1");
            // A one-byte copy is still damaged.
            let (sent, got) = deliver(&driver, 1, 2, 1);
            assert_ne!(sent, got, "{fault}: one byte");
        }
    });
}

#[test]
fn both_applies_a_fault_to_both_directions() {
    for_each_seed(|s| {
        let text = "[[gpu]]\n[[gpu]]\n[[peer]]\nfrom = 0\nto = 1\nboth = true\nfault = \"zeros\"\n";
        let driver = s.machine(&Topology::parse(text, Path::new("both.toml")).unwrap());
        driver.enable_peer_access(0, 1).unwrap();
        assert_eq!(deliver(&driver, 0, 1, 64).1, vec![0u8; 64]);
        assert_eq!(deliver(&driver, 1, 0, 64).1, vec![0u8; 64]);
    });
}

#[test]
fn the_builtin_machine_breaks_two_to_three_only() {
    for_each_seed(|s| {
        let driver = s.machine(&builtin_topology());
        for from in 0..4 {
            for to in 0..4 {
                if from != to {
                    driver.enable_peer_access(to, from).unwrap();
                }
            }
        }
        for from in 0..4 {
            for to in 0..4 {
                if from == to {
                    continue;
                }
                let (sent, got) = deliver(&driver, from, to, 4096);
                assert_eq!(sent == got, (from, to) != (2, 3), "{from} -> {to}");
            }
        }
    });
}

#[test]
fn enabling_follows_claims_and_enable_fails() {
    for_each_seed(|s| {
        let driver = s.machine(&three_gpus());
        driver.set_peer_fault(1, 2, Fault::EnableFails).unwrap();
        match driver.enable_peer_access(1, 2) {
            Err(Error::Cuda { call, code, name }) => {
                assert_eq!(
                    (call, code, name.as_str()),
                    (
                        "cuCtxEnablePeerAccess",
                        217,
                        "CUDA_ERROR_PEER_ACCESS_UNSUPPORTED"
                    )
                );
            }
            other => panic!("expected enable to fail, got {other:?}"),
        }
        driver.enable_peer_access(2, 1).unwrap();
        driver.enable_peer_access(2, 1).unwrap();
        assert!(is_cuda_error(
            driver.enable_peer_access(0, 2),
            "CUDA_ERROR_PEER_ACCESS_UNSUPPORTED"
        ));
        assert!(is_cuda_error(
            driver.enable_peer_access(2, 0),
            "CUDA_ERROR_PEER_ACCESS_UNSUPPORTED"
        ));
        driver.enable_peer_access(1, 1).unwrap();
        assert_eq!(driver.stats().enable_calls, 6);
        // An enable-fails fault is not a data fault: the path enabled from the
        // other side still delivers.
        let (sent, got) = deliver(&driver, 1, 2, 5000);
        assert_eq!(sent, got);
        assert_eq!(driver.stats().peer_path_copies_between(1, 2), 1);
    });
}

#[test]
fn a_hang_never_finishes_and_spreads_through_events() {
    for_each_seed(|s| {
        let driver = s.machine(&three_gpus());
        driver.set_peer_fault(1, 2, Fault::Hang).unwrap();
        driver.enable_peer_access(2, 1).unwrap();
        let src = upload(&driver, 1, &pattern::bytes(4096, 3), AllocKind::Plain);
        let dst = upload(&driver, 2, &[0xee; 4096], AllocKind::Plain);
        let stream = driver.create_stream(2).unwrap();
        let before = driver.create_timing_event(2).unwrap();
        let after = driver.create_timing_event(2).unwrap();
        driver.record_event(before, stream).unwrap();
        peer_copy(&driver, dst, src, 4096, stream).unwrap();
        driver.record_event(after, stream).unwrap();
        assert!(driver.event_done(before).unwrap());
        assert!(!driver.event_done(after).unwrap());
        assert!(is_cuda_error(
            driver.event_elapsed_ms(before, after),
            "CUDA_ERROR_NOT_READY"
        ));
        match driver.wait_event(after, Duration::from_millis(20)) {
            Err(Error::Timeout { after_ms, .. }) => assert_eq!(after_ms, 20),
            other => panic!("expected a timeout, got {other:?}"),
        }
        match driver.synchronize_stream(stream) {
            Err(Error::Timeout { what, after_ms }) => {
                assert_eq!(what, "simulated hang on cuda:2");
                assert_eq!(after_ms, 0);
            }
            other => panic!("expected a timeout, got {other:?}"),
        }
        // Nothing queued on the hung stream is carried out.
        // SAFETY: `dst` holds 4096 bytes.
        unsafe { driver.memset_async(dst, 1, 4096, stream).unwrap() };
        // A stream on another device that waits for the hung event hangs too.
        let waiter = driver.create_stream(0).unwrap();
        driver.stream_wait_event(waiter, after).unwrap();
        assert!(matches!(
            driver.synchronize_stream(waiter),
            Err(Error::Timeout { .. })
        ));
        // The destination was never written; other streams still work.
        assert_eq!(download(&driver, dst, 4096), vec![0xee; 4096]);
        // The same pair without peer access enabled does not hang.
        let fresh = s.machine(&three_gpus());
        fresh.set_peer_fault(1, 2, Fault::Hang).unwrap();
        assert_eq!(deliver(&fresh, 1, 2, 4096).0, deliver(&fresh, 1, 2, 4096).1);
    });
}

#[test]
fn pinned_memory_is_counted() {
    for_each_seed(|s| {
        let driver = s.machine(&three_gpus());
        let a = driver.alloc_pinned(1000).unwrap();
        let b = driver.alloc_pinned(0).unwrap();
        assert!(!a.is_null() && !b.is_null() && a != b);
        assert_eq!(a as usize % 64, 0);
        let stats = driver.stats();
        assert_eq!(
            (
                stats.live_pinned_allocations,
                stats.pinned_bytes_allocated_total
            ),
            (2, 1000)
        );
        // SAFETY: both are ours, freed once, unused.
        unsafe {
            driver.free_pinned(a).unwrap();
            driver.free_pinned(b).unwrap();
        }
        let stats = driver.stats();
        assert_eq!(
            (
                stats.live_pinned_allocations,
                stats.pinned_bytes_allocated_total
            ),
            (0, 1000)
        );
        assert_eq!(stats.host_copies, 0);
    });
}

#[test]
fn many_threads_can_share_one_machine() {
    for_each_seed(|s| {
        let driver = s.machine(&three_gpus());
        driver.enable_peer_access(1, 0).unwrap();
        let workers: Vec<_> = (0..8u8)
            .map(|seed| {
                let driver = driver.clone();
                std::thread::spawn(move || {
                    let stream = driver.create_stream(1).unwrap();
                    for round in 0..20 {
                        let data =
                            pattern::bytes(10_000 + usize::from(seed) * 7 + round, seed.into());
                        let src = upload(&driver, 0, &data, AllocKind::Plain);
                        let dst = driver
                            .alloc_device(1, data.len(), AllocKind::Plain)
                            .unwrap();
                        peer_copy(&driver, dst, src, data.len(), stream).unwrap();
                        driver.synchronize_stream(stream).unwrap();
                        assert_eq!(download(&driver, dst, data.len()), data);
                        // SAFETY: both are ours, freed once, and the stream is synchronized.
                        unsafe {
                            driver.free_device(src).unwrap();
                            driver.free_device(dst).unwrap();
                        }
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.join().unwrap();
        }
        assert_eq!(driver.stats().live_device_allocations, 0);
        assert_eq!(driver.stats().peer_copies_between(0, 1), 160);
    });
}
