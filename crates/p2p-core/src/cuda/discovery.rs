//! Finding the driver and describing the devices: everything `CudaDriver::new`
//! does before the first context exists.
//!
//! With cudarc's run-time loading, calling into a missing library or symbol
//! panics, so this checks the library and every symbol the backend calls
//! before calling any of them, and turns each way of "no usable driver" into
//! [`Error::NoDriver`] with a detail that says what to do.

use std::ffi::CStr;

use super::ffi::{self, CUdevice, CUdevice_attribute};
use crate::{DeviceInfo, Error, Result};

/// Every symbol the backend (and the cudarc calls it makes: `CudaContext::new`
/// and its `Drop`) calls unconditionally. `cuDevicePrimaryCtxRelease_v2`
/// (CUDA 11.0) is the newest, so any driver from 11.0 on has them all; the
/// bindings add the symbols of [`BINDING_SYMBOLS`].
const REQUIRED_SYMBOLS: &[&CStr] = &[
    c"cuInit",
    c"cuDriverGetVersion",
    c"cuDeviceGetCount",
    c"cuDeviceGet",
    c"cuDeviceGetName",
    c"cuDeviceGetPCIBusId",
    c"cuDeviceGetAttribute",
    c"cuDeviceTotalMem_v2",
    c"cuDeviceCanAccessPeer",
    c"cuDeviceGetP2PAttribute",
    c"cuDevicePrimaryCtxRetain",
    c"cuDevicePrimaryCtxRelease_v2",
    c"cuDevicePrimaryCtxGetState",
    c"cuCtxSetCurrent",
    c"cuCtxGetCurrent",
    c"cuCtxGetDevice",
    c"cuCtxEnablePeerAccess",
    c"cuCtxDisablePeerAccess",
    c"cuMemAlloc_v2",
    c"cuMemFree_v2",
    c"cuMemHostAlloc",
    c"cuMemFreeHost",
    c"cuPointerGetAttribute",
    c"cuMemcpyPeerAsync",
    c"cuMemcpyDtoDAsync_v2",
    c"cuMemcpyDtoHAsync_v2",
    c"cuMemcpyHtoDAsync_v2",
    c"cuMemsetD8Async",
    c"cuStreamCreate",
    c"cuStreamDestroy_v2",
    c"cuStreamSynchronize",
    c"cuStreamQuery",
    c"cuStreamWaitEvent",
    c"cuEventCreate",
    c"cuEventDestroy_v2",
    c"cuEventRecord",
    c"cuEventQuery",
];

/// Symbols whose name depends on the CUDA version of the bindings: a driver
/// older than the bindings may lack them (13.0 bindings call
/// `cuEventElapsedTime_v2`, which drivers have from 12.8 on), and is then
/// refused up front rather than panicking inside cudarc later.
#[cfg(not(cuda_at_least_13000))]
const BINDING_SYMBOLS: &[&CStr] = &[ffi::event::ELAPSED_SYMBOL, c"cuDeviceGetUuid"];
#[cfg(cuda_at_least_13000)]
const BINDING_SYMBOLS: &[&CStr] = &[ffi::event::ELAPSED_SYMBOL, c"cuDeviceGetUuid_v2"];

/// The stream-ordered allocator (CUDA 11.2). Without it `AllocKind::Pool` is
/// unsupported and no memory can come from a pool.
const POOL_SYMBOLS: &[&CStr] = &[
    c"cuDeviceGetDefaultMemPool",
    c"cuMemAllocFromPoolAsync",
    c"cuMemPoolSetAccess",
];

/// What `discover` found: the driver's facts and one handle per visible device.
pub(super) struct Discovery {
    pub(super) driver_version: i32,
    pub(super) devices: Vec<DeviceInfo>,
    pub(super) handles: Vec<CUdevice>,
    pub(super) has_pools: bool,
    pub(super) has_batch_copy: bool,
}

/// Loads and initialises the driver and describes every visible device,
/// without creating a context.
pub(super) fn discover() -> Result<Discovery> {
    if !ffi::library_present() {
        return Err(Error::NoDriver {
            detail: "libcuda.so could not be loaded (not installed, or not on the loader's path: \
                     check LD_LIBRARY_PATH)"
                .to_owned(),
        });
    }
    let mut symbols = REQUIRED_SYMBOLS.iter().chain(BINDING_SYMBOLS);
    if let Some(missing) = symbols.find(|name| !ffi::has_symbol(name)) {
        return Err(Error::NoDriver {
            detail: format!(
                "libcuda lacks {}: the driver is older than CUDA 11.0, or than the CUDA \
                 version these bindings were built for (p2p-core's `cuda-*` feature)",
                missing.to_string_lossy()
            ),
        });
    }
    ffi::device::init().map_err(no_driver_from_init)?;
    let driver_version = ffi::device::driver_version()?;
    let count = ffi::device::count()?;
    if count == 0 {
        return Err(Error::NoDriver {
            detail:
                "the driver is present but no CUDA device is visible (check CUDA_VISIBLE_DEVICES)"
                    .to_owned(),
        });
    }
    let has_uuid_v2 = ffi::has_symbol(c"cuDeviceGetUuid_v2");
    let has_pools = POOL_SYMBOLS.iter().all(|name| ffi::has_symbol(name));
    let has_batch_copy = ffi::copy::BATCH_SYMBOL.is_some_and(ffi::has_symbol);

    let mut devices = Vec::with_capacity(count);
    let mut handles = Vec::with_capacity(count);
    for ordinal in 0..count {
        let handle = ffi::device::get(ordinal)?;
        devices.push(describe_device(ordinal, handle, has_uuid_v2)?);
        handles.push(handle);
    }
    tracing::debug!(
        driver_version,
        devices = count,
        has_pools,
        has_batch_copy,
        "CUDA driver loaded"
    );
    Ok(Discovery {
        driver_version,
        devices,
        handles,
        has_pools,
        has_batch_copy,
    })
}

