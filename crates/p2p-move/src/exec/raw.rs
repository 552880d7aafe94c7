//! The routes, carried out on raw addresses: the only module of this crate
//! that queues copies on memory it does not own.
//!
//! Every function here is `unsafe` with one contract: the source range is
//! readable and the destination writable for `len` bytes until the returned
//! completion event has fired (or until the function returns, for the parts
//! that run on the host). `Mover` upholds it through borrows.

use std::sync::Arc;
use std::time::Duration;

use p2p_core::memory::PinnedBuffer;
use p2p_core::{CopyDesc, DeviceAddr, Driver, Result};

use super::events::{DeviceResources, PooledEvent};
use super::staging::StagingPool;
use super::transfer::hold_until_done;
use crate::plan::Chunk;

/// What the routes share: the driver, streams and events, the pinned pool.
pub(crate) struct RouteContext<'a> {
    pub(crate) driver: &'a Arc<dyn Driver>,
    pub(crate) res: &'a DeviceResources,
    pub(crate) staging: &'a StagingPool,
    /// Work that must finish before the copy reads or writes anything.
    pub(crate) start: &'a [PooledEvent],
    /// How long a host-side wait on a copy may take before it is called hung.
    pub(crate) deadline: Duration,
}

impl RouteContext<'_> {
    /// Makes `stream` wait for the caller's prior work.
    fn wait_start(&self, stream: p2p_core::StreamId) -> Result<()> {
        for event in self.start {
            self.driver.stream_wait_event(stream, event.id())?;
        }
        Ok(())
    }

    /// An event recorded now at the end of `stream`.
    fn mark(&self, device: usize, stream: p2p_core::StreamId) -> Result<PooledEvent> {
        let event = self.res.event(device)?;
        event.record(stream)?;
        Ok(event)
    }
}

/// Direct peer copy (or same-device copy) on the source's outbound stream.
///
/// # Safety
/// See the module docs.
pub(crate) unsafe fn peer(
    cx: &RouteContext<'_>,
    dst: DeviceAddr,
    src: DeviceAddr,
    len: usize,
) -> Result<PooledEvent> {
    let stream = cx.res.outbound(src.device)?;
    cx.wait_start(stream)?;
    // SAFETY: the caller keeps both ranges valid until the returned event fires.
    unsafe { cx.driver.copy_peer_async(dst, src, len, stream)? };
    cx.mark(src.device, stream)
}

/// A peer copy queued on `stream` with nothing recorded after it: for a
/// caller that waits for the stream at once.
///
/// # Safety
/// See the module docs; the caller waits until `stream` is idle.
pub(crate) unsafe fn peer_unmarked(
    driver: &Arc<dyn Driver>,
    dst: DeviceAddr,
    src: DeviceAddr,
    len: usize,
    stream: p2p_core::StreamId,
) -> Result<()> {
    // SAFETY: the caller keeps both ranges valid until the stream is idle.
    unsafe { driver.copy_peer_async(dst, src, len, stream) }
}

/// Device to pinned slot, wait, slot to device, wait: the blocking path of
/// a small staged copy.
///
/// # Safety
/// See the module docs; both ranges stay valid until this returns.
#[allow(clippy::too_many_arguments)] // two ranges, a slot, two streams, a deadline: all needed
pub(crate) unsafe fn bounce(
    driver: &Arc<dyn Driver>,
    dst: DeviceAddr,
    src: DeviceAddr,
    slot: &mut PinnedBuffer,
    len: usize,
    out: p2p_core::StreamId,
    inb: p2p_core::StreamId,
    deadline: Duration,
) -> Result<()> {
    // SAFETY: the slot holds at least `len` bytes; the caller keeps `src` valid.
    unsafe { driver.copy_dtoh_async(slot.as_mut_ptr(), src, len, out)? };
    hold_until_done(deadline, |d| driver.wait_stream(out, d))?;
    // SAFETY: as above, for `dst`.
    unsafe { driver.copy_htod_async(dst, slot.as_ptr(), len, inb)? };
    hold_until_done(deadline, |d| driver.wait_stream(inb, d))
}

