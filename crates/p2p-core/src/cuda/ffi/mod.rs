//! Typed wrappers over the CUDA driver calls the backend makes, one submodule
//! per API group: the only place in the workspace that calls
//! `cudarc::driver::sys` or `cudarc::driver::result`.
//!
//! Where cudarc's `result` layer wraps a call (`result::stream::create`,
//! `result::event::record`, ...), the wrapper here calls it and only names
//! the call in our [`Error`]. Own wrappers over `sys` exist only for what
//! `result` lacks: the peer-access and pool-access calls
//! (`cuDeviceCanAccessPeer`, `cuDeviceGetP2PAttribute`,
//! `cuCtxEnablePeerAccess`, `cuCtxDisablePeerAccess`, `cuMemPoolSetAccess`),
//! pointer attributes, the PCI bus id, the MIG-aware UUID, the driver
//! version, primary-context state, `cuStreamQuery`, the batched copy, and
//! copies to and from raw host addresses (cudarc's take Rust slices, which
//! memory owned by someone else is not).
//!
//! Calls that take only plain values are safe functions: the driver
//! validates them. Calls that take driver handles or copy through addresses
//! are `unsafe`, because a stale handle or a short buffer is undefined
//! behaviour inside the driver.
//!
//! With run-time loading (cudarc's `dynamic-loading`, which its
//! `fallback-dynamic-loading` selects unless the user links), calling a
//! symbol the library lacks panics. So nothing here may run before
//! [`library_present`] returned true, and a symbol newer than the oldest
//! driver we accept is checked with [`has_symbol`] first (`discovery` does both).
//!
//! Reference: <https://docs.nvidia.com/cuda/cuda-driver-api/index.html>

pub(super) mod context;
pub(super) mod copy;
pub(super) mod device;
pub(super) mod event;
mod library;
pub(super) mod memory;
pub(super) mod peer;
pub(super) mod stream;

pub(super) use cudarc::driver::sys::{
    CUcontext, CUdevice, CUdevice_P2PAttribute, CUdevice_attribute, CUdeviceptr, CUevent,
    CUmemoryPool, CUresult, CUstream,
};
use cudarc::driver::DriverError;
pub(super) use library::{has_symbol, library_present};

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

/// Names `call` in the error of one of cudarc's `result` wrappers.
pub(super) fn named<T>(call: &'static str, result: Result<T, DriverError>) -> Result<T> {
    result.map_err(|DriverError(code)| cuda_error(call, code))
}

/// Whether `err` is the driver's `code` (from any call).
pub(super) fn is_code(err: &Error, code: CUresult) -> bool {
    matches!(err, Error::Cuda { code: got, .. } if *got == code as u32)
}
