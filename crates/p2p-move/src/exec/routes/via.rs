//! Device to device through a third GPU: a peer leg into a scratch buffer on
//! the middle GPU, pushed from the source, and a peer leg on, pushed from
//! the middle (each leg driven by its sender's copy engine, as probed).

use super::super::order::{finish, Sides, Start};
use super::super::schedule::{Buf, Builder, FenceId, LaneKind, Region, Schedule};
use crate::Plan;

pub(crate) fn build(plan: &Plan, src: usize, mid: usize, _dst: usize, sides: Sides) -> Schedule {
    let mut b = Builder::new();
    let first = b.lane(LaneKind::Outbound(src));
    let second = b.lane(LaneKind::Outbound(mid));
    Start::begin(&mut b, sides, &[first, second]);
    let depth = plan.buffers().max(1);
    let mut forwarded: Vec<Option<FenceId>> = vec![None; depth];
    for (i, chunk) in plan.chunks().enumerate() {
        let slot = i % depth;
        if let Some(free) = forwarded[slot] {
            b.wait(first, free);
        }
        b.copy(
            first,
            Region::new(Buf::Scratch(slot), 0, chunk.len),
            Region::new(Buf::Src(0), chunk.offset, chunk.len),
        );
        let arrived = b.record(first);
        b.wait(second, arrived);
        b.copy(
            second,
            Region::new(Buf::Dst(0), chunk.offset, chunk.len),
            Region::new(Buf::Scratch(slot), 0, chunk.len),
        );
        forwarded[slot] = Some(b.record(second));
    }
    let done = finish(&mut b, sides, &[first, second]);
    b.finish(done, (0, 0), Some((mid, depth, plan.max_chunk_len())))
}
