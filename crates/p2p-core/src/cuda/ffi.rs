//! Typed wrappers over the CUDA driver calls this crate makes: the only place
//! in the workspace that calls `cudarc::driver::sys`.
//!
//! Each wrapper makes one driver call and turns its `CUresult` into this
//! crate's [`Error`] (via [`check`]), so the layer above never sees a raw
//! status code. cudarc has no safe wrappers for the peer-access and pool calls
//! (`cuDeviceCanAccessPeer`, `cuDeviceGetP2PAttribute`, `cuCtxEnablePeerAccess`,
//! `cuMemPoolSetAccess`); they are written here, once.
//!
//! Calls that take only plain values (ordinals, sizes, enum values) are safe
//! functions: the driver validates them. Calls that take driver handles
//! (`CUcontext`, `CUstream`, `CUevent`, `CUmemoryPool`) or copy through
//! addresses are `unsafe`, because a stale handle or a short buffer is
//! undefined behaviour inside the driver.
//!
//! With cudarc's `dynamic-loading`, a call into a library that is not there,
//! or into a symbol the library lacks, panics. So nothing here may run before
//! [`library_present`] returned true, and a symbol newer than the oldest
//! driver we accept is checked with [`has_symbol`] before it is called.
//! `CudaDriver::new` does both; every other caller is a `CudaDriver` method.
//!
//! Reference: <https://docs.nvidia.com/cuda/cuda-driver-api/index.html>

use std::ffi::{c_char, c_int, c_void, CStr};
use std::mem::MaybeUninit;
use std::ptr;

use cudarc::driver::sys;
pub(super) use cudarc::driver::sys::{
    CUcontext, CUdevice, CUdevice_P2PAttribute, CUdevice_attribute, CUdeviceptr, CUevent,
    CUmemoryPool, CUresult, CUstream,
};

use crate::{Error, Result};

/// The `Error::Cuda` for a failed call: the code and the enum name cudarc
/// gives it (`CUDA_ERROR_INVALID_VALUE`), which is also the driver's own name.
pub(super) fn cuda_error(call: &'static str, result: CUresult) -> Error {
    Error::Cuda {
        call,
        code: result as u32,
        name: format!("{result:?}"),
    }
}

/// `Ok` for `CUDA_SUCCESS`, else the [`Error::Cuda`] naming `call`.
pub(super) fn check(call: &'static str, result: CUresult) -> Result<()> {
    match result {
        CUresult::CUDA_SUCCESS => Ok(()),
        failed => Err(cuda_error(call, failed)),
    }
}

/// Whether `err` is the driver's `code` (from any call).
pub(super) fn is_code(err: &Error, code: CUresult) -> bool {
    matches!(err, Error::Cuda { code: got, .. } if *got == code as u32)
}

// ---------------------------------------------------------------------------
// The library itself
// ---------------------------------------------------------------------------

/// Whether a CUDA driver library (`libcuda.so.1`, ...) can be loaded.
pub(super) fn library_present() -> bool {
    // SAFETY: `is_culib_present` only tries `dlopen` on cudarc's candidate
    // names and closes what it opened; loading libcuda runs its initialisers,
    // which any use of the driver does anyway.
    unsafe { sys::is_culib_present() }
}

/// Whether the loaded driver library exports `name` (for calls newer than the
/// oldest driver we accept: calling a missing one would panic in cudarc).
pub(super) fn has_symbol(name: &CStr) -> bool {
    // SAFETY: callers checked `library_present()` first, so `culib()` loads
    // the library instead of panicking. Looking a symbol up (`dlsym`) has no
    // other effect, and the pointer type is never used to call anything.
    unsafe {
        sys::culib()
            .get::<*const c_void>(name.to_bytes_with_nul())
            .is_ok()
    }
}

/// `cuInit(0)`. [Docs](https://docs.nvidia.com/cuda/cuda-driver-api/group__CUDA__INITIALIZE.html)
pub(super) fn init() -> Result<()> {
    // SAFETY: plain value argument; cuInit may be called any number of times.
    check("cuInit", unsafe { sys::cuInit(0) })
}

