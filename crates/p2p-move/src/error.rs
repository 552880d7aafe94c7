//! The crate's errors: what planning (and, later, executing) a move can fail with.

use p2p_core::{InvalidDevice, Location};

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why [`plan`](crate::plan) refused to make a plan.
///
/// Every variant is caused by the caller's input (a device that does not
/// exist, a policy that cannot work), never by the machine: the planner does
/// no I/O.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// The source or destination names a GPU that the verdicts do not know
    /// (its `count` is how many they cover).
    #[error(transparent)]
    InvalidDevice(#[from] InvalidDevice),

    /// A [`Policy`](crate::Policy) field has a value the planner cannot use.
    #[error("invalid policy: {field} = {value}, but it must be {requirement}")]
    InvalidPolicy {
        /// The field's name, as in `Policy` and its serialised form.
        field: &'static str,
        /// The value it had.
        value: usize,
        /// What it must be instead, in words.
        requirement: &'static str,
    },

    /// Splitting the copy would make an absurd number of chunks (a tiny
    /// `chunk_bytes` with a huge copy); refused rather than allocating them.
    #[error(
        "{bytes} bytes in chunks of {chunk_bytes} bytes would make {chunks} chunks, \
         more than the limit of {limit}: raise chunk_bytes"
    )]
    TooManyChunks {
        /// Size of the copy.
        bytes: usize,
        /// The policy's chunk size.
        chunk_bytes: usize,
        /// How many chunks that would make.
        chunks: usize,
        /// The most one plan may hold ([`MAX_CHUNKS`](crate::MAX_CHUNKS)).
        limit: usize,
    },
}

/// Everything this crate can fail with.
///
/// The executor will add its own variants (size mismatch between source and
/// destination, ...); match with a wildcard arm.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The planner refused the move.
    #[error(transparent)]
    Plan(#[from] PlanError),

    /// The layer below (driver, devices, verdict cache) failed.
    #[error(transparent)]
    Core(#[from] p2p_core::Error),

    /// Verify mode read the destination back and it differs from the source.
    #[error(
        "verify failed for {src} -> {dst}: byte {offset} is {found:#04x}, expected {expected:#04x}"
    )]
    VerifyFailed {
        /// Where the bytes came from.
        src: Location,
        /// Where they went.
        dst: Location,
        /// The first differing byte.
        offset: usize,
        /// The source's byte there.
        expected: u8,
        /// The destination's byte there.
        found: u8,
    },

    /// A plan was carried out on memory it was not made for (a bug of
    /// this crate or of an adapter that made its own plan).
    #[error("a {route} plan does not fit a move from {src} to {dst}")]
    RouteMismatch {
        /// The plan's route.
        route: crate::Route,
        /// Where the source is.
        src: Location,
        /// Where the destination is.
        dst: Location,
    },

    /// A schedule orders with a caller stream that was not given (a bug of
    /// this crate).
    #[error("the move's schedule waits on a caller stream that was not given")]
    MissingStream,
}

impl Error {
    /// The invalid device this error is about, from whichever layer found it
    /// (the planner or the driver): one question instead of two matches.
    pub fn invalid_device(&self) -> Option<&InvalidDevice> {
        match self {
            Error::Plan(PlanError::InvalidDevice(invalid))
            | Error::Core(p2p_core::Error::InvalidDevice(invalid)) => Some(invalid),
            _ => None,
        }
    }
}
