//! Safe, verified, fast moves of `tch` tensors (and tuples, slices, arrays
//! and `Vec`s of them) between the CPU and CUDA devices.
//!
//! ```no_run
//! use p2p_tch::{safe_move, SafeTo};
//! use tch::{Device, Kind, Tensor};
//!
//! # fn main() -> p2p_tch::Result<()> {
//! let hidden = Tensor::randn([8, 4096], (Kind::Half, Device::Cuda(0)));
//! let hidden = hidden.safe_to(Device::Cuda(1))?;              // one tensor
//! let mask = Tensor::ones([8, 8], (Kind::Bool, Device::Cuda(0)));
//! let (hidden, mask) = safe_move(&(hidden, mask), Device::Cuda(0))?; // a tuple, in one batch
//! # let _ = (hidden, mask);
//! # Ok(())
//! # }
//! ```
//!
//! # What a move does
//!
//! The semantics ExLlamaV2's `safe_move_tensor` users know:
//!
//! * a tensor already on the destination device is returned as it is (a
//!   shallow clone sharing its memory: no copy);
//! * CPU to GPU and GPU to CPU always work;
//! * GPU to GPU follows the verdict of that *ordered* pair, probed once per
//!   process (and cached on disk) by `p2p-core`: a direct peer copy where it
//!   is verified to deliver the right bytes, else a hop through a third GPU
//!   whose two legs are verified, else pipelined staging through pinned host
//!   memory (see `p2p_move::plan`);
//! * any dtype, any shape, zero-size tensors. A non-contiguous source (or one
//!   with PyTorch's lazy conjugate or negative bit) is first made contiguous
//!   *on its own device*; the result has the same dtype, shape and values as
//!   `Tensor::to_device` gives, is contiguous, and does not track gradients;
//! * a device that does not exist, no GPU at all, or a destination out of
//!   memory gives a clear [`Error`] and leaves the source as it was.
//!
//! Copies are ordered with PyTorch's current stream on each device, in both
//! [`Mode::Blocking`] (the default: returns once the bytes are there) and
//! [`Mode::NonBlocking`] (returns once queued; nothing synchronises a whole
//! device): a source just written by a torch operation is read after that
//! write, and the result may be read at once by a torch operation on the
//! destination. The details follow.
//!
//! ## Ordering with PyTorch
//!
//! Every copy is ordered with PyTorch's *current stream* of each CUDA device
//! involved, for the calling thread (`torch.cuda.current_stream(d)`):
//!
//! * it starts after the work already queued there, on the source device
//!   (so a tensor just written by a torch operation is read after the write)
//!   and on the destination device (whose allocator may have just handed out
//!   memory that queued work still uses);
//! * work queued afterwards on the destination's current stream runs after
//!   the copy, so the result can be read at once by any torch operation;
//! * in [`Mode::NonBlocking`], work queued afterwards on the *source's*
//!   current stream also waits for the copy (PyTorch's own `to` orders its
//!   copies the same way), so writing the source in place, or freeing it and
//!   letting the allocator reuse its memory, cannot race the copy.
//!
//! Nothing synchronises a whole device except the clean-up after a failed
//! move.
//!
//! ## Blocking and non-blocking
//!
//! [`Mode::Blocking`] returns once the bytes are at the destination (the
//! host waits on an event of the copy, not on a device). [`Mode::NonBlocking`]
//! returns once the copies are queued; the mover keeps (shallow clones of)
//! the source and destination tensors until an event recorded after the copy
//! has fired, so dropping either early is safe. Their memory is released on
//! a later call, or by [`TchMover::synchronize`]. Exceptions, which wait as
//! in blocking mode: moves *to the CPU* (a CPU tensor has no stream to order
//! its readers with, so it is complete when returned), and every move of a
//! mover built with verification on.
//!
//! Host tensors are always treated as pageable memory, pinned or not: they
//! are copied through the mover's pinned staging buffers (the CPU copies
//! chunks while the GPU uploads the previous ones). So a host source has been
//! read completely when a call returns, in both modes, and may be changed at
//! once. (tch can only ask PyTorch whether a tensor is pinned through a
//! deprecated call that prints a warning each time, and the driver layer has
//! no such query yet.)
//!
//! ## What the result is
//!
//! The same dtype, shape and values as `Tensor::to_device` gives; always
//! contiguous; not tracking gradients (`requires_grad` false, no autograd
//! history). A tensor already on the destination device is returned as it
//! is (a shallow clone sharing its memory), like `to_device` does. Quantized
//! tensors (`QInt8`, `QUInt8`, `QInt32`) carry their scale and zero point
//! outside their bytes: they are moved by PyTorch's own copies through host
//! memory (`to_device(Cpu)`, then on to the device), which never takes the
//! peer path and is always correct, though not fast.
//!
//! ## PyTorch's allocators
//!
//! Destinations are allocated by PyTorch, so they belong to its allocator
//! like any tensor. With `PYTORCH_CUDA_ALLOC_CONF=backend:cudaMallocAsync`
//! tensors live in stream-ordered pools, which peer access does not cover;
//! the mover grants the pools access (`cuMemPoolSetAccess`) before a peer
//! copy, so those copies run at full speed too. PyTorch reads that variable
//! when its CUDA library loads, which for a Rust binary is before `main`
//! (see below): set it in the environment the program starts with.
//!
//! # The functions
//!
//! * [`safe_move`] / [`safe_move_non_blocking`], and the extension trait
//!   [`SafeTo`] (`t.safe_to(Device::Cuda(1))?`), use one process-wide
//!   [`TchMover`] made on first GPU use from the `P2P_*` environment variables
//!   and the default policy ([`default_mover`]). Moves between CPU tensors
//!   need no GPU and never touch CUDA.
//! * A [`TchMover`] of your own takes another [`Config`] (pairs disabled by
//!   policy, the verdict cache) or [`Policy`] (chunk sizes, routes allowed).
//! * Anything [`Movable`] moves in one call: a tensor, `&[Tensor]` and
//!   `Vec<Tensor>` (give a `Vec`), `[Tensor; N]`, tuples of up to 8 movables,
//!   nested; implement it for your own types. The tensors of one call are
//!   moved as one batch (one batched peer copy per source device); small
//!   ones may share destination allocations (see [`TchMover::with_packing`]).
//!
//! # `libtorch_cuda.so`
//!
//! The linker drops `libtorch_cuda.so` from binaries that link tch (nothing
//! references it by name), and PyTorch then sees no GPU. This crate loads it
//! with `dlopen` when the program starts (an `.init_array` entry, before
//! `main`), and again at [`init`] and every entry point; so any binary that
//! links `p2p-tch` sees its GPUs with no linker flag of its own. If yours
//! queries `tch::Cuda` before any call into this crate and still sees no GPU,
//! call [`init`] first thing in `main`. The library is found through
//! `LD_LIBRARY_PATH` (PyTorch's `torch/lib`, which tch binaries need anyway)
//! or next to the `libtorch_cpu.so` the process has loaded.
//!
//! # Benchmarks and examples
//!
//! `examples/layer_split.rs` splits a model's layers across every GPU and
//! moves hidden states at each boundary, with peer copy forced off on one
//! pair. The `tch-bench` binary compares [`safe_move`] with `to_device` and
//! with ExLlamaV2's fallback.

