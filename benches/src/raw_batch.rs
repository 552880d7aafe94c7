//! Raw `cuMemcpyBatchAsync` with the attributes and flags the driver offers,
//! for gpu-bench's batched-copy experiments: what the CUDA backend does today
//! (`srcAccessOrder = STREAM`, no flags) against `srcAccessOrder = ANY` and
//! `CU_MEMCPY_FLAG_PREFER_OVERLAP_WITH_COMPUTE` (both defined by cudarc's
//! bindings from 12.8 on), and a batch split across two streams.
//!
//! The entry point is looked up in the driver library at run time, as the
//! backend does before calling it: `cuMemcpyBatchAsync` (12.8's, with a
//! failure index; what the backend calls with the default bindings, and
//! what later drivers keep exporting) or else `cuMemcpyBatchAsync_v2`
//! (13.0's, without). A driver with neither makes [`RawBatch::open`] fail,
//! and the benchmark says so instead of measuring.
//!
//! Like `raw_baselines`, every copy here is a complete operation (queued,
//! then every stream used synchronized), so callers need no `unsafe`.

use std::ffi::c_void;
use std::sync::Arc;

use p2p_core::cudarc::driver::{sys, CudaContext};
use p2p_core::memory::{DeviceBuffer, Stream};
use p2p_core::{Error, Result};

/// How the driver may read a batch's sources (`CUmemcpySrcAccessOrder`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SrcOrder {
    /// In stream order, after the work queued before the batch (the backend's choice).
    Stream,
    /// In any order: the caller promises nothing else writes the sources meanwhile.
    Any,
}

/// The attribute entry every copy of a batch gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchAttributes {
    pub src_order: SrcOrder,
    /// `CU_MEMCPY_FLAG_PREFER_OVERLAP_WITH_COMPUTE`.
    pub prefer_overlap: bool,
}

impl BatchAttributes {
    /// What the CUDA backend passes today.
    pub const BACKEND: BatchAttributes = BatchAttributes {
        src_order: SrcOrder::Stream,
        prefer_overlap: false,
    };

    /// `srcAccessOrder = STREAM`, `flags = PREFER_OVERLAP_WITH_COMPUTE`, for tables.
    pub fn label(&self) -> String {
        let order = match self.src_order {
            SrcOrder::Stream => "STREAM",
            SrcOrder::Any => "ANY",
        };
        let flags = if self.prefer_overlap {
            "PREFER_OVERLAP_WITH_COMPUTE"
        } else {
            "0"
        };
        format!("srcAccessOrder = {order}, flags = {flags}")
    }

    fn to_sys(self) -> sys::CUmemcpyAttributes {
        // SAFETY: every field of the struct is an integer, a `#[repr(u32)]`
        // enum whose 0 is a variant (`..._INVALID`), or a struct or union of
        // those: all zeros is a valid value, and for the location hints it
        // means "no hint" (they only matter for managed memory).
        let mut attributes: sys::CUmemcpyAttributes = unsafe { std::mem::zeroed() };
        attributes.srcAccessOrder = match self.src_order {
            SrcOrder::Stream => sys::CUmemcpySrcAccessOrder::CU_MEMCPY_SRC_ACCESS_ORDER_STREAM,
            SrcOrder::Any => sys::CUmemcpySrcAccessOrder::CU_MEMCPY_SRC_ACCESS_ORDER_ANY,
        };
        if self.prefer_overlap {
            attributes.flags =
                sys::CUmemcpyFlags::CU_MEMCPY_FLAG_PREFER_OVERLAP_WITH_COMPUTE as u32;
        }
        attributes
    }
}

/// 12.8's signature: with a failure index.
type BatchWithFailIndex = unsafe extern "C" fn(
    *mut sys::CUdeviceptr,
    *mut sys::CUdeviceptr,
    *mut usize,
    usize,
    *mut sys::CUmemcpyAttributes,
    *mut usize,
    usize,
    *mut usize,
    sys::CUstream,
) -> sys::CUresult;

