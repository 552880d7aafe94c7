//! Helpers shared by the simulated-backend tests: a small machine and upload/download shortcuts.

// Each test crate uses a different subset of these helpers.
#![allow(dead_code)]

use std::path::Path;

use p2p_core::sim::SimDriver;
use p2p_core::{AllocKind, DeviceAddr, Driver, Error, StreamId};

/// Three GPUs: 0 <-> 1 healthy at 50 GB/s, 1 -> 2 claimed with a fault set
/// per test, 2 -> 1 fine, nothing between 0 and 2; gpu 2 has 1 MiB of memory.
pub(crate) const THREE_GPUS: &str = r#"
[machine]
name = "test box"
driver_version = 12040
[[gpu]]
name = "A"
host_gbps = 25.0
[[gpu]]
name = "B"
host_gbps = 20.0
[[gpu]]
name = "C"
memory_mib = 1
[[peer]]
from = 0
to = 1
both = true
gbps = 50.0
[[peer]]
from = 1
to = 2
gbps = 40.0
[[peer]]
from = 2
to = 1
"#;

pub(crate) fn machine() -> SimDriver {
    SimDriver::from_toml_str(THREE_GPUS, Path::new("three.toml")).unwrap()
}

pub(crate) fn default_stream(device: usize) -> StreamId {
    StreamId { device, raw: 0 }
}

/// Bytes that are neither zeros nor a constant.
pub(crate) fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).wrapping_shr(13) as u8 ^ seed)
        .collect()
}

pub(crate) fn upload(
    driver: &SimDriver,
    device: usize,
    data: &[u8],
    kind: AllocKind,
) -> DeviceAddr {
    let ptr = driver.alloc_device(device, data.len(), kind).unwrap();
    // SAFETY: `ptr` holds `data.len()` bytes; the default stream is synchronized below.
    unsafe {
        driver
            .copy_htod_async(ptr, data.as_ptr(), data.len(), default_stream(device))
            .unwrap()
    };
    driver.synchronize_stream(default_stream(device)).unwrap();
    ptr
}

pub(crate) fn download(driver: &SimDriver, ptr: DeviceAddr, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    // SAFETY: `out` holds `len` bytes and outlives the synchronize below.
    unsafe {
        driver
            .copy_dtoh_async(out.as_mut_ptr(), ptr, len, default_stream(ptr.device))
            .unwrap()
    };
    driver
        .synchronize_stream(default_stream(ptr.device))
        .unwrap();
    out
}

pub(crate) fn peer_copy(
    driver: &SimDriver,
    dst: DeviceAddr,
    src: DeviceAddr,
    bytes: usize,
    stream: StreamId,
) -> p2p_core::Result<()> {
    // SAFETY: the tests pass live allocations (or deliberately bad ones, which the simulator rejects).
    unsafe { driver.copy_peer_async(dst, src, bytes, stream) }
}

pub(crate) fn is_cuda_error(result: p2p_core::Result<impl std::fmt::Debug>, wanted: &str) -> bool {
    matches!(result, Err(Error::Cuda { ref name, .. }) if name == wanted)
}

/// Copies `len` pattern bytes from `from` to `to` and returns what arrived.
pub(crate) fn deliver(
    driver: &SimDriver,
    from: usize,
    to: usize,
    len: usize,
) -> (Vec<u8>, Vec<u8>) {
    let data = pattern(len, 0x5a);
    let src = upload(driver, from, &data, AllocKind::Plain);
    let dst = upload(driver, to, &vec![0xee; len], AllocKind::Plain);
    peer_copy(driver, dst, src, len, default_stream(to)).unwrap();
    driver.synchronize_stream(default_stream(to)).unwrap();
    (data, download(driver, dst, len))
}