mod error;
mod movable;
mod mover;
mod prepare;
mod raw;
#[cfg(doctest)]
mod readme;

use std::sync::{Arc, OnceLock};

use tch::Device;

pub use error::{device_name, CudaMissing, Error, Result, TensorProblem, TorchCudaError};
pub use movable::Movable;
pub use mover::{Mode, TchMover};
pub use p2p_core::{CacheSetting, Config, DisabledPairs};
pub use p2p_move::{Error as MoveError, InvalidDevice, Plan, Policy, Route, Side};
pub use prepare::{PACK_ALIGN_BYTES, PACK_BYTES, PACK_MAX_TENSOR_BYTES};

/// Loads `libtorch_cuda.so`, so that PyTorch sees the GPUs (see the crate
/// docs); cheap after the first call. Done automatically at start-up and by
/// every function of this crate.
///
/// # Errors
/// [`Error::NoCuda`] when the library cannot be loaded (a CPU-only PyTorch,
/// or its `torch/lib` not on `LD_LIBRARY_PATH`). CPU moves work regardless.
pub fn init() -> Result<()> {
    raw::torch_cuda()
        .map(drop)
        .map_err(|err| no_cuda(CudaMissing::TorchCuda(TorchCudaError(err))))
}

/// [`Error::NoCuda`] from setting up, before any call named a device.
fn no_cuda(missing: CudaMissing) -> Error {
    Error::NoCuda {
        asked_for: None,
        missing,
    }
}

