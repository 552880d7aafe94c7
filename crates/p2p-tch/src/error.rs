//! The crate's one error type: what a move of tensors can fail with.

use std::sync::Arc;

use tch::{Device, Kind, TchError};

use crate::raw::LoadError;

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything a move can fail with. On every error the source tensors are
/// left as they were; no destination is returned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A CUDA device was asked for (as source or destination), but no CUDA GPU
    /// is usable in this process. Moves between CPU tensors still work.
    #[error(
        "no CUDA GPU is usable in this process: {}{missing}. \
         Moves between CPU tensors still work; for GPU moves, run on a machine \
         with an NVIDIA driver and a CUDA build of PyTorch",
        asked_for_text(*.asked_for)
    )]
    NoCuda {
        /// The CUDA device the call named, when the error comes from a call
        /// that named one (a move); `None` from setting up.
        asked_for: Option<Device>,
        /// What is missing.
        #[source]
        missing: CudaMissing,
    },

    /// A CUDA device ordinal that does not exist in this process (its
    /// `count` is how many CUDA devices PyTorch sees); the same error as the
    /// mover's and the driver's.
    #[error(transparent)]
    InvalidDevice(p2p_move::InvalidDevice),

    /// A device type this crate does not move to or from (MPS, Vulkan).
    #[error("{} is not supported: p2p-tch moves tensors between the CPU and CUDA devices", device_name(*.device))]
    UnsupportedDevice {
        /// The device asked for, or the device of a source tensor.
        device: Device,
    },

    /// A tensor this crate cannot move (undefined, sparse, an element type
    /// that tch cannot name).
    #[error("cannot move tensor #{index} of the call: {problem}")]
    UnsupportedTensor {
        /// Position of the tensor in the call (0 for a single tensor).
        index: usize,
        /// What about it this crate cannot move.
        #[source]
        problem: TensorProblem,
    },

    /// PyTorch could not allocate memory for the destination (or for the
    /// contiguous copy of a non-contiguous source on its own device).
    #[error(
        "out of memory on {}: allocating {bytes} bytes ({kind:?}) failed; free memory \
         there (drop tensors, `empty_cache`) or move fewer tensors at once. PyTorch said: {source}",
        device_name(*.device)
    )]
    OutOfMemory {
        /// Where the allocation failed.
        device: Device,
        /// Bytes asked for.
        bytes: usize,
        /// Element type of the tensor being allocated.
        kind: Kind,
        /// PyTorch's error.
        #[source]
        source: TchError,
    },

    /// A PyTorch call failed for another reason than memory.
    #[error("PyTorch failed while {action}: {source}")]
    Torch {
        /// What this crate was doing (`allocating the destination on cuda:1`).
        action: String,
        /// PyTorch's error.
        #[source]
        source: TchError,
    },

    /// The move itself failed (driver error, a hung copy, a bad policy).
    #[error(transparent)]
    Move(#[from] p2p_move::Error),

    /// The process-wide mover could not be made for another reason than a
    /// missing GPU (a `P2P_*` environment variable with a bad value, ...);
    /// the same error is given on every later call.
    #[error("could not set up p2p-tch's process-wide mover: {source}")]
    Setup {
        /// Why [`crate::TchMover::from_env`] failed.
        #[source]
        source: Arc<Error>,
    },

    /// A [`crate::Movable`] implementation rebuilt its output from a different
    /// number of tensors than it listed (a bug in that implementation).
    #[error(
        "the Movable implementation listed {listed} tensor(s) but rebuilt its output from \
         {used}; `tensors` and `rebuild` must agree"
    )]
    MovableMismatch {
        /// Tensors listed by `Movable::tensors`.
        listed: usize,
        /// Tensors consumed by `Movable::rebuild`.
        used: usize,
    },
}

impl Error {
    /// Whether this is [`Error::NoCuda`]: no GPU in this process at all.
    pub fn is_no_cuda(&self) -> bool {
        matches!(self, Error::NoCuda { .. })
    }
}

