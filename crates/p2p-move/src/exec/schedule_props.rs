//! Property tests of schedules, on the value alone: a happens-before model
//! of lanes (FIFO), fences and host waits, checked over generated plans.
//!
//! The model: an op on a lane follows the lane's previous op; a `Wait`
//! brings in the fence's record; a `HostWait` makes every op submitted
//! after it follow the record; a `HostCopy` runs at submission, after what
//! the host has waited for. The caller's work is modelled as virtual ops:
//! a write of the source and a use of the destination before the move (at
//! the start of the caller's lanes, or before the call when no stream is
//! given) and a reuse of the source and a read of the destination after it
//! (at the end of the caller's lanes, or after the host waited for `done`).

use proptest::prelude::*;

use super::order::Sides;
use super::routes::{self, Endpoint};
use super::schedule::{Buf, LaneId, Op, Region, Schedule};
use crate::{plan, Policy, VerdictMatrix};
use p2p_core::Location;

/// Virtual ops of the caller, numbered after the schedule's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Virtual {
    SrcWrittenBefore,
    DstUsedBefore,
    SrcReusedAfter,
    DstReadAfter,
}

/// What happens before what, for one schedule.
struct Model {
    /// `before[i]`: the ops (by index, virtual ones after the real) that
    /// happen before op `i` ends.
    before: Vec<Vec<bool>>,
    n: usize,
}

const VIRTUALS: usize = 4;

fn vindex(n: usize, v: Virtual) -> usize {
    n + v as usize
}

impl Model {
    /// Runs `ops` (the schedule's, maybe cut short and followed by a
    /// remainder) through the model; returns it and the host's knowledge at the end.
    fn run(schedule: &Schedule, ops: &[Op], sides: Sides) -> (Model, Vec<bool>) {
        let n = ops.len();
        let total = n + VIRTUALS;
        let mut before = vec![vec![false; total]; total];
        let mut lane_last: Vec<Option<usize>> = vec![None; schedule.lanes.len()];
        let mut host = vec![false; total];
        let mut records: Vec<Option<usize>> = Vec::new();
        let caller_src = schedule
            .lanes
            .iter()
            .position(|k| *k == super::schedule::LaneKind::CallerSrc);
        let caller_dst = schedule
            .lanes
            .iter()
            .position(|k| *k == super::schedule::LaneKind::CallerDst);
        // The caller's earlier work: on its lanes if given, else before the call.
        let src_before = vindex(n, Virtual::SrcWrittenBefore);
        let dst_before = vindex(n, Virtual::DstUsedBefore);
        match (sides.src, caller_src) {
            (true, Some(lane)) => lane_last[lane] = Some(src_before),
            _ => host[src_before] = true,
        }
        match (sides.dst, caller_dst) {
            (true, Some(lane)) => lane_last[lane] = Some(dst_before),
            _ => host[dst_before] = true,
        }
        let join = |into: &mut Vec<bool>, from: &Vec<bool>, j: usize| {
            into[j] = true;
            for (k, &b) in from.iter().enumerate() {
                if b {
                    into[k] = true;
                }
            }
        };
        for (i, op) in ops.iter().enumerate() {
            let mut hb = host.clone();
            if let Some(lane) = op.lane() {
                if let Some(prev) = lane_last[lane.0] {
                    let prev_hb = before[prev].clone();
                    join(&mut hb, &prev_hb, prev);
                }
            }
            match op {
                Op::Wait { fence, .. } | Op::HostWait { fence } => {
                    if let Some(Some(rec)) = records.get(fence.0) {
                        let rec_hb = before[*rec].clone();
                        join(&mut hb, &rec_hb, *rec);
                    }
                }
                _ => {}
            }
            before[i] = hb.clone();
            if let Op::Record { fence, .. } = op {
                if records.len() <= fence.0 {
                    records.resize(fence.0 + 1, None);
                }
                records[fence.0] = Some(i);
            }
            if let Some(lane) = op.lane() {
                lane_last[lane.0] = Some(i);
            }
            match op {
                Op::HostWait { .. } => host = hb,
                Op::HostCopy { .. } => join(&mut host, &hb, i),
                _ => {}
            }
        }
        // The caller's later work.
        let done_hb = |host: &Vec<bool>| {
            let mut end = host.clone();
            if let Some(Some(rec)) = schedule.done.map(|d| records.get(d.0).copied().flatten()) {
                join(&mut end, &before[rec], rec);
            }
            end
        };
        let after_host = done_hb(&host);
        for (v, side, lane) in [
            (Virtual::SrcReusedAfter, sides.src, caller_src),
            (Virtual::DstReadAfter, sides.dst, caller_dst),
        ] {
            let index = vindex(n, v);
            before[index] = match (side, lane.and_then(|l| lane_last[l])) {
                // Queued after the call returned: after the lane's last op
                // and after what the host did and saw before returning.
                (true, Some(last)) => {
                    let mut hb = host.clone();
                    join(&mut hb, &before[last], last);
                    hb
                }
                _ => after_host.clone(),
            };
        }
        (Model { before, n }, host)
    }

