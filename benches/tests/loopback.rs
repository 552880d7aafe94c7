//! `Loopback` on the simulator: one simulated GPU shown as two devices must
//! behave as a machine whose pair is not claimed: the probe says so, moves
//! stage through host memory and deliver the right bytes, every ordinal is
//! mapped down to the one GPU, and the race detector finds nothing.

use std::path::Path;
use std::sync::Arc;

use p2p_benches::gpu::Loopback;
use p2p_benches::pattern;
use p2p_benches::raw_baselines as raw;
use p2p_core::memory::{DeviceBuffer, Stream};
use p2p_core::sim::CallKind;
use p2p_core::{AllocKind, Config, Driver, Error, Location, PeerTable, Reason, SimDriver};
use p2p_move::{Mover, Policy, Route, StreamOrder, Why};

const POISON: u8 = 0xA5;

/// A simulated machine of one GPU, and that GPU seen as two.
fn one_gpu_as_two() -> (Arc<SimDriver>, Arc<dyn Driver>) {
    let sim = Arc::new(
        SimDriver::from_toml_str(
            "[machine]\nname = \"one GPU\"\n[[gpu]]\nname = \"Sim H200\"\n",
            Path::new("one-gpu.toml"),
        )
        .unwrap(),
    );
    let loopback: Arc<dyn Driver> = Arc::new(Loopback::new(sim.clone()).unwrap());
    (sim, loopback)
}

/// Small chunks, so that a move of a few hundred KiB is a real pipeline.
fn chunked_policy() -> Policy {
    Policy {
        chunk_bytes: 64 << 10,
        min_chunk_bytes: 16 << 10,
        small_copy_bytes: 16 << 10,
        ..Policy::default()
    }
}

fn new_mover(driver: &Arc<dyn Driver>, policy: Policy) -> Mover {
    let table = Arc::new(PeerTable::new(driver.clone(), Config::default()));
    Mover::new(table, policy).unwrap()
}

/// A buffer on `device` holding the pattern of `seed`.
fn filled(driver: &Arc<dyn Driver>, device: usize, len: usize, seed: u64) -> DeviceBuffer {
    let stream = Stream::new(driver, device).unwrap();
    let mut buffer = DeviceBuffer::new(driver, device, len, AllocKind::Plain).unwrap();
    buffer
        .write_from_slice(&pattern::pattern(len, seed), &stream)
        .unwrap();
    buffer
}

/// A buffer on `device` holding `POISON`.
fn poisoned(driver: &Arc<dyn Driver>, device: usize, len: usize) -> DeviceBuffer {
    let stream = Stream::new(driver, device).unwrap();
    let mut buffer = DeviceBuffer::new(driver, device, len, AllocKind::Plain).unwrap();
    raw::poison(driver.as_ref(), &mut buffer, POISON, &stream).unwrap();
    buffer
}

fn assert_holds(driver: &Arc<dyn Driver>, buffer: &DeviceBuffer, expected: &[u8]) {
    let stream = Stream::new(driver, buffer.device()).unwrap();
    let found = buffer.read_to_vec(&stream).unwrap();
    assert_eq!(pattern::check_copy(&found, expected, POISON), None);
}

#[test]
fn both_views_are_the_one_gpu() {
    let (sim, loopback) = one_gpu_as_two();
    assert_eq!(sim.device_count(), 1);
    assert_eq!(loopback.device_count(), 2);
    for (ordinal, device) in loopback.devices().iter().enumerate() {
        assert_eq!(device.ordinal, ordinal);
        assert_eq!(device.name, sim.devices()[0].name);
        assert_eq!(device.uuid, sim.devices()[0].uuid);
    }
    // Memory on cuda:1 is the simulated GPU's (which has no cuda:1).
    let sim_driver: Arc<dyn Driver> = sim.clone();
    assert!(matches!(
        DeviceBuffer::new(&sim_driver, 1, 4096, AllocKind::Plain),
        Err(Error::InvalidDevice(_))
    ));
    let on_view = DeviceBuffer::new(&loopback, 1, 4096, AllocKind::Plain).unwrap();
    assert_eq!(on_view.ptr().device, 1);
    let stream = Stream::new(&loopback, 1).unwrap();
    assert_eq!(stream.id().device, 1);
    // The loopback is part of the machine's state: verdicts cached for the
    // real machine never apply to it.
    assert!(loopback
        .machine_state()
        .iter()
        .any(|(k, _)| k == "loopback"));
    assert!(!sim.machine_state().iter().any(|(k, _)| k == "loopback"));
}

