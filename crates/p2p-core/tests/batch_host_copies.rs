//! Batched copies between pinned host memory and a device
//! (`copy_batch_dtoh_async`, `copy_batch_htod_async`): every copy of the
//! batch lands where it should, 0-byte copies included, on the deferred
//! simulator (always) and on one real GPU (`--features cuda-tests`, where
//! the CUDA backend sends a batch as one `cuMemcpyBatchAsync` on 12.8+).

use std::sync::Arc;

use p2p_core::memory::{DeviceBuffer, PinnedBuffer, Stream};
use p2p_core::sim::{seeds, SimOptions, Topology};
use p2p_core::{AllocKind, Driver, HostCopyDesc, SimDriver};

/// Not zeros, not periodic within a page: a misplaced byte shows.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).rotate_right(11) as u8 ^ seed)
        .collect()
}

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

fn round_trip(driver: Arc<dyn Driver>) {
    let stream = Stream::new(&driver, 0).unwrap();
    let data = pattern(SPAN, 3);
    let background: Vec<u8> = data.iter().map(|b| !b).collect();

    // Host to device: the parts of `data` over a background on the device.
    let mut pinned = PinnedBuffer::new(&driver, SPAN).unwrap();
    pinned.as_mut_slice().copy_from_slice(&data);
    let mut device = DeviceBuffer::new(&driver, 0, SPAN, AllocKind::Plain).unwrap();
    device.write_from_slice(&background, &stream).unwrap();
    let copies = descs(&mut pinned, &device);
    // SAFETY: every range lies inside the two live buffers, which outlive
    // the synchronize below; the host side is pinned.
    unsafe { driver.copy_batch_htod_async(&copies, stream.id()) }.unwrap();
    stream.synchronize().unwrap();
    assert_eq!(
        device.read_to_vec(&stream).unwrap(),
        expected(&data, &background)
    );

    // Device to host: the parts of the device's bytes over a background on the host.
    let mut device_data = DeviceBuffer::new(&driver, 0, SPAN, AllocKind::Plain).unwrap();
    device_data.write_from_slice(&data, &stream).unwrap();
    pinned.as_mut_slice().copy_from_slice(&background);
    let copies = descs(&mut pinned, &device_data);
    // SAFETY: as above.
    unsafe { driver.copy_batch_dtoh_async(&copies, stream.id()) }.unwrap();
    stream.synchronize().unwrap();
    assert_eq!(pinned.as_slice(), expected(&data, &background).as_slice());
}

const ONE_GPU: &str = "[[gpu]]\nmemory_mib = 64\n";

#[test]
fn batched_host_copies_land_in_place_on_the_simulator() {
    for seed in seeds() {
        let topology = Topology::parse(ONE_GPU, std::path::Path::new("one.toml")).unwrap();
        let sim = Arc::new(SimDriver::with_options(
            topology,
            SimOptions::default().seed(seed),
        ));
        round_trip(sim.clone());
        if let Err(problems) = sim.check_clean() {
            panic!("{problems}");
        }
    }
}

#[cfg(feature = "cuda-tests")]
#[test]
fn batched_host_copies_land_in_place_on_cuda() {
    match p2p_core::CudaDriver::new() {
        Ok(driver) => round_trip(Arc::new(driver)),
        Err(err) => panic!("this test needs a CUDA GPU: {err}"),
    }
}