/// Why the process-wide mover could not be made, kept to be reported again.
enum SetupFailure {
    NoCuda(CudaMissing),
    Other(Arc<Error>),
}

static DEFAULT_MOVER: OnceLock<std::result::Result<TchMover, SetupFailure>> = OnceLock::new();

/// The process-wide [`TchMover`] behind [`safe_move`]: made on first call
/// with [`TchMover::from_env`] (the `P2P_*` environment variables and the
/// default policy), then shared.
///
/// # Errors
/// [`Error::NoCuda`] when this process has no usable GPU, [`Error::Setup`]
/// when the environment holds settings that cannot be used; the same error
/// on every call.
pub fn default_mover() -> Result<&'static TchMover> {
    let made = DEFAULT_MOVER.get_or_init(|| {
        TchMover::from_env().map_err(|err| match err {
            Error::NoCuda { missing, .. } => SetupFailure::NoCuda(missing),
            other => SetupFailure::Other(Arc::new(other)),
        })
    });
    match made {
        Ok(mover) => Ok(mover),
        Err(SetupFailure::NoCuda(missing)) => Err(no_cuda(missing.clone())),
        Err(SetupFailure::Other(source)) => Err(Error::Setup {
            source: source.clone(),
        }),
    }
}

/// Moves `value` (a tensor, or a tuple, slice, array or `Vec` of them) to
/// `device` and returns it in the same shape once the bytes are there. See
/// the crate docs for what a move does.
///
/// ```no_run
/// # fn main() -> p2p_tch::Result<()> {
/// use tch::{Device, Kind, Tensor};
/// let x = Tensor::zeros([1024], (Kind::Float, Device::Cuda(0)));
/// let y = p2p_tch::safe_move(&x, Device::Cuda(1))?;
/// let (a, b) = p2p_tch::safe_move(&(&x, &y), Device::Cpu)?;
/// # let _ = (a, b);
/// # Ok(())
/// # }
/// ```
pub fn safe_move<T: Movable + ?Sized>(value: &T, device: Device) -> Result<T::Output> {
    move_with_default(value, device, Mode::Blocking)
}

/// [`safe_move`] that returns once the copies are queued, ordered with
/// PyTorch's current streams (see [`Mode::NonBlocking`]).
pub fn safe_move_non_blocking<T: Movable + ?Sized>(value: &T, device: Device) -> Result<T::Output> {
    move_with_default(value, device, Mode::NonBlocking)
}

/// `t.safe_to(Device::Cuda(1))?`: [`safe_move`] as a method of every [`Movable`].
///
/// The names follow tch's pair (`f_to_device` returns a `Result`,
/// `to_device` panics): [`SafeTo::f_safe_to_device`] returns the error,
/// [`SafeTo::safe_to_device`] panics with its message. [`SafeTo::safe_to`]
/// is the `f_` form under its first name, kept.
pub trait SafeTo: Movable {
    /// [`safe_move`] of `self`, as tch's `f_` methods: the error is returned.
    fn f_safe_to_device(&self, device: Device) -> Result<Self::Output> {
        safe_move(self, device)
    }