/// Many peer copies from one device, in one batch call where the driver can.
///
/// # Safety
/// See the module docs, for every copy.
pub(crate) unsafe fn peer_batch(
    cx: &RouteContext<'_>,
    from: usize,
    copies: &[CopyDesc],
) -> Result<PooledEvent> {
    let stream = cx.res.outbound(from)?;
    cx.wait_start(stream)?;
    // SAFETY: the caller keeps every range valid until the returned event fires.
    let queued = unsafe { cx.driver.copy_batch_async(copies, stream) };
    // Marked even after a failure: part of the batch may be queued, and it
    // must be over before the caller may touch the memory again.
    let done = cx.mark(from, stream)?;
    match queued {
        Ok(()) => Ok(done),
        Err(err) => {
            let _ = hold_until_done(cx.deadline, |d| done.wait(d));
            Err(err)
        }
    }
}

/// Device to device through pinned host memory: D2H on the source's stream,
/// H2D on the destination's, chained per buffer by events, no host waits.
///
/// # Safety
/// See the module docs.
pub(crate) unsafe fn staged(
    cx: &RouteContext<'_>,
    dst: DeviceAddr,
    src: DeviceAddr,
    chunks: &[Chunk],
    depth: usize,
) -> Result<PooledEvent> {
    let (out, inb) = (cx.res.outbound(src.device)?, cx.res.inbound(dst.device)?);
    cx.wait_start(out)?;
    cx.wait_start(inb)?;
    let depth = depth.clamp(1, chunks.len().max(1));
    let chunk_len = chunks.iter().map(|c| c.len).max().unwrap_or(0);
    let slots = cx.staging.acquire(depth, chunk_len)?;
    let result = (|| {
        let mut uploaded: Vec<Option<PooledEvent>> = (0..depth).map(|_| None).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            let slot = i % depth;
            if let Some(free) = &uploaded[slot] {
                cx.driver.stream_wait_event(out, free.id())?;
            }
            let host = slots[slot].as_ptr().cast_mut();
            // SAFETY: the slot holds at least `chunk_len` bytes and is ours until
            // the final event; the caller keeps `src` valid.
            unsafe {
                cx.driver
                    .copy_dtoh_async(host, src.offset(chunk.offset), chunk.len, out)?
            };
            let down = cx.mark(src.device, out)?;
            // A stream wait captures the recording current now: the event
            // can go back to the pool at once.
            cx.driver.stream_wait_event(inb, down.id())?;
            // SAFETY: as above; the caller keeps `dst` valid.
            unsafe {
                cx.driver
                    .copy_htod_async(dst.offset(chunk.offset), host, chunk.len, inb)?
            };
            uploaded[slot] = Some(cx.mark(dst.device, inb)?);
        }
        // The last upload's event marks the end of all of them (one stream).
        let last = chunks.len().checked_sub(1).map(|i| i % depth);
        match last.and_then(|slot| uploaded[slot].take()) {
            Some(done) => Ok(done),
            None => cx.mark(dst.device, inb),
        }
    })();
    finish_with_slots(cx, slots, &[(src.device, out), (dst.device, inb)], result)
}

/// Device to device through a third GPU: two peer legs pipelined through
/// scratch buffers on `mid`.
///
/// # Safety
/// See the module docs.
pub(crate) unsafe fn via(
    cx: &RouteContext<'_>,
    dst: DeviceAddr,
    src: DeviceAddr,
    hops: &[DeviceAddr],
    chunks: &[Chunk],
) -> Result<PooledEvent> {
    // Each leg is pushed from its sending device's stream, as the probe
    // verified it (the copy engine of the sender drives the copy).
    let mid = hops.first().map_or(dst.device, |hop| hop.device);
    let (first, second) = (cx.res.outbound(src.device)?, cx.res.outbound(mid)?);
    cx.wait_start(first)?;
    cx.wait_start(second)?;
    let depth = hops.len().max(1);
    let mut forwarded: Vec<Option<PooledEvent>> = (0..depth).map(|_| None).collect();
    let mut last = None;
    for (i, chunk) in chunks.iter().enumerate() {
        let slot = i % depth;
        if let Some(free) = &forwarded[slot] {
            cx.driver.stream_wait_event(first, free.id())?;
        }
        // SAFETY: the caller keeps the scratch buffers until the work queued
        // here is done, and `src` and `dst` valid.
        unsafe {
            cx.driver
                .copy_peer_async(hops[slot], src.offset(chunk.offset), chunk.len, first)?
        };
        // A stream wait captures the recording current at the time of the
        // wait, so the event can go back to the pool at once.
        let arrived = cx.mark(src.device, first)?;
        cx.driver.stream_wait_event(second, arrived.id())?;
        // SAFETY: as above.
        unsafe {
            cx.driver
                .copy_peer_async(dst.offset(chunk.offset), hops[slot], chunk.len, second)?
        };
        forwarded[slot] = Some(cx.mark(mid, second)?);
        last = Some(slot);
    }
    match last.and_then(|slot| forwarded[slot].take()) {
        Some(done) => Ok(done),
        None => cx.mark(mid, second),
    }
}

