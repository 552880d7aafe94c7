//! The `Driver` contract, written once: what every backend must do, as
//! functions of a driver, run on the simulator by `sim_backend.rs` (every
//! schedule seed, checked clean) and on real GPUs by `cuda_backend.rs`.
//!
//! A clause states only what the trait promises (or what CUDA does and the
//! simulator copies); what one backend does beyond it (the simulator's
//! faults and error codes for misuse, CUDA's legacy stream) is tested in
//! that backend's own file.

use std::sync::Arc;

use p2p_core::memory::{DeviceBuffer, Stream};
use p2p_core::pattern::{self, first_mismatch};
use p2p_core::{AllocKind, Backend, DeviceAddr, Driver};

pub(crate) use crate::support::require_gpus;

pub(crate) mod host;
pub(crate) mod memory;
pub(crate) mod ordering;
pub(crate) mod peer;

/// Both kinds of device memory.
pub(crate) const KINDS: [AllocKind; 2] = [AllocKind::Plain, AllocKind::Pool];

/// One `#[test]` per clause of the contract, each running its clause
/// through `$run` (a function taking `fn(&Arc<dyn Driver>)`): the list of
/// clauses lives here, each backend's file names only its runner.
macro_rules! driver_contract {
    ($run:path) => {
        $crate::contract::driver_contract!(
            @tests $run,
            memory::devices_are_described,
            memory::a_device_claims_itself_fully,
            memory::bytes_round_trip_through_plain_and_pool_memory,
            memory::the_default_stream_needs_no_creating,
            memory::zero_byte_allocations_and_copies_work,
            memory::allocations_are_distinct_and_aligned,
            memory::copies_land_at_offsets_inside_allocations,
            memory::same_device_and_batch_copies_deliver_every_byte,
            memory::pool_memory_is_told_from_plain_memory,
            memory::an_impossible_allocation_is_out_of_memory,
            memory::invalid_devices_are_rejected_everywhere,
            memory::pinned_memory_round_trips_through_a_device,
            host::batched_host_copies_land_in_place,
            ordering::streams_and_events_are_distinct_live_handles,
            ordering::events_order_streams_and_time_work,
            ordering::one_driver_serves_many_threads_at_once,
            peer::peer_claims_are_read_for_both_directions,
            peer::peer_copies_deliver_every_byte_both_ways,
            peer::peer_copies_of_pool_memory_after_granting_access,
            peer::batch_copies_across_devices_deliver_every_byte,
            peer::events_order_work_across_devices,
        );
    };
    (@tests $run:path, $($group:ident::$clause:ident),+ $(,)?) => {
        $(
            #[test]
            fn $clause() {
                $run($crate::contract::$group::$clause);
            }
        )+
    };
}
pub(crate) use driver_contract;

/// Bytes of work meant to keep a GPU busy for a moment; the simulator's
/// device memory is host memory (and its time is virtual), so it gets less.
pub(crate) fn busy_bytes(driver: &Arc<dyn Driver>) -> usize {
    match driver.backend() {
        Backend::Simulated => 4 << 20,
        _ => 256 << 20,
    }
}

/// Queues `count` fills of the `len` bytes at `ptr` on `stream`, with the
/// values `0..count`: work that takes a while on a GPU.
///
/// # Safety
/// `ptr` holds `len` bytes until the fills are done.
pub(crate) unsafe fn queue_fills(
    driver: &Arc<dyn Driver>,
    ptr: DeviceAddr,
    len: usize,
    stream: &Stream,
    count: u8,
) {
    for value in 0..count {
        // SAFETY: the caller's promise.
        unsafe { driver.memset_async(ptr, value, len, stream.id()).unwrap() };
    }
}

/// Copies a pattern `from -> to` with `copy_peer_async` on a stream of
/// `stream_device`, into a buffer holding another pattern, and checks every byte.
pub(crate) fn check_peer_copy(
    driver: &Arc<dyn Driver>,
    (from, to): (usize, usize),
    stream_device: usize,
    kinds: (AllocKind, AllocKind),
) {
    let len = (8 << 20) + 7;
    let want = pattern::bytes(len, 0x3c);
    let (src_stream, dst_stream) = (
        Stream::new(driver, from).unwrap(),
        Stream::new(driver, to).unwrap(),
    );
    let src = DeviceBuffer::from_slice(driver, &want, kinds.0, &src_stream).unwrap();
    let other = pattern::bytes(len, 0xc3);
    let dst = DeviceBuffer::from_slice(driver, &other, kinds.1, &dst_stream).unwrap();
    let stream = Stream::new(driver, stream_device).unwrap();
    // SAFETY: both buffers hold `len` bytes and outlive the synchronize.
    unsafe {
        driver
            .copy_peer_async(dst.ptr(), src.ptr(), len, stream.id())
            .unwrap()
    };
    stream.synchronize().unwrap();
    let got = dst.read_to_vec(&dst_stream).unwrap();
    assert_eq!(
        first_mismatch(&want, &got),
        None,
        "cuda:{from} -> cuda:{to} ({kinds:?}, stream on cuda:{stream_device})"
    );
}
