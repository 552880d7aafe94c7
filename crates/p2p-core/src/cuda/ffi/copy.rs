//! Copies and fills queued on a stream.
//! [Docs](https://docs.nvidia.com/cuda/cuda-driver-api/group__CUDA__MEM.html)

use cudarc::driver::{result, sys};

use super::{check, named, CUcontext, CUdeviceptr, CUstream};
use crate::Result;

/// `cuMemcpyPeerAsync`.
///
/// # Safety
/// Both contexts and `stream` are live; `src..src+bytes` and
/// `dst..dst+bytes` are live allocations in their contexts until the copy is done.
pub(in crate::cuda) unsafe fn peer_async(
    dst: CUdeviceptr,
    dst_context: CUcontext,
    src: CUdeviceptr,
    src_context: CUcontext,
    bytes: usize,
    stream: CUstream,
) -> Result<()> {
    // SAFETY: the caller's contract.
    named("cuMemcpyPeerAsync", unsafe {
        result::memcpy_peer_async(dst_context, dst, src_context, src, bytes, stream)
    })
}

/// `cuMemcpyDtoDAsync_v2`.
///
/// # Safety
/// `stream` is live; both ranges are live device memory until the copy is done.
pub(in crate::cuda) unsafe fn dtod_async(
    dst: CUdeviceptr,
    src: CUdeviceptr,
    bytes: usize,
    stream: CUstream,
) -> Result<()> {
    // SAFETY: the caller's contract.
    named("cuMemcpyDtoDAsync", unsafe {
        result::memcpy_dtod_async(dst, src, bytes, stream)
    })
}

/// `cuMemcpyDtoHAsync_v2` to a raw host address (cudarc's wrapper takes a
/// `&mut [T]`, which memory the device writes later must not be made into).
///
/// # Safety
/// `stream` is live; `dst` is valid for `bytes` writes and `src` for `bytes`
/// reads until the copy is done.
pub(in crate::cuda) unsafe fn dtoh_async(
    dst: *mut u8,
    src: CUdeviceptr,
    bytes: usize,
    stream: CUstream,
) -> Result<()> {
    // SAFETY: the caller's contract.
    check("cuMemcpyDtoHAsync", unsafe {
        sys::cuMemcpyDtoHAsync_v2(dst.cast(), src, bytes, stream)
    })
}

/// `cuMemcpyHtoDAsync_v2` from a raw host address (see [`dtoh_async`]).
///
/// # Safety
/// `stream` is live; `src` is valid for `bytes` reads and `dst` for `bytes`
/// writes until the copy is done.
pub(in crate::cuda) unsafe fn htod_async(
    dst: CUdeviceptr,
    src: *const u8,
    bytes: usize,
    stream: CUstream,
) -> Result<()> {
    // SAFETY: the caller's contract.
    check("cuMemcpyHtoDAsync", unsafe {
        sys::cuMemcpyHtoDAsync_v2(dst, src.cast(), bytes, stream)
    })
}

/// `cuMemsetD8Async`.
///
/// # Safety
/// `stream` is live; `dst..dst+bytes` is live device memory until the fill is done.
pub(in crate::cuda) unsafe fn memset_d8_async(
    dst: CUdeviceptr,
    value: u8,
    bytes: usize,
    stream: CUstream,
) -> Result<()> {
    // SAFETY: the caller's contract.
    named("cuMemsetD8Async", unsafe {
        result::memset_d8_async(dst, value, bytes, stream)
    })
}

/// The driver symbol [`batch_async`] calls with these bindings, `None` where
/// they have no batched copy (before 12.8). 12.8 and 12.9 name
/// `cuMemcpyBatchAsync` (with `failIdx`); 13.0 headers name only
/// `cuMemcpyBatchAsync_v2` (without it), which drivers from 13.0 on export.
#[cfg(not(cuda_at_least_12080))]
pub(in crate::cuda) const BATCH_SYMBOL: Option<&std::ffi::CStr> = None;
#[cfg(all(cuda_at_least_12080, not(cuda_at_least_13000)))]
pub(in crate::cuda) const BATCH_SYMBOL: Option<&std::ffi::CStr> = Some(c"cuMemcpyBatchAsync");
#[cfg(cuda_at_least_13000)]
pub(in crate::cuda) const BATCH_SYMBOL: Option<&std::ffi::CStr> = Some(c"cuMemcpyBatchAsync_v2");

/// `cuMemcpyBatchAsync`: every copy in stream order, in one call (cudarc has
/// no wrapper). The copies of a batch may run in any order among themselves.
/// Compiled only where the bindings have it ([`BATCH_SYMBOL`]); the caller
/// falls back to one copy per call elsewhere.
///
/// # Safety
/// The driver exports [`BATCH_SYMBOL`]; `stream` is a live stream of the
/// current context and not the legacy null stream (which the call rejects);
/// the three slices have one entry per copy; every range is live device
/// memory (or pinned host memory) until the batch is done; no two copies overlap in a way that makes
/// their order matter.
#[cfg(cuda_at_least_12080)]
pub(in crate::cuda) unsafe fn batch_async(
    dsts: &mut [CUdeviceptr],
    srcs: &mut [CUdeviceptr],
    sizes: &mut [usize],
    stream: CUstream,
) -> Result<()> {
    debug_assert!(dsts.len() == srcs.len() && srcs.len() == sizes.len());
    // One attribute entry for all copies: read the sources in stream order.
    // The location hints only matter for managed memory: "invalid" = no hint.
    let no_hint = {
        let mut location = super::peer::device_location(0);
        location.type_ = sys::CUmemLocationType::CU_MEM_LOCATION_TYPE_INVALID;
        location
    };
    let mut attributes = sys::CUmemcpyAttributes {
        srcAccessOrder: sys::CUmemcpySrcAccessOrder::CU_MEMCPY_SRC_ACCESS_ORDER_STREAM,
        srcLocHint: no_hint,
        dstLocHint: no_hint,
        flags: 0,
    };
    let mut first_copy_of_attributes: usize = 0;
    #[cfg(not(cuda_at_least_13000))]
    let mut fail_index: usize = usize::MAX;
    // SAFETY: the arrays hold `dsts.len()` entries each and live across the
    // call (the driver reads them before returning; it takes `*mut` but does
    // not write them); one attribute entry applies from copy 0 on; the caller
    // vouches for the symbol, the stream and the ranges.
    let result = unsafe {
        #[cfg(not(cuda_at_least_13000))]
        let result = sys::cuMemcpyBatchAsync(
            dsts.as_mut_ptr(),
            srcs.as_mut_ptr(),
            sizes.as_mut_ptr(),
            dsts.len(),
            &mut attributes,
            &mut first_copy_of_attributes,
            1,
            &mut fail_index,
            stream,
        );
        #[cfg(cuda_at_least_13000)]
        let result = sys::cuMemcpyBatchAsync_v2(
            dsts.as_mut_ptr(),
            srcs.as_mut_ptr(),
            sizes.as_mut_ptr(),
            dsts.len(),
            &mut attributes,
            &mut first_copy_of_attributes,
            1,
            stream,
        );
        result
    };
    #[cfg(not(cuda_at_least_13000))]
    if result != sys::CUresult::CUDA_SUCCESS && fail_index != usize::MAX {
        tracing::debug!(
            "cuMemcpyBatchAsync failed at copy {fail_index} of {}",
            dsts.len()
        );
    }
    check("cuMemcpyBatchAsync", result)
}
