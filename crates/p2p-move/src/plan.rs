//! The transfer planner: a pure function from a move's endpoints, size, peer
//! verdicts and policy to a [`Plan`] that says how to carry it out.

use std::fmt;

use p2p_core::Location;
use serde::{Deserialize, Serialize};

use crate::error::PlanError;
use crate::policy::Policy;
use crate::size::format_size;
use crate::verdicts::PeerVerdicts;

/// The most chunks one plan may hold: 2^20 chunks of the default 8 MiB is
/// 8 TiB, beyond any GPU; more means a `chunk_bytes` that is far too small.
pub const MAX_CHUNKS: usize = 1 << 20;

/// How the bytes travel.
///
/// Serialised internally tagged as `route` with the kebab-case names
/// `noop`, `host-to-device`, `device-to-host`, `peer`, `staged`, `via`
/// (`via` adds a `gpu` field). More routes may come (CUDA IPC between
/// processes, NCCL between hosts).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "route", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Route {
    /// Source and destination are the same place: nothing moves.
    #[serde(rename = "noop")]
    NoOp,
    /// Host memory to a GPU; pageable memory goes through pinned chunks.
    HostToDevice,
    /// A GPU to host memory; pageable memory goes through pinned chunks.
    DeviceToHost,
    /// Direct peer copy, GPU to GPU, over a pair verified by the probe.
    Peer,
    /// GPU to pinned host memory to GPU, chunks pipelined across both legs.
    Staged,
    /// Peer copy to a third GPU, then peer copy on to the destination; both
    /// legs verified, chunks pipelined through buffers on `gpu`.
    Via {
        /// The middle GPU's ordinal.
        gpu: usize,
    },
}

impl Route {
    /// The kebab-case name, as serialised (`noop`, `via`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Route::NoOp => "noop",
            Route::HostToDevice => "host-to-device",
            Route::DeviceToHost => "device-to-host",
            Route::Peer => "peer",
            Route::Staged => "staged",
            Route::Via { .. } => "via",
        }
    }

    /// Whether this route moves its bytes in pipelined chunks of
    /// [`Policy::chunk_bytes`] (host, staged and via routes).
    pub fn is_chunked(self) -> bool {
        matches!(
            self,
            Route::HostToDevice | Route::DeviceToHost | Route::Staged | Route::Via { .. }
        )
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Route::Via { gpu } => write!(f, "via cuda:{gpu}"),
            other => f.write_str(other.name()),
        }
    }
}

/// One piece of the copy: bytes `offset..offset + len` of source and
/// destination alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Chunk {
    /// Offset of the first byte.
    pub offset: usize,
    /// Number of bytes; never 0.
    pub len: usize,
}

impl Chunk {
    /// One past the last byte.
    pub fn end(&self) -> usize {
        self.offset + self.len
    }
}

/// How to carry out one move: a value, made by [`plan`] and carried out by
/// the executor.
///
/// Serialised with the route's fields flattened in: `"route": "via", "gpu": 0`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Plan {
    /// Where the bytes are.
    pub src: Location,
    /// Where they go.
    pub dst: Location,
    /// How many bytes move.
    pub bytes: usize,
    /// How they travel.
    #[serde(flatten)]
    pub route: Route,
    /// The pieces, in order, covering `0..bytes` once each. A peer copy is
    /// one chunk of all the bytes (the copy engine needs no pipeline);
    /// chunked routes use chunks of `chunk_bytes`, the last one shorter.
    /// Empty for a no-op and for zero bytes.
    pub chunks: Vec<Chunk>,
    /// The chunk size, for chunked routes with bytes to copy; `None` otherwise.
    pub chunk_bytes: Option<usize>,
    /// How many chunks may be in flight, for chunked routes with bytes to
    /// copy; `None` otherwise. 1 means no pipeline (a small copy, see
    /// [`Policy::small_copy_bytes`]); an executor needs no more buffers than
    /// `min(pipeline_depth, chunks.len())`.
    pub pipeline_depth: Option<usize>,
    /// Why this route, in words, for logs and `p2p plan`.
    pub reason: String,
}

