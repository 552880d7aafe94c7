//! Moves to and from host memory: one DMA copy for pinned memory; for
//! pageable memory, chunks through pinned slots with the CPU copying one
//! chunk while the GPU moves another; and host-to-host copies.

use super::super::order::{finish, Sides, Start};
use super::super::schedule::{Buf, Builder, FenceId, LaneKind, Region, Schedule};
use crate::Plan;

fn whole(buf: Buf, len: usize) -> Region {
    Region::new(buf, 0, len)
}

/// Pinned host to device: one DMA copy, on the caller's destination stream
/// when that is on the device.
pub(crate) fn upload_pinned(dst: usize, len: usize, sides: Sides) -> Schedule {
    let mut b = Builder::new();
    let lane = b.lane(sides.writing_lane(dst));
    Start::begin(&mut b, sides, &[lane]);
    b.copy(lane, whole(Buf::Dst(0), len), whole(Buf::Src(0), len));
    let done = finish(&mut b, sides, &[lane]);
    b.finish(done, (0, 0), None)
}

/// Device to pinned host: one DMA copy, on the caller's source stream when
/// that is on the device.
pub(crate) fn download_pinned(src: usize, len: usize, sides: Sides) -> Schedule {
    let mut b = Builder::new();
    let lane = b.lane(sides.reading_lane(src));
    Start::begin(&mut b, sides, &[lane]);
    b.copy(lane, whole(Buf::Dst(0), len), whole(Buf::Src(0), len));
    let done = finish(&mut b, sides, &[lane]);
    b.finish(done, (0, 0), None)
}

/// Pageable host to device: the host fills a slot once its last upload is
/// fenced, the lane uploads it. The source is no longer read once the
/// schedule has been submitted.
pub(crate) fn upload_pageable(plan: &Plan, dst: usize, sides: Sides) -> Schedule {
    let mut b = Builder::new();
    let lane = b.lane(LaneKind::Inbound(dst));
    let start = Start::begin(&mut b, sides, &[lane]);
    start.before_host_read(&mut b);
    let depth = plan.buffers().max(1);
    let mut uploaded: Vec<Option<FenceId>> = vec![None; depth];
    for (i, chunk) in plan.chunks().enumerate() {
        let slot = i % depth;
        if let Some(free) = uploaded[slot] {
            b.host_wait(free);
        }
        let staged = Region::new(Buf::Slot(slot), 0, chunk.len);
        b.host_copy(staged, Region::new(Buf::Src(0), chunk.offset, chunk.len));
        b.copy(
            lane,
            Region::new(Buf::Dst(0), chunk.offset, chunk.len),
            staged,
        );
        uploaded[slot] = Some(b.record(lane));
    }
    let done = finish(&mut b, sides, &[lane]);
    b.finish(done, (depth, plan.max_chunk_len()), None)
}

/// Device to pageable host: the lane downloads up to `depth` chunks ahead
/// of the host, which copies each out once its download is fenced. Complete
/// once submitted.
pub(crate) fn download_pageable(plan: &Plan, src: usize, sides: Sides) -> Schedule {
    let mut b = Builder::new();
    let lane = b.lane(LaneKind::Outbound(src));
    let start = Start::begin(&mut b, sides, &[lane]);
    let depth = plan.buffers().max(1);
    let chunks: Vec<_> = plan.chunks().collect();
    let mut landed: Vec<Option<FenceId>> = vec![None; chunks.len()];
    let download = |b: &mut Builder, landed: &mut Vec<Option<FenceId>>, i: usize| {
        let chunk = chunks[i];
        b.copy(
            lane,
            Region::new(Buf::Slot(i % depth), 0, chunk.len),
            Region::new(Buf::Src(0), chunk.offset, chunk.len),
        );
        landed[i] = Some(b.record(lane));
    };
    for i in 0..depth.min(chunks.len()) {
        download(&mut b, &mut landed, i);
    }
    start.before_host_write(&mut b);
    for (i, chunk) in chunks.iter().enumerate() {
        if let Some(fence) = landed[i] {
            b.host_wait(fence);
        }
        b.host_copy(
            Region::new(Buf::Dst(0), chunk.offset, chunk.len),
            Region::new(Buf::Slot(i % depth), 0, chunk.len),
        );
        if i + depth < chunks.len() {
            download(&mut b, &mut landed, i + depth);
        }
    }
    let done = finish(&mut b, sides, &[lane]);
    b.finish(done, (depth, plan.max_chunk_len()), None)
}

/// Host to host: a host copy after the caller's streams are done with both sides.
pub(crate) fn host_to_host(len: usize, sides: Sides) -> Schedule {
    let mut b = Builder::new();
    let start = Start::begin(&mut b, sides, &[]);
    start.before_host_read(&mut b);
    start.before_host_write(&mut b);
    b.host_copy(whole(Buf::Dst(0), len), whole(Buf::Src(0), len));
    b.finish(None, (0, 0), None)
}