/// `cuDriverGetVersion`: `12080` = 12.8. [Docs](https://docs.nvidia.com/cuda/cuda-driver-api/group__CUDA__VERSION.html)
pub(super) fn driver_version() -> Result<i32> {
    let mut version: c_int = 0;
    // SAFETY: the out-pointer is a live local.
    check("cuDriverGetVersion", unsafe {
        sys::cuDriverGetVersion(&mut version)
    })?;
    Ok(version)
}

// ---------------------------------------------------------------------------
// Devices (https://docs.nvidia.com/cuda/cuda-driver-api/group__CUDA__DEVICE.html)
// ---------------------------------------------------------------------------

/// `cuDeviceGetCount`.
pub(super) fn device_count() -> Result<usize> {
    let mut count: c_int = 0;
    // SAFETY: the out-pointer is a live local.
    check("cuDeviceGetCount", unsafe {
        sys::cuDeviceGetCount(&mut count)
    })?;
    Ok(usize::try_from(count).unwrap_or(0))
}

/// `cuDeviceGet`: the handle of the device with this ordinal.
pub(super) fn device_get(ordinal: usize) -> Result<CUdevice> {
    let ordinal = c_int::try_from(ordinal)
        .map_err(|_| cuda_error("cuDeviceGet", CUresult::CUDA_ERROR_INVALID_DEVICE))?;
    let mut device: CUdevice = 0;
    // SAFETY: the out-pointer is a live local; the driver validates the ordinal.
    check("cuDeviceGet", unsafe {
        sys::cuDeviceGet(&mut device, ordinal)
    })?;
    Ok(device)
}

/// `cuDeviceGetName`.
pub(super) fn device_name(device: CUdevice) -> Result<String> {
    let mut buf = [0 as c_char; 256];
    // SAFETY: the driver writes at most `len` bytes, NUL included, into `buf`.
    check("cuDeviceGetName", unsafe {
        sys::cuDeviceGetName(buf.as_mut_ptr(), buf.len() as c_int, device)
    })?;
    Ok(string_from_c_buf(&buf))
}

/// The 16 bytes of the device's UUID: `cuDeviceGetUuid_v2` (CUDA 11.4+, the
/// one `nvidia-smi` shows, also under MIG) where the driver has it, else
/// `cuDeviceGetUuid`.
pub(super) fn device_uuid(device: CUdevice, use_v2: bool) -> Result<[u8; 16]> {
    let mut uuid = MaybeUninit::<sys::CUuuid>::zeroed();
    if use_v2 {
        // SAFETY: the out-pointer is a live local; the caller checked the symbol.
        check("cuDeviceGetUuid_v2", unsafe {
            sys::cuDeviceGetUuid_v2(uuid.as_mut_ptr(), device)
        })?;
    } else {
        // SAFETY: as above; `cuDeviceGetUuid` exists since CUDA 9.2.
        check("cuDeviceGetUuid", unsafe {
            sys::cuDeviceGetUuid(uuid.as_mut_ptr(), device)
        })?;
    }
    // SAFETY: zero-initialised, and on success filled by the driver.
    let uuid = unsafe { uuid.assume_init() };
    Ok(uuid.bytes.map(|b| b as u8))
}

/// `cuDeviceGetPCIBusId`, as the driver writes it (`0000:3B:00.0`).
pub(super) fn device_pci_bus_id(device: CUdevice) -> Result<String> {
    let mut buf = [0 as c_char; 64];
    // SAFETY: the driver writes at most `len` bytes, NUL included, into `buf`.
    check("cuDeviceGetPCIBusId", unsafe {
        sys::cuDeviceGetPCIBusId(buf.as_mut_ptr(), buf.len() as c_int, device)
    })?;
    Ok(string_from_c_buf(&buf))
}

/// `cuDeviceGetAttribute`.
pub(super) fn device_attribute(device: CUdevice, attribute: CUdevice_attribute) -> Result<i32> {
    let mut value: c_int = 0;
    // SAFETY: the out-pointer is a live local.
    check("cuDeviceGetAttribute", unsafe {
        sys::cuDeviceGetAttribute(&mut value, attribute, device)
    })?;
    Ok(value)
}