    fn ordered(&self, first: usize, then: usize) -> bool {
        self.before[then][first]
    }
}

/// Every (op index, write, read) of the ops, the caller's virtual ones included.
fn accesses(ops: &[Op], n: usize, items: usize) -> Vec<(usize, Option<Region>, Option<Region>)> {
    let mut out = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        for (w, r) in op.accesses() {
            out.push((i, Some(w), Some(r)));
        }
    }
    let all = |buf| Region::new(buf, 0, usize::MAX / 4);
    for item in 0..items {
        out.push((
            vindex(n, Virtual::SrcWrittenBefore),
            Some(all(Buf::Src(item))),
            None,
        ));
        out.push((
            vindex(n, Virtual::DstUsedBefore),
            Some(all(Buf::Dst(item))),
            None,
        ));
        out.push((
            vindex(n, Virtual::SrcReusedAfter),
            Some(all(Buf::Src(item))),
            None,
        ));
        out.push((
            vindex(n, Virtual::DstReadAfter),
            None,
            Some(all(Buf::Dst(item))),
        ));
    }
    out
}

/// Program position of an access, the virtual "after" ones last.
fn position(index: usize, n: usize) -> (usize, usize) {
    if index == vindex(n, Virtual::SrcWrittenBefore) || index == vindex(n, Virtual::DstUsedBefore) {
        (0, index)
    } else if index >= n {
        (2, index)
    } else {
        (1, index)
    }
}

/// Every pair of conflicting accesses (at least one a write, overlapping)
/// is ordered: reads after the writes they need, slots and scratch written
/// again only after their last use, the caller's later work after the move.
fn check_conflicts(schedule: &Schedule, sides: Sides, items: usize) -> Result<(), String> {
    let (model, _) = Model::run(schedule, &schedule.ops, sides);
    let n = model.n;
    let acc = accesses(&schedule.ops, n, items);
    for (a, &(i, wi, ri)) in acc.iter().enumerate() {
        for &(j, wj, rj) in &acc[a + 1..] {
            if i == j {
                continue;
            }
            let (first, then) = if position(i, n) <= position(j, n) {
                (i, j)
            } else {
                (j, i)
            };
            let conflict = [(wi, wj), (wi, rj), (ri, wj)]
                .iter()
                .any(|pair| match pair {
                    (Some(x), Some(y)) => x.overlaps(y),
                    _ => false,
                });
            if conflict && !model.ordered(first, then) {
                return Err(format!(
                    "op {first} and op {then} touch the same bytes unordered ({} ops)\n{:#?}",
                    n, schedule.ops
                ));
            }
        }
    }
    // Slots and scratch are parked behind `done`: every use of them is before it.
    if let Some(done) = schedule.done {
        let rec = schedule
            .ops
            .iter()
            .position(|op| matches!(op, Op::Record { fence, .. } if *fence == done))
            .ok_or("done is never recorded")?;
        for (i, op) in schedule.ops.iter().enumerate() {
            let uses_buffer = op.accesses().iter().any(|(w, r)| {
                [w.buf, r.buf]
                    .iter()
                    .any(|b| matches!(b, Buf::Slot(_) | Buf::Scratch(_)))
            });
            if uses_buffer && op.lane().is_some() && !model.ordered(i, rec) {
                return Err(format!("op {i} uses a buffer after done"));
            }
        }
    }
    Ok(())
}

