//! A move as a value: the operations to queue, on which lanes, in which order.
//!
//! Route builders (`routes`) make a [`Schedule`] from a plan and the move's
//! endpoints without touching a device; the submitter (`submit`) carries it
//! out. Ordering rules are properties of this value and are tested on it.

/// A lane of a schedule: a stream the submitter binds at submission.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct LaneId(pub(crate) usize);

/// What a lane stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum LaneKind {
    /// The mover's stream for copies that read `device`.
    Outbound(usize),
    /// The mover's stream for copies that write `device`.
    Inbound(usize),
    /// The caller's `src_stream` (it last wrote the source).
    CallerSrc,
    /// The caller's `dst_stream` (it reads the destination afterwards).
    CallerDst,
}

impl LaneKind {
    /// Whether the lane is the caller's, not one of the mover's.
    pub(crate) fn is_callers(self) -> bool {
        matches!(self, LaneKind::CallerSrc | LaneKind::CallerDst)
    }
}

/// A fence: one event, recorded once on one lane.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct FenceId(pub(crate) usize);

/// Memory a schedule names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Buf {
    /// The source of item `n` (0 for a single move).
    Src(usize),
    /// The destination of item `n`.
    Dst(usize),
    /// Pinned staging slot `n`, owned by the move until its `done` fence.
    Slot(usize),
    /// Scratch buffer `n` on the middle GPU, owned likewise.
    Scratch(usize),
}

/// `len` bytes of `buf` from `offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Region {
    pub(crate) buf: Buf,
    pub(crate) offset: usize,
    pub(crate) len: usize,
}

impl Region {
    pub(crate) fn new(buf: Buf, offset: usize, len: usize) -> Region {
        Region { buf, offset, len }
    }

    /// Whether the two share a byte.
    #[cfg(test)]
    pub(crate) fn overlaps(&self, other: &Region) -> bool {
        self.buf == other.buf
            && self.offset < other.offset + other.len
            && other.offset < self.offset + self.len
    }
}

/// One step of a schedule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    /// A device copy queued on `lane` (device-to-device, -host or from host,
    /// by where the regions lie).
    Copy {
        lane: LaneId,
        dst: Region,
        src: Region,
    },
    /// Many device-to-device copies queued on `lane` in one batch call.
    CopyBatch {
        lane: LaneId,
        copies: Vec<(Region, Region)>,
    },
    /// Records `fence` at the current end of `lane`.
    Record { lane: LaneId, fence: FenceId },
    /// Later work on `lane` waits for `fence`.
    Wait { lane: LaneId, fence: FenceId },
    /// The host blocks until `fence` has fired.
    HostWait { fence: FenceId },
    /// The host copies bytes (after the waits before it).
    HostCopy { dst: Region, src: Region },
}

impl Op {
    /// The lane the op queues work on, if any.
    pub(crate) fn lane(&self) -> Option<LaneId> {
        match self {
            Op::Copy { lane, .. }
            | Op::CopyBatch { lane, .. }
            | Op::Record { lane, .. }
            | Op::Wait { lane, .. } => Some(*lane),
            Op::HostWait { .. } | Op::HostCopy { .. } => None,
        }
    }

    /// The (write, read) regions of the op.
    #[cfg(test)]
    pub(crate) fn accesses(&self) -> Vec<(Region, Region)> {
        match self {
            Op::Copy { dst, src, .. } | Op::HostCopy { dst, src } => vec![(*dst, *src)],
            Op::CopyBatch { copies, .. } => copies.clone(),
            _ => Vec::new(),
        }
    }
}