/// 13.0's `_v2`: the same without the failure index.
type BatchV2 = unsafe extern "C" fn(
    *mut sys::CUdeviceptr,
    *mut sys::CUdeviceptr,
    *mut usize,
    usize,
    *mut sys::CUmemcpyAttributes,
    *mut usize,
    usize,
    sys::CUstream,
) -> sys::CUresult;

#[derive(Clone, Copy)]
enum Entry {
    WithFailIndex(BatchWithFailIndex),
    V2(BatchV2),
}

#[cfg(windows)]
const LIBRARIES: &[&str] = &["nvcuda.dll"];
#[cfg(not(windows))]
const LIBRARIES: &[&str] = &["libcuda.so", "libcuda.so.1"];

/// The driver's batched copy, callable in one device's primary context.
pub struct RawBatch {
    context: Arc<CudaContext>,
    entry: Entry,
    symbol: &'static str,
    /// Keeps the library (and so `entry`) loaded; the process loaded it already.
    _library: libloading::Library,
}

impl std::fmt::Debug for RawBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawBatch")
            .field("device", &self.context.ordinal())
            .field("symbol", &self.symbol)
            .finish()
    }
}

impl RawBatch {
    /// The batched copy of the driver already loaded, for streams of `context`'s device.
    ///
    /// # Errors
    /// Why not, in words: the library cannot be opened, or it exports no batched copy.
    pub fn open(context: Arc<CudaContext>) -> std::result::Result<RawBatch, String> {
        let library = LIBRARIES
            .iter()
            // SAFETY: the driver library is loaded in this process already
            // (the context exists); opening it again only takes a reference.
            .find_map(|name| unsafe { libloading::Library::new(*name) }.ok())
            .ok_or_else(|| format!("none of {LIBRARIES:?} could be opened"))?;
        // SAFETY: `dlsym` only; the pointers are called only through the
        // types that match the driver's declarations of these symbols.
        let entry = unsafe {
            if let Ok(f) = library.get::<BatchWithFailIndex>(b"cuMemcpyBatchAsync\0") {
                Some((Entry::WithFailIndex(*f), "cuMemcpyBatchAsync"))
            } else if let Ok(f) = library.get::<BatchV2>(b"cuMemcpyBatchAsync_v2\0") {
                Some((Entry::V2(*f), "cuMemcpyBatchAsync_v2"))
            } else {
                None
            }
        };
        let (entry, symbol) = entry.ok_or_else(|| {
            "the driver exports neither cuMemcpyBatchAsync nor cuMemcpyBatchAsync_v2 (CUDA 12.8+)"
                .to_string()
        })?;
        Ok(RawBatch {
            context,
            entry,
            symbol,
            _library: library,
        })
    }

