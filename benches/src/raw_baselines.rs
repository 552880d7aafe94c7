//! The baselines: raw driver calls, each a complete operation (queued, then
//! the stream synchronized), wrapped so the benchmark needs no `unsafe`.
//!
//! These are what a careful user of the driver API would write by hand, and
//! what the project's first measurements used: `cuMemcpyPeerAsync` on a
//! stream of the source device, pinned `cuMemcpyDtoHAsync`/`cuMemcpyHtoDAsync`,
//! staging as a sequence of the two through one pinned buffer, and the
//! same through pageable memory (ExLlamaV2's fallback).
//!
//! Every function checks that the ranges fit their buffers and panics if not:
//! a wrong length here is a bug in the benchmark, not something a machine does.

use p2p_core::memory::{DeviceBuffer, PinnedBuffer, Stream};
use p2p_core::{CopyDesc, Driver, Result};

fn check_fits(what: &str, len: usize, capacity: usize) {
    assert!(
        len <= capacity,
        "{what}: {len} bytes do not fit in {capacity}"
    );
}

/// `cuMemcpyPeerAsync` of the first `len` bytes of `src` into `dst` on
/// `stream`, then a synchronize. Peer access must already be enabled for the
/// copy to take the direct path (the driver stages it otherwise).
pub fn peer_copy(
    driver: &dyn Driver,
    dst: &mut DeviceBuffer,
    src: &DeviceBuffer,
    len: usize,
    stream: &Stream,
) -> Result<()> {
    check_fits("peer copy source", len, src.len());
    check_fits("peer copy destination", len, dst.len());
    // SAFETY: both buffers are borrowed (the destination exclusively) and hold
    // `len` bytes until the synchronize below, which ends the copy.
    unsafe { driver.copy_peer_async(dst.ptr(), src.ptr(), len, stream.id())? };
    stream.synchronize()
}

/// All of `srcs[i] -> dsts[i]` in one `copy_batch_async` call
/// (`cuMemcpyBatchAsync` where the driver has it), then one synchronize.
pub fn batch_copy(
    driver: &dyn Driver,
    dsts: &mut [DeviceBuffer],
    srcs: &[DeviceBuffer],
    stream: &Stream,
) -> Result<()> {
    assert_eq!(
        dsts.len(),
        srcs.len(),
        "batch copy: as many destinations as sources"
    );
    let copies: Vec<CopyDesc> = srcs
        .iter()
        .zip(dsts.iter())
        .map(|(src, dst)| {
            check_fits("batch copy destination", src.len(), dst.len());
            CopyDesc {
                dst: dst.ptr(),
                src: src.ptr(),
                bytes: src.len(),
            }
        })
        .collect();
    // SAFETY: every buffer is borrowed (destinations exclusively) until the
    // synchronize below, which runs whether or not the call failed (one
    // that fails part-way may have queued some copies); each copy fits its
    // destination (checked above).
    let queued = unsafe { driver.copy_batch_async(&copies, stream.id()) };
    let synced = stream.synchronize();
    queued.and(synced)
}

/// `srcs[i] -> dsts[i]` as one `copy_peer_async` each (`cuMemcpyAsync`
/// between two buffers of one device), all on `stream`, then one
/// synchronize: separate copies without a host wait between them.
pub fn peer_copies_one_sync(
    driver: &dyn Driver,
    dsts: &mut [DeviceBuffer],
    srcs: &[DeviceBuffer],
    stream: &Stream,
) -> Result<()> {
    assert_eq!(
        dsts.len(),
        srcs.len(),
        "separate copies: as many destinations as sources"
    );
    let mut queued = Ok(());
    for (dst, src) in dsts.iter_mut().zip(srcs) {
        check_fits("separate copy destination", src.len(), dst.len());
        // SAFETY: both buffers are borrowed (the destination exclusively)
        // until the synchronize below, which runs even when a later copy
        // fails to queue; the copy fits its destination (checked above).
        queued = unsafe { driver.copy_peer_async(dst.ptr(), src.ptr(), src.len(), stream.id()) };
        if queued.is_err() {
            break;
        }
    }
    let synced = stream.synchronize();
    queued.and(synced)
}