/// `cuDeviceTotalMem_v2`.
pub(super) fn device_total_mem(device: CUdevice) -> Result<usize> {
    let mut bytes: usize = 0;
    // SAFETY: the out-pointer is a live local.
    check("cuDeviceTotalMem", unsafe {
        sys::cuDeviceTotalMem_v2(&mut bytes, device)
    })?;
    Ok(bytes)
}

/// `cuDeviceCanAccessPeer`: whether `device` can access memory of `peer`.
pub(super) fn device_can_access_peer(device: CUdevice, peer: CUdevice) -> Result<bool> {
    let mut can: c_int = 0;
    // SAFETY: the out-pointer is a live local.
    check("cuDeviceCanAccessPeer", unsafe {
        sys::cuDeviceCanAccessPeer(&mut can, device, peer)
    })?;
    Ok(can != 0)
}

/// `cuDeviceGetP2PAttribute` of the link from `src` to `dst`.
pub(super) fn device_p2p_attribute(
    attribute: CUdevice_P2PAttribute,
    src: CUdevice,
    dst: CUdevice,
) -> Result<i32> {
    let mut value: c_int = 0;
    // SAFETY: the out-pointer is a live local.
    check("cuDeviceGetP2PAttribute", unsafe {
        sys::cuDeviceGetP2PAttribute(&mut value, attribute, src, dst)
    })?;
    Ok(value)
}

/// `cuDeviceGetDefaultMemPool` (CUDA 11.2+).
pub(super) fn device_default_mem_pool(device: CUdevice) -> Result<CUmemoryPool> {
    let mut pool: CUmemoryPool = ptr::null_mut();
    // SAFETY: the out-pointer is a live local; the caller checked the symbol.
    check("cuDeviceGetDefaultMemPool", unsafe {
        sys::cuDeviceGetDefaultMemPool(&mut pool, device)
    })?;
    Ok(pool)
}

// ---------------------------------------------------------------------------
// Contexts (https://docs.nvidia.com/cuda/cuda-driver-api/group__CUDA__PRIMARY__CTX.html,
// https://docs.nvidia.com/cuda/cuda-driver-api/group__CUDA__CTX.html,
// https://docs.nvidia.com/cuda/cuda-driver-api/group__CUDA__PEER__ACCESS.html)
// ---------------------------------------------------------------------------

/// `cuDevicePrimaryCtxRetain`: takes one reference to the device's primary
/// context (the one PyTorch and cudarc use), creating it on first use.
pub(super) fn primary_ctx_retain(device: CUdevice) -> Result<CUcontext> {
    let mut context: CUcontext = ptr::null_mut();
    // SAFETY: the out-pointer is a live local.
    check("cuDevicePrimaryCtxRetain", unsafe {
        sys::cuDevicePrimaryCtxRetain(&mut context, device)
    })?;
    Ok(context)
}

/// `cuDevicePrimaryCtxRelease_v2`: gives back one reference.
///
/// # Safety
/// The caller holds a reference from [`primary_ctx_retain`] and uses no handle
/// made in that context through it afterwards (the context is destroyed when
/// its last reference goes).
pub(super) unsafe fn primary_ctx_release(device: CUdevice) -> Result<()> {
    // SAFETY: the caller gives back a reference it holds.
    check("cuDevicePrimaryCtxRelease", unsafe {
        sys::cuDevicePrimaryCtxRelease_v2(device)
    })
}

/// `cuCtxGetCurrent`: the context bound to the calling thread (null if none).
pub(super) fn ctx_get_current() -> Result<CUcontext> {
    let mut context: CUcontext = std::ptr::null_mut();
    // SAFETY: writes one handle into `context`.
    check("cuCtxGetCurrent", unsafe {
        sys::cuCtxGetCurrent(&mut context)
    })?;
    Ok(context)
}

/// `cuCtxSetCurrent`: binds `context` to the calling thread.
///
/// # Safety
/// `context` is a live context (a retained primary context).
pub(super) unsafe fn ctx_set_current(context: CUcontext) -> Result<()> {
    // SAFETY: the caller promises the context is live.
    check("cuCtxSetCurrent", unsafe { sys::cuCtxSetCurrent(context) })
}

