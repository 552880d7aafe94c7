//! Streams. [Docs](https://docs.nvidia.com/cuda/cuda-driver-api/group__CUDA__STREAM.html)

use cudarc::driver::{result, sys};

use super::{cuda_error, named, CUevent, CUresult, CUstream};
use crate::Result;

/// `cuStreamCreate(CU_STREAM_NON_BLOCKING)` in the current context: a stream
/// that does not wait for the legacy default stream (nor it for us).
pub(in crate::cuda) fn create_non_blocking() -> Result<CUstream> {
    named(
        "cuStreamCreate",
        result::stream::create(result::stream::StreamKind::NonBlocking),
    )
}

/// `cuStreamDestroy_v2`. Queued work still runs; the call does not wait.
///
/// # Safety
/// `stream` is a live stream (not the null stream), destroyed once, used no more.
pub(in crate::cuda) unsafe fn destroy(stream: CUstream) -> Result<()> {
    // SAFETY: the caller's contract.
    named("cuStreamDestroy", unsafe {
        result::stream::destroy(stream)
    })
}

/// `cuStreamSynchronize`.
///
/// # Safety
/// `stream` is live (or null: the current context's legacy default stream).
pub(in crate::cuda) unsafe fn synchronize(stream: CUstream) -> Result<()> {
    // SAFETY: the caller's contract.
    named("cuStreamSynchronize", unsafe {
        result::stream::synchronize(stream)
    })
}

/// `cuStreamWaitEvent(stream, event, 0)`.
///
/// # Safety
/// `stream` (or null) and `event` are live.
pub(in crate::cuda) unsafe fn wait_event(stream: CUstream, event: CUevent) -> Result<()> {
    // SAFETY: the caller's contract.
    named("cuStreamWaitEvent", unsafe {
        result::stream::wait_event(
            stream,
            event,
            sys::CUevent_wait_flags::CU_EVENT_WAIT_DEFAULT,
        )
    })
}

/// `cuStreamQuery`: `true` once everything queued on the stream has finished
/// (cudarc has no wrapper).
///
/// # Safety
/// `stream` (or null) is live and of the current context.
pub(in crate::cuda) unsafe fn query(stream: CUstream) -> Result<bool> {
    // SAFETY: the caller's contract.
    match unsafe { sys::cuStreamQuery(stream) } {
        CUresult::CUDA_SUCCESS => Ok(true),
        CUresult::CUDA_ERROR_NOT_READY => Ok(false),
        failed => Err(cuda_error("cuStreamQuery", failed)),
    }
}
