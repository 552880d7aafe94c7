//! Tests that need no GPU (they run in CI): CPU moves, every error path, and what happens without a GPU.
//!
//! They also run on GPU machines (the GPU bundle builds every test binary of
//! the package), so what they expect depends on how many GPUs PyTorch sees.

mod support;

use p2p_tch::{safe_move, safe_move_non_blocking, Error, Movable, SafeTo, TchMover, TensorProblem};
use support::PLAIN_KINDS;
use tch::{Device, Kind, Tensor};

fn gpus() -> usize {
    p2p_tch::init().ok();
    usize::try_from(tch::Cuda::device_count()).unwrap_or(0)
}

/// A tensor of `kind` and `shape` holding pseudo-random bytes (0/1 for Bool).
fn pattern(kind: Kind, shape: &[i64]) -> Tensor {
    let numel: i64 = shape.iter().product();
    let bytes = numel * kind.elt_size_in_bytes() as i64;
    let high = if kind == Kind::Bool { 2 } else { 256 };
    Tensor::randint(high, [bytes], (Kind::Uint8, Device::Cpu))
        .view_dtype(kind)
        .reshape(shape)
}

fn same_storage(a: &Tensor, b: &Tensor) -> bool {
    a.data_ptr() == b.data_ptr() && a.size() == b.size() && a.stride() == b.stride()
}

#[test]
fn cpu_to_cpu_returns_the_same_tensor() {
    let t = Tensor::arange(10, (Kind::Float, Device::Cpu));
    let blocking = safe_move(&t, Device::Cpu).unwrap();
    let non_blocking = safe_move_non_blocking(&t, Device::Cpu).unwrap();
    let method = t.safe_to(Device::Cpu).unwrap();
    for moved in [&blocking, &non_blocking, &method] {
        assert!(same_storage(&t, moved), "a CPU to CPU move must not copy");
        assert_eq!(moved.kind(), Kind::Float);
    }
}

#[test]
fn every_dtype_stays_itself_on_the_cpu() {
    for kind in PLAIN_KINDS {
        let t = pattern(kind, &[3, 5]);
        let moved = safe_move(&t, Device::Cpu).unwrap();
        assert!(same_storage(&t, &moved), "{kind:?}");
        assert_eq!(moved.kind(), kind);
    }
    let quantized =
        Tensor::rand([4, 4], (Kind::Float, Device::Cpu)).quantize_per_tensor(0.1, 3, Kind::QInt8);
    let moved = safe_move(&quantized, Device::Cpu).unwrap();
    assert!(same_storage(&quantized, &moved));
    assert_eq!(moved.kind(), Kind::QInt8);
}

#[test]
fn zero_size_and_scalar_tensors_keep_their_shape() {
    for shape in [vec![0i64], vec![0, 3], vec![2, 0, 4], vec![]] {
        let t = Tensor::zeros(shape.as_slice(), (Kind::Half, Device::Cpu));
        let moved = safe_move(&t, Device::Cpu).unwrap();
        assert_eq!(moved.size(), shape);
        assert_eq!(moved.kind(), Kind::Half);
    }
}

#[test]
fn non_contiguous_tensors_are_returned_as_they_are_on_their_own_device() {
    // Like `to_device` to the same device: no copy, strides kept.
    let t = Tensor::arange(12, (Kind::Int64, Device::Cpu))
        .reshape([3, 4])
        .transpose(0, 1);
    assert!(!t.is_contiguous());
    let moved = safe_move(&t, Device::Cpu).unwrap();
    assert!(same_storage(&t, &moved));
    assert_eq!(moved.stride(), vec![1, 4]);
}

#[test]
fn tuples_slices_arrays_and_vecs_keep_their_shape() {
    let a = Tensor::ones([2], (Kind::Float, Device::Cpu));
    let b = Tensor::zeros([3, 3], (Kind::Int, Device::Cpu));
    let c = Tensor::ones([0], (Kind::Bool, Device::Cpu));

    let (x, y) = safe_move(&(&a, &b), Device::Cpu).unwrap();
    assert!(same_storage(&x, &a) && same_storage(&y, &b));

    let (x, [y, z]) = safe_move(&(&a, [&b, &c]), Device::Cpu).unwrap();
    assert!(same_storage(&x, &a) && same_storage(&y, &b) && same_storage(&z, &c));

    let slice: &[Tensor] = &[a.shallow_clone(), b.shallow_clone(), c.shallow_clone()];
    let moved: Vec<Tensor> = safe_move(slice, Device::Cpu).unwrap();
    assert_eq!(moved.len(), 3);
    assert!(moved.iter().zip(slice).all(|(m, s)| same_storage(m, s)));

    let vec = vec![&a, &b];
    let moved: Vec<Tensor> = vec.safe_to(Device::Cpu).unwrap();
    assert_eq!(moved.len(), 2);

    let eight = (&a, &a, &a, &a, &a, &a, &a, &b);
    let moved = safe_move(&eight, Device::Cpu).unwrap();
    assert!(same_storage(&moved.7, &b));

    let empty: Vec<Tensor> = Vec::new();
    assert!(safe_move(&empty, Device::Cpu).unwrap().is_empty());
}