/// What we know of one device, from device queries alone (no context).
fn describe_device(ordinal: usize, handle: CUdevice, has_uuid_v2: bool) -> Result<DeviceInfo> {
    let attribute = |attribute| ffi::device::attribute(handle, attribute);
    let major = attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)?;
    let minor = attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)?;
    let copy_engines = attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_ASYNC_ENGINE_COUNT)?;
    Ok(DeviceInfo {
        ordinal,
        name: ffi::device::name(handle)?,
        uuid: format_uuid(&ffi::device::uuid(handle, has_uuid_v2)?),
        pci_bus_id: normalize_pci_bus_id(&ffi::device::pci_bus_id(handle)?),
        compute_capability: (non_negative(major), non_negative(minor)),
        total_memory_bytes: ffi::device::total_mem(handle)? as u64,
        copy_engines: non_negative(copy_engines),
    })
}

/// `cuInit`'s failure as the "no usable driver" error, with a hint per cause.
fn no_driver_from_init(err: Error) -> Error {
    let Error::Cuda { code, name, .. } = &err else {
        return err;
    };
    let hint = match name.as_str() {
        "CUDA_ERROR_NO_DEVICE" => {
            "the driver is present but no CUDA device is visible (check CUDA_VISIBLE_DEVICES)"
        }
        "CUDA_ERROR_STUB_LIBRARY" => {
            "the libcuda.so found is the toolkit's stub: put the real driver's library first"
        }
        "CUDA_ERROR_SYSTEM_DRIVER_MISMATCH" => {
            "libcuda and the loaded kernel module are of different versions"
        }
        "CUDA_ERROR_INSUFFICIENT_DRIVER" | "CUDA_ERROR_COMPAT_NOT_SUPPORTED_ON_DEVICE" => {
            "the driver is too old for this library"
        }
        _ => "the driver could not be initialised",
    };
    Error::NoDriver {
        detail: format!("{hint} (cuInit: {name} ({code}))"),
    }
}

/// `GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`, as `nvidia-smi -L` shows it.
fn format_uuid(bytes: &[u8; 16]) -> String {
    let hex = |range: std::ops::Range<usize>| {
        bytes[range]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    format!(
        "GPU-{}-{}-{}-{}-{}",
        hex(0..4),
        hex(4..6),
        hex(6..8),
        hex(8..10),
        hex(10..16)
    )
}

/// `dddd:bb:dd.f` in lower case, whatever width and case the driver used;
/// text that does not parse is kept (lower-cased) rather than lost.
fn normalize_pci_bus_id(raw: &str) -> String {
    let lower = raw.trim().to_ascii_lowercase();
    let parse = || -> Option<String> {
        let (domain, rest) = lower.split_once(':')?;
        let (bus, rest) = rest.split_once(':')?;
        let (device, function) = rest.split_once('.')?;
        let hex = |s: &str| u32::from_str_radix(s, 16).ok();
        Some(format!(
            "{:04x}:{:02x}:{:02x}.{:x}",
            hex(domain)?,
            hex(bus)?,
            hex(device)?,
            hex(function)?
        ))
    };
    parse().unwrap_or(lower)
}

fn non_negative(value: i32) -> u32 {
    u32::try_from(value).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cuda::ffi::CUresult;

    #[test]
    fn uuid_is_formatted_like_nvidia_smi() {
        let bytes = [
            0x6b, 0x0a, 0x33, 0x4c, 0x1f, 0x8e, 0x4d, 0x2a, 0x9e, 0x11, 0x00, 0xff, 0x12, 0x34,
            0x56, 0x78,
        ];
        assert_eq!(
            format_uuid(&bytes),
            "GPU-6b0a334c-1f8e-4d2a-9e11-00ff12345678"
        );
    }

    #[test]
    fn pci_bus_id_is_lower_case_with_fixed_widths() {
        assert_eq!(normalize_pci_bus_id("0000:3B:00.0"), "0000:3b:00.0");
        assert_eq!(normalize_pci_bus_id("00000000:C1:00.0"), "0000:c1:00.0");
        assert_eq!(normalize_pci_bus_id(" 0001:0a:1F.7\n"), "0001:0a:1f.7");
        assert_eq!(normalize_pci_bus_id("weird"), "weird");
    }

    #[test]
    fn init_failures_become_no_driver_with_the_cause() {
        let no_device =
            no_driver_from_init(ffi::cuda_error("cuInit", CUresult::CUDA_ERROR_NO_DEVICE));
        assert!(
            matches!(&no_device, Error::NoDriver { detail } if detail.contains("CUDA_ERROR_NO_DEVICE")),
            "{no_device:?}"
        );
    }
}