/// Plans a move of `bytes` bytes from `src` to `dst`.
///
/// Pure: no device is touched, but `verdicts` is asked about the pairs the
/// decision needs (and a lazily probing implementation probes them):
///
/// * `src == dst`: [`Route::NoOp`], whatever the size.
/// * host to GPU, GPU to host: [`Route::HostToDevice`], [`Route::DeviceToHost`].
/// * GPU `a` to GPU `b`: [`Route::Peer`] if `policy.allow_peer` and `a -> b`
///   is verified; else [`Route::Via`] through the lowest-numbered GPU `k`
///   (not `a`, not `b`) with `a -> k` and `k -> b` both verified, if
///   `allow_peer` and `allow_via`; else [`Route::Staged`]. The lowest `k` is
///   chosen so that plans are deterministic; a topology-aware choice
///   (NVLink over PCIe, same switch, measured bandwidth) could come later.
///
/// # Errors
///
/// [`PlanError::InvalidPolicy`] for a policy that fails
/// [`Policy::validate`]; [`PlanError::InvalidDevice`] when `src` or `dst` is
/// a GPU ordinal of at least `verdicts.device_count()` (even if both are the
/// same); [`PlanError::TooManyChunks`] when a chunked route would need more
/// than [`MAX_CHUNKS`] chunks.
pub fn plan(
    src: Location,
    dst: Location,
    bytes: usize,
    verdicts: &dyn PeerVerdicts,
    policy: &Policy,
) -> Result<Plan, PlanError> {
    policy.validate()?;
    let device_count = verdicts.device_count();
    for location in [src, dst] {
        if location
            .device()
            .is_some_and(|ordinal| ordinal >= device_count)
        {
            return Err(PlanError::InvalidDevice {
                location,
                device_count,
            });
        }
    }

    let (route, why) = choose_route(src, dst, verdicts, policy);
    let (chunks, chunk_bytes, pipeline_depth, reason) = if route == Route::NoOp {
        (Vec::new(), None, None, why)
    } else if bytes == 0 {
        let reason = format!("{why}; 0 bytes: nothing to copy");
        (Vec::new(), None, None, reason)
    } else if !route.is_chunked() {
        let whole = Chunk {
            offset: 0,
            len: bytes,
        };
        (vec![whole], None, None, why)
    } else {
        let chunk_bytes = match route {
            Route::HostToDevice | Route::DeviceToHost => policy.host_chunk_bytes_for(bytes),
            _ => policy.chunk_bytes_for(bytes),
        };
        let chunks = split(bytes, chunk_bytes)?;
        let small = bytes < policy.small_copy_bytes;
        let depth = if small { 1 } else { policy.pipeline_depth };
        let layout = match (chunks.len(), small) {
            (1, true) => format!(
                " in one {} chunk (small copy: no pipeline)",
                format_size(bytes)
            ),
            (1, false) => format!(" in one {} chunk", format_size(bytes)),
            (_, true) => format!(
                " in {} chunks, one at a time (small copy: no pipeline)",
                format_size(chunk_bytes)
            ),
            (_, false) => format!(" in {} chunks, {depth} in flight", format_size(chunk_bytes)),
        };
        (
            chunks,
            Some(chunk_bytes),
            Some(depth),
            format!("{why}{layout}"),
        )
    };
    Ok(Plan {
        src,
        dst,
        bytes,
        route,
        chunks,
        chunk_bytes,
        pipeline_depth,
        reason,
    })
}

/// The route and the first part of the reason (the layout is added after).
fn choose_route(
    src: Location,
    dst: Location,
    verdicts: &dyn PeerVerdicts,
    policy: &Policy,
) -> (Route, String) {
    let (a, b) = match (src, dst) {
        _ if src == dst => {
            return (
                Route::NoOp,
                format!("source and destination are both {src}: nothing to move"),
            )
        }
        (Location::Host, _) => {
            return (
                Route::HostToDevice,
                format!("{src} -> {dst}: host-to-device copy"),
            )
        }
        (_, Location::Host) => {
            return (
                Route::DeviceToHost,
                format!("{src} -> {dst}: device-to-host copy"),
            )
        }
        (Location::Cuda(a), Location::Cuda(b)) => (a, b),
    };
    const STAGED: &str = "staged through pinned host memory";

    // Ask about a -> b only when peer copy is allowed: with a lazily probing
    // table, asking means probing.
    if !policy.allow_peer {
        return (
            Route::Staged,
            format!("peer copy {src} -> {dst} disabled by policy: {STAGED}"),
        );
    }
    if verdicts.is_verified(a, b) {
        return (
            Route::Peer,
            format!("{src} -> {dst} verified by probe: direct peer copy"),
        );
    }
    let not_verified = format!("peer copy {src} -> {dst} not verified");
    if !policy.allow_via {
        return (
            Route::Staged,
            format!("{not_verified} and hops through a third GPU disabled by policy: {STAGED}"),
        );
    }
    let device_count = verdicts.device_count();
    if device_count < 3 {
        return (
            Route::Staged,
            format!("{not_verified} and no third GPU to go through: {STAGED}"),
        );
    }
    // Lowest ordinal first, and `&&` short-circuits: the second leg is asked
    // about only where the first one works.
    let middle = (0..device_count)
        .filter(|&k| k != a && k != b)
        .find(|&k| verdicts.is_verified(a, k) && verdicts.is_verified(k, b));
    match middle {
        Some(gpu) => (
            Route::Via { gpu },
            format!("{not_verified}; {src} -> cuda:{gpu} -> {dst} both verified: via cuda:{gpu}"),
        ),
        None => (
            Route::Staged,
            format!("{not_verified} and no verified third GPU: {STAGED}"),
        ),
    }
}

/// `0..bytes` in pieces of `chunk_bytes`, the last one shorter.
fn split(bytes: usize, chunk_bytes: usize) -> Result<Vec<Chunk>, PlanError> {
    let count = bytes.div_ceil(chunk_bytes);
    if count > MAX_CHUNKS {
        return Err(PlanError::TooManyChunks {
            bytes,
            chunk_bytes,
            chunks: count,
            limit: MAX_CHUNKS,
        });
    }
    Ok((0..count)
        .map(|index| {
            let offset = index * chunk_bytes;
            Chunk {
                offset,
                len: chunk_bytes.min(bytes - offset),
            }
        })
        .collect())
}