/// `cuCtxEnablePeerAccess(peer, 0)` from the thread's current context.
/// `CUDA_ERROR_PEER_ACCESS_ALREADY_ENABLED` is success: the goal is reached.
///
/// # Safety
/// `peer` is a live context and a context is current on this thread.
pub(super) unsafe fn ctx_enable_peer_access(peer: CUcontext) -> Result<()> {
    // SAFETY: the caller promises both contexts are live.
    match unsafe { sys::cuCtxEnablePeerAccess(peer, 0) } {
        CUresult::CUDA_SUCCESS | CUresult::CUDA_ERROR_PEER_ACCESS_ALREADY_ENABLED => Ok(()),
        failed => Err(cuda_error("cuCtxEnablePeerAccess", failed)),
    }
}

/// `cuCtxDisablePeerAccess(peer)` from the thread's current context.
/// `CUDA_ERROR_PEER_ACCESS_NOT_ENABLED` is success: the goal is reached.
///
/// # Safety
/// `peer` is a live context and a context is current on this thread.
pub(super) unsafe fn ctx_disable_peer_access(peer: CUcontext) -> Result<()> {
    // SAFETY: the caller promises both contexts are live.
    match unsafe { sys::cuCtxDisablePeerAccess(peer) } {
        CUresult::CUDA_SUCCESS | CUresult::CUDA_ERROR_PEER_ACCESS_NOT_ENABLED => Ok(()),
        failed => Err(cuda_error("cuCtxDisablePeerAccess", failed)),
    }
}

// ---------------------------------------------------------------------------
// Memory (https://docs.nvidia.com/cuda/cuda-driver-api/group__CUDA__MEM.html,
// https://docs.nvidia.com/cuda/cuda-driver-api/group__CUDA__MALLOC__ASYNC.html,
// https://docs.nvidia.com/cuda/cuda-driver-api/group__CUDA__UNIFIED.html)
// ---------------------------------------------------------------------------

/// `cuMemAlloc_v2` in the current context. CUDA refuses 0 bytes.
pub(super) fn mem_alloc(bytes: usize) -> Result<CUdeviceptr> {
    let mut addr: CUdeviceptr = 0;
    // SAFETY: the out-pointer is a live local.
    check("cuMemAlloc", unsafe {
        sys::cuMemAlloc_v2(&mut addr, bytes)
    })?;
    Ok(addr)
}

/// `cuMemAllocFromPoolAsync` (CUDA 11.2+): the memory is usable once `stream`
/// has reached the allocation.
///
/// # Safety
/// `pool` and `stream` are live handles and `stream` belongs to the current context.
pub(super) unsafe fn mem_alloc_from_pool_async(
    bytes: usize,
    pool: CUmemoryPool,
    stream: CUstream,
) -> Result<CUdeviceptr> {
    let mut addr: CUdeviceptr = 0;
    // SAFETY: the out-pointer is a live local; the caller vouches for the handles.
    check("cuMemAllocFromPoolAsync", unsafe {
        sys::cuMemAllocFromPoolAsync(&mut addr, bytes, pool, stream)
    })?;
    Ok(addr)
}

/// `cuMemFree_v2`. Also frees stream-ordered (pool) memory, without
/// synchronizing: the CUDA docs make the caller ensure all use has finished.
///
/// # Safety
/// `addr` came from an allocation call, is freed once, and no queued work uses it.
pub(super) unsafe fn mem_free(addr: CUdeviceptr) -> Result<()> {
    // SAFETY: the caller's contract.
    check("cuMemFree", unsafe { sys::cuMemFree_v2(addr) })
}

/// `cuMemHostAlloc(CU_MEMHOSTALLOC_PORTABLE)`: page-locked host memory that
/// every context can DMA, not only the current one.
pub(super) fn mem_host_alloc_portable(bytes: usize) -> Result<*mut u8> {
    let mut host: *mut c_void = ptr::null_mut();
    // SAFETY: the out-pointer is a live local.
    check("cuMemHostAlloc", unsafe {
        sys::cuMemHostAlloc(&mut host, bytes, sys::CU_MEMHOSTALLOC_PORTABLE)
    })?;
    Ok(host.cast())
}

/// `cuMemFreeHost`.
///
/// # Safety
/// `host` came from [`mem_host_alloc_portable`], is freed once, and no queued work uses it.
pub(super) unsafe fn mem_free_host(host: *mut u8) -> Result<()> {
    // SAFETY: the caller's contract.
    check("cuMemFreeHost", unsafe { sys::cuMemFreeHost(host.cast()) })
}

