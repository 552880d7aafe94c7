//! The deadline of a blocking move counts from when the copy could start
//! (the work queued ahead of it on the caller's stream is done), not from
//! the call: a slow copy the caller queued first is not a hang of the move.
//!
//! Uses only `p2p_move`'s re-exports: a user of the crate needs no direct
//! `p2p-core` import for a move.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use p2p_move::{
    AllocKind, Config, DeviceBuffer, Driver, Mover, PeerTable, PinnedBuffer, Policy, Route,
    SimDriver, Stream, StreamOrder,
};

/// Two GPUs whose host link is slow (10 MB/s): a 1 MiB upload takes about
/// 100 ms of virtual time, far past the move's deadline of a few ms; the
/// peer link 0 -> 1 works, so the move is one direct copy.
const SLOW_HOST: &str =
    "[[gpu]]\nhost_gbps = 0.01\n[[gpu]]\nhost_gbps = 0.01\n[[peer]]\nfrom = 0\nto = 1\n";
const SLOW_BYTES: usize = 1 << 20;
const MOVE_BYTES: usize = 4096;
const DEADLINE: Duration = Duration::from_millis(5);

#[test]
fn slow_work_queued_ahead_on_the_callers_stream_is_not_a_hang() {
    let sim = Arc::new(SimDriver::from_toml_str(SLOW_HOST, Path::new("slow-host.toml")).unwrap());
    let driver: Arc<dyn Driver> = sim.clone();
    let mut config = Config::default();
    config.probe.deadline = DEADLINE;
    config.probe.pattern_bytes = 64 << 10;
    let table = Arc::new(PeerTable::new(driver.clone(), config));
    let mover = Mover::new(table, Policy::default()).unwrap();

    // Everything allocated, and the mover's staging set up by a first move,
    // before the slow work is queued: an allocation may wait for the device.
    let caller = Stream::new(&driver, 0).unwrap();
    let reader = Stream::new(&driver, 1).unwrap();
    let upload = PinnedBuffer::new(&driver, SLOW_BYTES).unwrap();
    let scratch = DeviceBuffer::new(&driver, 0, SLOW_BYTES, AllocKind::Plain).unwrap();
    let data: Vec<u8> = (0..MOVE_BYTES).map(|i| (i * 7 + 3) as u8).collect();
    let mut src = DeviceBuffer::new(&driver, 0, MOVE_BYTES, AllocKind::Plain).unwrap();
    src.write_from_slice(&data, &caller).unwrap();
    let mut dst = DeviceBuffer::new(&driver, 1, MOVE_BYTES, AllocKind::Plain).unwrap();
    let mut warm = DeviceBuffer::new(&driver, 1, MOVE_BYTES, AllocKind::Plain).unwrap();
    mover.copy(&src, &mut warm).unwrap();
    let ahead = driver.create_event(0).unwrap();

    // The caller's own slow work on its stream of the source GPU.
    // SAFETY: both buffers hold SLOW_BYTES and outlive the synchronize below.
    unsafe {
        driver
            .copy_htod_async(scratch.ptr(), upload.as_ptr(), SLOW_BYTES, caller.id())
            .unwrap();
    }
    let order = StreamOrder {
        src_stream: Some(caller.id()),
        dst_stream: None,
    };
    // The move asks whether the caller's stream is busy; on the simulator a
    // query would run the work it asks about, so make it answer as a GPU
    // still busy with it does.
    sim.slow_queries(1);
    // SAFETY: the transfer is waited for right here, never leaked.
    let transfer = unsafe { mover.copy_async(&src, &mut dst, order) }.unwrap();
    match transfer.wait() {
        // A direct copy: no host wait inside the move's schedule, so only
        // the completion's wait could count the time of the work ahead.
        Ok(plan) => assert_eq!(plan.route, Route::Peer, "{plan:?}"),
        Err(err) => panic!("the move timed out behind the caller's work: {err}"),
    }
    assert_eq!(mover.retired_streams(), 0, "no stream was called hung");

    // The work ahead really outlasts the deadline: queued again, a wait of
    // DEADLINE for it times out.
    // SAFETY: as above.
    unsafe {
        driver
            .copy_htod_async(scratch.ptr(), upload.as_ptr(), SLOW_BYTES, caller.id())
            .unwrap();
    }
    driver.record_event(ahead, caller.id()).unwrap();
    assert!(
        driver.wait_event(ahead, DEADLINE).is_err(),
        "the caller's work is slower than the move's deadline"
    );
    caller.synchronize().unwrap();
    assert_eq!(dst.read_to_vec(&reader).unwrap(), data);
}

/// A move queued behind another move on the mover's own stream counts its
/// deadline from when that move is done: the mover remembers the fence that
/// ended its last work on each stream and waits for it first, without
/// recording an event of its own when the stream is idle.
#[test]
fn a_move_behind_a_slow_move_on_the_movers_stream_is_not_a_hang() {
    let sim = Arc::new(SimDriver::from_toml_str(SLOW_HOST, Path::new("slow-host.toml")).unwrap());
    let driver: Arc<dyn Driver> = sim.clone();
    let mut config = Config::default();
    config.probe.deadline = DEADLINE;
    config.probe.pattern_bytes = 64 << 10;
    let table = Arc::new(PeerTable::new(driver.clone(), config));
    let mover = Mover::new(table, Policy::default()).unwrap();
    let reader = Stream::new(&driver, 0).unwrap();

    let mut slow_src = PinnedBuffer::new(&driver, SLOW_BYTES).unwrap();
    slow_src.as_mut_slice().fill(0x5a);
    let mut slow_dst = DeviceBuffer::new(&driver, 0, SLOW_BYTES, AllocKind::Plain).unwrap();
    let mut src = PinnedBuffer::new(&driver, MOVE_BYTES).unwrap();
    let data: Vec<u8> = (0..MOVE_BYTES).map(|i| (i * 5 + 1) as u8).collect();
    src.as_mut_slice().copy_from_slice(&data);
    let mut dst = DeviceBuffer::new(&driver, 0, MOVE_BYTES, AllocKind::Plain).unwrap();
    // Warm up the mover's inbound stream of cuda:0 with a quick upload.
    mover.copy(&src, &mut dst).unwrap();

    // SAFETY: both transfers are waited for right here, never leaked.
    let slow =
        unsafe { mover.copy_async(&slow_src, &mut slow_dst, StreamOrder::default()) }.unwrap();
    // The quick move asks whether the slow one is done: not yet (on the
    // simulator a query would otherwise run the work it asks about).
    sim.slow_queries(1);
    // SAFETY: as above.
    let quick = unsafe { mover.copy_async(&src, &mut dst, StreamOrder::default()) }.unwrap();
    // The quick upload queues behind the slow one (about 100 ms of virtual
    // time, against a deadline of a few ms) on the same stream.
    match quick.wait() {
        Ok(plan) => assert_eq!(plan.route, Route::HostToDevice, "{plan:?}"),
        Err(err) => panic!("the move timed out behind the mover's own slow move: {err}"),
    }
    slow.wait().unwrap();
    assert_eq!(mover.retired_streams(), 0, "no stream was called hung");
    assert_eq!(dst.read_to_vec(&reader).unwrap(), data);
    assert!(slow_dst
        .read_to_vec(&reader)
        .unwrap()
        .iter()
        .all(|&b| b == 0x5a));
}
