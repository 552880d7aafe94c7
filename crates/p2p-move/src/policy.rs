//! What the planner may do and how it shapes copies: [`Policy`].

use serde::{Deserialize, Serialize};

use crate::error::PlanError;

/// The planner's knobs. `Policy::default()` is right for most machines; the
/// defaults come from measurements on H200 machines (`BENCHMARKS.md`).
///
/// Serialised with every field optional (missing ones take their default) and
/// unknown fields refused, so a typo in a config file is an error.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Policy {
    /// Size of one pipeline chunk for staged, via and host routes. Must be
    /// at least 1. Default [`Policy::DEFAULT_CHUNK_BYTES`].
    pub chunk_bytes: usize,
    /// How many chunks may be in flight at once (pinned buffers for staging,
    /// buffers on the middle GPU for via). Must be at least 1. Default
    /// [`Policy::DEFAULT_PIPELINE_DEPTH`].
    pub pipeline_depth: usize,
    /// Use direct peer copy where the pair is verified. `false` turns off
    /// every peer copy, including both legs of a via route.
    pub allow_peer: bool,
    /// Where the direct pair is not verified, hop through a third GPU whose
    /// two legs are. Needs `allow_peer` too. Turning it off also keeps the
    /// planner from asking about (and so probing) pairs with third GPUs.
    pub allow_via: bool,
    /// Copies of fewer bytes than this on a chunked route are not pipelined:
    /// the plan says `pipeline_depth: Some(1)`, and the executor does plain
    /// copies through one buffer instead of setting up streams and events.
    /// With the default sizes such a copy is also a single chunk. Any value
    /// is valid (0 pipelines everything). Default
    /// [`Policy::DEFAULT_SMALL_COPY_BYTES`].
    pub small_copy_bytes: usize,
    /// Chunks shrink, down to this size, so that a medium copy still splits
    /// into about four chunks per pipeline slot: a pipeline of few chunks
    /// spends a large share of its time filling and draining (8 chunks reach
    /// at most 8/9 of the link). Default [`Policy::DEFAULT_MIN_CHUNK_BYTES`].
    pub min_chunk_bytes: usize,
    /// Chunk size of host-to-device and device-to-host routes, which the
    /// executor uses only for pageable host memory: there each chunk is first
    /// copied by the CPU into pinned memory, and a multi-threaded memcpy
    /// needs large pieces to pay for waking its threads (measured on a
    /// 32-core H200 host with 32 threads: 4 MiB copied at 72 GB/s, 8 MiB at
    /// 103 GB/s, 32 MiB at 128 GB/s). Shrinks
    /// to a quarter of the copy, down to `min_chunk_bytes`. Default
    /// [`Policy::DEFAULT_HOST_CHUNK_BYTES`].
    pub host_chunk_bytes: usize,
    /// How many third GPUs the planner may ask about for a via route when a
    /// pair is not verified, lowest ordinals first. Asking about a pair the
    /// table does not know yet probes it, which creates contexts on GPUs the
    /// caller never named: this bounds that (a plan that found no middle
    /// says how many it asked). 0 turns via routes off like `allow_via`.
    /// Default [`Policy::DEFAULT_MAX_VIA_MIDDLES`].
    pub max_via_middles: usize,
    /// The crossover between the two ways a small staged copy (GPU to
    /// pinned host memory to GPU) hands its bytes from the first leg to the
    /// second. Below it the host waits for the download and then queues the
    /// upload ([`Layout::HostRelay`](crate::Layout::HostRelay)), which is
    /// what sequential staging does and has the lowest latency; from it on
    /// the legs are chained on the GPUs by events and pipelined, which
    /// needs no host round trip and overlaps the legs. A host relay blocks
    /// the calling thread, even of a non-blocking move, until the download
    /// is done: 0 turns it off. A relay holds the whole copy in one pinned
    /// buffer, so copies over `chunk_bytes` are never relayed. Default
    /// [`Policy::DEFAULT_HOST_RELAY_BYTES`].
    pub host_relay_bytes: usize,
}