#[test]
fn ordinals_past_the_views_are_typed_errors() {
    let (_sim, loopback) = one_gpu_as_two();
    assert!(matches!(
        DeviceBuffer::new(&loopback, 2, 4096, AllocKind::Plain),
        Err(Error::InvalidDevice(invalid)) if invalid.ordinal == 2 && invalid.count == 2
    ));
    assert!(matches!(loopback.claim(0, 2), Err(Error::InvalidDevice(_))));
    assert!(matches!(
        loopback.create_stream(7),
        Err(Error::InvalidDevice(_))
    ));
    let on_view = DeviceBuffer::new(&loopback, 0, 16, AllocKind::Plain).unwrap();
    let stream = Stream::new(&loopback, 0).unwrap();
    let mut stray = on_view.ptr();
    stray.device = 3;
    // SAFETY: the call is refused before anything is queued.
    let queued = unsafe { loopback.memset_async(stray, 0, 16, stream.id()) };
    assert!(matches!(queued, Err(Error::InvalidDevice(_))));
}

#[test]
fn the_pair_is_not_claimed_and_moves_stage() {
    let (_sim, loopback) = one_gpu_as_two();
    for (from, to) in [(0, 1), (1, 0)] {
        assert!(!loopback.claim(from, to).unwrap().claimed());
    }
    assert!(loopback.claim(1, 1).unwrap().claimed());
    assert!(matches!(
        loopback.enable_peer_access(0, 1),
        Err(Error::Unsupported(_))
    ));
    loopback.disable_peer_access(1, 0).unwrap();

    let mover = new_mover(&loopback, Policy::default());
    let verdict = mover.table().verdict(0, 1).unwrap();
    assert_eq!(verdict.reason, Reason::NotClaimed);
    assert!(!verdict.claimed);
    let plan = mover
        .plan(Location::Cuda(0), Location::Cuda(1), 1 << 20)
        .unwrap();
    assert_eq!(plan.route, Route::Staged);
    assert!(
        matches!(plan.why, Why::NotVerifiedNoThirdGpu { .. }),
        "{:?}",
        plan.why
    );
}

#[test]
fn a_staged_move_delivers_the_right_bytes_both_ways() {
    let (sim, loopback) = one_gpu_as_two();
    let mover = new_mover(&loopback, chunked_policy());
    // Odd, several chunks: a pipeline that ends on a partial chunk.
    let len = (300 << 10) + 7;
    for (from, to, seed) in [(0, 1, 1), (1, 0, 2)] {
        let src = filled(&loopback, from, len, seed);
        let mut dst = poisoned(&loopback, to, len + 4096);
        let before = sim.stats().peer_copies_between(0, 0);
        let plan = mover
            .copy(
                &src,
                &mut p2p_benches::raw_ranges::DeviceRangeMut::new(&mut dst, len),
            )
            .unwrap();
        assert_eq!(plan.route, Route::Staged);
        assert!(plan.chunk_count() > 1, "{plan:?}");
        assert_holds(&loopback, &dst, &pattern::pattern(len, seed));
        // Through host memory, never as a copy between the two views.
        assert_eq!(sim.stats().peer_copies_between(0, 0), before);
    }
    sim.check_clean().unwrap();
}

