//! Device and pinned host memory, and what the driver knows about an address.
//! [Docs](https://docs.nvidia.com/cuda/cuda-driver-api/group__CUDA__MEM.html),
//! [pools](https://docs.nvidia.com/cuda/cuda-driver-api/group__CUDA__MALLOC__ASYNC.html),
//! [pointer attributes](https://docs.nvidia.com/cuda/cuda-driver-api/group__CUDA__UNIFIED.html)

use std::ffi::c_int;
use std::ptr;

use cudarc::driver::{result, sys};

use super::{check, named, CUdeviceptr, CUmemoryPool, CUstream};
use crate::Result;

/// `cuMemAlloc_v2` in the current context. CUDA refuses 0 bytes.
pub(in crate::cuda) fn alloc(bytes: usize) -> Result<CUdeviceptr> {
    // SAFETY: allocates in the current context, which every caller bound.
    named("cuMemAlloc", unsafe { result::malloc_sync(bytes) })
}

/// `cuMemAllocFromPoolAsync` (CUDA 11.2+): usable once `stream` has reached the allocation.
///
/// # Safety
/// `pool` and `stream` are live handles and `stream` belongs to the current context.
pub(in crate::cuda) unsafe fn alloc_from_pool_async(
    bytes: usize,
    pool: CUmemoryPool,
    stream: CUstream,
) -> Result<CUdeviceptr> {
    // SAFETY: the caller vouches for the handles.
    named("cuMemAllocFromPoolAsync", unsafe {
        result::mem_pool::alloc_async(pool, bytes, stream)
    })
}

/// `cuMemFree_v2`. Also frees stream-ordered (pool) memory, without
/// synchronizing: the CUDA docs make the caller ensure all use has finished.
///
/// # Safety
/// `addr` came from an allocation call, is freed once, and no queued work uses it.
pub(in crate::cuda) unsafe fn free(addr: CUdeviceptr) -> Result<()> {
    // SAFETY: the caller's contract.
    named("cuMemFree", unsafe { result::free_sync(addr) })
}

/// `cuMemHostAlloc(CU_MEMHOSTALLOC_PORTABLE)`: page-locked host memory that
/// every context can DMA, owned by the current context (freed with it).
pub(in crate::cuda) fn host_alloc_portable(bytes: usize) -> Result<*mut u8> {
    // SAFETY: allocates in the current context, which every caller bound.
    let host = named("cuMemHostAlloc", unsafe {
        result::malloc_host(bytes, sys::CU_MEMHOSTALLOC_PORTABLE)
    })?;
    Ok(host.cast())
}

/// `cuMemFreeHost`.
///
/// # Safety
/// `host` came from [`host_alloc_portable`], is freed once, and no queued work uses it.
pub(in crate::cuda) unsafe fn free_host(host: *mut u8) -> Result<()> {
    // SAFETY: the caller's contract.
    named("cuMemFreeHost", unsafe { result::free_host(host.cast()) })
}

/// `cuPointerGetAttribute(CU_POINTER_ATTRIBUTE_MEMPOOL_HANDLE)`: the pool an
/// allocation came from, null for memory from no pool (cudarc has no wrapper).
pub(in crate::cuda) fn pointer_pool(addr: CUdeviceptr) -> Result<CUmemoryPool> {
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
pub(in crate::cuda) fn pointer_device_ordinal(addr: CUdeviceptr) -> Result<i32> {
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