/// `cuPointerGetAttribute(CU_POINTER_ATTRIBUTE_MEMPOOL_HANDLE)`: the pool an
/// allocation came from, null for memory from no pool.
pub(super) fn pointer_mempool(addr: CUdeviceptr) -> Result<CUmemoryPool> {
    let mut pool: CUmemoryPool = ptr::null_mut();
    // SAFETY: the attribute is a pointer-sized handle and `pool` has room for
    // it; the driver looks `addr` up in its tables and never dereferences it.
    check("cuPointerGetAttribute", unsafe {
        sys::cuPointerGetAttribute(
            (&mut pool as *mut CUmemoryPool).cast(),
            sys::CUpointer_attribute::CU_POINTER_ATTRIBUTE_MEMPOOL_HANDLE,
            addr,
        )
    })?;
    Ok(pool)
}

/// `cuPointerGetAttribute(CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL)`: succeeds for
/// any address the driver knows as device memory.
pub(super) fn pointer_device_ordinal(addr: CUdeviceptr) -> Result<i32> {
    let mut ordinal: c_int = 0;
    // SAFETY: the attribute is an int and `ordinal` has room for it; the
    // driver never dereferences `addr`.
    check("cuPointerGetAttribute", unsafe {
        sys::cuPointerGetAttribute(
            (&mut ordinal as *mut c_int).cast(),
            sys::CUpointer_attribute::CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL,
            addr,
        )
    })?;
    Ok(ordinal)
}

/// `cuMemPoolSetAccess`: lets `accessor` read and write memory of `pool`.
///
/// # Safety
/// `pool` is a live pool handle.
pub(super) unsafe fn mem_pool_set_access(pool: CUmemoryPool, accessor: CUdevice) -> Result<()> {
    let desc = sys::CUmemAccessDesc {
        location: sys::CUmemLocation {
            type_: sys::CUmemLocationType::CU_MEM_LOCATION_TYPE_DEVICE,
            id: accessor,
        },
        flags: sys::CUmemAccess_flags::CU_MEM_ACCESS_FLAGS_PROT_READWRITE,
    };
    // SAFETY: `desc` is one valid descriptor and lives across the call; the
    // caller vouches for `pool`.
    check("cuMemPoolSetAccess", unsafe {
        sys::cuMemPoolSetAccess(pool, &desc, 1)
    })
}

// ---------------------------------------------------------------------------
// Copies (https://docs.nvidia.com/cuda/cuda-driver-api/group__CUDA__MEM.html)
// ---------------------------------------------------------------------------

/// `cuMemcpyPeerAsync`.
///
/// # Safety
/// Both contexts and `stream` are live; `src..src+bytes` and
/// `dst..dst+bytes` are live allocations in their contexts until the copy is done.
pub(super) unsafe fn memcpy_peer_async(
    dst: CUdeviceptr,
    dst_context: CUcontext,
    src: CUdeviceptr,
    src_context: CUcontext,
    bytes: usize,
    stream: CUstream,
) -> Result<()> {
    // SAFETY: the caller's contract.
    check("cuMemcpyPeerAsync", unsafe {
        sys::cuMemcpyPeerAsync(dst, dst_context, src, src_context, bytes, stream)
    })
}

/// `cuMemcpyDtoDAsync_v2`.
///
/// # Safety
/// `stream` is live; both ranges are live device memory until the copy is done.
pub(super) unsafe fn memcpy_dtod_async(
    dst: CUdeviceptr,
    src: CUdeviceptr,
    bytes: usize,
    stream: CUstream,
) -> Result<()> {
    // SAFETY: the caller's contract.
    check("cuMemcpyDtoDAsync", unsafe {
        sys::cuMemcpyDtoDAsync_v2(dst, src, bytes, stream)
    })
}

