//! Events. [Docs](https://docs.nvidia.com/cuda/cuda-driver-api/group__CUDA__EVENT.html)

use cudarc::driver::{result, sys, DriverError};

use super::{cuda_error, named, CUevent, CUresult, CUstream};
use crate::Result;

/// The symbol cudarc's `result::event::elapsed` calls with these bindings
/// (13.0 headers name only the `_v2` form; it exists from driver 12.8 on).
#[cfg(not(cuda_at_least_13000))]
pub(in crate::cuda) const ELAPSED_SYMBOL: &std::ffi::CStr = c"cuEventElapsedTime";
#[cfg(cuda_at_least_13000)]
pub(in crate::cuda) const ELAPSED_SYMBOL: &std::ffi::CStr = c"cuEventElapsedTime_v2";

/// `cuEventCreate` in the current context: `CU_EVENT_DISABLE_TIMING`
/// unless `timing` (recording and waiting are cheaper without timing).
pub(in crate::cuda) fn create(timing: bool) -> Result<CUevent> {
    let flags = if timing {
        sys::CUevent_flags::CU_EVENT_DEFAULT
    } else {
        sys::CUevent_flags::CU_EVENT_DISABLE_TIMING
    };
    named("cuEventCreate", result::event::create(flags))
}

/// `cuEventDestroy_v2`. May be called before the event completes.
///
/// # Safety
/// `event` is live, destroyed once, used no more.
pub(in crate::cuda) unsafe fn destroy(event: CUevent) -> Result<()> {
    // SAFETY: the caller's contract.
    named("cuEventDestroy", unsafe { result::event::destroy(event) })
}

/// `cuEventRecord`.
///
/// # Safety
/// `event` and `stream` (or null) are live and of the current context.
pub(in crate::cuda) unsafe fn record(event: CUevent, stream: CUstream) -> Result<()> {
    // SAFETY: the caller's contract.
    named("cuEventRecord", unsafe {
        result::event::record(event, stream)
    })
}

/// `cuEventQuery`: `true` once the work before the event has finished,
/// `false` while it runs (`CUDA_ERROR_NOT_READY`).
///
/// # Safety
/// `event` is live.
pub(in crate::cuda) unsafe fn query(event: CUevent) -> Result<bool> {
    // SAFETY: the caller's contract.
    match unsafe { result::event::query(event) } {
        Ok(()) => Ok(true),
        Err(DriverError(CUresult::CUDA_ERROR_NOT_READY)) => Ok(false),
        Err(DriverError(failed)) => Err(cuda_error("cuEventQuery", failed)),
    }
}

/// `cuEventElapsedTime` (or `_v2`, see [`ELAPSED_SYMBOL`]), in milliseconds.
///
/// # Safety
/// Both events are live.
pub(in crate::cuda) unsafe fn elapsed_ms(start: CUevent, end: CUevent) -> Result<f32> {
    // SAFETY: the caller vouches for the events.
    named("cuEventElapsedTime", unsafe {
        result::event::elapsed(start, end)
    })
}
