//! Ordering with the caller's work: [`StreamOrder`], the fences a move
//! starts behind, and publishing the end of a move to the caller's streams.
//!
//! Every schedule starts and ends here, so the rules hold for every route:
//! the move's lanes wait for the caller's queued work (and host reads and
//! writes wait for it on the host); at the end every lane is joined into one
//! `done` fence, and both caller streams wait for it, so work queued there
//! afterwards may read the destination and reuse or free the source.

use p2p_core::StreamId;

use super::schedule::{Builder, FenceId, LaneId, LaneKind};

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
    /// Which caller streams are given, for the pure schedule builders.
    pub(crate) fn sides(&self) -> Sides {
        Sides {
            src: self.src_stream.is_some(),
            dst: self.dst_stream.is_some(),
        }
    }
}

/// Which caller streams a schedule orders with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Sides {
    pub(crate) src: bool,
    pub(crate) dst: bool,
}

/// The fences of the caller's work, recorded at the start of a move.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Start {
    pub(crate) src: Option<FenceId>,
    pub(crate) dst: Option<FenceId>,
}

impl Start {
    /// Records the caller's fences, then makes every one of `lanes` wait for
    /// them and marks the work queued ahead on each lane.
    pub(crate) fn begin(b: &mut Builder, sides: Sides, lanes: &[LaneId]) -> Start {
        let mut start = Start::default();
        if sides.src {
            let lane = b.lane(LaneKind::CallerSrc);
            let fence = b.record(lane);
            b.ahead(fence);
            start.src = Some(fence);
        }
        if sides.dst {
            let lane = b.lane(LaneKind::CallerDst);
            let fence = b.record(lane);
            b.ahead(fence);
            start.dst = Some(fence);
        }
        for &lane in lanes {
            for fence in [start.src, start.dst].into_iter().flatten() {
                b.wait(lane, fence);
            }
            let ahead = b.record(lane);
            b.ahead(ahead);
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
pub(crate) fn finish(b: &mut Builder, sides: Sides, lanes: &[LaneId]) -> Option<FenceId> {
    let (&last, others) = lanes.split_last()?;
    for &lane in others {
        let tail = b.record(lane);
        b.wait(last, tail);
    }
    let done = b.record(last);
    publish(b, sides, done);
    Some(done)
}

/// The caller's streams wait for `done`: dst may be read, src reused.
pub(crate) fn publish(b: &mut Builder, sides: Sides, done: FenceId) {
    if sides.dst {
        let lane = b.lane(LaneKind::CallerDst);
        b.wait(lane, done);
    }
    if sides.src {
        let lane = b.lane(LaneKind::CallerSrc);
        b.wait(lane, done);
    }
}
