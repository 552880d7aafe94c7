//! Everything of this crate that touches raw memory: the loader of
//! PyTorch's CUDA library (the only FFI), copies queued on tensor memory,
//! and the tensors of non-blocking moves held until their copies are done.

mod in_flight;
mod loader;
mod queued;

pub(crate) use in_flight::InFlight;
pub(crate) use loader::{torch_cuda, LoadError, TorchCuda};
pub(crate) use queued::{park, queue, QueuedCopies, TensorCopy};
