//! The submitter: the one place in this crate that queues work on memory it
//! does not own. It carries a [`Schedule`] out on a [`Driver`], op by op, and
//! on any failure fences every lane it queued work on and waits for those
//! fences before it returns, so no copy outlives a failed submission.

use std::sync::Arc;
use std::time::Duration;

use p2p_core::{CopyDesc, DeviceAddr, Driver, Error, HostCopyDesc, Result, StreamId};

use super::parking::{EventPool, Fence};
use super::raw_bytes::RawBytes;
use super::schedule::{Buf, FenceId, Op, Region, Schedule};

/// What the schedule's names stand for in this submission.
#[derive(Debug)]
pub(crate) struct Binding<'a> {
    pub(crate) driver: &'a Arc<dyn Driver>,
    pub(crate) events: &'a Arc<EventPool>,
    /// The stream of each lane, by `LaneId`.
    pub(crate) streams: Vec<StreamId>,
    /// By lane: the fence that ended the mover's last work on the stream,
    /// where it is one of the mover's and that is known.
    pub(crate) lane_ends: Vec<Option<Fence>>,
    /// `(source, destination)` of each item.
    pub(crate) items: &'a [(RawBytes, RawBytes)],
    /// The pinned slots' first bytes.
    pub(crate) slots: Vec<*mut u8>,
    /// The scratch buffers' first bytes.
    pub(crate) scratch: Vec<DeviceAddr>,
    /// How long a host wait on the move's own work may take.
    pub(crate) deadline: Duration,
}

/// A schedule fully queued.
#[derive(Debug)]
pub(crate) struct Submitted {
    /// Fires once everything is done (`None`: nothing was queued).
    pub(crate) done: Option<Fence>,
    /// The work queued ahead of the move.
    pub(crate) ahead: Vec<Fence>,
    /// The fence that ends the move's work on each of the mover's streams.
    pub(crate) ends: Vec<(StreamId, Fence)>,
}

/// What the submission learnt so far.
#[derive(Debug)]
struct State {
    /// By `FenceId`, once recorded.
    fences: Vec<Option<Fence>>,
    /// Fences the `Ahead` ops recorded on lanes that were busy.
    ahead: Vec<Fence>,
    /// Whether the host has waited for all the work ahead yet.
    ahead_cleared: bool,
}

/// A schedule that failed part-way.
#[derive(Debug)]
pub(crate) struct Failed {
    pub(crate) error: Error,
    /// Fences after the work queued before the failure that did not fire
    /// within the deadline (a hang); empty when nothing can still run.
    pub(crate) pending: Vec<Fence>,
    /// Streams with work that did not finish: to be retired.
    pub(crate) hung: Vec<StreamId>,
}

/// Carries out `schedule` with `bind`.
///
/// # Safety
/// Every range `bind` names (items, slots, scratch) must stay valid for the
/// lengths the schedule's regions give, and the destinations and slots
/// unused by anyone else, until the returned `done` fence has fired, or,
/// on failure, until the returned `pending` fences have.
pub(crate) unsafe fn submit(
    schedule: &Schedule,
    bind: &Binding<'_>,
) -> std::result::Result<Submitted, Failed> {
    let mut state = State {
        fences: vec![None; schedule.fences],
        ahead: Vec::new(),
        ahead_cleared: false,
    };
    for (index, op) in schedule.ops.iter().enumerate() {
        // SAFETY: forwarded caller contract.
        let step = unsafe { run(schedule, bind, op, &mut state) };
        if let Err(error) = step {
            return Err(fail(schedule, bind, index + 1, &state.fences, error));
        }
    }
    let take = |id: FenceId| state.fences.get(id.0).cloned().flatten();
    let mut ahead: Vec<Fence> = schedule.ahead.iter().filter_map(|&f| take(f)).collect();
    ahead.extend(state.ahead.iter().cloned());
    let ends = schedule
        .ends
        .iter()
        .filter_map(|&(lane, fence)| Some((*bind.streams.get(lane.0)?, take(fence)?)))
        .collect();
    Ok(Submitted {
        done: schedule.done.and_then(take),
        ahead,
        ends,
    })
}

