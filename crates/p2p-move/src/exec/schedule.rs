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
    /// Notes the work queued ahead of the move on `lane`, so that a
    /// deadline counts from when it is done. Orders nothing: the submitter
    /// records a fence only if the lane may still be busy (a query of the
    /// caller's stream, or of the fence that ended the mover's last work on
    /// it), so a move behind an idle lane pays no event.
    Ahead { lane: LaneId },
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
            | Op::Ahead { lane }
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
    /// Fences of the caller's work queued ahead of the move (recorded for
    /// ordering anyway): a deadline counts from when they fire, and from
    /// when what the `Ahead` ops found fires.
    pub(crate) ahead: Vec<FenceId>,
    /// The fence that ends the move's work on each of the mover's lanes it
    /// used: what later moves on those streams find queued ahead of them.
    pub(crate) ends: Vec<(LaneId, FenceId)>,
    /// Pinned slots the move needs, and their size.
    pub(crate) slots: (usize, usize),
    /// Scratch buffers on a middle GPU: (device, count, size).
    pub(crate) scratch: Option<(usize, usize, usize)>,
}

impl Schedule {
    /// The ops to run after `ops[failed]` failed (or was never reached): a
    /// fence recorded on every lane of the mover that work was queued on
    /// before it, and on every caller lane a copy was queued on, then a host
    /// wait for each, so that nothing of the move still runs once they
    /// return. Caller lanes with only waits and records are not fenced:
    /// those touch no memory.
    pub(crate) fn remainder(&self, failed: usize) -> (Vec<Op>, usize) {
        let mut touched: Vec<LaneId> = Vec::new();
        for op in &self.ops[..failed.min(self.ops.len())] {
            if let Some(lane) = op.lane() {
                let copies = matches!(op, Op::Copy { .. } | Op::CopyBatch { .. });
                let fenced = !self.lanes[lane.0].is_callers() || copies;
                if fenced && !touched.contains(&lane) {
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

/// Where a lane stands, as far as the ops so far tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tail {
    /// No copy on the lane yet.
    Idle,
    /// Its last copy is followed by `fence`; `host_waited`: the host has
    /// waited for that fence, so nothing of the lane runs any more when
    /// later ops are submitted.
    Fenced { fence: FenceId, host_waited: bool },
    /// A copy not followed by a fence.
    Busy,
}

/// Builds a [`Schedule`] op by op.
#[derive(Debug, Default)]
pub(crate) struct Builder {
    lanes: Vec<LaneKind>,
    fences: usize,
    ops: Vec<Op>,
    ahead: Vec<FenceId>,
    ends: Vec<(LaneId, FenceId)>,
    /// By lane: where it stands, and the fences it already waits for.
    tails: Vec<Tail>,
    waited: Vec<Vec<FenceId>>,
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
                self.tails.push(Tail::Idle);
                self.waited.push(Vec::new());
                LaneId(self.lanes.len() - 1)
            }
        }
    }

    /// What `lane` stands for.
    pub(crate) fn kind(&self, lane: LaneId) -> LaneKind {
        self.lanes[lane.0]
    }

    /// Where `lane` stands.
    pub(crate) fn tail(&self, lane: LaneId) -> Tail {
        self.tails[lane.0]
    }

    pub(crate) fn copy(&mut self, lane: LaneId, dst: Region, src: Region) {
        self.tails[lane.0] = Tail::Busy;
        self.ops.push(Op::Copy { lane, dst, src });
    }

    pub(crate) fn copy_batch(&mut self, lane: LaneId, copies: Vec<(Region, Region)>) {
        self.tails[lane.0] = Tail::Busy;
        self.ops.push(Op::CopyBatch { lane, copies });
    }

    /// Records a new fence on `lane`.
    pub(crate) fn record(&mut self, lane: LaneId) -> FenceId {
        let fence = FenceId(self.fences);
        self.fences += 1;
        if self.tails[lane.0] == Tail::Busy {
            self.tails[lane.0] = Tail::Fenced {
                fence,
                host_waited: false,
            };
        }
        self.ops.push(Op::Record { lane, fence });
        fence
    }

    /// Later work on `lane` waits for `fence`; a second wait for the same
    /// fence on the same lane is left out (the first already orders it).
    /// Returns whether a wait was added.
    pub(crate) fn wait(&mut self, lane: LaneId, fence: FenceId) -> bool {
        if self.waited[lane.0].contains(&fence) {
            return false;
        }
        self.waited[lane.0].push(fence);
        self.ops.push(Op::Wait { lane, fence });
        true
    }

    pub(crate) fn host_wait(&mut self, fence: FenceId) {
        for tail in &mut self.tails {
            if let Tail::Fenced {
                fence: f,
                host_waited,
            } = tail
            {
                if *f == fence {
                    *host_waited = true;
                }
            }
        }
        self.ops.push(Op::HostWait { fence });
    }

    /// Notes the work queued ahead of the move on `lane`.
    pub(crate) fn ahead_on(&mut self, lane: LaneId) {
        self.ops.push(Op::Ahead { lane });
    }

    /// Notes that `fence` ends the move's work on the mover's `lane`.
    pub(crate) fn end(&mut self, lane: LaneId, fence: FenceId) {
        if !self.lanes[lane.0].is_callers() {
            self.ends.push((lane, fence));
        }
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
            ends: self.ends,
            slots,
            scratch,
        }
    }
}
