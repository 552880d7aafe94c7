//! Many two-leg moves between one pair of GPUs as one: their bytes packed
//! back to back into buffers between the legs (pinned host slots for staged
//! moves, scratch buffers on the middle GPU for via moves), each buffer
//! filled by one batched copy and emptied by one batched copy.
//!
//! A batch of small tensors then costs a few driver calls and one hand-over
//! between the legs instead of a few per tensor. The group's plan (made for
//! the total size) says whether the host relays one buffer or the legs are
//! chained by events over pipelined buffers.

use super::super::order::{finish, Sides, Start};
use super::super::schedule::{Buf, Builder, FenceId, LaneKind, Region, Schedule};
use crate::{Layout, Plan};

/// A run of bytes of one part that travels in one slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Piece {
    /// The part (its index among the group's items).
    pub(crate) item: usize,
    /// Where the run starts in the part.
    pub(crate) offset: usize,
    /// Where it lands in the slot.
    pub(crate) slot_offset: usize,
    pub(crate) len: usize,
}

/// Packs parts of `lens` bytes back to back and cuts the stream into slots
/// of `slot_len` bytes: the pieces of each slot, in order. A part larger
/// than a slot spans several; empty parts take no piece.
pub(crate) fn pack(lens: &[usize], slot_len: usize) -> Vec<Vec<Piece>> {
    let slot_len = slot_len.max(1);
    let mut slots: Vec<Vec<Piece>> = Vec::new();
    let mut filled = slot_len; // forces a new slot for the first piece
    for (item, &len) in lens.iter().enumerate() {
        let mut offset = 0;
        while offset < len {
            if filled == slot_len {
                slots.push(Vec::new());
                filled = 0;
            }
            let take = (len - offset).min(slot_len - filled);
            if let Some(slot) = slots.last_mut() {
                slot.push(Piece {
                    item,
                    offset,
                    slot_offset: filled,
                    len: take,
                });
            }
            offset += take;
            filled += take;
        }
    }
    slots
}

/// Where the bytes rest between the legs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Between {
    /// Pinned host slots: download on the source's outbound lane, upload on
    /// the destination's inbound lane.
    Host,
    /// Scratch buffers on GPU `mid`: a peer copy pushed by the source, then
    /// one pushed by the middle (each leg on its sender's outbound lane).
    Gpu { mid: usize },
}

/// The schedule of the two-leg parts `lens` (item `i` of the move's items
/// has `lens[i]` bytes) from `src` to `dst`, through `between`, laid out by
/// the group's `plan` (its `bytes` is the total).
pub(crate) fn build(
    plan: &Plan,
    lens: &[usize],
    src: usize,
    dst: usize,
    between: Between,
    sides: Sides,
) -> Schedule {
    let mut b = Builder::new();
    let out = b.lane(LaneKind::Outbound(src));
    let inb = match between {
        Between::Host => b.lane(LaneKind::Inbound(dst)),
        Between::Gpu { mid } => b.lane(LaneKind::Outbound(mid)),
    };
    let buffer = |n| match between {
        Between::Host => Buf::Slot(n),
        Between::Gpu { .. } => Buf::Scratch(n),
    };
    let slot_len = plan.max_chunk_len();
    let slots = pack(lens, slot_len);
    if slots.is_empty() {
        return b.finish(None, (0, 0), None);
    }
    Start::begin(&mut b, sides, &[out, inb]);
    let down = |pieces: &[Piece], slot: usize| -> Vec<(Region, Region)> {
        pieces
            .iter()
            .map(|p| {
                (
                    Region::new(buffer(slot), p.slot_offset, p.len),
                    Region::new(Buf::Src(p.item), p.offset, p.len),
                )
            })
            .collect()
    };
    let up = |pieces: &[Piece], slot: usize| -> Vec<(Region, Region)> {
        pieces
            .iter()
            .map(|p| {
                (
                    Region::new(Buf::Dst(p.item), p.offset, p.len),
                    Region::new(buffer(slot), p.slot_offset, p.len),
                )
            })
            .collect()
    };
    let depth = if plan.layout == Layout::HostRelay {
        1
    } else {
        plan.layout.depth().clamp(1, slots.len())
    };
    let relay = plan.layout == Layout::HostRelay;
    let mut uploaded: Vec<Option<FenceId>> = vec![None; depth];
    for (i, pieces) in slots.iter().enumerate() {
        let slot = i % depth;
        if let Some(free) = uploaded[slot] {
            b.wait(out, free);
        }
        b.copy_batch(out, down(pieces, slot));
        let landed = b.record(out);
        if relay {
            // The host hands over: it waits for the download, then queues
            // the upload.
            b.host_wait(landed);
        } else {
            b.wait(inb, landed);
        }
        b.copy_batch(inb, up(pieces, slot));
        uploaded[slot] = Some(b.record(inb));
    }
    let done = finish(&mut b, sides, &[out, inb]);
    match between {
        Between::Host => b.finish(done, (depth, slot_len), None),
        Between::Gpu { mid } => b.finish(done, (0, 0), Some((mid, depth, slot_len))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every byte of every part lands once, in order, within its slot.
    #[test]
    fn packing_covers_every_byte_once() {
        let lens = [5, 0, 12, 3, 0, 7];
        let slots = pack(&lens, 8);
        let mut seen: Vec<Vec<bool>> = lens.iter().map(|&l| vec![false; l]).collect();
        for pieces in &slots {
            let mut filled = 0;
            for p in pieces {
                assert_eq!(p.slot_offset, filled, "pieces are back to back");
                filled += p.len;
                assert!(p.len > 0);
                for byte in &mut seen[p.item][p.offset..p.offset + p.len] {
                    assert!(!*byte, "a byte travels once");
                    *byte = true;
                }
            }
            assert!(filled <= 8, "a slot holds at most its size");
        }
        assert!(seen.iter().flatten().all(|&b| b), "every byte travels");
        assert_eq!(slots.len(), 27usize.div_ceil(8));
    }

    #[test]
    fn nothing_to_pack_makes_no_slot() {
        assert!(pack(&[0, 0], 8).is_empty());
        assert!(pack(&[], 8).is_empty());
    }
}