/// `cuMemcpyBatchAsync` (CUDA 12.8, the signature with `failIdx` that the
/// unversioned symbol keeps in later drivers): every copy in stream order, in
/// one call. The copies of a batch may run in any order among themselves.
///
/// # Safety
/// `stream` is a live stream of the current context and not the legacy null
/// stream (which the call rejects); the three slices have one entry per copy;
/// every range is live device memory until the batch is done; no two copies
/// overlap in a way that makes their order matter.
pub(super) unsafe fn memcpy_batch_async(
    dsts: &mut [CUdeviceptr],
    srcs: &mut [CUdeviceptr],
    sizes: &mut [usize],
    stream: CUstream,
) -> Result<()> {
    debug_assert!(dsts.len() == srcs.len() && srcs.len() == sizes.len());
    // One attribute entry for all copies: read the sources in stream order.
    // The location hints only matter for managed memory; zero = "no hint".
    let mut attributes = sys::CUmemcpyAttributes {
        srcAccessOrder: sys::CUmemcpySrcAccessOrder::CU_MEMCPY_SRC_ACCESS_ORDER_STREAM,
        srcLocHint: sys::CUmemLocation {
            type_: sys::CUmemLocationType::CU_MEM_LOCATION_TYPE_INVALID,
            id: 0,
        },
        dstLocHint: sys::CUmemLocation {
            type_: sys::CUmemLocationType::CU_MEM_LOCATION_TYPE_INVALID,
            id: 0,
        },
        flags: 0,
    };
    let mut first_copy_of_attributes: usize = 0;
    let mut fail_index: usize = usize::MAX;
    // SAFETY: the arrays hold `dsts.len()` entries each and live across the
    // call (the driver reads them before returning; it takes `*mut` but does
    // not write them); one attribute entry applies from copy 0 on; the caller
    // vouches for the stream and the ranges.
    let result = unsafe {
        sys::cuMemcpyBatchAsync(
            dsts.as_mut_ptr(),
            srcs.as_mut_ptr(),
            sizes.as_mut_ptr(),
            dsts.len(),
            &mut attributes,
            &mut first_copy_of_attributes,
            1,
            &mut fail_index,
            stream,
        )
    };
    if result != CUresult::CUDA_SUCCESS && fail_index != usize::MAX {
        tracing::debug!(
            "cuMemcpyBatchAsync failed at copy {fail_index} of {}",
            dsts.len()
        );
    }
    check("cuMemcpyBatchAsync", result)
}

