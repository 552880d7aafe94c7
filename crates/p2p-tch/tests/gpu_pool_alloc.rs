//! GPU test (feature `cuda-tests`, two GPUs): moves with PyTorch's `cudaMallocAsync` allocator backend are right and run at full speed.
//!
//! PyTorch picks its allocator backend from `PYTORCH_CUDA_ALLOC_CONF` when
//! its CUDA library loads, which for a binary linking p2p-tch is before
//! `main`. So the test runs itself again in a child process with the variable
//! set from the start. Pool memory is not covered by peer access: the mover
//! must grant pool access, or its peer copies run at staging speed.

#![cfg(feature = "cuda-tests")]

mod support;

use std::time::Instant;

use p2p_core::DeviceAddr;
use p2p_tch::{Mode, Route, TchMover};
use support::{assert_same, in_child_with_env, pattern, staged_mover, two_gpus, CUDA0, CUDA1};
use tch::{Device, Kind, Tensor};

#[test]
fn moves_with_the_cuda_malloc_async_backend_are_right_and_fast() {
    if !in_child_with_env(
        "moves_with_the_cuda_malloc_async_backend_are_right_and_fast",
        &[("PYTORCH_CUDA_ALLOC_CONF", "backend:cudaMallocAsync")],
    ) {
        return;
    }
    two_gpus();
    let mover = TchMover::from_env().unwrap();
    let driver = mover.mover().driver().clone();

    for device in [0usize, 1] {
        let t = Tensor::zeros([1 << 20], (Kind::Uint8, Device::Cuda(device)));
        let pool = driver
            .pool_of(DeviceAddr {
                device,
                addr: t.data_ptr() as usize as u64,
            })
            .unwrap();
        assert!(pool.is_some(), "PyTorch's tensors on cuda:{device} are not pool memory: the backend setting was not applied");
    }

    let staged = staged_mover();
    for (name, m) in [("default", &mover), ("staged", &staged)] {
        for size in [0i64, 4096, (16 << 20) + 3, 256 << 20] {
            for (from, to) in [(CUDA0, CUDA1), (CUDA1, CUDA0)] {
                let src = pattern(Kind::Uint8, &[size], from);
                for mode in [Mode::Blocking, Mode::NonBlocking] {
                    let got = m.move_to(&src, to, mode).unwrap();
                    assert_same(
                        &got,
                        &src.to_device(to),
                        &format!("{name} {size} {from:?} -> {to:?} {mode:?}"),
                    );
                }
            }
        }
        let many: Vec<Tensor> = (0..64)
            .map(|_| pattern(Kind::Half, &[8192], CUDA0))
            .collect();
        let moved = m.move_to(&many, CUDA1, Mode::NonBlocking).unwrap();
        for (got, src) in moved.iter().zip(&many) {
            assert_same(got, &src.to_device(CUDA1), name);
        }
    }

    // Full speed: a peer move of pool memory as fast as PyTorch's own.
    let bytes = 256i64 << 20;
    let plan = mover.plan(CUDA0, CUDA1, bytes as usize).unwrap();
    if plan.route != Route::Peer {
        eprintln!(
            "cuda:0 -> cuda:1 is not verified for peer copy here ({}): no speed comparison",
            plan.reason()
        );
        return;
    }
    let src = pattern(Kind::Uint8, &[bytes], CUDA0);
    let time = |f: &dyn Fn() -> Tensor| {
        let mut best = f64::MAX;
        for _ in 0..10 {
            tch::Cuda::synchronize(0);
            tch::Cuda::synchronize(1);
            let start = Instant::now();
            let out = f();
            tch::Cuda::synchronize(1);
            best = best.min(start.elapsed().as_secs_f64());
            drop(out);
        }
        bytes as f64 / best / 1e9
    };
    let ours = time(&|| mover.move_to(&src, CUDA1, Mode::Blocking).unwrap());
    let torch = time(&|| src.to_device(CUDA1));
    println!("256 MiB cuda:0 -> cuda:1 with cudaMallocAsync: safe_move {ours:.1} GB/s, to_device {torch:.1} GB/s");
    assert!(
        ours >= 0.7 * torch,
        "safe_move ran at {ours:.1} GB/s on pool memory, to_device at {torch:.1} GB/s: is pool access granted?"
    );
}