impl Policy {
    /// 8 MiB: with 4 in flight, pipelined staging reached 52.9 GB/s of the
    /// 55 GB/s that one PCIe Gen5 direction gives (2 x H200).
    pub const DEFAULT_CHUNK_BYTES: usize = 8 << 20;
    /// 4 chunks in flight: see [`Policy::DEFAULT_CHUNK_BYTES`].
    pub const DEFAULT_PIPELINE_DEPTH: usize = 4;
    /// 64 KiB: below this a copy is latency-bound (a staged 4 KiB copy costs
    /// 15.9 us as two plain copies, 130 us through streams, events and
    /// syncs), and CUDA already treats host-to-device copies of 64 KB or
    /// less specially (they return before the copy completes).
    pub const DEFAULT_SMALL_COPY_BYTES: usize = 64 << 10;

    /// 1 MiB: about 20 µs on a PCIe Gen5 link, several times what queuing a
    /// chunk costs on the host.
    pub const DEFAULT_MIN_CHUNK_BYTES: usize = 1 << 20;

    /// 16 MiB: see [`Policy::host_chunk_bytes`].
    pub const DEFAULT_HOST_CHUNK_BYTES: usize = 16 << 20;
    /// 2: on an 8-GPU machine, a broken pair costs at most four more probes
    /// (two legs through each of two middles) instead of twelve.
    pub const DEFAULT_MAX_VIA_MIDDLES: usize = 2;
    /// 1 MiB: on 2 x H200, sequential staging (host waits between the legs)
    /// beat staging chained by events at 4 KiB (16.7 against 19.0 µs),
    /// 64 KiB (19.0 against 24.8 µs) and 1 MiB (55 against 61 µs), and
    /// lost to the pipeline from 16 MiB on (26.8 against 36.3 GB/s).
    pub const DEFAULT_HOST_RELAY_BYTES: usize = 1 << 20;

    /// The chunk size of a host route (to or from host memory) of `bytes`.
    pub fn host_chunk_bytes_for(&self, bytes: usize) -> usize {
        bytes
            .div_ceil(4)
            .max(self.min_chunk_bytes)
            .min(self.host_chunk_bytes)
            .max(1)
    }

    /// The chunk size for a chunked copy of `bytes`: `chunk_bytes`, shrunk
    /// towards `min_chunk_bytes` until there are about `4 * pipeline_depth`
    /// chunks. Never above `chunk_bytes`, never 0.
    pub fn chunk_bytes_for(&self, bytes: usize) -> usize {
        let per_chunk = bytes.div_ceil(4 * self.pipeline_depth.max(1));
        per_chunk
            .max(self.min_chunk_bytes)
            .min(self.chunk_bytes)
            .max(1)
    }

    /// Checks that the planner can use this policy.
    pub fn validate(&self) -> Result<(), PlanError> {
        if self.chunk_bytes == 0 {
            return Err(PlanError::InvalidPolicy {
                field: "chunk_bytes",
                value: self.chunk_bytes,
                requirement: "at least 1 byte",
            });
        }
        if self.host_chunk_bytes == 0 {
            return Err(PlanError::InvalidPolicy {
                field: "host_chunk_bytes",
                value: self.host_chunk_bytes,
                requirement: "at least 1 byte",
            });
        }
        if self.pipeline_depth == 0 {
            return Err(PlanError::InvalidPolicy {
                field: "pipeline_depth",
                value: self.pipeline_depth,
                requirement: "at least 1 chunk in flight",
            });
        }
        Ok(())
    }
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            chunk_bytes: Self::DEFAULT_CHUNK_BYTES,
            pipeline_depth: Self::DEFAULT_PIPELINE_DEPTH,
            allow_peer: true,
            allow_via: true,
            small_copy_bytes: Self::DEFAULT_SMALL_COPY_BYTES,
            min_chunk_bytes: Self::DEFAULT_MIN_CHUNK_BYTES,
            host_chunk_bytes: Self::DEFAULT_HOST_CHUNK_BYTES,
            max_via_middles: Self::DEFAULT_MAX_VIA_MIDDLES,
            host_relay_bytes: Self::DEFAULT_HOST_RELAY_BYTES,
        }
    }
}
