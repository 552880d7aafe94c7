//! GPU tests of p2p-tch (feature `cuda-tests`, two GPUs): every dtype, sizes up to 1 GiB, tuples, a pair forced to the staged route, ordering with PyTorch's streams, and results compared byte for byte with `Tensor::to_device`.
//!
//! A test that finds fewer than two GPUs fails; it never passes silently.

#![cfg(feature = "cuda-tests")]

mod support;

use std::time::{Duration, Instant};

use p2p_tch::{
    default_mover, safe_move, safe_move_non_blocking, Error, Mode, Route, SafeTo, TchMover,
};
use support::{assert_same, pattern, staged_mover, two_gpus, CUDA0, CUDA1, PLAIN_KINDS};
use tch::{Device, Kind, Tensor};

const MODES: [Mode; 2] = [Mode::Blocking, Mode::NonBlocking];

/// The process-wide mover and one with the pair forced to the staged route.
fn movers() -> Vec<(&'static str, TchMover)> {
    vec![
        ("default", TchMover::from_env().unwrap()),
        ("staged", staged_mover()),
    ]
}

#[test]
fn every_dtype_moves_like_to_device() {
    two_gpus();
    let shapes: [&[i64]; 5] = [&[], &[0], &[7], &[3, 5, 7], &[257, 129]];
    let routes = [
        (CUDA0, CUDA1),
        (CUDA1, CUDA0),
        (Device::Cpu, CUDA1),
        (CUDA0, Device::Cpu),
    ];
    for (name, mover) in movers() {
        for kind in PLAIN_KINDS {
            for shape in shapes {
                for (from, to) in routes {
                    let src = pattern(kind, shape, from);
                    let expected = src.to_device(to);
                    for mode in MODES {
                        let got = mover.move_to(&src, to, mode).unwrap();
                        assert_same(
                            &got,
                            &expected,
                            &format!("{name} {kind:?} {shape:?} {from:?} -> {to:?} {mode:?}"),
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn quantized_tensors_move_like_to_device() {
    two_gpus();
    let host = Tensor::rand([64, 33], (Kind::Float, Device::Cpu)).quantize_per_tensor(
        0.05,
        7,
        Kind::QUInt8,
    );
    let on_gpu = match host.f_to_device(CUDA0) {
        Ok(t) => t,
        Err(err) => {
            // Then safe_move must fail too, not invent a result.
            assert!(
                safe_move(&host, CUDA0).is_err(),
                "to_device failed ({err}) but safe_move did not"
            );
            return;
        }
    };
    for (src, to) in [(&host, CUDA1), (&on_gpu, CUDA1), (&on_gpu, Device::Cpu)] {
        let got = safe_move(src, to).unwrap();
        let expected = src.to_device(to);
        assert_same(&got, &expected, &format!("QUInt8 to {to:?}"));
        assert_eq!((got.q_scale(), got.q_zero_point()), (0.05, 7));
    }
}

#[test]
fn sizes_from_zero_bytes_to_one_gib_move_like_to_device() {
    two_gpus();
    let sizes: [i64; 9] = [
        0,
        1,
        4095,
        4096,
        65_537,
        1 << 20,
        (16 << 20) + 5,
        256 << 20,
        1 << 30,
    ];
    for (name, mover) in movers() {
        for size in sizes {
            for (from, to) in [(CUDA0, CUDA1), (CUDA1, CUDA0)] {
                let src = pattern(Kind::Uint8, &[size], from);
                let expected = src.to_device(to);
                for mode in MODES {
                    let got = mover.move_to(&src, to, mode).unwrap();
                    assert_same(
                        &got,
                        &expected,
                        &format!("{name} {size} bytes {from:?} -> {to:?} {mode:?}"),
                    );
                }
            }
        }
        mover.synchronize().unwrap();
    }
}

#[test]
fn non_contiguous_and_lazy_sources_are_materialised_on_their_device() {
    two_gpus();
    let base = pattern(Kind::Float, &[64, 48], CUDA0);
    let complex = pattern(Kind::ComplexFloat, &[31, 17], CUDA0);
    let sources = [
        ("transposed", base.transpose(0, 1)),
        ("narrowed", base.narrow(1, 5, 20)),
        ("strided", base.slice(0, 1, 64, 3)),
        ("offset", base.narrow(0, 10, 7)),
        ("conjugate", complex.conj()),
        ("negative view", base.internal_neg_view()),
        (
            "expanded",
            pattern(Kind::Half, &[1, 40], CUDA0).expand([30, 40], false),
        ),
    ];
    for (name, mover) in movers() {
        for (what, src) in &sources {
            for to in [CUDA1, Device::Cpu] {
                let expected = src.to_device(to);
                for mode in MODES {
                    let got = mover.move_to(src, to, mode).unwrap();
                    assert!(got.is_contiguous(), "{name} {what}");
                    assert_same(
                        &got,
                        &expected,
                        &format!("{name} {what} to {to:?} {mode:?}"),
                    );
                }
            }
        }
    }
}

#[test]
fn the_same_device_gives_the_same_tensor() {
    two_gpus();
    let t = pattern(Kind::Float, &[1000], CUDA1);
    for moved in [
        safe_move(&t, CUDA1).unwrap(),
        t.safe_to_non_blocking(CUDA1).unwrap(),
    ] {
        assert_eq!(moved.data_ptr(), t.data_ptr());
    }
}

#[test]
fn tuples_and_slices_move_in_one_call_like_to_device() {
    two_gpus();
    for (name, mover) in movers() {
        for mode in MODES {
            let a = pattern(Kind::Float, &[1000], CUDA0);
            let b = pattern(Kind::Half, &[3, 3], CUDA0);
            let c = pattern(Kind::Int64, &[0], CUDA0);
            let d = pattern(Kind::Bool, &[5, 0, 2], CUDA0);
            let (x, (y, z), w) = mover.move_to(&(&a, (&b, &c), &d), CUDA1, mode).unwrap();
            for (got, src) in [(&x, &a), (&y, &b), (&z, &c), (&w, &d)] {
                assert_same(
                    got,
                    &src.to_device(CUDA1),
                    &format!("{name} tuple {mode:?}"),
                );
            }

            // Sources on several devices, one of them the destination.
            let on_host = pattern(Kind::Double, &[17], Device::Cpu);
            let on_dst = pattern(Kind::Int8, &[300], CUDA1);
            let [p, q, r] = mover
                .move_to(&[&a, &on_host, &on_dst], CUDA1, mode)
                .unwrap();
            assert_same(
                &p,
                &a.to_device(CUDA1),
                &format!("{name} mixed sources {mode:?}"),
            );
            assert_same(
                &q,
                &on_host.to_device(CUDA1),
                &format!("{name} mixed sources {mode:?}"),
            );
            assert_eq!(
                r.data_ptr(),
                on_dst.data_ptr(),
                "{name}: already there, so not copied"
            );
        }
    }
}

#[test]
fn many_small_tensors_are_packed_into_disjoint_views() {
    two_gpus();
    let sources: Vec<Tensor> = (0..256)
        .map(|_| pattern(Kind::Float, &[4096], CUDA0))
        .collect();
    for name in ["default", "staged"] {
        for packing in [true, false] {
            let mover = if name == "staged" {
                staged_mover()
            } else {
                TchMover::from_env().unwrap()
            };
            let mover = mover.with_packing(packing);
            for mode in MODES {
                let mut moved = mover.move_to(&sources, CUDA1, mode).unwrap();
                assert_eq!(moved.len(), 256);
                for (got, src) in moved.iter().zip(&sources) {
                    assert_same(
                        got,
                        &src.to_device(CUDA1),
                        &format!("{name} packing {packing} {mode:?}"),
                    );
                }
                // Writing one result leaves its neighbours alone.
                let _ = moved[100].fill_(-1.0);
                assert_same(
                    &moved[99],
                    &sources[99].to_device(CUDA1),
                    "neighbour before",
                );
                assert_same(
                    &moved[101],
                    &sources[101].to_device(CUDA1),
                    "neighbour after",
                );
            }
        }
    }
}

#[test]
fn a_pair_disabled_by_policy_takes_the_staged_route() {
    two_gpus();
    let mover = staged_mover();
    for (from, to) in [(CUDA0, CUDA1), (CUDA1, CUDA0)] {
        for bytes in [4096, 64 << 20] {
            let plan = mover.plan(from, to, bytes).unwrap();
            assert_eq!(plan.route, Route::Staged, "{}", plan.reason());
            assert!(plan.reason().contains("not verified"), "{}", plan.reason());
        }
        let verdict = mover.table().verdict(0, 1).unwrap();
        assert!(!verdict.is_verified(), "{verdict:?}");
        let src = pattern(Kind::BFloat16, &[3, 1 << 20], from);
        let got = mover.move_to(&src, to, Mode::Blocking).unwrap();
        assert_same(&got, &src.to_device(to), "staged");
    }
}

/// Queues ~`ms` milliseconds of work on `device`'s current stream.
fn busy(device: Device, ms: u64) -> Tensor {
    let a = Tensor::randn([4096, 4096], (Kind::Float, device));
    let start = Instant::now();
    let mut out = a.matmul(&a);
    tch::Cuda::synchronize(device_index(device));
    let once = start.elapsed().max(Duration::from_micros(100));
    let rounds = (Duration::from_millis(ms).as_secs_f64() / once.as_secs_f64()).ceil() as usize;
    for _ in 0..rounds.clamp(1, 500) {
        out = out.matmul(&a) * 1e-3;
    }
    out
}

fn device_index(device: Device) -> i64 {
    match device {
        Device::Cuda(ordinal) => ordinal as i64,
        _ => -1,
    }
}

/// The source is written by a torch operation queued behind long work on
/// its device's current stream, moved at once, and the result read at once
/// by a torch operation on the destination; in non-blocking mode the source
/// is also overwritten right after the call. Any missing wait shows up as a
/// wrong value.
#[test]
fn moves_are_ordered_with_pytorchs_current_streams() {
    two_gpus();
    const ELEMENTS: i64 = 64 << 20; // 256 MiB of f32
    for (name, mover) in movers() {
        for mode in MODES {
            for round in 0..12i64 {
                let (from, to) = if round % 2 == 0 {
                    (CUDA0, CUDA1)
                } else {
                    (CUDA1, CUDA0)
                };
                let value = (round + 1) as f64;
                let mut src = Tensor::empty([ELEMENTS], (Kind::Float, from));
                let _work_before = busy(from, 20);
                let _ = src.fill_(value);
                let _work_on_dst = busy(to, 5);
                let moved = mover.move_to(&src, to, mode).unwrap();
                let read = &moved * 2.0;
                if mode == Mode::NonBlocking {
                    let _ = src.fill_(-7.0);
                }
                let wrong = (&read - 2.0 * value).abs().max().double_value(&[]);
                assert_eq!(
                    wrong, 0.0,
                    "{name} {mode:?} round {round}: the result read on {to:?} was wrong"
                );
                let wrong = (&moved - value).abs().max().double_value(&[]);
                assert_eq!(wrong, 0.0, "{name} {mode:?} round {round}: writing the source after the move changed the result");
            }
            mover.synchronize().unwrap();
            assert_eq!(mover.pending_moves(), 0);
        }
    }
}

#[test]
fn non_blocking_moves_return_before_the_copy_is_done() {
    two_gpus();
    for (name, mover) in movers() {
        let src = pattern(Kind::Uint8, &[64 << 20], CUDA0);
        let _ = mover.move_to(&src, CUDA1, Mode::Blocking).unwrap(); // warm up: probe, streams, buffers
        tch::Cuda::synchronize(0);
        let start = Instant::now();
        let _work = busy(CUDA0, 200);
        let queued = Instant::now();
        let moved = mover.move_to(&src, CUDA1, Mode::NonBlocking).unwrap();
        let call = queued.elapsed();
        tch::Cuda::synchronize(0);
        let total = start.elapsed();
        assert!(
            call * 4 < total,
            "{name}: the non-blocking call took {call:?} of {total:?}: it waited for the source device"
        );
        assert_same(&moved, &src.to_device(CUDA1), name);
    }
}

#[test]
fn host_sources_pinned_or_not_and_host_destinations_are_complete() {
    two_gpus();
    let pageable = pattern(Kind::Float, &[3 << 20], Device::Cpu);
    let pinned = pageable.pin_memory(CUDA0);
    assert!(pinned.is_pinned(CUDA0));
    for (name, mover) in movers() {
        for mode in MODES {
            for src in [&pageable, &pinned] {
                let got = mover.move_to(src, CUDA1, mode).unwrap();
                assert_same(
                    &got,
                    &src.to_device(CUDA1),
                    &format!("{name} host to gpu {mode:?}"),
                );
            }
            // To the CPU, even non-blocking moves are complete on return.
            let on_gpu = pattern(Kind::Int, &[1 << 20], CUDA1);
            let got = mover.move_to(&on_gpu, Device::Cpu, mode).unwrap();
            assert_same(
                &got,
                &on_gpu.to_device(Device::Cpu),
                &format!("{name} gpu to host {mode:?}"),
            );
        }
    }
}

#[test]
fn verify_mode_checks_every_move() {
    two_gpus();
    let mover = TchMover::from_env().unwrap().with_verify(true);
    for mode in MODES {
        let src = pattern(Kind::Half, &[1 << 20], CUDA0);
        let got = mover.move_to(&(&src, &src), CUDA1, mode).unwrap();
        assert_same(&got.0, &src.to_device(CUDA1), "verified");
    }
}

#[test]
fn a_gpu_that_does_not_exist_is_an_error_and_the_source_is_kept() {
    let count = two_gpus();
    let src = pattern(Kind::Float, &[1000], CUDA0);
    let before = src.copy();
    let err = safe_move(&src, Device::Cuda(count)).unwrap_err();
    assert!(
        matches!(err, Error::InvalidDevice(p2p_tch::InvalidDevice { count: c, .. }) if c == count),
        "{err:?}"
    );
    let err = safe_move_non_blocking(&(&src, &src), Device::Cuda(count + 5)).unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");
    // Bytes, not values: random float bits include NaNs, which never equal themselves.
    assert_same(&src, &before, "source kept");
    assert!(default_mover().is_ok());
}

#[test]
fn threads_share_the_default_mover() {
    two_gpus();
    std::thread::scope(|scope| {
        for thread in 0..4 {
            scope.spawn(move || {
                for round in 0..20 {
                    let (from, to) = if (thread + round) % 2 == 0 {
                        (CUDA0, CUDA1)
                    } else {
                        (CUDA1, CUDA0)
                    };
                    let src = pattern(Kind::Float, &[(round + 1) * 10_000], from);
                    let got = safe_move_non_blocking(&src, to).unwrap();
                    assert_same(&got, &src.to_device(to), "threaded");
                }
            });
        }
    });
}
