//! Helpers shared by the test binaries (the CPU ones use the dtype list): the two-GPU requirement, patterned tensors, byte-for-byte comparison.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::process::Command;

use p2p_tch::{Config, DisabledPairs, Policy, TchMover};
use tch::{Device, Kind, Tensor};

/// Every element type tch names, quantized ones apart.
pub(crate) const PLAIN_KINDS: [Kind; 17] = [
    Kind::Uint8,
    Kind::Int8,
    Kind::Int16,
    Kind::Int,
    Kind::Int64,
    Kind::Half,
    Kind::Float,
    Kind::Double,
    Kind::ComplexHalf,
    Kind::ComplexFloat,
    Kind::ComplexDouble,
    Kind::Bool,
    Kind::BFloat16,
    Kind::Float8e5m2,
    Kind::Float8e4m3fn,
    Kind::Float8e5m2fnuz,
    Kind::Float8e4m3fnuz,
];

pub(crate) const CUDA0: Device = Device::Cuda(0);
pub(crate) const CUDA1: Device = Device::Cuda(1);

/// How many GPUs PyTorch sees. Fails the test (never passes it) with fewer than two.
pub(crate) fn two_gpus() -> usize {
    if let Err(err) = p2p_tch::init() {
        panic!("this test needs two CUDA GPUs, and PyTorch's CUDA library does not load: {err}");
    }
    let count = tch::Cuda::device_count();
    assert!(
        count >= 2,
        "this test needs two CUDA GPUs; PyTorch sees {count} (check nvidia-smi and CUDA_VISIBLE_DEVICES)"
    );
    count as usize
}

/// A mover with peer copy between cuda:0 and cuda:1 turned off by policy,
/// and no hop through a third GPU: the pair is moved by the staged route.
pub(crate) fn staged_mover() -> TchMover {
    let config = Config {
        disabled: DisabledPairs::Pairs([(0, 1), (1, 0)].into_iter().collect()),
        ..Config::default()
    };
    let policy = Policy {
        allow_via: false,
        ..Policy::default()
    };
    TchMover::new(config, policy).expect("a mover with the pair 0<->1 disabled")
}

/// A tensor of `kind` and `shape` on `device` holding pseudo-random bytes
/// (0 or 1 for Bool), made on the device.
pub(crate) fn pattern(kind: Kind, shape: &[i64], device: Device) -> Tensor {
    let numel: i64 = shape.iter().product();
    let bytes = numel * kind.elt_size_in_bytes() as i64;
    let high = if kind == Kind::Bool { 2 } else { 256 };
    Tensor::randint(high, [bytes], (Kind::Uint8, device))
        .view_dtype(kind)
        .reshape(shape)
}

/// The bytes of `t`'s values in row-major order (lazy conjugate and
/// negative bits resolved), as a flat Uint8 tensor on its device.
pub(crate) fn bytes_of(t: &Tensor) -> Tensor {
    let t = if matches!(t.kind(), Kind::QInt8 | Kind::QUInt8 | Kind::QInt32) {
        t.int_repr()
    } else {
        t.resolve_conj().resolve_neg()
    };
    let t = t.contiguous();
    if t.numel() == 0 {
        return Tensor::zeros([0], (Kind::Uint8, t.device()));
    }
    t.reshape([-1]).view_dtype(Kind::Uint8)
}

/// Panics unless `got` and `expected` have the same device, dtype, shape and bytes.
pub(crate) fn assert_same(got: &Tensor, expected: &Tensor, what: &str) {
    assert_eq!(got.device(), expected.device(), "{what}: device");
    assert_eq!(got.kind(), expected.kind(), "{what}: dtype");
    assert_eq!(got.size(), expected.size(), "{what}: shape");
    assert!(
        bytes_of(got).equal(&bytes_of(expected)),
        "{what}: the bytes differ from to_device's"
    );
}

/// Runs the calling test again in a child process of this binary with
/// `vars` in its environment from the start (settings PyTorch reads when
/// its libraries load, before `main`). Returns `true` in the child, which
/// goes on with the test; `false` in the parent once the child passed.
pub(crate) fn in_child_with_env(test_name: &str, vars: &[(&str, &str)]) -> bool {
    const MARK: &str = "P2P_TCH_TEST_CHILD";
    if std::env::var_os(MARK).is_some() {
        return true;
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let status = Command::new(exe)
        .args([test_name, "--exact", "--nocapture", "--test-threads=1"])
        .env(MARK, "1")
        .envs(vars.iter().copied())
        .status()
        .expect("the test binary runs again");
    assert!(
        status.success(),
        "{test_name} failed in its child process (its output is above)"
    );
    false
}
