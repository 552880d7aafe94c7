//! Ordering with the caller's work: [`StreamOrder`], the fences a move
//! starts behind, and publishing the end of a move to the caller's streams.
//!
//! Every schedule starts and ends here, so the rules hold for every route:
//! the move's lanes wait for the caller's queued work (and host reads and
//! writes wait for it on the host); at the end every lane is joined into one
//! `done` fence, and both caller streams wait for it, so work queued there
//! afterwards may read the destination and reuse or free the source.

use p2p_core::StreamId;

use super::schedule::{Builder, FenceId, LaneId, LaneKind, Tail};

/// Streams the move must be ordered with. `None` = nothing to wait for on
/// that side (the bytes are ready; the result is read after a blocking move).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamOrder {
    /// The stream that last wrote the source (e.g. the framework's current
    /// stream on the source device). The copy waits for its queued work,
    /// and its later work waits for the copy, so reusing or freeing the
    /// source there is safe.
    pub src_stream: Option<StreamId>,
    /// The stream that will read the destination. The copy waits for its
    /// queued work (the memory may have been in use), and its later work
    /// waits for the copy.
    pub dst_stream: Option<StreamId>,
}

impl StreamOrder {
    /// Which caller streams are given, and whether each is on the device of
    /// its end of the move (`src_device`, `dst_device`: `None` for host
    /// memory), for the pure schedule builders.
    pub(crate) fn sides(&self, src_device: Option<usize>, dst_device: Option<usize>) -> Sides {
        let on = |stream: Option<StreamId>, device: Option<usize>| matches!((stream, device), (Some(s), Some(d)) if s.device == d);
        Sides {
            src: self.src_stream.is_some(),
            dst: self.dst_stream.is_some(),
            src_local: on(self.src_stream, src_device),
            dst_local: on(self.dst_stream, dst_device),
        }
    }
}

/// Which caller streams a schedule orders with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Sides {
    pub(crate) src: bool,
    pub(crate) dst: bool,
    /// The caller's source stream is on the source's device: a single copy
    /// that reads the source there may be queued on it directly (it is in
    /// order with the caller's work already, and needs no fence to be).
    pub(crate) src_local: bool,
    /// Likewise for the destination's stream and device.
    pub(crate) dst_local: bool,
}

impl Sides {
    /// The lane for a single copy that reads the source on `device`: the
    /// caller's source stream when it is there, else the mover's outbound.
    pub(crate) fn reading_lane(&self, device: usize) -> LaneKind {
        if self.src_local {
            LaneKind::CallerSrc
        } else {
            LaneKind::Outbound(device)
        }
    }

    /// The lane for a single copy that writes the destination on `device`
    /// from pinned host memory: the caller's destination stream when it is
    /// there, else the mover's inbound.
    pub(crate) fn writing_lane(&self, device: usize) -> LaneKind {
        if self.dst_local {
            LaneKind::CallerDst
        } else {
            LaneKind::Inbound(device)
        }
    }
}

/// The fences of the caller's work, recorded at the start of a move.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Start {
    pub(crate) src: Option<FenceId>,
    pub(crate) dst: Option<FenceId>,
}

impl Start {
    /// Records the caller's fences where another lane (or the host) must
    /// wait for them, makes every one of `lanes` wait for them, and notes
    /// the work queued ahead on each lane. A caller stream that is itself
    /// one of `lanes` needs no fence: its work is in order already.
    pub(crate) fn begin(b: &mut Builder, sides: Sides, lanes: &[LaneId]) -> Start {
        let mut start = Start::default();
        for (given, kind) in [
            (sides.src, LaneKind::CallerSrc),
            (sides.dst, LaneKind::CallerDst),
        ] {
            if !given {
                continue;
            }
            let lane = b.lane(kind);
            let others_wait = lanes.iter().any(|&l| l != lane) || lanes.is_empty();
            let fence = if others_wait {
                let fence = b.record(lane);
                b.ahead(fence);
                Some(fence)
            } else {
                None
            };
            match kind {
                LaneKind::CallerSrc => start.src = fence,
                _ => start.dst = fence,
            }
        }
        for &lane in lanes {
            for fence in [start.src, start.dst].into_iter().flatten() {
                // A lane never waits for its own record.
                if b.kind(lane) == LaneKind::CallerSrc && Some(fence) == start.src
                    || b.kind(lane) == LaneKind::CallerDst && Some(fence) == start.dst
                {
                    continue;
                }
                b.wait(lane, fence);
            }
            b.ahead_on(lane);
        }
        start
    }

    /// Host reads of the source wait on the host for the caller's writes.
    pub(crate) fn before_host_read(&self, b: &mut Builder) {
        if let Some(fence) = self.src {
            b.host_wait(fence);
        }
    }

    /// Host writes of the destination wait for the caller's uses of it.
    pub(crate) fn before_host_write(&self, b: &mut Builder) {
        if let Some(fence) = self.dst {
            b.host_wait(fence);
        }
    }
}

/// Joins `lanes` into one `done` fence (the last lane waits for the
/// others), and makes the caller's streams wait for it. `None` if there are
/// no lanes.
///
/// Uses what the ops already did: a lane whose last copy is fenced needs no
/// new fence, and one whose fence the host has waited for needs no join
/// (nothing of it can run once later ops are queued); the last lane's own
/// fence is `done` if nothing was joined into it.
pub(crate) fn finish(b: &mut Builder, sides: Sides, lanes: &[LaneId]) -> Option<FenceId> {
    let (&last, others) = lanes.split_last()?;
    let mut joined = false;
    for &lane in others {
        let tail = match b.tail(lane) {
            Tail::Idle => continue,
            Tail::Fenced {
                fence,
                host_waited: true,
            } => {
                b.end(lane, fence);
                continue;
            }
            Tail::Fenced { fence, .. } => fence,
            Tail::Busy => b.record(lane),
        };
        b.end(lane, tail);
        joined |= b.wait(last, tail);
    }
    let done = match b.tail(last) {
        Tail::Fenced { fence, .. } if !joined => fence,
        _ => b.record(last),
    };
    b.end(last, done);
    publish(b, sides, last, done);
    Some(done)
}

/// The caller's streams wait for `done`: dst may be read, src reused. A
/// caller stream that `done` was recorded on is in order already.
pub(crate) fn publish(b: &mut Builder, sides: Sides, done_lane: LaneId, done: FenceId) {
    for (given, kind) in [
        (sides.dst, LaneKind::CallerDst),
        (sides.src, LaneKind::CallerSrc),
    ] {
        if given {
            let lane = b.lane(kind);
            if lane != done_lane {
                b.wait(lane, done);
            }
        }
    }
}