/// Why [`Error::UnsupportedTensor`] refused a tensor.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TensorProblem {
    /// An empty `Tensor::new()` handle.
    #[error("it is undefined (an empty `Tensor::new()` handle)")]
    Undefined,
    /// A sparse tensor: its indices and values are tensors of their own.
    #[error("it is sparse; move its indices and values, or a `to_dense()` copy")]
    Sparse,
    /// Another layout than strided (MKL-DNN, ...): PyTorch would not say
    /// how many sparse dimensions it has.
    #[error("its layout is not strided (dense): {0}")]
    NotStrided(#[source] TchError),
    /// An element type that tch cannot name.
    #[error("its element type is one tch 0.24 cannot name ({0})")]
    UnnamedKind(#[source] TchError),
}

/// What [`Error::NoCuda`] found missing: why this process cannot move CUDA tensors.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CudaMissing {
    /// PyTorch's CUDA library (`libtorch_cuda.so`) could not be loaded or
    /// used: a CPU-only PyTorch, its `torch/lib` not on `LD_LIBRARY_PATH`, a
    /// PyTorch too old, or its stream query failed (the message says which).
    #[error(transparent)]
    TorchCuda(TorchCudaError),
    /// PyTorch's CUDA library loaded, but PyTorch sees no CUDA device.
    #[error(
        "PyTorch sees no CUDA device (libtorch_cuda.so loaded from {library}); check \
         `nvidia-smi` and CUDA_VISIBLE_DEVICES"
    )]
    NoDevice {
        /// The `libtorch_cuda.so` that was loaded.
        library: String,
    },
    /// PyTorch sees GPUs, but the CUDA driver API cannot be used.
    #[error("PyTorch sees {torch_gpus} GPU(s), but the CUDA driver API does not: {source}")]
    Driver {
        /// How many GPUs PyTorch sees.
        torch_gpus: usize,
        /// Why the driver could not be opened.
        #[source]
        source: Arc<p2p_move::Error>,
    },
    /// PyTorch and the CUDA driver see different numbers of GPUs, so their
    /// device numbers would not name the same GPUs.
    #[error(
        "PyTorch sees {torch_gpus} GPU(s) and the CUDA driver {driver_gpus}: device numbers \
         would not match"
    )]
    CountMismatch {
        /// How many GPUs PyTorch sees.
        torch_gpus: usize,
        /// How many the CUDA driver sees.
        driver_gpus: usize,
    },
}

/// Why PyTorch's CUDA library could not be used, as its loader found it:
/// which files were tried and why each did not open, a missing symbol, or a
/// failed query (see [`CudaMissing::TorchCuda`]).
#[derive(Clone, Debug, thiserror::Error)]
#[error(transparent)]
pub struct TorchCudaError(pub(crate) LoadError);

/// `cuda:7 was asked for, but `, or nothing: the start of [`Error::NoCuda`]'s reason.
fn asked_for_text(device: Option<Device>) -> String {
    device.map_or_else(String::new, |device| {
        format!("{} was asked for, but ", device_name(device))
    })
}

/// `cpu`, `cuda:1`, `mps`, `vulkan`: how PyTorch writes devices.
pub fn device_name(device: Device) -> String {
    match device {
        Device::Cpu => "cpu".to_owned(),
        Device::Cuda(ordinal) => format!("cuda:{ordinal}"),
        Device::Mps => "mps".to_owned(),
        Device::Vulkan => "vulkan".to_owned(),
    }
}

