//! The crate's one error type.

use std::path::PathBuf;

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong below the planner: the driver, the devices, the cache.
///
/// `Display` gives a message for people that says what failed and, where
/// there is one, what to do; print errors with `{}`, not `{:?}`:
///
/// ```
/// use p2p_core::{Driver, Error, SimDriver};
///
/// let driver = SimDriver::builtin(); // four simulated GPUs
/// let err = driver.check_device(7).unwrap_err();
/// println!("{err}");
/// assert_eq!(err.to_string(), "device 7 does not exist: this machine has 4 GPU(s)");
/// assert!(matches!(err, Error::InvalidDevice { ordinal: 7, count: 4 }));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No CUDA driver library (`libcuda.so`) could be loaded on this machine.
    #[error("no CUDA driver on this machine ({detail}); install the NVIDIA driver, or work on a simulated machine (`p2p probe --sim FILE`, `SimDriver`)")]
    NoDriver {
        /// What failed: the library that could not be loaded, a missing
        /// symbol, or `cuInit`'s error name.
        detail: String,
    },

    /// A CUDA driver call returned an error code.
    #[error("CUDA call {call} failed: {name} ({code})")]
    Cuda {
        /// The driver function that failed (`cuMemcpyPeerAsync`, ...).
        call: &'static str,
        /// The `CUresult` code.
        code: u32,
        /// The code's name (`CUDA_ERROR_INVALID_VALUE`, ...).
        name: String,
    },

    /// A device ordinal that does not exist on this machine.
    #[error("device {ordinal} does not exist: this machine has {count} GPU(s)")]
    InvalidDevice {
        /// The ordinal asked for.
        ordinal: usize,
        /// How many devices the driver sees (valid ordinals are `0..count`).
        count: usize,
    },

    /// An allocation on a device or in pinned host memory failed for lack of memory.
    #[error("out of memory allocating {bytes} bytes on {place}")]
    OutOfMemory {
        /// Where: `cuda:N` or `pinned host memory`.
        place: String,
        /// The size asked for.
        bytes: usize,
    },

    /// The probe of a pair failed recently (out of memory, a driver error)
    /// and is not tried again until its backoff has passed.
    #[error("probing cuda:{from} -> cuda:{to} failed recently ({detail}); not trying again for {retry_in_ms} ms")]
    ProbeFailed {
        /// The source device of the pair.
        from: usize,
        /// The destination device of the pair.
        to: usize,
        /// The first failure's message.
        detail: String,
        /// How long until the next probe of the pair may run.
        retry_in_ms: u64,
    },

    /// Work on a stream did not finish before its deadline (a hung copy).
    #[error("{what} did not finish within {after_ms} ms")]
    Timeout {
        /// What was waited for (`work on cuda:1`, ...).
        what: String,
        /// The deadline that passed, in milliseconds.
        after_ms: u64,
    },

    /// A simulated-machine topology file is malformed.
    #[error("{}:{line}:{column}: {message}", path.display())]
    Topology {
        /// The file (or the name given for text parsed from memory).
        path: PathBuf,
        /// 1-based line of the mistake.
        line: usize,
        /// 1-based column (in characters) of the mistake.
        column: usize,
        /// What is wrong there.
        message: String,
    },

    /// An environment variable of ours has a value we cannot use.
    #[error("environment variable {name}={value:?} is invalid: {message}")]
    InvalidEnv {
        /// The variable (`P2P_DISABLE`, ...).
        name: &'static str,
        /// Its value as found.
        value: String,
        /// What is wrong with it and what would be accepted.
        message: String,
    },

    /// Reading or writing a file (the cache, a topology file) failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done (`reading topology file`, ...).
        action: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// A copy between ranges of different sizes; nothing was copied.
    #[error("size mismatch: {src_bytes} bytes do not fit a buffer of {dst_bytes}")]
    SizeMismatch {
        /// Bytes in the source.
        src_bytes: usize,
        /// Bytes in the destination.
        dst_bytes: usize,
    },

    /// An operation the backend cannot do (a simulated-only call on CUDA, ...).
    #[error("unsupported: {0}")]
    Unsupported(String),
}