/// A move as a value: lanes, fences and operations in submission order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Schedule {
    /// What each lane stands for, by `LaneId`.
    pub(crate) lanes: Vec<LaneKind>,
    /// How many fences the ops record (`FenceId(0..fences)`).
    pub(crate) fences: usize,
    pub(crate) ops: Vec<Op>,
    /// Fires once every op of the schedule is done; slots and scratch
    /// buffers are parked behind it. `None` when nothing is queued.
    pub(crate) done: Option<FenceId>,
    /// Fences of the work queued ahead of the move (the caller's, and other
    /// moves' on shared lanes): a deadline counts from when they fire.
    pub(crate) ahead: Vec<FenceId>,
    /// Pinned slots the move needs, and their size.
    pub(crate) slots: (usize, usize),
    /// Scratch buffers on a middle GPU: (device, count, size).
    pub(crate) scratch: Option<(usize, usize, usize)>,
}

impl Schedule {
    /// The ops to run after `ops[failed]` failed (or was never reached): a
    /// fence recorded on every lane of the mover that work was queued on
    /// before it, then a host wait for each, so that nothing of the move
    /// still runs once they return. Caller lanes are not fenced: the move
    /// queued only waits there, which touch no memory.
    pub(crate) fn remainder(&self, failed: usize) -> (Vec<Op>, usize) {
        let mut touched: Vec<LaneId> = Vec::new();
        for op in &self.ops[..failed.min(self.ops.len())] {
            if let Some(lane) = op.lane() {
                if !self.lanes[lane.0].is_callers() && !touched.contains(&lane) {
                    touched.push(lane);
                }
            }
        }
        let mut next = self.fences;
        let mut ops = Vec::new();
        let mut fences = Vec::new();
        for lane in touched {
            let fence = FenceId(next);
            next += 1;
            ops.push(Op::Record { lane, fence });
            fences.push(fence);
        }
        ops.extend(fences.into_iter().map(|fence| Op::HostWait { fence }));
        (ops, next)
    }
}

/// Builds a [`Schedule`] op by op.
#[derive(Debug, Default)]
pub(crate) struct Builder {
    lanes: Vec<LaneKind>,
    fences: usize,
    ops: Vec<Op>,
    ahead: Vec<FenceId>,
}

impl Builder {
    pub(crate) fn new() -> Builder {
        Builder::default()
    }

    /// The lane for `kind`, added on first use.
    pub(crate) fn lane(&mut self, kind: LaneKind) -> LaneId {
        match self.lanes.iter().position(|&k| k == kind) {
            Some(i) => LaneId(i),
            None => {
                self.lanes.push(kind);
                LaneId(self.lanes.len() - 1)
            }
        }
    }

    pub(crate) fn copy(&mut self, lane: LaneId, dst: Region, src: Region) {
        self.ops.push(Op::Copy { lane, dst, src });
    }

    pub(crate) fn copy_batch(&mut self, lane: LaneId, copies: Vec<(Region, Region)>) {
        self.ops.push(Op::CopyBatch { lane, copies });
    }

    /// Records a new fence on `lane`.
    pub(crate) fn record(&mut self, lane: LaneId) -> FenceId {
        let fence = FenceId(self.fences);
        self.fences += 1;
        self.ops.push(Op::Record { lane, fence });
        fence
    }

    pub(crate) fn wait(&mut self, lane: LaneId, fence: FenceId) {
        self.ops.push(Op::Wait { lane, fence });
    }

    pub(crate) fn host_wait(&mut self, fence: FenceId) {
        self.ops.push(Op::HostWait { fence });
    }

    pub(crate) fn host_copy(&mut self, dst: Region, src: Region) {
        self.ops.push(Op::HostCopy { dst, src });
    }

    /// Marks `fence` as work queued ahead of the move.
    pub(crate) fn ahead(&mut self, fence: FenceId) {
        self.ahead.push(fence);
    }

    pub(crate) fn finish(
        self,
        done: Option<FenceId>,
        slots: (usize, usize),
        scratch: Option<(usize, usize, usize)>,
    ) -> Schedule {
        Schedule {
            lanes: self.lanes,
            fences: self.fences,
            ops: self.ops,
            done,
            ahead: self.ahead,
            slots,
            scratch,
        }
    }
}
