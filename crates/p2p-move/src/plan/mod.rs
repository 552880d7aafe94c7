//! The transfer planner: a pure function from a move's endpoints, size, peer
//! verdicts and policy to a [`Plan`] that says how to carry it out.

use std::fmt;

use p2p_core::{InvalidDevice, Location, Side};
use serde::{Deserialize, Serialize};

mod layout;
mod why;

pub use layout::{Chunk, Chunks, Layout};
pub use why::Why;

use crate::error::PlanError;
use crate::policy::Policy;
use crate::size::format_size;
use crate::verdicts::PeerVerdicts;

/// The most chunks one plan may hold: 2^20 chunks of the default 8 MiB is
/// 8 TiB, beyond any GPU; more means a `chunk_bytes` that is far too small.
/// Plans store no chunk list, but the executor's schedule holds a few
/// operations per chunk, and this bound keeps that value finite.
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

/// How to carry out one move: a value, made by [`plan`] and carried out by
/// the executor, which never re-derives a decision made here.
///
/// Serialised with the route's, the layout's and the reason's fields
/// flattened in: `"route": "via", "gpu": 0, "layout": "pipelined", ...`.
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
    /// How they are cut: [`Layout::Empty`] for a no-op and for zero bytes,
    /// [`Layout::Whole`] for a peer copy (the copy engine needs no pipeline)
    /// and for a small copy that fits one chunk, else pipelined chunks.
    #[serde(flatten)]
    pub layout: Layout,
    /// Why this route.
    pub why: Why,
}

impl Plan {
    /// The pieces, in order, covering `0..bytes` once each.
    pub fn chunks(&self) -> Chunks {
        self.layout.chunks(self.bytes)
    }

    /// How many pieces there are.
    pub fn chunk_count(&self) -> usize {
        self.layout.chunk_count(self.bytes)
    }

    /// The longest piece (0 for none): the size of each buffer a route
    /// through buffers needs.
    pub fn max_chunk_len(&self) -> usize {
        match self.layout {
            Layout::Empty => 0,
            Layout::Whole | Layout::HostRelay => self.bytes,
            Layout::Pipelined { chunk_bytes, .. } => chunk_bytes.min(self.bytes),
        }
    }

    /// How many buffers a route through buffers needs: the depth, or fewer
    /// when there are fewer pieces.
    pub fn buffers(&self) -> usize {
        self.layout.depth().min(self.chunk_count())
    }

    /// Why this route and this layout, in words, for logs and `p2p plan`.
    pub fn reason(&self) -> String {
        self.to_string()
    }
}

/// The reason and the layout, as one sentence.
impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.why)?;
        if self.route == Route::NoOp {
            return Ok(());
        }
        match self.layout {
            Layout::Empty => f.write_str("; 0 bytes: nothing to copy"),
            Layout::Whole if self.route.is_chunked() => write!(
                f,
                " in one {} chunk (small copy: no pipeline)",
                format_size(self.bytes)
            ),
            Layout::Whole => Ok(()),
            Layout::HostRelay => write!(
                f,
                " in one {} piece, the host handing it from one leg to the other",
                format_size(self.bytes)
            ),
            Layout::Pipelined { chunk_bytes, depth } => {
                if self.chunk_count() == 1 {
                    write!(f, " in one {} chunk", format_size(self.bytes))
                } else if depth == 1 {
                    write!(f, " in {} chunks, one at a time", format_size(chunk_bytes))
                } else {
                    write!(
                        f,
                        " in {} chunks, {depth} in flight",
                        format_size(chunk_bytes)
                    )
                }
            }
        }
    }
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
///   (not `a`, not `b`, among the first `policy.max_via_middles` of them)
///   with `a -> k` and `k -> b` both verified, if `allow_peer` and
///   `allow_via`; else [`Route::Staged`]. The lowest `k` is
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
    for (location, side) in [(src, Side::Source), (dst, Side::Destination)] {
        if let Some(ordinal) = location.device() {
            InvalidDevice::check(Some(side), ordinal, device_count)?;
        }
    }

    let (route, why) = choose_route(src, dst, verdicts, policy);
    let layout = if route == Route::NoOp || bytes == 0 {
        Layout::Empty
    } else if !route.is_chunked() {
        Layout::Whole
    } else {
        let chunk_bytes = match route {
            Route::HostToDevice | Route::DeviceToHost => policy.host_chunk_bytes_for(bytes),
            _ => policy.chunk_bytes_for(bytes),
        };
        let chunks = bytes.div_ceil(chunk_bytes);
        if chunks > MAX_CHUNKS {
            return Err(PlanError::TooManyChunks {
                bytes,
                chunk_bytes,
                chunks,
                limit: MAX_CHUNKS,
            });
        }
        let small = bytes < policy.small_copy_bytes;
        // A relay holds the whole copy in one pinned buffer: at most a chunk.
        if route == Route::Staged && bytes < policy.host_relay_bytes && bytes <= policy.chunk_bytes
        {
            return Ok(Plan {
                src,
                dst,
                bytes,
                route,
                layout: Layout::HostRelay,
                why,
            });
        }
        match (small, chunks) {
            (true, 1) => Layout::Whole,
            (true, _) => Layout::Pipelined {
                chunk_bytes,
                depth: 1,
            },
            (false, _) => Layout::Pipelined {
                chunk_bytes,
                depth: policy.pipeline_depth,
            },
        }
    };
    Ok(Plan {
        src,
        dst,
        bytes,
        route,
        layout,
        why,
    })
}

/// The route and why.
fn choose_route(
    src: Location,
    dst: Location,
    verdicts: &dyn PeerVerdicts,
    policy: &Policy,
) -> (Route, Why) {
    let (a, b) = match (src, dst) {
        _ if src == dst => return (Route::NoOp, Why::SamePlace { at: src }),
        (Location::Host, _) => return (Route::HostToDevice, Why::HostToDevice { src, dst }),
        (_, Location::Host) => return (Route::DeviceToHost, Why::DeviceToHost { src, dst }),
        (Location::Cuda(a), Location::Cuda(b)) => (a, b),
    };
    // Ask about a -> b only when peer copy is allowed: with a lazily probing
    // table, asking means probing.
    if !policy.allow_peer {
        return (Route::Staged, Why::PeerDisabledByPolicy { src, dst });
    }
    if verdicts.is_verified(a, b) {
        return (Route::Peer, Why::PeerVerified { src, dst });
    }
    if !policy.allow_via || policy.max_via_middles == 0 {
        return (Route::Staged, Why::NotVerifiedViaDisabled { src, dst });
    }
    let device_count = verdicts.device_count();
    if device_count < 3 {
        return (Route::Staged, Why::NotVerifiedNoThirdGpu { src, dst });
    }
    // Lowest ordinal first, at most `max_via_middles` of them (asking means
    // probing, on GPUs the caller never named), and `&&` short-circuits: the
    // second leg is asked about only where the first one works.
    let available = device_count - 2;
    let asked = available.min(policy.max_via_middles);
    let middle = (0..device_count)
        .filter(|&k| k != a && k != b)
        .take(asked)
        .find(|&k| verdicts.is_verified(a, k) && verdicts.is_verified(k, b));
    match middle {
        Some(gpu) => (Route::Via { gpu }, Why::ViaVerifiedMiddle { src, dst, gpu }),
        None => (
            Route::Staged,
            Why::NotVerifiedNoVerifiedMiddle {
                src,
                dst,
                asked,
                available,
            },
        ),
    }
}
