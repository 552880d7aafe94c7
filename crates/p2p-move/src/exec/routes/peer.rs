//! Direct copies between devices (and within one): one copy on the source's
//! outbound lane, or batches of single DMA copies (peer, pinned host) per lane.

use super::super::order::{finish, Sides, Start};
use super::super::schedule::{Buf, Builder, LaneKind, Region, Schedule};

/// One copy of `len` bytes from the source's device, on the caller's
/// source stream when that is on the device (no hop between streams).
pub(crate) fn single(src_device: usize, len: usize, sides: Sides) -> Schedule {
    let mut b = Builder::new();
    let lane = b.lane(sides.reading_lane(src_device));
    Start::begin(&mut b, sides, &[lane]);
    b.copy(
        lane,
        Region::new(Buf::Dst(0), 0, len),
        Region::new(Buf::Src(0), 0, len),
    );
    let done = finish(&mut b, sides, &[lane]);
    b.finish(done, (0, 0), None)
}

/// Single DMA copies `(lane, item, len)` (device to device on the source's
/// outbound lane, pinned host to device on the destination's inbound lane,
/// device to pinned host on the source's outbound lane), one batch per
/// lane, all joined into one `done` fence.
pub(crate) fn batch(items: &[(LaneKind, usize, usize)], sides: Sides) -> Schedule {
    let mut b = Builder::new();
    let mut groups: Vec<(LaneKind, Vec<(Region, Region)>)> = Vec::new();
    for &(kind, item, len) in items {
        let copy = (
            Region::new(Buf::Dst(item), 0, len),
            Region::new(Buf::Src(item), 0, len),
        );
        match groups.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, copies)) => copies.push(copy),
            None => groups.push((kind, vec![copy])),
        }
    }
    let lanes: Vec<_> = groups.iter().map(|(kind, _)| b.lane(*kind)).collect();
    Start::begin(&mut b, sides, &lanes);
    for (&lane, (_, copies)) in lanes.iter().zip(groups) {
        b.copy_batch(lane, copies);
    }
    let done = finish(&mut b, sides, &lanes);
    b.finish(done, (0, 0), None)
}
