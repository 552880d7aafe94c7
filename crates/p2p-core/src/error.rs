//! The crate's one error type.

use std::path::PathBuf;

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong below the planner: the driver, the devices, the cache.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No CUDA driver library (`libcuda.so`) could be loaded on this machine.
    #[error("no CUDA driver on this machine ({detail}); install the NVIDIA driver, or work on a simulated machine (`p2p probe --sim FILE`, `SimDriver`)")]
    NoDriver { detail: String },

    /// A CUDA driver call returned an error code.
    #[error("CUDA call {call} failed: {name} ({code})")]
    Cuda {
        call: &'static str,
        code: u32,
        name: String,
    },

    /// A device ordinal that does not exist on this machine.
    #[error("device {ordinal} does not exist: this machine has {count} GPU(s)")]
    InvalidDevice { ordinal: usize, count: usize },

    /// An allocation on a device or in pinned host memory failed for lack of memory.
    #[error("out of memory allocating {bytes} bytes on {place}")]
    OutOfMemory { place: String, bytes: usize },

    /// The probe of a pair failed recently (out of memory, a driver error)
    /// and is not tried again until its backoff has passed.
    #[error("probing cuda:{from} -> cuda:{to} failed recently ({detail}); not trying again for {retry_in_ms} ms")]
    ProbeFailed {
        from: usize,
        to: usize,
        /// The first failure's message.
        detail: String,
        retry_in_ms: u64,
    },

    /// Work on a stream did not finish before its deadline (a hung copy).
    #[error("{what} did not finish within {after_ms} ms")]
    Timeout { what: String, after_ms: u64 },

    /// A simulated-machine topology file is malformed.
    #[error("{}:{line}:{column}: {message}", path.display())]
    Topology {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },

    /// An environment variable of ours has a value we cannot use.
    #[error("environment variable {name}={value:?} is invalid: {message}")]
    InvalidEnv {
        name: &'static str,
        value: String,
        message: String,
    },

    /// Reading or writing a file (the cache, a topology file) failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A copy between ranges of different sizes; nothing was copied.
    #[error("size mismatch: {src_bytes} bytes do not fit a buffer of {dst_bytes}")]
    SizeMismatch { src_bytes: usize, dst_bytes: usize },

    /// An operation the backend cannot do (a simulated-only call on CUDA, ...).
    #[error("unsupported: {0}")]
    Unsupported(String),
}