/// `cuMemcpyDtoHAsync_v2`.
///
/// # Safety
/// `stream` is live; `dst` is valid for `bytes` writes and `src` for `bytes`
/// reads until the copy is done.
pub(super) unsafe fn memcpy_dtoh_async(
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

/// `cuMemcpyHtoDAsync_v2`.
///
/// # Safety
/// `stream` is live; `src` is valid for `bytes` reads and `dst` for `bytes`
/// writes until the copy is done.
pub(super) unsafe fn memcpy_htod_async(
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
pub(super) unsafe fn memset_d8_async(
    dst: CUdeviceptr,
    value: u8,
    bytes: usize,
    stream: CUstream,
) -> Result<()> {
    // SAFETY: the caller's contract.
    check("cuMemsetD8Async", unsafe {
        sys::cuMemsetD8Async(dst, value, bytes, stream)
    })
}

// ---------------------------------------------------------------------------
// Streams and events (https://docs.nvidia.com/cuda/cuda-driver-api/group__CUDA__STREAM.html,
// https://docs.nvidia.com/cuda/cuda-driver-api/group__CUDA__EVENT.html)
// ---------------------------------------------------------------------------

/// `cuStreamCreate(CU_STREAM_NON_BLOCKING)` in the current context: a stream
/// that does not wait for the legacy default stream (nor it for us).
pub(super) fn stream_create_non_blocking() -> Result<CUstream> {
    let mut stream: CUstream = ptr::null_mut();
    // SAFETY: the out-pointer is a live local.
    check("cuStreamCreate", unsafe {
        sys::cuStreamCreate(
            &mut stream,
            sys::CUstream_flags::CU_STREAM_NON_BLOCKING as u32,
        )
    })?;
    Ok(stream)
}

/// `cuStreamDestroy_v2`. Queued work still runs; the call does not wait.
///
/// # Safety
/// `stream` is a live stream (not the null stream), destroyed once, used no more.
pub(super) unsafe fn stream_destroy(stream: CUstream) -> Result<()> {
    // SAFETY: the caller's contract.
    check("cuStreamDestroy", unsafe {
        sys::cuStreamDestroy_v2(stream)
    })
}

/// `cuStreamSynchronize`.
///
/// # Safety
/// `stream` is live (or null: the current context's legacy default stream).
pub(super) unsafe fn stream_synchronize(stream: CUstream) -> Result<()> {
    // SAFETY: the caller's contract.
    check("cuStreamSynchronize", unsafe {
        sys::cuStreamSynchronize(stream)
    })
}

/// `cuStreamWaitEvent(stream, event, 0)`.
///
/// # Safety
/// `stream` (or null) and `event` are live.
pub(super) unsafe fn stream_wait_event(stream: CUstream, event: CUevent) -> Result<()> {
    // SAFETY: the caller's contract.
    check("cuStreamWaitEvent", unsafe {
        sys::cuStreamWaitEvent(stream, event, 0)
    })
}

/// `cuEventCreate` in the current context: `CU_EVENT_DISABLE_TIMING`
/// unless `timing` (recording and waiting are cheaper without timing).
pub(super) fn event_create(timing: bool) -> Result<CUevent> {
    let mut event: CUevent = ptr::null_mut();
    let flags = if timing {
        sys::CUevent_flags::CU_EVENT_DEFAULT
    } else {
        sys::CUevent_flags::CU_EVENT_DISABLE_TIMING
    };
    // SAFETY: the out-pointer is a live local.
    check("cuEventCreate", unsafe {
        sys::cuEventCreate(&mut event, flags as u32)
    })?;
    Ok(event)
}

/// `cuEventDestroy_v2`. May be called before the event completes.
///
/// # Safety
/// `event` is live, destroyed once, used no more.
pub(super) unsafe fn event_destroy(event: CUevent) -> Result<()> {
    // SAFETY: the caller's contract.
    check("cuEventDestroy", unsafe { sys::cuEventDestroy_v2(event) })
}

/// `cuEventRecord`.
///
/// # Safety
/// `event` and `stream` (or null) are live and of the current context.
pub(super) unsafe fn event_record(event: CUevent, stream: CUstream) -> Result<()> {
    // SAFETY: the caller's contract.
    check("cuEventRecord", unsafe {
        sys::cuEventRecord(event, stream)
    })
}

/// `cuEventQuery`: `true` once the work before the event has finished,
/// `false` while it runs (`CUDA_ERROR_NOT_READY`).
///
/// # Safety
/// `event` is live.
pub(super) unsafe fn event_query(event: CUevent) -> Result<bool> {
    // SAFETY: the caller's contract.
    match unsafe { sys::cuEventQuery(event) } {
        CUresult::CUDA_SUCCESS => Ok(true),
        CUresult::CUDA_ERROR_NOT_READY => Ok(false),
        failed => Err(cuda_error("cuEventQuery", failed)),
    }
}

/// `cuStreamQuery`: `true` once everything queued on the stream has finished.
///
/// # Safety
/// `stream` (or null) is live and of the current context.
pub(super) unsafe fn stream_query(stream: CUstream) -> Result<bool> {
    // SAFETY: the caller's contract.
    match unsafe { sys::cuStreamQuery(stream) } {
        CUresult::CUDA_SUCCESS => Ok(true),
        CUresult::CUDA_ERROR_NOT_READY => Ok(false),
        failed => Err(cuda_error("cuStreamQuery", failed)),
    }
}

/// `cuEventElapsedTime`, in milliseconds: the original symbol, which every
/// driver exports (cudarc itself moves to `_v2` only with CUDA 13 headers).
///
/// # Safety
/// Both events are live.
pub(super) unsafe fn event_elapsed_ms(start: CUevent, end: CUevent) -> Result<f32> {
    let mut ms: f32 = 0.0;
    // SAFETY: the out-pointer is a live local; the caller vouches for the events.
    check("cuEventElapsedTime", unsafe {
        sys::cuEventElapsedTime(&mut ms, start, end)
    })?;
    Ok(ms)
}

/// The text before the first NUL of a buffer the driver filled.
fn string_from_c_buf(buf: &[c_char]) -> String {
    let bytes: Vec<u8> = buf
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}
