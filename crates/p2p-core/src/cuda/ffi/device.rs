//! Initialisation and device queries: nothing here needs a context.
//! [Docs](https://docs.nvidia.com/cuda/cuda-driver-api/group__CUDA__DEVICE.html)

use std::ffi::{c_char, c_int};
use std::mem::MaybeUninit;

use cudarc::driver::{result, sys};

use super::{check, cuda_error, named, CUdevice, CUdevice_attribute, CUmemoryPool, CUresult};
use crate::Result;

/// `cuInit(0)`; may be called any number of times.
pub(in crate::cuda) fn init() -> Result<()> {
    named("cuInit", result::init())
}

/// `cuDriverGetVersion`: `12080` = 12.8 (cudarc has no wrapper).
pub(in crate::cuda) fn driver_version() -> Result<i32> {
    let mut version: c_int = 0;
    // SAFETY: the out-pointer is a live local.
    check("cuDriverGetVersion", unsafe {
        sys::cuDriverGetVersion(&mut version)
    })?;
    Ok(version)
}

/// `cuDeviceGetCount`.
pub(in crate::cuda) fn count() -> Result<usize> {
    let count = named("cuDeviceGetCount", result::device::get_count())?;
    Ok(usize::try_from(count).unwrap_or(0))
}

/// `cuDeviceGet`: the handle of the device with this ordinal.
pub(in crate::cuda) fn get(ordinal: usize) -> Result<CUdevice> {
    let ordinal = c_int::try_from(ordinal)
        .map_err(|_| cuda_error("cuDeviceGet", CUresult::CUDA_ERROR_INVALID_DEVICE))?;
    named("cuDeviceGet", result::device::get(ordinal))
}

/// `cuDeviceGetName`.
pub(in crate::cuda) fn name(device: CUdevice) -> Result<String> {
    named("cuDeviceGetName", result::device::get_name(device))
}

/// The 16 bytes of the device's UUID: `cuDeviceGetUuid_v2` (CUDA 11.4+, the
/// one `nvidia-smi` shows, also under MIG) where the driver has it, else
/// `cuDeviceGetUuid` (bindings before 13.0 only). cudarc's wrapper calls the
/// first form only with 13.x bindings, hence our own.
pub(in crate::cuda) fn uuid(device: CUdevice, use_v2: bool) -> Result<[u8; 16]> {
    let mut uuid = MaybeUninit::<sys::CUuuid>::zeroed();
    #[cfg(not(cuda_at_least_13000))]
    if !use_v2 {
        // SAFETY: the out-pointer is a live local; the symbol exists since CUDA 9.2.
        check("cuDeviceGetUuid", unsafe {
            sys::cuDeviceGetUuid(uuid.as_mut_ptr(), device)
        })?;
        // SAFETY: zero-initialised, and filled by the driver on success.
        return Ok(unsafe { uuid.assume_init() }.bytes.map(|b| b as u8));
    }
    let _ = use_v2;
    // SAFETY: the out-pointer is a live local; the caller checked the symbol.
    check("cuDeviceGetUuid_v2", unsafe {
        sys::cuDeviceGetUuid_v2(uuid.as_mut_ptr(), device)
    })?;
    // SAFETY: zero-initialised, and filled by the driver on success.
    Ok(unsafe { uuid.assume_init() }.bytes.map(|b| b as u8))
}

/// `cuDeviceGetPCIBusId`, as the driver writes it (`0000:3B:00.0`; cudarc has no wrapper).
pub(in crate::cuda) fn pci_bus_id(device: CUdevice) -> Result<String> {
    let mut buf = [0 as c_char; 64];
    // SAFETY: the driver writes at most `len` bytes, NUL included, into `buf`.
    check("cuDeviceGetPCIBusId", unsafe {
        sys::cuDeviceGetPCIBusId(buf.as_mut_ptr(), buf.len() as c_int, device)
    })?;
    let bytes: Vec<u8> = buf
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// `cuDeviceGetAttribute`.
pub(in crate::cuda) fn attribute(device: CUdevice, attribute: CUdevice_attribute) -> Result<i32> {
    // SAFETY: `device` came from `get`.
    named("cuDeviceGetAttribute", unsafe {
        result::device::get_attribute(device, attribute)
    })
}

/// `cuDeviceTotalMem_v2`.
pub(in crate::cuda) fn total_mem(device: CUdevice) -> Result<usize> {
    // SAFETY: `device` came from `get`.
    named("cuDeviceTotalMem", unsafe {
        result::device::total_mem(device)
    })
}

/// `cuDeviceGetDefaultMemPool` (CUDA 11.2+; the caller checked the symbol).
pub(in crate::cuda) fn default_mem_pool(device: CUdevice) -> Result<CUmemoryPool> {
    // SAFETY: `device` came from `get`.
    named("cuDeviceGetDefaultMemPool", unsafe {
        result::device::get_default_mem_pool(device)
    })
}