/// Pinned host to device: one DMA copy.
///
/// # Safety
/// See the module docs; `src` is page-locked.
pub(crate) unsafe fn upload_pinned(
    cx: &RouteContext<'_>,
    dst: DeviceAddr,
    src: *const u8,
    len: usize,
) -> Result<PooledEvent> {
    let stream = cx.res.inbound(dst.device)?;
    cx.wait_start(stream)?;
    // SAFETY: the caller keeps both ranges valid until the event fires.
    unsafe { cx.driver.copy_htod_async(dst, src, len, stream)? };
    cx.mark(dst.device, stream)
}

/// Device to pinned host: one DMA copy.
///
/// # Safety
/// See the module docs; `dst` is page-locked.
pub(crate) unsafe fn download_pinned(
    cx: &RouteContext<'_>,
    dst: *mut u8,
    src: DeviceAddr,
    len: usize,
) -> Result<PooledEvent> {
    let stream = cx.res.outbound(src.device)?;
    cx.wait_start(stream)?;
    // SAFETY: the caller keeps both ranges valid until the event fires.
    unsafe { cx.driver.copy_dtoh_async(dst, src, len, stream)? };
    cx.mark(src.device, stream)
}

/// Pageable host to device: the CPU copies each chunk into a pinned buffer
/// while the GPU uploads the previous one. The source is no longer read once
/// this returns; the returned event marks the end of the last upload.
///
/// # Safety
/// See the module docs; `src` is valid for reads until this returns.
pub(crate) unsafe fn upload_pageable(
    cx: &RouteContext<'_>,
    dst: DeviceAddr,
    src: *const u8,
    chunks: &[Chunk],
    depth: usize,
) -> Result<PooledEvent> {
    let stream = cx.res.inbound(dst.device)?;
    cx.wait_start(stream)?;
    let depth = depth.clamp(1, chunks.len().max(1));
    let chunk_len = chunks.iter().map(|c| c.len).max().unwrap_or(0);
    let mut slots = cx.staging.acquire(depth, chunk_len)?;
    let result = (|| {
        let mut uploaded: Vec<Option<PooledEvent>> = (0..depth).map(|_| None).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            let slot = i % depth;
            if let Some(free) = uploaded[slot].take() {
                hold_until_done(cx.deadline, |d| free.wait(d))?;
            }
            // SAFETY: the caller keeps `src` valid for `chunk.offset + chunk.len` bytes.
            let from = unsafe { std::slice::from_raw_parts(src.add(chunk.offset), chunk.len) };
            parallel_copy(&mut slots[slot].as_mut_slice()[..chunk.len], from);
            // SAFETY: the slot is ours until the final event; the caller keeps `dst` valid.
            unsafe {
                cx.driver.copy_htod_async(
                    dst.offset(chunk.offset),
                    slots[slot].as_ptr(),
                    chunk.len,
                    stream,
                )?
            };
            uploaded[slot] = Some(cx.mark(dst.device, stream)?);
        }
        let last = chunks.len().checked_sub(1).map(|i| i % depth);
        match last.and_then(|slot| uploaded[slot].take()) {
            Some(done) => Ok(done),
            None => cx.mark(dst.device, stream),
        }
    })();
    finish_with_slots(cx, slots, &[(dst.device, stream)], result)
}

