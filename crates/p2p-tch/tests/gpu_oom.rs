//! GPU test (feature `cuda-tests`, two GPUs): a destination out of memory is a clear error and leaves the source as it was.
//!
//! In its own binary: it fills cuda:1 through PyTorch's caching allocator,
//! which keeps that memory cached for the rest of the process.

#![cfg(feature = "cuda-tests")]

mod support;

use p2p_tch::{safe_move, safe_move_non_blocking, Error};
use support::{pattern, two_gpus, CUDA0, CUDA1};
use tch::{Device, Kind, Tensor};

#[test]
fn a_destination_out_of_memory_is_an_error_and_the_source_is_kept() {
    two_gpus();
    let src = pattern(Kind::Uint8, &[512 << 20], CUDA0);
    // Kept on the host: comparing on a GPU needs memory this test uses up.
    let before = src.to_device(Device::Cpu);
    // Probe and warm up while there is memory.
    let _ = safe_move(&pattern(Kind::Uint8, &[4096], CUDA0), CUDA1).unwrap();

    let mut filler = Vec::new();
    for chunk in [1i64 << 30, 64 << 20, 1 << 20] {
        while let Ok(t) = Tensor::f_empty([chunk], (Kind::Uint8, CUDA1)) {
            filler.push(t);
        }
    }
    let err = safe_move(&src, CUDA1).unwrap_err();
    assert!(
        matches!(err, Error::OutOfMemory { device: Device::Cuda(1), bytes, .. } if bytes == 512 << 20),
        "{err:?}"
    );
    assert!(err.to_string().contains("out of memory on cuda:1"), "{err}");
    let small = pattern(Kind::Float, &[16], CUDA0);
    let err = safe_move_non_blocking(&(&small, &src), CUDA1).unwrap_err();
    assert!(matches!(err, Error::OutOfMemory { .. }), "{err:?}");
    assert!(
        src.to_device(Device::Cpu).equal(&before),
        "the source changed"
    );

    drop(filler);
    let moved = safe_move(&src, CUDA1).unwrap();
    assert!(moved.to_device(Device::Cpu).equal(&before));
}