/// One op.
///
/// # Safety
/// As [`submit`].
unsafe fn run(schedule: &Schedule, bind: &Binding<'_>, op: &Op, state: &mut State) -> Result<()> {
    let driver = bind.driver;
    let fences = &mut state.fences;
    match op {
        Op::Copy { lane, dst, src } => {
            let stream = stream(bind, lane.0)?;
            // SAFETY: forwarded caller contract for both regions.
            unsafe {
                copy(
                    driver,
                    resolve(bind, *dst)?,
                    resolve(bind, *src)?,
                    dst.len,
                    stream,
                )
            }
        }
        Op::CopyBatch { lane, copies } => {
            let stream = stream(bind, lane.0)?;
            let mut peer = Vec::new();
            let mut down = Vec::new();
            let mut up = Vec::new();
            for (dst, src) in copies {
                match (resolve(bind, *dst)?, resolve(bind, *src)?) {
                    (RawBytes::Device(d), RawBytes::Device(s)) => peer.push(CopyDesc {
                        dst: d,
                        src: s,
                        bytes: dst.len,
                    }),
                    (RawBytes::Host { ptr, pinned: true }, RawBytes::Device(s)) => {
                        down.push(HostCopyDesc {
                            host: ptr,
                            device: s,
                            bytes: dst.len,
                        })
                    }
                    (RawBytes::Device(d), RawBytes::Host { ptr, pinned: true }) => {
                        up.push(HostCopyDesc {
                            host: ptr,
                            device: d,
                            bytes: dst.len,
                        })
                    }
                    _ => return Err(unbound("a batch copy with pageable or host-only ends")),
                }
            }
            // SAFETY: forwarded caller contract for every copy (the host
            // ends are pinned, as matched above).
            unsafe {
                if !peer.is_empty() {
                    driver.copy_batch_async(&peer, stream)?;
                }
                if !down.is_empty() {
                    driver.copy_batch_dtoh_async(&down, stream)?;
                }
                if !up.is_empty() {
                    driver.copy_batch_htod_async(&up, stream)?;
                }
            }
            Ok(())
        }
        Op::Record { lane, fence } => {
            let stream = stream(bind, lane.0)?;
            let recorded = bind.events.record(stream)?;
            let slot = fences.get_mut(fence.0).ok_or_else(|| unbound("a fence"))?;
            *slot = Some(recorded);
            Ok(())
        }
        Op::Ahead { lane } => {
            let stream = stream(bind, lane.0)?;
            let busy = match bind.lane_ends.get(lane.0).and_then(Option::as_ref) {
                Some(end) => !end.is_done(),
                // The caller's stream: ask it (a failed query counts as busy).
                None if schedule.lanes.get(lane.0).is_some_and(|k| k.is_callers()) => {
                    !matches!(driver.stream_done(stream), Ok(true))
                }
                // One of the mover's streams with no work of its known.
                None => false,
            };
            if busy {
                state.ahead.push(bind.events.record(stream)?);
            }
            Ok(())
        }
        Op::Wait { lane, fence } => {
            let stream = stream(bind, lane.0)?;
            let event = recorded(fences, *fence)?;
            driver.stream_wait_event(stream, event.id())
        }
        Op::HostWait { fence } => {
            if schedule.ahead.contains(fence) {
                // The caller's or other moves' work: no deadline of ours.
                return recorded(fences, *fence)?.wait(Duration::MAX);
            }
            if !state.ahead_cleared {
                // The deadline counts from when the move's work could start.
                for ahead in &schedule.ahead {
                    if let Some(Some(event)) = fences.get(ahead.0) {
                        event.wait(Duration::MAX)?;
                    }
                }
                for event in &state.ahead {
                    event.wait(Duration::MAX)?;
                }
                state.ahead_cleared = true;
            }
            recorded(fences, *fence)?.wait(bind.deadline)
        }
        Op::HostCopy { dst, src } => match (resolve(bind, *dst)?, resolve(bind, *src)?) {
            (RawBytes::Host { ptr: d, .. }, RawBytes::Host { ptr: s, .. }) => {
                // SAFETY: the caller keeps both host ranges valid for `len`
                // bytes; the waits before this op ordered them after every
                // device access that could overlap; `copy` allows overlap.
                unsafe { host_copy(d, s, dst.len) };
                Ok(())
            }
            _ => Err(unbound("a host copy off the host")),
        },
    }
}

/// After `ops[..started]` were (maybe partly) queued and one failed: fence
/// every lane that got work and wait for it, so nothing still runs.
fn fail(
    schedule: &Schedule,
    bind: &Binding<'_>,
    started: usize,
    fences: &[Option<Fence>],
    error: Error,
) -> Failed {
    let (ops, _) = schedule.remainder(started);
    let mut recorded: Vec<(StreamId, Fence)> = Vec::new();
    let mut pending = Vec::new();
    let mut hung = Vec::new();
    for op in &ops {
        if let Op::Record { lane, .. } = op {
            let Some(&stream) = bind.streams.get(lane.0) else {
                continue;
            };
            match bind.events.record(stream) {
                Ok(fence) => recorded.push((stream, fence)),
                // No event to be had: wait for the whole stream instead.
                Err(_) => {
                    if bind.driver.wait_stream(stream, bind.deadline).is_err() {
                        hung.push(stream);
                    }
                }
            }
        }
    }
    for (stream, fence) in recorded {
        if fence.wait(bind.deadline).is_err() {
            hung.push(stream);
            pending.push(fence);
        }
    }
    // Fences already recorded by the schedule stay alive until here, so
    // their waits queued on other lanes were valid; they drop with `fences`.
    let _ = fences;
    Failed {
        error,
        pending,
        hung,
    }
}

