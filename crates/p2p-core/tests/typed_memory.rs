//! Typed views of device and pinned buffers (`bytemuck::Pod` values), on the deferred simulator.

mod support;

use std::sync::Arc;

use p2p_core::memory::{DeviceBuffer, PinnedBuffer, Stream};
use p2p_core::{AllocKind, Driver, Error};
use support::{for_each_seed, three_gpus};

#[test]
fn device_buffers_round_trip_typed_values() {
    for_each_seed(|s| {
        let driver: Arc<dyn Driver> = s.machine(&three_gpus());
        let stream = Stream::new(&driver, 0).unwrap();
        let values: Vec<f32> = (0..1000).map(|i| i as f32 * 0.5 - 3.0).collect();
        let mut buffer = DeviceBuffer::new(&driver, 0, values.len() * 4, AllocKind::Plain).unwrap();
        buffer.write_from_slice_of(&values, &stream).unwrap();
        assert_eq!(buffer.read_to_vec_of::<f32>(&stream).unwrap(), values);
        // The same bytes as u16 halves: a view, not a conversion.
        let halves = buffer.read_to_vec_of::<u16>(&stream).unwrap();
        assert_eq!(halves.len(), 2000);
        assert_eq!(bytemuck::cast_slice::<u16, f32>(&halves), &values[..]);
    });
}

#[test]
fn a_typed_view_never_cuts_an_element_in_two() {
    for_each_seed(|s| {
        let driver: Arc<dyn Driver> = s.machine(&three_gpus());
        let stream = Stream::new(&driver, 0).unwrap();
        let buffer = DeviceBuffer::new(&driver, 0, 10, AllocKind::Plain).unwrap();
        match buffer.read_to_vec_of::<u32>(&stream) {
            Err(Error::SizeMismatch {
                src_bytes: 10,
                dst_bytes: 8,
            }) => {}
            other => panic!("expected a size mismatch, got {other:?}"),
        }
        let mut pinned = PinnedBuffer::new(&driver, 10).unwrap();
        assert!(matches!(
            pinned.as_slice_of::<u64>(),
            Err(Error::SizeMismatch { .. })
        ));
        assert!(pinned.as_mut_slice_of::<u16>().is_ok());
    });
}

#[test]
fn pinned_buffers_are_typed_slices_for_the_host() {
    for_each_seed(|s| {
        let driver: Arc<dyn Driver> = s.machine(&three_gpus());
        let mut pinned = PinnedBuffer::new(&driver, 64).unwrap();
        for (i, value) in pinned
            .as_mut_slice_of::<u32>()
            .unwrap()
            .iter_mut()
            .enumerate()
        {
            *value = 7 * i as u32 + 1;
        }
        let values = pinned.as_slice_of::<u32>().unwrap();
        assert_eq!(values.len(), 16);
        assert_eq!(values[15], 106);
        assert_eq!(&pinned.as_slice()[..4], &1u32.to_ne_bytes());
    });
}
