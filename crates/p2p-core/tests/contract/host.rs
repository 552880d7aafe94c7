//! Contract clauses about batched copies between pinned host memory and a
//! device (`copy_batch_dtoh_async`, `copy_batch_htod_async`): every copy of
//! a batch lands where it should, 0-byte copies included (on CUDA 12.8+ the
//! backend sends a batch as one `cuMemcpyBatchAsync`).

use std::sync::Arc;

use p2p_core::memory::{DeviceBuffer, PinnedBuffer, Stream};
use p2p_core::pattern::{self, first_mismatch};
use p2p_core::{AllocKind, Driver, HostCopyDesc};

/// Parts of these sizes at these offsets of one device buffer and one
/// pinned buffer: gaps between them, a 0-byte part, odd sizes.
const PARTS: &[(usize, usize)] = &[(0, 4096), (5000, 1), (6000, 0), (6001, 12_345), (20_000, 7)];
const SPAN: usize = 20_007;

fn descs(pinned: &mut PinnedBuffer, device: &DeviceBuffer) -> Vec<HostCopyDesc> {
    PARTS
        .iter()
        .map(|&(offset, bytes)| HostCopyDesc {
            host: pinned.as_mut_ptr().wrapping_add(offset),
            device: device.ptr().offset(offset),
            bytes,
        })
        .collect()
}

/// What the buffer should hold: `data` inside the parts, `background` outside.
fn expected(data: &[u8], background: &[u8]) -> Vec<u8> {
    let mut out = background.to_vec();
    for &(offset, bytes) in PARTS {
        out[offset..offset + bytes].copy_from_slice(&data[offset..offset + bytes]);
    }
    out
}

pub(crate) fn batched_host_copies_land_in_place(driver: &Arc<dyn Driver>) {
    let stream = Stream::new(driver, 0).unwrap();
    let data = pattern::bytes(SPAN, 3);
    let background: Vec<u8> = data.iter().map(|b| !b).collect();

    // Host to device: the parts of `data` over a background on the device.
    let mut pinned = PinnedBuffer::new(driver, SPAN).unwrap();
    pinned.as_mut_slice().copy_from_slice(&data);
    let mut device = DeviceBuffer::new(driver, 0, SPAN, AllocKind::Plain).unwrap();
    device.write_from_slice(&background, &stream).unwrap();
    let copies = descs(&mut pinned, &device);
    // SAFETY: every range lies inside the two live buffers, which outlive
    // the synchronize below; the host side is pinned.
    unsafe { driver.copy_batch_htod_async(&copies, stream.id()) }.unwrap();
    stream.synchronize().unwrap();
    let got = device.read_to_vec(&stream).unwrap();
    assert_eq!(
        first_mismatch(&expected(&data, &background), &got),
        None,
        "to the device"
    );

    // Device to host: the parts of the device's bytes over a background on the host.
    let mut device_data = DeviceBuffer::new(driver, 0, SPAN, AllocKind::Plain).unwrap();
    device_data.write_from_slice(&data, &stream).unwrap();
    pinned.as_mut_slice().copy_from_slice(&background);
    let copies = descs(&mut pinned, &device_data);
    // SAFETY: as above.
    unsafe { driver.copy_batch_dtoh_async(&copies, stream.id()) }.unwrap();
    stream.synchronize().unwrap();
    let want = expected(&data, &background);
    assert_eq!(
        first_mismatch(&want, pinned.as_slice()),
        None,
        "to the host"
    );
}