#[test]
fn a_device_that_does_not_exist_is_a_clear_error() {
    let n = gpus();
    // Device::Cuda(7), or the first ordinal past the last GPU on big machines.
    let missing = Device::Cuda(n.max(7));
    let t = Tensor::ones([4], (Kind::Float, Device::Cpu));
    let err = safe_move(&t, missing).unwrap_err();
    let message = err.to_string();
    if n == 0 {
        assert!(
            matches!(
                err,
                Error::NoCuda {
                    asked_for: Some(Device::Cuda(7)),
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(
            message.contains("cuda:7") && message.contains("no CUDA GPU"),
            "{message}"
        );
    } else {
        assert!(
            matches!(err, Error::InvalidDevice(p2p_tch::InvalidDevice { count, .. }) if count == n),
            "{err:?}"
        );
        assert!(message.contains("does not exist"), "{message}");
    }
    // The source is untouched.
    assert_eq!(t.sum(Kind::Float).double_value(&[]), 4.0);
}

#[test]
fn without_a_gpu_gpu_moves_fail_clearly_and_cpu_moves_work() {
    if gpus() > 0 {
        eprintln!("this machine has GPUs: the no-GPU behaviour is checked in CI");
        return;
    }
    let t = Tensor::ones([4], (Kind::Float, Device::Cpu));
    let err = safe_move(&t, Device::Cuda(0)).unwrap_err();
    assert!(err.is_no_cuda(), "{err:?}");
    assert!(
        err.to_string()
            .contains("Moves between CPU tensors still work"),
        "{err}"
    );
    let err = safe_move_non_blocking(&(&t, &t), Device::Cuda(0)).unwrap_err();
    assert!(err.is_no_cuda(), "{err:?}");
    let err = p2p_tch::default_mover().unwrap_err();
    assert!(err.is_no_cuda(), "{err:?}");
    let err = TchMover::new(p2p_tch::Config::default(), p2p_tch::Policy::default()).unwrap_err();
    assert!(err.is_no_cuda(), "{err:?}");
    // CPU moves are unaffected.
    assert!(same_storage(&safe_move(&t, Device::Cpu).unwrap(), &t));
}

#[test]
fn devices_other_than_cpu_and_cuda_are_refused() {
    let t = Tensor::ones([4], (Kind::Float, Device::Cpu));
    for device in [Device::Mps, Device::Vulkan] {
        let err = safe_move(&t, device).unwrap_err();
        assert!(
            matches!(err, Error::UnsupportedDevice { device: d } if d == device),
            "{err:?}"
        );
    }
}

#[test]
fn undefined_and_sparse_tensors_are_refused_with_their_position() {
    let good = Tensor::ones([4], (Kind::Float, Device::Cpu));
    let undefined = Tensor::new();
    let err = safe_move(&(&good, &undefined), Device::Cpu).unwrap_err();
    assert!(
        matches!(
            &err,
            Error::UnsupportedTensor {
                index: 1,
                problem: TensorProblem::Undefined
            }
        ),
        "{err:?}"
    );

    let dense = Tensor::eye(3, (Kind::Float, Device::Cpu));
    for sparse in [dense.to_sparse_sparse_dim(2), dense.to_sparse_csr(None)] {
        let err = safe_move(&sparse, Device::Cpu).unwrap_err();
        assert!(
            matches!(
                &err,
                Error::UnsupportedTensor {
                    index: 0,
                    problem: TensorProblem::Sparse
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("tensor #0"), "{err}");
    }
}

/// Lists two tensors but rebuilds from one: a broken implementation.
struct Lopsided(Tensor, Tensor);

impl Movable for Lopsided {
    type Output = Tensor;

    fn tensors<'a>(&'a self, out: &mut Vec<&'a Tensor>) {
        out.push(&self.0);
        out.push(&self.1);
    }

    fn rebuild(&self, moved: &mut dyn Iterator<Item = Tensor>) -> Option<Tensor> {
        moved.next()
    }
}

/// A user type moved in one call.
struct KvCache {
    keys: Vec<Tensor>,
    values: Vec<Tensor>,
}

impl Movable for KvCache {
    type Output = KvCache;

    fn tensors<'a>(&'a self, out: &mut Vec<&'a Tensor>) {
        self.keys.tensors(out);
        self.values.tensors(out);
    }

    fn rebuild(&self, moved: &mut dyn Iterator<Item = Tensor>) -> Option<KvCache> {
        Some(KvCache {
            keys: self.keys.rebuild(moved)?,
            values: self.values.rebuild(moved)?,
        })
    }
}

#[test]
fn user_types_can_be_movable_and_broken_ones_are_caught() {
    let t = Tensor::ones([2], (Kind::Float, Device::Cpu));
    let cache = KvCache {
        keys: vec![t.shallow_clone(), t.shallow_clone()],
        values: vec![t.shallow_clone()],
    };
    let moved = cache.safe_to(Device::Cpu).unwrap();
    assert_eq!((moved.keys.len(), moved.values.len()), (2, 1));

    let err = safe_move(&Lopsided(t.shallow_clone(), t.shallow_clone()), Device::Cpu).unwrap_err();
    assert!(
        matches!(err, Error::MovableMismatch { listed: 2, used: 1 }),
        "{err:?}"
    );
}

#[test]
fn init_loads_libtorch_cuda_when_pytorch_has_it() {
    let maps = || std::fs::read_to_string("/proc/self/maps").unwrap();
    match p2p_tch::init() {
        Ok(()) => assert!(
            maps().contains("libtorch_cuda.so"),
            "init succeeded but libtorch_cuda.so is not mapped"
        ),
        Err(err) => {
            // A CPU-only PyTorch: the error says what is missing.
            assert!(err.to_string().contains("libtorch_cuda.so"), "{err}");
        }
    }
}
