//! The crate's one error type: what a move of tensors can fail with.

use tch::{Device, Kind, TchError};

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
        "no CUDA GPU is usable in this process: {detail}. \
         Moves between CPU tensors still work; for GPU moves, run on a machine \
         with an NVIDIA driver and a CUDA build of PyTorch"
    )]
    NoCuda {
        /// What was missing, in words (driver, GPUs, `libtorch_cuda.so`).
        detail: String,
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
    #[error("cannot move tensor #{index} of the call: {reason}")]
    UnsupportedTensor {
        /// Position of the tensor in the call (0 for a single tensor).
        index: usize,
        /// Why, in words.
        reason: String,
    },

    /// PyTorch could not allocate memory for the destination (or for the
    /// contiguous copy of a non-contiguous source on its own device).
    #[error(
        "out of memory on {}: allocating {bytes} bytes ({kind:?}) failed; free memory \
         there (drop tensors, `empty_cache`) or move fewer tensors at once. PyTorch said: {detail}",
        device_name(*.device)
    )]
    OutOfMemory {
        /// Where the allocation failed.
        device: Device,
        /// Bytes asked for.
        bytes: usize,
        /// Element type of the tensor being allocated.
        kind: Kind,
        /// PyTorch's message.
        detail: String,
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
    /// missing GPU (a `P2P_*` environment variable with a bad value, ...).
    #[error("could not set up p2p-tch's process-wide mover: {detail}")]
    Setup {
        /// What went wrong.
        detail: String,
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
            detail: "CUDA out of memory".into(),
        };
        assert!(
            err.to_string()
                .starts_with("out of memory on cuda:1: allocating 1073741824 bytes (Float)"),
            "{err}"
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
