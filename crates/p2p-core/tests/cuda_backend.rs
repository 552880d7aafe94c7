//! The CUDA backend on real GPUs (`--features cuda-tests`, run by `cargo
//! xtask gpu-test`): the `Driver` contract (`contract/`), and what only
//! CUDA does (its UUIDs, its legacy default stream, work that really runs
//! while the host goes on).
//!
//! Every test needs a GPU and fails, never passes, without one; the peer
//! clauses need two and fail with "needs 2 GPUs" on a machine with fewer.
#![cfg(feature = "cuda-tests")]

mod contract;
mod support;

use std::sync::Arc;

use p2p_core::memory::{DeviceBuffer, Event, Stream};
use p2p_core::{AllocKind, Driver, StreamId};

use support::cuda::cuda_driver;

/// Runs a contract clause on this machine's GPUs.
fn on_cuda(clause: fn(&Arc<dyn Driver>)) {
    clause(&cuda_driver());
}

mod driver_contract {
    crate::contract::driver_contract!(super::on_cuda);
}

#[test]
fn devices_have_cuda_uuids() {
    let driver = cuda_driver();
    for info in driver.devices() {
        eprintln!("{info:?}");
        let uuid = &info.uuid;
        assert!(uuid.starts_with("GPU-") && uuid.len() == 40, "uuid {uuid}");
        assert_eq!(uuid.matches('-').count(), 5, "uuid {uuid}");
    }
}

#[test]
fn destroying_the_legacy_default_stream_is_a_no_op() {
    let driver = cuda_driver();
    for device in 0..driver.device_count() {
        // SAFETY: raw 0 is never destroyed by the backend.
        unsafe { driver.destroy_stream(StreamId { device, raw: 0 }).unwrap() };
    }
    // Each device's default stream still works.
    contract::memory::the_default_stream_needs_no_creating(&driver);
}

#[test]
fn an_event_not_yet_reached_is_not_done() {
    let driver = cuda_driver();
    let len = 1 << 30;
    let buffer = DeviceBuffer::new(&driver, 0, len, AllocKind::Plain).unwrap();
    let stream = Stream::new(&driver, 0).unwrap();
    let event = Event::new(&driver, 0).unwrap();
    // SAFETY: the buffer outlives the synchronize.
    unsafe { contract::queue_fills(&driver, buffer.ptr(), len, &stream, 32) };
    event.record(&stream).unwrap();
    // 32 GiB of fills take milliseconds: the query right after queuing sees them running.
    let done_at_once = driver.event_done(event.id()).unwrap();
    stream.synchronize().unwrap();
    assert!(driver.event_done(event.id()).unwrap());
    assert!(
        !done_at_once,
        "the event was done before 32 GiB of fills could run"
    );
}