/// Whether a PyTorch error message reports an allocation failure.
///
/// PyTorch has no error code for it through tch: the caching allocator
/// raises `torch.OutOfMemoryError` ("CUDA out of memory. Tried to allocate
/// ..."), the `cudaMallocAsync` backend reports `cudaErrorMemoryAllocation`
/// ("out of memory"), and the CPU allocator "DefaultCPUAllocator: can't
/// allocate memory".
pub(crate) fn is_out_of_memory(message: &str) -> bool {
    let lower = message.to_ascii_lowercase();
    lower.contains("out of memory")
        || lower.contains("outofmemory")
        || lower.contains("can't allocate memory")
        || lower.contains("cudaerrormemoryallocation")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_device_and_what_exists() {
        let err = Error::InvalidDevice(p2p_move::InvalidDevice {
            side: Some(p2p_move::Side::Destination),
            ordinal: 7,
            count: 2,
        });
        assert_eq!(
            err.to_string(),
            "the destination cuda:7 does not exist: this machine has 2 GPU(s) (cuda:0 to cuda:1)"
        );
        let err = Error::UnsupportedDevice {
            device: Device::Mps,
        };
        assert!(err.to_string().starts_with("mps is not supported"), "{err}");
        let err = Error::OutOfMemory {
            device: Device::Cuda(1),
            bytes: 1 << 30,
            kind: Kind::Float,
            source: TchError::Torch("CUDA out of memory".into()),
        };
        assert!(
            err.to_string()
                .starts_with("out of memory on cuda:1: allocating 1073741824 bytes (Float)"),
            "{err}"
        );
    }

    #[test]
    fn no_cuda_says_what_is_missing_and_keeps_it_as_its_source() {
        use std::error::Error as _;

        let library = "/opt/torch/lib/libtorch_cuda.so".to_string();
        let err = Error::NoCuda {
            asked_for: Some(Device::Cuda(7)),
            missing: CudaMissing::NoDevice { library },
        };
        let message = err.to_string();
        assert!(
            message.starts_with(
                "no CUDA GPU is usable in this process: cuda:7 was asked for, but PyTorch sees \
                 no CUDA device (libtorch_cuda.so loaded from /opt/torch/lib/libtorch_cuda.so)"
            ),
            "{message}"
        );
        assert!(message.contains("CUDA_VISIBLE_DEVICES"), "{message}");
        assert!(err.is_no_cuda());
        let source = err.source().expect("what is missing is the source");
        assert!(matches!(
            source.downcast_ref::<CudaMissing>(),
            Some(CudaMissing::NoDevice { .. })
        ));

        let counts = Error::NoCuda {
            asked_for: None,
            missing: CudaMissing::CountMismatch {
                torch_gpus: 2,
                driver_gpus: 3,
            },
        };
        assert!(
            counts.to_string().starts_with(
                "no CUDA GPU is usable in this process: PyTorch sees 2 GPU(s) and the CUDA driver 3"
            ),
            "{counts}"
        );

        let no_driver = p2p_core::Error::NoDriver {
            detail: "libcuda.so.1 could not be loaded".into(),
        };
        let driver = CudaMissing::Driver {
            torch_gpus: 1,
            source: Arc::new(no_driver.into()),
        };
        assert!(driver.to_string().contains("libcuda.so.1"), "{driver}");
        assert!(driver.source().is_some(), "the driver's error is kept");

        let stream = CudaMissing::TorchCuda(TorchCudaError(LoadError::CurrentStream {
            device: 1,
            code: 3,
        }));
        assert_eq!(
            stream.to_string(),
            "PyTorch could not give the current stream of cuda:1 (error 3)"
        );
    }

    #[test]
    fn a_setup_failure_keeps_the_error_it_repeats() {
        use std::error::Error as _;

        let cause = Error::Move(p2p_move::Error::from(p2p_core::Error::InvalidEnv {
            name: "P2P_DISABLE",
            value: "0->".into(),
            message: "not a pair".into(),
        }));
        let err = Error::Setup {
            source: Arc::new(cause),
        };
        let message = err.to_string();
        assert!(
            message.starts_with("could not set up p2p-tch's process-wide mover: ")
                && message.contains("P2P_DISABLE"),
            "{message}"
        );
        assert!(!err.is_no_cuda());
        // The source is the shared error itself (an `Arc`, as the mover's
        // failure is kept and reported again on every call).
        let source = err.source().and_then(|s| s.downcast_ref::<Arc<Error>>());
        assert!(
            matches!(source.map(|e| &**e), Some(Error::Move(_))),
            "{source:?}"
        );
    }

    #[test]
    fn recognises_pytorch_out_of_memory_messages() {
        assert!(is_out_of_memory(
            "CUDA out of memory. Tried to allocate 80.00 GiB. GPU 1 has a total capacity of 79.19 GiB"
        ));
        assert!(is_out_of_memory(
            "[enforce fail at alloc_cpu.cpp:118] data. DefaultCPUAllocator: can't allocate memory: you tried to allocate 1099511627776 bytes."
        ));
        assert!(is_out_of_memory("CUDA error: out of memory"));
        assert!(!is_out_of_memory(
            "Expected all tensors to be on the same device"
        ));
    }
}
