//! Contexts: which one is bound to the calling thread, and the state of
//! devices' primary contexts. Retaining and releasing primary contexts is
//! cudarc's `CudaContext` (see `cuda/mod.rs`).
//! [Docs](https://docs.nvidia.com/cuda/cuda-driver-api/group__CUDA__CTX.html),
//! [primary contexts](https://docs.nvidia.com/cuda/cuda-driver-api/group__CUDA__PRIMARY__CTX.html)

use std::ffi::{c_int, c_uint};
use std::ptr;

use cudarc::driver::{result, sys};

use super::{check, named, CUcontext, CUdevice};
use crate::Result;

/// `cuCtxGetCurrent`: the context bound to the calling thread (null if none).
pub(in crate::cuda) fn current() -> Result<CUcontext> {
    let current = named("cuCtxGetCurrent", result::ctx::get_current())?;
    Ok(current.unwrap_or(ptr::null_mut()))
}

/// `cuCtxSetCurrent`: binds `context` to the calling thread (null unbinds).
///
/// # Safety
/// `context` is null or a live context.
pub(in crate::cuda) unsafe fn set_current(context: CUcontext) -> Result<()> {
    // SAFETY: the caller promises the context is live (or null).
    named("cuCtxSetCurrent", unsafe {
        result::ctx::set_current(context)
    })
}

/// `cuCtxGetDevice`: the device of the thread's current context (cudarc has no wrapper).
///
/// # Safety
/// A live context is current on this thread.
pub(in crate::cuda) unsafe fn current_device() -> Result<CUdevice> {
    let mut device: CUdevice = 0;
    // SAFETY: the out-pointer is a live local; the caller promises a current context.
    check("cuCtxGetDevice", unsafe {
        sys::cuCtxGetDevice(&mut device)
    })?;
    Ok(device)
}

/// `cuDevicePrimaryCtxGetState`: whether the device's primary context exists
/// now (someone retains it), so retaining it creates nothing (cudarc has no wrapper).
pub(in crate::cuda) fn primary_active(device: CUdevice) -> Result<bool> {
    let (mut flags, mut active): (c_uint, c_int) = (0, 0);
    // SAFETY: both out-pointers are live locals; the driver validates `device`.
    check("cuDevicePrimaryCtxGetState", unsafe {
        sys::cuDevicePrimaryCtxGetState(device, &mut flags, &mut active)
    })?;
    Ok(active != 0)
}