/// Device to pageable host: the GPU downloads chunks into pinned buffers
/// ahead of the CPU, which copies each out as soon as it lands. Complete
/// when this returns.
///
/// # Safety
/// See the module docs; `dst` is valid for writes until this returns.
pub(crate) unsafe fn download_pageable(
    cx: &RouteContext<'_>,
    dst: *mut u8,
    src: DeviceAddr,
    chunks: &[Chunk],
    depth: usize,
) -> Result<()> {
    let stream = cx.res.outbound(src.device)?;
    cx.wait_start(stream)?;
    let depth = depth.clamp(1, chunks.len().max(1));
    let chunk_len = chunks.iter().map(|c| c.len).max().unwrap_or(0);
    let mut slots = cx.staging.acquire(depth, chunk_len)?;
    let enqueue = |slots: &mut [PinnedBuffer], i: usize| -> Result<PooledEvent> {
        let chunk = chunks[i];
        let host = slots[i % depth].as_mut_ptr();
        // SAFETY: the slot is ours until this function returns; the caller keeps `src` valid.
        unsafe {
            cx.driver
                .copy_dtoh_async(host, src.offset(chunk.offset), chunk.len, stream)?
        };
        cx.mark(src.device, stream)
    };
    let result = (|| {
        let mut landed = std::collections::VecDeque::new();
        for i in 0..depth.min(chunks.len()) {
            landed.push_back(enqueue(&mut slots, i)?);
        }
        for (i, chunk) in chunks.iter().enumerate() {
            let Some(event) = landed.pop_front() else {
                break;
            };
            hold_until_done(cx.deadline, |d| event.wait(d))?;
            // SAFETY: the caller keeps `dst` valid for `chunk.offset + chunk.len` bytes.
            let to = unsafe { std::slice::from_raw_parts_mut(dst.add(chunk.offset), chunk.len) };
            parallel_copy(to, &slots[i % depth].as_slice()[..chunk.len]);
            if i + depth < chunks.len() {
                landed.push_back(enqueue(&mut slots, i + depth)?);
            }
        }
        Ok(())
    })();
    match result {
        Ok(()) => {
            cx.staging.release_idle(slots);
            Ok(())
        }
        Err(err) => {
            park_after_failure(cx, slots, &[(src.device, stream)]);
            Err(err)
        }
    }
}

/// Hands the pinned slots back once the work queued on `streams` is done.
fn finish_with_slots(
    cx: &RouteContext<'_>,
    slots: Vec<PinnedBuffer>,
    streams: &[(usize, p2p_core::StreamId)],
    result: Result<PooledEvent>,
) -> Result<PooledEvent> {
    match result {
        // The final event follows every copy of the move (the last stream
        // waited for the others), so the slots are free when it fires.
        Ok(done) => {
            cx.staging.release(slots, done.clone());
            Ok(done)
        }
        Err(err) => {
            park_after_failure(cx, slots, streams);
            Err(err)
        }
    }
}

/// After a failure part-way, copies queued on any of `streams` may still
/// use the slots: park them behind an event that follows all of those.
fn park_after_failure(
    cx: &RouteContext<'_>,
    slots: Vec<PinnedBuffer>,
    streams: &[(usize, p2p_core::StreamId)],
) {
    match after_all(cx, streams) {
        Ok(event) => cx.staging.release(slots, event),
        // Cannot tell when they are free: never reuse them.
        Err(_) => std::mem::forget(slots),
    }
}

/// An event that fires once the work queued so far on every one of
/// `streams` is done: the last stream waits for the others, then records.
pub(crate) fn after_all(
    cx: &RouteContext<'_>,
    streams: &[(usize, p2p_core::StreamId)],
) -> Result<PooledEvent> {
    let Some((&(last_device, last), others)) = streams.split_last() else {
        return Err(p2p_core::Error::Unsupported(
            "after_all needs a stream".into(),
        ));
    };
    for &(device, stream) in others {
        let tail = cx.mark(device, stream)?;
        cx.driver.stream_wait_event(last, tail.id())?;
    }
    cx.mark(last_device, last)
}

/// memcpy, split over the rayon pool's threads when large enough to pay
/// for waking them: one core copies 6-14 GB/s into pinned memory on an H200
/// host, 32 threads 100-130 GB/s on 8-32 MiB (`gpu-hostcopy`), and the
/// PCIe link takes 55 GB/s.
fn parallel_copy(to: &mut [u8], from: &[u8]) {
    const PER_THREAD: usize = 256 << 10;
    if from.len() < 2 * PER_THREAD {
        to.copy_from_slice(from);
        return;
    }
    let threads = rayon::current_num_threads().clamp(1, 64);
    let piece = from.len().div_ceil(threads).max(PER_THREAD);
    use rayon::prelude::*;
    to.par_chunks_mut(piece)
        .zip(from.par_chunks(piece))
        .for_each(|(t, f)| t.copy_from_slice(f));
}