fn stream(bind: &Binding<'_>, lane: usize) -> Result<StreamId> {
    bind.streams
        .get(lane)
        .copied()
        .ok_or_else(|| unbound("a lane"))
}

fn recorded(fences: &[Option<Fence>], fence: FenceId) -> Result<&Fence> {
    fences
        .get(fence.0)
        .and_then(Option::as_ref)
        .ok_or_else(|| unbound("a fence waited for before it was recorded"))
}

/// A schedule that names what its binding lacks: a bug of this crate,
/// reported as an error rather than a panic.
fn unbound(what: &str) -> Error {
    Error::Unsupported(format!("the move's schedule names {what} it was not given"))
}

/// Where a region lies.
fn resolve(bind: &Binding<'_>, region: Region) -> Result<RawBytes> {
    let base = match region.buf {
        Buf::Src(i) => bind.items.get(i).map(|item| item.0),
        Buf::Dst(i) => bind.items.get(i).map(|item| item.1),
        Buf::Slot(i) => bind
            .slots
            .get(i)
            .map(|&ptr| RawBytes::Host { ptr, pinned: true }),
        Buf::Scratch(i) => bind.scratch.get(i).map(|&addr| RawBytes::Device(addr)),
    }
    .ok_or_else(|| unbound("a buffer"))?;
    Ok(match base {
        RawBytes::Device(addr) => RawBytes::Device(addr.offset(region.offset)),
        RawBytes::Host { ptr, pinned } => RawBytes::Host {
            ptr: ptr.wrapping_add(region.offset),
            pinned,
        },
    })
}

/// Queues one device copy between `src` and `dst`.
///
/// # Safety
/// Both ranges hold `len` bytes until the copy is done.
unsafe fn copy(
    driver: &Arc<dyn Driver>,
    dst: RawBytes,
    src: RawBytes,
    len: usize,
    stream: StreamId,
) -> Result<()> {
    match (dst, src) {
        // SAFETY: forwarded caller contract.
        (RawBytes::Device(d), RawBytes::Device(s)) => unsafe {
            driver.copy_peer_async(d, s, len, stream)
        },
        // SAFETY: forwarded caller contract.
        (RawBytes::Device(d), RawBytes::Host { ptr, .. }) => unsafe {
            driver.copy_htod_async(d, ptr, len, stream)
        },
        // SAFETY: forwarded caller contract.
        (RawBytes::Host { ptr, .. }, RawBytes::Device(s)) => unsafe {
            driver.copy_dtoh_async(ptr, s, len, stream)
        },
        (RawBytes::Host { .. }, RawBytes::Host { .. }) => {
            Err(unbound("a device copy between host ranges"))
        }
    }
}

/// memcpy, split over the rayon pool's threads when large enough to pay
/// for waking them: one core copies 6-14 GB/s into pinned memory on an H200
/// host, 32 threads 100-130 GB/s on 8-32 MiB, and the PCIe link takes 55 GB/s.
///
/// # Safety
/// `src` is valid for `len` reads and `dst` for `len` writes.
unsafe fn host_copy(dst: *mut u8, src: *const u8, len: usize) {
    const PER_THREAD: usize = 256 << 10;
    if len == 0 || dst.cast_const() == src {
        return;
    }
    let disjoint = (src as usize + len <= dst as usize) || (dst as usize + len <= src as usize);
    if len < 2 * PER_THREAD || !disjoint {
        // SAFETY: forwarded caller contract; `copy` allows overlap.
        unsafe { std::ptr::copy(src, dst, len) };
        return;
    }
    // SAFETY: the ranges are valid (caller contract) and do not overlap.
    let (to, from) = unsafe {
        (
            std::slice::from_raw_parts_mut(dst, len),
            std::slice::from_raw_parts(src, len),
        )
    };
    let threads = rayon::current_num_threads().clamp(1, 64);
    let piece = len.div_ceil(threads).max(PER_THREAD);
    use rayon::prelude::*;
    to.par_chunks_mut(piece)
        .zip(from.par_chunks(piece))
        .for_each(|(t, f)| t.copy_from_slice(f));
}