/// A failure at any op: the started ops plus the remainder leave nothing of
/// the mover's lanes running once the host returns.
fn check_remainders(schedule: &Schedule, sides: Sides) -> Result<(), String> {
    for failed in 1..=schedule.ops.len() {
        let (rest, _) = schedule.remainder(failed);
        let mut ops = schedule.ops[..failed].to_vec();
        ops.extend(rest);
        let (model, host) = Model::run(schedule, &ops, sides);
        let _ = model;
        for (i, op) in schedule.ops[..failed].iter().enumerate() {
            let queues_work = matches!(op, Op::Copy { .. } | Op::CopyBatch { .. });
            if queues_work && !host[i] {
                return Err(format!(
                    "after a failure at op {}, op {i} may still run",
                    failed - 1
                ));
            }
        }
    }
    Ok(())
}

#[derive(Clone, Debug)]
struct Case {
    src: Endpoint,
    dst: Endpoint,
    bytes: usize,
    policy: Policy,
    verified: bool,
    sides: Sides,
}

fn endpoint() -> impl Strategy<Value = Endpoint> {
    prop_oneof![
        (0usize..3).prop_map(Endpoint::Device),
        any::<bool>().prop_map(|pinned| Endpoint::Host { pinned }),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    (
        endpoint(),
        endpoint(),
        0usize..40_000,
        1usize..12,
        1usize..5,
        0usize..20_000,
        any::<(bool, bool, bool, bool)>(),
        any::<(bool, bool)>(),
        0usize..40_000,
    )
        .prop_map(
            |(src, dst, bytes, pieces, depth, small, (verified, via, s, d), (sl, dl), relay)| {
                let on_device = |end: Endpoint| matches!(end, Endpoint::Device(_));
                // A dozen pieces at most: the model is cubic in the ops.
                let chunk = bytes.div_ceil(pieces).max(1);
                Case {
                    src,
                    dst,
                    bytes,
                    policy: Policy {
                        chunk_bytes: chunk,
                        host_chunk_bytes: chunk,
                        min_chunk_bytes: chunk / 2,
                        pipeline_depth: depth,
                        small_copy_bytes: small,
                        allow_via: via,
                        host_relay_bytes: relay,
                        ..Policy::default()
                    },
                    verified,
                    sides: Sides {
                        src: s,
                        dst: d,
                        // The caller's stream on the device of its end.
                        src_local: s && sl && on_device(src),
                        dst_local: d && dl && on_device(dst),
                    },
                }
            },
        )
}

fn schedule_of(case: &Case) -> Option<Schedule> {
    // Verified: peer copies; else 0 <-> 1 broken and via 2 (when allowed).
    let verdicts = VerdictMatrix::from_fn(3, |from, to| {
        case.verified || !matches!((from, to), (0, 1) | (1, 0))
    });
    let plan = plan(
        case.src.location(),
        case.dst.location(),
        case.bytes,
        &verdicts,
        &case.policy,
    )
    .ok()?;
    routes::build(&plan, case.src, case.dst, case.sides).ok()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn every_conflict_is_ordered(case in case()) {
        if let Some(schedule) = schedule_of(&case) {
            prop_assert_eq!(check_conflicts(&schedule, case.sides, 1), Ok(()));
        }
    }

    #[test]
    fn a_failure_anywhere_leaves_nothing_running(case in case()) {
        if let Some(schedule) = schedule_of(&case) {
            prop_assert_eq!(check_remainders(&schedule, case.sides), Ok(()));
        }
    }

    #[test]
    fn batches_are_ordered(
        items in proptest::collection::vec((0usize..9, 1usize..5000), 1..12),
        sides in any::<(bool, bool)>(),
    ) {
        let sides = Sides { src: sides.0, dst: sides.1, ..Sides::default() };
        let lane = |d: usize| match d % 3 {
            0 => super::schedule::LaneKind::Outbound(d / 3),
            _ => super::schedule::LaneKind::Inbound(d / 3),
        };
        let items: Vec<_> = items.iter().enumerate().map(|(i, &(d, len))| (lane(d), i, len)).collect();
        let schedule = routes::batch(&items, sides);
        prop_assert_eq!(check_conflicts(&schedule, sides, items.len()), Ok(()));
        prop_assert_eq!(check_remainders(&schedule, sides), Ok(()));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// Coalesced staging: parts of any sizes (0 included) packed into
    /// slots of any size, relayed by the host or chained, any depth.
    #[test]
    fn coalesced_groups_are_ordered(
        lens in proptest::collection::vec(0usize..3000, 1..8),
        pieces in 1usize..10,
        depth in 1usize..4,
        relay in any::<bool>(),
        via in any::<bool>(),
        sides in any::<(bool, bool)>(),
    ) {
        let sides = Sides { src: sides.0, dst: sides.1, ..Sides::default() };
        let total: usize = lens.iter().sum();
        // A dozen slots at most: the model is cubic in the ops.
        let slot = total.div_ceil(pieces).max(1);
        let policy = Policy {
            allow_peer: false,
            chunk_bytes: slot,
            min_chunk_bytes: slot,
            pipeline_depth: depth,
            small_copy_bytes: 0,
            host_relay_bytes: if relay { usize::MAX } else { 0 },
            ..Policy::default()
        };
        let verdicts = VerdictMatrix::from_fn(2, |_, _| false);
        let plan = plan(Location::Cuda(0), Location::Cuda(1), total, &verdicts, &policy);
        if let Ok(plan) = plan {
            let between = if via {
                routes::coalesced::Between::Gpu { mid: 2 }
            } else {
                routes::coalesced::Between::Host
            };
            let schedule = routes::coalesced::build(&plan, &lens, 0, 1, between, sides);
            prop_assert_eq!(check_conflicts(&schedule, sides, lens.len()), Ok(()));
            prop_assert_eq!(check_remainders(&schedule, sides), Ok(()));
        }
    }
}

/// The model itself can tell an unordered schedule: a slot reused with no
/// wait between its last read and the next write.
#[test]
fn the_model_sees_a_missing_wait() {
    use super::schedule::{Builder, LaneKind};
    let mut b = Builder::new();
    let out = b.lane(LaneKind::Outbound(0));
    let inb = b.lane(LaneKind::Inbound(1));
    let slot = Region::new(Buf::Slot(0), 0, 10);
    b.copy(out, slot, Region::new(Buf::Src(0), 0, 10));
    let down = b.record(out);
    b.wait(inb, down);
    b.copy(inb, Region::new(Buf::Dst(0), 0, 10), slot);
    // The second chunk overwrites the slot without waiting for the upload.
    b.copy(out, slot, Region::new(Buf::Src(0), 10, 10));
    let down = b.record(out);
    b.wait(inb, down);
    b.copy(inb, Region::new(Buf::Dst(0), 10, 10), slot);
    let done = b.record(inb);
    let schedule = b.finish(Some(done), (1, 10), None);
    let _ = LaneId(0);
    assert!(check_conflicts(&schedule, Sides::default(), 1).is_err());
}