    /// The driver symbol called.
    pub fn symbol(&self) -> &'static str {
        self.symbol
    }

    /// `srcs[i] -> dsts[i]` cut into `streams.len()` consecutive parts, one
    /// batch call per part on its stream, then every stream synchronized
    /// (also after a failed call, so nothing runs when this returns).
    ///
    /// # Panics
    /// On a benchmark bug: counts that differ, a destination shorter than
    /// its source, no stream, or a legacy default stream (which the call
    /// rejects). Every stream must be of the context's device.
    pub fn copy(
        &self,
        dsts: &mut [DeviceBuffer],
        srcs: &[DeviceBuffer],
        streams: &[&Stream],
        attributes: BatchAttributes,
    ) -> Result<()> {
        assert_eq!(dsts.len(), srcs.len(), "as many destinations as sources");
        assert!(!streams.is_empty(), "a batch needs a stream");
        for (dst, src) in dsts.iter().zip(srcs) {
            assert!(
                dst.len() >= src.len(),
                "a destination shorter than its source"
            );
        }
        for stream in streams {
            assert_ne!(stream.id().raw, 0, "the legacy default stream");
        }
        self.context.bind_to_thread()?;
        let part = srcs.len().div_ceil(streams.len()).max(1);
        let mut first_error = None;
        for (index, stream) in streams.iter().enumerate() {
            let range = (index * part).min(srcs.len())..((index + 1) * part).min(srcs.len());
            if range.is_empty() {
                continue;
            }
            let mut dst_addrs: Vec<sys::CUdeviceptr> =
                dsts[range.clone()].iter().map(|d| d.ptr().addr).collect();
            let mut src_addrs: Vec<sys::CUdeviceptr> =
                srcs[range.clone()].iter().map(|s| s.ptr().addr).collect();
            let mut sizes: Vec<usize> = srcs[range].iter().map(DeviceBuffer::len).collect();
            // SAFETY: every buffer is borrowed (the destinations exclusively)
            // until the synchronize below; each copy fits its destination and
            // the destinations are distinct buffers (checked above, and by
            // the borrow); the stream is live, of the bound context, and not
            // the legacy one.
            let result = unsafe {
                self.queue(
                    &mut dst_addrs,
                    &mut src_addrs,
                    &mut sizes,
                    attributes,
                    stream,
                )
            };
            if let Err(err) = result {
                first_error.get_or_insert(err);
                break;
            }
        }
        for stream in streams {
            if let Err(err) = stream.synchronize() {
                first_error.get_or_insert(err);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// One batch call.
    ///
    /// # Safety
    /// The three slices have one entry per copy; every range is live device
    /// memory until the batch is done, and no two destinations overlap;
    /// `stream` is a live non-legacy stream of the bound context.
    unsafe fn queue(
        &self,
        dsts: &mut [sys::CUdeviceptr],
        srcs: &mut [sys::CUdeviceptr],
        sizes: &mut [usize],
        attributes: BatchAttributes,
        stream: &Stream,
    ) -> Result<()> {
        let mut attributes = attributes.to_sys();
        let mut first_copy_of_attributes: usize = 0;
        let handle = stream.id().raw as usize as *mut c_void as sys::CUstream;
        // SAFETY: the arrays hold `dsts.len()` entries each and live across
        // the call (the driver reads them before returning); one attribute
        // entry applies from copy 0 on; the caller vouches for the ranges
        // and the stream.
        let result = unsafe {
            match self.entry {
                Entry::WithFailIndex(f) => {
                    let mut fail_index = usize::MAX;
                    f(
                        dsts.as_mut_ptr(),
                        srcs.as_mut_ptr(),
                        sizes.as_mut_ptr(),
                        dsts.len(),
                        &mut attributes,
                        &mut first_copy_of_attributes,
                        1,
                        &mut fail_index,
                        handle,
                    )
                }
                Entry::V2(f) => f(
                    dsts.as_mut_ptr(),
                    srcs.as_mut_ptr(),
                    sizes.as_mut_ptr(),
                    dsts.len(),
                    &mut attributes,
                    &mut first_copy_of_attributes,
                    1,
                    handle,
                ),
            }
        };
        match result {
            sys::CUresult::CUDA_SUCCESS => Ok(()),
            failed => Err(Error::Cuda {
                call: self.symbol,
                code: failed as u32,
                name: format!("{failed:?}"),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_reach_the_driver_as_asked() {
        let backend = BatchAttributes::BACKEND.to_sys();
        assert_eq!(
            backend.srcAccessOrder,
            sys::CUmemcpySrcAccessOrder::CU_MEMCPY_SRC_ACCESS_ORDER_STREAM
        );
        assert_eq!(backend.flags, 0);
        let any = BatchAttributes {
            src_order: SrcOrder::Any,
            prefer_overlap: true,
        };
        let raw = any.to_sys();
        assert_eq!(
            raw.srcAccessOrder,
            sys::CUmemcpySrcAccessOrder::CU_MEMCPY_SRC_ACCESS_ORDER_ANY
        );
        assert_eq!(
            raw.flags,
            sys::CUmemcpyFlags::CU_MEMCPY_FLAG_PREFER_OVERLAP_WITH_COMPUTE as u32
        );
        assert_eq!(
            raw.srcLocHint.type_,
            sys::CUmemLocationType::CU_MEM_LOCATION_TYPE_INVALID
        );
        assert_eq!(
            any.label(),
            "srcAccessOrder = ANY, flags = PREFER_OVERLAP_WITH_COMPUTE"
        );
    }
}