    /// [`safe_move`] of `self`, as tch's `to_device`: a drop-in for it.
    ///
    /// # Panics
    /// When the move fails, with the error's message (the source is left as
    /// it was, as with every failed move). Use [`SafeTo::f_safe_to_device`]
    /// to handle the error instead.
    #[track_caller]
    fn safe_to_device(&self, device: Device) -> Self::Output {
        match safe_move(self, device) {
            Ok(moved) => moved,
            Err(err) => panic!("safe_to_device({}) failed: {err}", device_name(device)),
        }
    }

    /// [`safe_move`] of `self`.
    fn safe_to(&self, device: Device) -> Result<Self::Output> {
        safe_move(self, device)
    }

    /// [`safe_move_non_blocking`] of `self`.
    fn safe_to_non_blocking(&self, device: Device) -> Result<Self::Output> {
        safe_move_non_blocking(self, device)
    }
}

impl<T: Movable + ?Sized> SafeTo for T {}

/// Moves with the process-wide mover; CPU-only moves need none.
fn move_with_default<T: Movable + ?Sized>(
    value: &T,
    device: Device,
    mode: Mode,
) -> Result<T::Output> {
    // Before anything can ask PyTorch about CUDA (see `raw`).
    let _ = raw::torch_cuda();
    match device {
        Device::Cpu | Device::Cuda(_) => {}
        other => return Err(Error::UnsupportedDevice { device: other }),
    }
    let tensors = movable::list(value);
    let sources = tensors
        .iter()
        .enumerate()
        .map(|(index, tensor)| prepare::inspect(index, tensor))
        .collect::<Result<Vec<_>>>()?;
    let uses_cuda = device.is_cuda() || sources.iter().any(|source| source.device.is_cuda());
    if !uses_cuda {
        // CPU to CPU: the same tensors, as `to_device` gives them.
        let same = sources
            .iter()
            .map(|source| source.tensor.shallow_clone())
            .collect();
        return mover::rebuild(value, same);
    }
    let mover = default_mover().map_err(|err| match err {
        Error::NoCuda { missing, .. } => Error::NoCuda {
            asked_for: Some(cuda_in_call(device, &sources)),
            missing,
        },
        other => other,
    })?;
    let moved = mover.move_inspected(sources, device, mode)?;
    mover::rebuild(value, moved)
}

/// The first CUDA device a call names, for messages.
fn cuda_in_call(device: Device, sources: &[prepare::Source<'_>]) -> Device {
    std::iter::once(device)
        .chain(sources.iter().map(|source| source.device))
        .find(|device| device.is_cuda())
        .unwrap_or(device)
}

#[cfg(test)]
mod tests {
    use std::panic::{catch_unwind, AssertUnwindSafe};

    use tch::{Kind, Tensor};

    use super::*;

    #[test]
    fn f_safe_to_device_returns_the_moved_tensor() {
        let tensor = Tensor::arange(6, (Kind::Float, Device::Cpu));
        let moved = tensor.f_safe_to_device(Device::Cpu).unwrap();
        assert_eq!(
            Vec::<f32>::try_from(&moved).unwrap(),
            [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
        );
        let moved = tensor.safe_to_device(Device::Cpu);
        assert_eq!(moved.size(), [6]);
    }

    #[test]
    fn safe_to_device_panics_with_the_errors_message() {
        let tensor = Tensor::zeros([2], (Kind::Float, Device::Cpu));
        let err = tensor
            .f_safe_to_device(Device::Mps)
            .unwrap_err()
            .to_string();
        let panic = catch_unwind(AssertUnwindSafe(|| tensor.safe_to_device(Device::Mps)))
            .expect_err("an unsupported device must panic");
        let message = panic
            .downcast_ref::<String>()
            .expect("the panic carries a formatted message");
        assert!(message.contains(&err), "{message:?} lacks {err:?}");
    }
}
