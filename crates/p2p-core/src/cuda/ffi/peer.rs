//! Peer access between devices and access to other devices' pools: the
//! calls cudarc has no wrappers for, written once here.
//! [Docs](https://docs.nvidia.com/cuda/cuda-driver-api/group__CUDA__PEER__ACCESS.html)

use std::ffi::c_int;

use cudarc::driver::sys;

use super::{
    check, cuda_error, CUcontext, CUdevice, CUdevice_P2PAttribute, CUmemoryPool, CUresult,
};
use crate::Result;

/// `cuDeviceCanAccessPeer`: whether `device` can access memory of `peer`.
pub(in crate::cuda) fn can_access_peer(device: CUdevice, peer: CUdevice) -> Result<bool> {
    let mut can: c_int = 0;
    // SAFETY: the out-pointer is a live local.
    check("cuDeviceCanAccessPeer", unsafe {
        sys::cuDeviceCanAccessPeer(&mut can, device, peer)
    })?;
    Ok(can != 0)
}

/// `cuDeviceGetP2PAttribute` of the link from `src` to `dst`.
pub(in crate::cuda) fn p2p_attribute(
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

/// `cuCtxEnablePeerAccess(peer, 0)` from the thread's current context.
/// `CUDA_ERROR_PEER_ACCESS_ALREADY_ENABLED` is success: the goal is reached.
///
/// # Safety
/// `peer` is a live context and a context is current on this thread.
pub(in crate::cuda) unsafe fn enable_access(peer: CUcontext) -> Result<()> {
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
pub(in crate::cuda) unsafe fn disable_access(peer: CUcontext) -> Result<()> {
    // SAFETY: the caller promises both contexts are live.
    match unsafe { sys::cuCtxDisablePeerAccess(peer) } {
        CUresult::CUDA_SUCCESS | CUresult::CUDA_ERROR_PEER_ACCESS_NOT_ENABLED => Ok(()),
        failed => Err(cuda_error("cuCtxDisablePeerAccess", failed)),
    }
}

/// The location "device `ordinal`", in the shape the bindings have: CUDA 13.2
/// made `id` a member of an anonymous union.
pub(super) fn device_location(ordinal: c_int) -> sys::CUmemLocation {
    sys::CUmemLocation {
        type_: sys::CUmemLocationType::CU_MEM_LOCATION_TYPE_DEVICE,
        #[cfg(not(cuda_at_least_13020))]
        id: ordinal,
        #[cfg(cuda_at_least_13020)]
        __bindgen_anon_1: sys::CUmemLocation_st__bindgen_ty_1 { id: ordinal },
    }
}

/// `cuMemPoolSetAccess`: lets `accessor` read and write memory of `pool`.
///
/// # Safety
/// `pool` is a live pool handle.
pub(in crate::cuda) unsafe fn pool_set_access(
    pool: CUmemoryPool,
    accessor: CUdevice,
) -> Result<()> {
    let desc = sys::CUmemAccessDesc {
        location: device_location(accessor),
        flags: sys::CUmemAccess_flags::CU_MEM_ACCESS_FLAGS_PROT_READWRITE,
    };
    // SAFETY: `desc` is one valid descriptor and lives across the call; the
    // caller vouches for `pool`.
    check("cuMemPoolSetAccess", unsafe {
        sys::cuMemPoolSetAccess(pool, &desc, 1)
    })
}
