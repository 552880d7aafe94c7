//! Device to device through pinned host memory: device-to-host on the
//! source's outbound lane, host-to-device on the destination's inbound lane,
//! handed over by the host (a host relay) or chained by events, slots reused
//! round-robin once their upload is fenced.

use super::super::order::{finish, Sides, Start};
use super::super::schedule::{Buf, Builder, FenceId, LaneKind, Region, Schedule};
use crate::{Layout, Plan};

pub(crate) fn build(plan: &Plan, src: usize, dst: usize, sides: Sides) -> Schedule {
    let mut b = Builder::new();
    let out = b.lane(LaneKind::Outbound(src));
    let inb = b.lane(LaneKind::Inbound(dst));
    Start::begin(&mut b, sides, &[out, inb]);
    let depth = plan.buffers().max(1);
    if plan.layout == Layout::HostRelay {
        // A small copy is latency-bound: the host waits for the download and
        // queues the upload, which beats chaining the lanes by a stream wait
        // (the planner's crossover, `Policy::host_relay_bytes`).
        let len = plan.bytes;
        b.copy(
            out,
            Region::new(Buf::Slot(0), 0, len),
            Region::new(Buf::Src(0), 0, len),
        );
        let down = b.record(out);
        b.host_wait(down);
        b.copy(
            inb,
            Region::new(Buf::Dst(0), 0, len),
            Region::new(Buf::Slot(0), 0, len),
        );
    } else {
        let mut uploaded: Vec<Option<FenceId>> = vec![None; depth];
        for (i, chunk) in plan.chunks().enumerate() {
            let slot = i % depth;
            if let Some(free) = uploaded[slot] {
                b.wait(out, free);
            }
            b.copy(
                out,
                Region::new(Buf::Slot(slot), 0, chunk.len),
                Region::new(Buf::Src(0), chunk.offset, chunk.len),
            );
            let down = b.record(out);
            b.wait(inb, down);
            b.copy(
                inb,
                Region::new(Buf::Dst(0), chunk.offset, chunk.len),
                Region::new(Buf::Slot(slot), 0, chunk.len),
            );
            uploaded[slot] = Some(b.record(inb));
        }
    }
    let done = finish(&mut b, sides, &[out, inb]);
    b.finish(done, (depth, plan.max_chunk_len()), None)
}