#[test]
fn batches_ordered_moves_and_host_routes_deliver_the_right_bytes() {
    let (sim, loopback) = one_gpu_as_two();
    let mover = new_mover(&loopback, chunked_policy());
    let len = 20 << 10;
    let srcs: Vec<DeviceBuffer> = (0..8).map(|i| filled(&loopback, 0, len, 10 + i)).collect();
    let mut dsts: Vec<DeviceBuffer> = (0..8).map(|_| poisoned(&loopback, 1, len)).collect();
    let plans = mover.copy_batch(srcs.iter().zip(dsts.iter_mut())).unwrap();
    assert!(plans.iter().all(|plan| plan.route == Route::Staged));
    for (i, dst) in dsts.iter().enumerate() {
        assert_holds(&loopback, dst, &pattern::pattern(len, 10 + i as u64));
    }

    // The staged parts of a batch are coalesced into batched host copies,
    // which reach the simulator as batch calls (one `Copy` each), not one
    // call per part.
    // With the default chunks all eight parts share one pinned slot.
    let default_mover = new_mover(&loopback, Policy::default());
    let copies = sim.call_counts().of(CallKind::Copy);
    default_mover
        .copy_batch(srcs.iter().zip(dsts.iter_mut()))
        .unwrap();
    let batch_copies = sim.call_counts().of(CallKind::Copy) - copies;
    assert!(
        batch_copies < srcs.len() as u64,
        "{batch_copies} copy calls"
    );
    for (i, dst) in dsts.iter().enumerate() {
        assert_holds(&loopback, dst, &pattern::pattern(len, 10 + i as u64));
    }

    // Ordered with the caller's streams on both views: the race detector
    // checks that the destination's stream really waits for the move.
    let (src_stream, dst_stream) = (
        Stream::new(&loopback, 0).unwrap(),
        Stream::new(&loopback, 1).unwrap(),
    );
    let mut dst = poisoned(&loopback, 1, len);
    let order = StreamOrder {
        src_stream: Some(src_stream.id()),
        dst_stream: Some(dst_stream.id()),
    };
    // SAFETY: the transfer is waited for below.
    let transfer = unsafe { mover.copy_async(&srcs[3], &mut dst, order).unwrap() };
    dst_stream.synchronize().unwrap();
    transfer.wait().unwrap();
    assert_holds(&loopback, &dst, &pattern::pattern(len, 13));

    // Pageable host memory to a view and back.
    let host = pattern::pattern(len, 99);
    let mut on_view = poisoned(&loopback, 1, len);
    mover.copy(&host[..], &mut on_view).unwrap();
    assert_holds(&loopback, &on_view, &host);
    let mut back = vec![0u8; len];
    mover.copy(&on_view, &mut back[..]).unwrap();
    assert_eq!(back, host);
    sim.check_clean().unwrap();
}

#[test]
fn a_raw_copy_between_the_views_is_a_copy_on_the_one_gpu() {
    let (sim, loopback) = one_gpu_as_two();
    let len = 64 << 10;
    let src = filled(&loopback, 0, len, 5);
    let mut dst = poisoned(&loopback, 1, len);
    let stream = Stream::new(&loopback, 0).unwrap();
    raw::peer_copy(loopback.as_ref(), &mut dst, &src, len, &stream).unwrap();
    assert_holds(&loopback, &dst, &pattern::pattern(len, 5));
    assert_eq!(sim.stats().peer_copies_between(0, 0), 1);
    sim.check_clean().unwrap();
}

#[test]
fn a_failing_copy_is_a_typed_error_and_leaves_nothing_running() {
    let (sim, loopback) = one_gpu_as_two();
    let mover = new_mover(&loopback, chunked_policy());
    let len = 300 << 10;
    let src = filled(&loopback, 0, len, 7);
    let mut dst = poisoned(&loopback, 1, len);
    // Part-way through the pipeline's copies.
    sim.fail_call(CallKind::Copy, 3);
    let failed = mover.copy(&src, &mut dst);
    assert!(
        matches!(failed, Err(p2p_move::Error::Core(Error::Cuda { .. }))),
        "{failed:?}"
    );
    sim.check_clean().unwrap();
    // The next move works.
    mover.copy(&src, &mut dst).unwrap();
    assert_holds(&loopback, &dst, &pattern::pattern(len, 7));
    sim.check_clean().unwrap();
}

#[test]
fn borrows_released_reach_the_simulator_under_the_gpus_ordinal() {
    let (sim, loopback) = one_gpu_as_two();
    let len = 64 << 10;
    let src = filled(&loopback, 0, len, 8);
    let dst = poisoned(&loopback, 1, len);
    let stream = Stream::new(&loopback, 1).unwrap();
    // SAFETY: both buffers live past the synchronize below.
    unsafe {
        loopback
            .copy_peer_async(dst.ptr(), src.ptr(), len, stream.id())
            .unwrap()
    };
    // A safe API that returned now, with the copy still queued, would be a
    // bug: the simulator must see the range on its own GPU to report it.
    loopback.borrows_released(&[p2p_core::MemRange::Device {
        addr: dst.ptr(),
        len,
    }]);
    stream.synchronize().unwrap();
    let problems = sim.check_clean().unwrap_err();
    assert!(
        problems
            .reports
            .iter()
            .any(|r| r.kind == p2p_core::sim::ReportKind::BorrowReleasedWhileInUse),
        "{problems}"
    );
}