/// Pinned device-to-host copy of the first `len` bytes, then a synchronize.
pub fn download(
    driver: &dyn Driver,
    dst: &mut PinnedBuffer,
    src: &DeviceBuffer,
    len: usize,
    stream: &Stream,
) -> Result<()> {
    check_fits("download source", len, src.len());
    check_fits("download destination", len, dst.len());
    // SAFETY: `dst` is exclusively borrowed pinned memory and `src` a live
    // buffer, both of at least `len` bytes until the synchronize below.
    unsafe { driver.copy_dtoh_async(dst.as_mut_ptr(), src.ptr(), len, stream.id())? };
    stream.synchronize()
}

/// Pinned host-to-device copy of the first `len` bytes, then a synchronize.
pub fn upload(
    driver: &dyn Driver,
    dst: &mut DeviceBuffer,
    src: &PinnedBuffer,
    len: usize,
    stream: &Stream,
) -> Result<()> {
    check_fits("upload source", len, src.len());
    check_fits("upload destination", len, dst.len());
    // SAFETY: `src` is borrowed pinned memory and `dst` an exclusively
    // borrowed buffer, both of at least `len` bytes until the synchronize below.
    unsafe { driver.copy_htod_async(dst.ptr(), src.as_ptr(), len, stream.id())? };
    stream.synchronize()
}

/// Staging as ExLlamaV2-style code does it, minus the pageable memory: the
/// whole range down into one pinned buffer, synchronize, then up, synchronize.
pub fn sequential_staging(
    driver: &dyn Driver,
    dst: &mut DeviceBuffer,
    src: &DeviceBuffer,
    pinned: &mut PinnedBuffer,
    len: usize,
    src_stream: &Stream,
    dst_stream: &Stream,
) -> Result<()> {
    download(driver, pinned, src, len, src_stream)?;
    upload(driver, dst, pinned, len, dst_stream)
}

/// ExLlamaV2's fallback when peer copy is broken (`tensor.to("cpu").to(dst)`)
/// done with raw calls: the whole range down into *pageable* host memory,
/// synchronize, then up from it, synchronize. The driver stages pageable
/// copies through its own pinned buffers, so each leg costs a CPU copy too.
pub fn pageable_round_trip(
    driver: &dyn Driver,
    dst: &mut DeviceBuffer,
    src: &DeviceBuffer,
    host: &mut [u8],
    len: usize,
    src_stream: &Stream,
    dst_stream: &Stream,
) -> Result<()> {
    check_fits("pageable round trip source", len, src.len());
    check_fits("pageable round trip host memory", len, host.len());
    check_fits("pageable round trip destination", len, dst.len());
    // SAFETY: `host` is exclusively borrowed and `src` live, both of at
    // least `len` bytes, until the synchronize below.
    unsafe { driver.copy_dtoh_async(host.as_mut_ptr(), src.ptr(), len, src_stream.id())? };
    src_stream.synchronize()?;
    // SAFETY: `host` is borrowed and `dst` exclusively borrowed, both of at
    // least `len` bytes, until the synchronize below.
    unsafe { driver.copy_htod_async(dst.ptr(), host.as_ptr(), len, dst_stream.id())? };
    dst_stream.synchronize()
}

/// Fills the whole buffer with `value` and waits: poisons a destination
/// before a correctness check.
pub fn poison(
    driver: &dyn Driver,
    dst: &mut DeviceBuffer,
    value: u8,
    stream: &Stream,
) -> Result<()> {
    // SAFETY: `dst` is exclusively borrowed and live until the synchronize below.
    unsafe { driver.memset_async(dst.ptr(), value, dst.len(), stream.id())? };
    stream.synchronize()
}
