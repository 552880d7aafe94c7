//! The crate's one error type.

use std::path::PathBuf;

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Which end of a copy an error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    /// Where the bytes come from.
    Source,
    /// Where the bytes go.
    Destination,
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Side::Source => "source",
            Side::Destination => "destination",
        })
    }
}

/// A GPU ordinal that does not exist: the one error for it in every layer
/// (the driver, the planner, the mover, the tch adapter).
///
/// It is a plain value (`Clone`, `PartialEq`) so that the pure planner can
/// return it and tests can compare it whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}cuda:{ordinal} does not exist: this machine has {count} GPU(s){}", side_prefix(*.side), valid_range(*.count))]
pub struct InvalidDevice {
    /// Which end of a copy named it; `None` for a call about one device
    /// (an allocation, a stream, a probe of a pair).
    pub side: Option<Side>,
    /// The ordinal asked for.
    pub ordinal: usize,
    /// How many GPUs there are (valid ordinals are `0..count`).
    pub count: usize,
}

impl InvalidDevice {
    /// `Ok` when `ordinal < count`, else this error for it.
    pub fn check(side: Option<Side>, ordinal: usize, count: usize) -> Result<(), InvalidDevice> {
        if ordinal < count {
            Ok(())
        } else {
            Err(InvalidDevice {
                side,
                ordinal,
                count,
            })
        }
    }
}

fn side_prefix(side: Option<Side>) -> String {
    side.map(|side| format!("the {side} ")).unwrap_or_default()
}

fn valid_range(count: usize) -> String {
    match count {
        0 => String::new(),
        1 => " (only cuda:0)".to_owned(),
        n => format!(" (cuda:0 to cuda:{})", n - 1),
    }
}

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
/// assert_eq!(
///     err.to_string(),
///     "cuda:7 does not exist: this machine has 4 GPU(s) (cuda:0 to cuda:3)"
/// );
/// assert!(matches!(err, Error::InvalidDevice(p2p_core::InvalidDevice { ordinal: 7, count: 4, .. })));
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
    #[error(transparent)]
    InvalidDevice(#[from] InvalidDevice),

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

    /// A copy between ranges of different sizes; nothing was copied. The one
    /// size-mismatch error of every layer (the driver's host copies, the
    /// mover, the tch adapter).
    #[error("size mismatch: the source has {src_bytes} bytes, the destination {dst_bytes}")]
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
