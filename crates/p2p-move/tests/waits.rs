//! One test per host-side wait of the executor that the route tests do not
//! reach: waits on error paths, after a late copy, at drops, under pool
//! contention, and for the caller's work queued ahead. Each runs on the
//! deferred simulator over every schedule seed and is checked clean, and
//! each fails when its wait is deleted (`xtask/mutate_waits.py`).

mod common;

use std::sync::Arc;

use common::*;
use p2p_core::memory::{DeviceBuffer, Stream};
use p2p_core::sim::{CallKind, Fault};
use p2p_core::{AllocKind, Config, DisabledPairs, Driver, Location, PeerTable, SimDriver};
use p2p_move::{Mover, Policy, RawBytes, RawRange, Route, StreamOrder};

/// Longer than any deadline of `test_config` (500 ms plus 1 ns per byte).
const LATE: Fault = Fault::Late { ms: 3_000 };

fn mover_with(driver: &Arc<dyn Driver>, disabled: &str, policy: Policy) -> Mover {
    let config = Config {
        disabled: DisabledPairs::parse(disabled).unwrap(),
        ..test_config()
    };
    Mover::new(Arc::new(PeerTable::new(driver.clone(), config)), policy).unwrap()
}

fn small_chunks() -> Policy {
    Policy {
        chunk_bytes: 64 << 10,
        min_chunk_bytes: 64 << 10,
        small_copy_bytes: 4 << 10,
        ..Policy::default()
    }
}

/// Nothing the move queued is still waiting to run.
fn assert_nothing_queued(sim: &SimDriver, what: &str) {
    assert_eq!(
        sim.queued_operations(),
        0,
        "{what}: returned with work queued"
    );
}

/// The pools look at each parked set's fence when buffers are released or
/// acquired, and on the simulator a query runs the work it looks at: the
/// next `queries` answer "not yet" instead, so that the move is still
/// queued when the code under test must wait for it.
fn keep_parked(sim: &SimDriver, queries: u64) {
    sim.slow_queries(queries);
}

/// A batch: an upload from pageable host memory (which travels alone, so
/// it is queued at once) and a peer item whose destination is too short, so
/// the peer batch fails when queued, after the upload. Returns the items and
/// the buffers behind them.
struct FailingBatch {
    upload_src: Vec<u8>,
    upload_dst: DeviceBuffer,
    peer_src: DeviceBuffer,
    short_dst: DeviceBuffer,
    data: Vec<u8>,
}

impl FailingBatch {
    fn new(driver: &Arc<dyn Driver>) -> FailingBatch {
        let data = pattern(300_000, 1);
        FailingBatch {
            upload_src: data.clone(),
            upload_dst: device_with(driver, 0, &complement(&data), AllocKind::Plain),
            peer_src: device_with(driver, 0, &pattern(8192, 2), AllocKind::Plain),
            short_dst: device_with(driver, 1, &pattern(4096, 3), AllocKind::Plain),
            data,
        }
    }

    /// Plans (and so probes) both items before the batch: a probe's waits
    /// would use up the "not yet" answers that keep the first part queued.
    fn probe(&self, mover: &Mover) {
        let plan = mover
            .plan(Location::Cuda(0), Location::Cuda(1), 8192)
            .unwrap();
        assert_eq!(plan.route, Route::Peer);
        let plan = mover
            .plan(Location::Host, Location::Cuda(0), self.data.len())
            .unwrap();
        assert_eq!(plan.route, Route::HostToDevice, "{plan}");
    }

    fn raw_items(&self) -> Vec<(RawBytes, RawBytes, usize)> {
        vec![
            (
                RawBytes::Host {
                    ptr: self.upload_src.as_ptr().cast_mut(),
                    pinned: false,
                },
                RawBytes::Device(self.upload_dst.ptr()),
                self.data.len(),
            ),
            // 8192 bytes into a 4096-byte buffer: refused when queued.
            (
                RawBytes::Device(self.peer_src.ptr()),
                RawBytes::Device(self.short_dst.ptr()),
                8192,
            ),
        ]
    }
}

/// A safe batch failing part-way returns only once its queued part is over
/// (the borrow check at return and the queue both see it otherwise).
#[test]
fn a_failed_batch_waits_for_the_parts_it_queued() {
    for_each_seed(|sim| {
        let driver: Arc<dyn Driver> = sim.clone();
        let mover = mover_with(&driver, "1->0", small_chunks());
        let batch = FailingBatch::new(&driver);
        batch.probe(&mover);
        let mut ranges: Vec<(RawRange, RawRange)> = batch
            .raw_items()
            .into_iter()
            // SAFETY: the buffers outlive the batch, which returns before them.
            .map(|(s, d, len)| unsafe { (RawRange::new(s, len), RawRange::new(d, len)) })
            .collect();
        let items = ranges.iter_mut().map(|(s, d)| (&*s, d));
        keep_parked(&sim, 1);
        assert!(mover.copy_batch(items).is_err(), "the short target fails");
        assert_nothing_queued(&sim, "copy_batch");
        assert_bytes(
            &read(&driver, &batch.upload_dst),
            &batch.data,
            "the upload queued first",
        );
    });
}

/// The raw batch API waits likewise (up to the deadline) before its error.
#[test]
fn a_failed_raw_batch_waits_for_the_parts_it_queued() {
    for_each_seed(|sim| {
        let driver: Arc<dyn Driver> = sim.clone();
        let mover = mover_with(&driver, "1->0", small_chunks());
        let batch = FailingBatch::new(&driver);
        batch.probe(&mover);
        keep_parked(&sim, 1);
        // SAFETY: the buffers outlive the call, which waits on failure.
        let result =
            unsafe { mover.copy_batch_raw_async(&batch.raw_items(), StreamOrder::default()) };
        assert!(result.is_err(), "the short target fails");
        assert_nothing_queued(&sim, "copy_batch_raw_async");
        assert_bytes(
            &read(&driver, &batch.upload_dst),
            &batch.data,
            "the upload queued first",
        );
    });
}

/// `BatchCompletion::wait` waits for every part.
#[test]
fn a_raw_batch_completion_waits_for_every_part() {
    for_each_seed(|sim| {
        let driver: Arc<dyn Driver> = sim.clone();
        let mover = mover_with(&driver, "1->0", small_chunks());
        let data: Vec<Vec<u8>> = (0..3).map(|i| pattern(100_000, 10 + i)).collect();
        let srcs: Vec<DeviceBuffer> = [0, 1, 0]
            .iter()
            .zip(&data)
            .map(|(&d, bytes)| device_with(&driver, d, bytes, AllocKind::Plain))
            .collect();
        let dsts: Vec<DeviceBuffer> = [1, 0, 2]
            .iter()
            .zip(&data)
            .map(|(&d, bytes)| device_with(&driver, d, &complement(bytes), AllocKind::Plain))
            .collect();
        let items: Vec<_> = srcs
            .iter()
            .zip(&dsts)
            .map(|(s, d)| {
                (
                    RawBytes::Device(s.ptr()),
                    RawBytes::Device(d.ptr()),
                    s.len(),
                )
            })
            .collect();
        keep_parked(&sim, 1);
        // SAFETY: the buffers outlive the wait below.
        let batch = unsafe { mover.copy_batch_raw_async(&items, StreamOrder::default()) }.unwrap();
        batch.wait().unwrap();
        assert_nothing_queued(&sim, "BatchCompletion::wait");
        for (d, expected) in dsts.iter().zip(&data) {
            assert_bytes(&read(&driver, d), expected, "batched item");
        }
    });
}

/// Dropping a transfer or a batch transfer waits for it.
#[test]
fn dropping_a_transfer_waits_for_it() {
    for_each_seed(|sim| {
        let driver: Arc<dyn Driver> = sim.clone();
        let mover = mover_with(&driver, "all", small_chunks());
        let data = pattern((1 << 20) + 3, 20);
        let src = device_with(&driver, 0, &data, AllocKind::Plain);
        let mut dst = device_with(&driver, 1, &complement(&data), AllocKind::Plain);
        keep_parked(&sim, 1);
        // SAFETY: the transfer is dropped, not leaked.
        let transfer = unsafe { mover.copy_async(&src, &mut dst, StreamOrder::default()) }.unwrap();
        assert_eq!(transfer.plan().route, Route::Staged);
        drop(transfer);
        assert_nothing_queued(&sim, "Transfer::drop");
        assert_bytes(&read(&driver, &dst), &data, "after dropping the transfer");

        let mut again = device_with(&driver, 1, &complement(&data), AllocKind::Plain);
        let items = std::iter::once((&src, &mut again));
        // The first move's set is still parked: the acquire queries it, and
        // the release queries it and this move's.
        keep_parked(&sim, 3);
        // SAFETY: the batch transfer is dropped, not leaked.
        let batch = unsafe { mover.copy_batch_async(items, StreamOrder::default()) }.unwrap();
        drop(batch);
        assert_nothing_queued(&sim, "BatchTransfer::drop");
        assert_bytes(&read(&driver, &again), &data, "after dropping the batch");
    });
}

/// A peer copy 0 -> 1 that lands late (past its deadline): the mover has
/// probed the pair first, so the fault acts on the move itself.
fn late_peer_mover(sim: &Arc<SimDriver>) -> (Mover, DeviceBuffer, DeviceBuffer, Vec<u8>) {
    let driver: Arc<dyn Driver> = sim.clone();
    let mover = mover_with(&driver, "none", Policy::default());
    let data = pattern(64 << 10, 30);
    let src = device_with(&driver, 0, &data, AllocKind::Plain);
    let mut dst = device_with(&driver, 1, &complement(&data), AllocKind::Plain);
    assert_eq!(mover.copy(&src, &mut dst).unwrap().route, Route::Peer);
    let dst = device_with(&driver, 1, &complement(&data), AllocKind::Plain);
    sim.set_peer_fault(0, 1, LATE).unwrap();
    (mover, src, dst, data)
}

/// The safe copy times out on a late copy, but returns only once the copy
/// has landed: it cannot hand back borrowed memory the device still writes.
#[test]
fn a_late_copy_holds_the_safe_copy_until_it_lands() {
    for_each_seed(|sim| {
        let (mover, src, mut dst, data) = late_peer_mover(&sim);
        let driver = mover.driver().clone();
        match mover.copy(&src, &mut dst) {
            Err(p2p_move::Error::Core(p2p_core::Error::Timeout { .. })) => {}
            other => panic!("expected a timeout, got {other:?}"),
        }
        assert_nothing_queued(&sim, "copy after a late copy");
        assert_bytes(&read(&driver, &dst), &data, "the late copy landed");
    });
}

/// A late copy, then its `done` fence cannot be recorded (the Nth record
/// fails): the safe copy fences the lane and holds until the copy lands.
/// `records` lists the records that fail: with two, the lane's fence cannot
/// be recorded either and the stream itself is waited for. `syncs` lists
/// the stream synchronizations that fail: the fence's wait must still hold.
fn failure_after_a_late_copy(sim: Arc<SimDriver>, records: &[u64], syncs: &[u64]) {
    let (mover, src, mut dst, data) = late_peer_mover(&sim);
    let driver = mover.driver().clone();
    // A peer move behind an idle stream queues: copy, record (done); a
    // failed submission then records one fence per lane it used.
    for &nth in records {
        sim.fail_call(CallKind::Record, nth);
    }
    for &nth in syncs {
        sim.fail_call(CallKind::Synchronize, nth);
    }
    assert!(mover.copy(&src, &mut dst).is_err(), "the record fails");
    assert_nothing_queued(&sim, "copy failing after a late copy");
    assert_bytes(&read(&driver, &dst), &data, "the late copy landed");
}

#[test]
fn a_failure_after_a_late_copy_holds_until_it_lands() {
    for_each_seed(|sim| failure_after_a_late_copy(sim, &[1], &[]));
}

#[test]
fn a_failure_without_events_after_a_late_copy_holds_until_it_lands() {
    for_each_seed(|sim| failure_after_a_late_copy(sim, &[1, 2], &[]));
}

#[test]
fn a_failure_after_a_late_copy_holds_even_if_synchronize_fails() {
    for_each_seed(|sim| failure_after_a_late_copy(sim, &[1], &[1]));
}

/// A lane fenced without an event is waited for by a synchronize: when that
/// fails too, the safe copy still must not return before the late copy lands.
#[test]
fn a_failure_without_events_holds_even_if_synchronize_fails() {
    for_each_seed(|sim| failure_after_a_late_copy(sim, &[1, 2], &[1]));
}

/// Slow work the caller queued ahead of a move is not the move hanging:
/// the deadline counts from when it is done, for the host waits of a
/// pageable download and for a transfer's wait.
#[test]
fn slow_work_ahead_is_not_a_hang() {
    for_each_seed(|sim| {
        let driver: Arc<dyn Driver> = sim.clone();
        let mover = mover_with(&driver, "none", small_chunks());
        // Probe 0 -> 2 before the fault, so that no probe meets it.
        mover.plan(Location::Cuda(0), Location::Cuda(2), 1).unwrap();
        let data = pattern(300_000, 40);
        let far = device_with(&driver, 1, &data, AllocKind::Plain);
        let src = device_with(&driver, 0, &complement(&data), AllocKind::Plain);
        let producer = Stream::new(&driver, 0).unwrap();
        driver.enable_peer_access(0, 1).unwrap();
        sim.set_peer_fault(1, 0, LATE).unwrap();
        // SAFETY: both buffers outlive the synchronize below.
        unsafe {
            driver
                .copy_peer_async(src.ptr(), far.ptr(), data.len(), producer.id())
                .unwrap()
        };
        let order = StreamOrder {
            src_stream: Some(producer.id()),
            dst_stream: None,
        };
        let mut host = vec![0u8; data.len()];
        // SAFETY: waited for below.
        let download = unsafe { mover.copy_async(&src, &mut host, order) }.unwrap();
        assert_eq!(download.plan().route, Route::DeviceToHost);
        download.wait().unwrap();
        assert_bytes(&host, &data, "downloaded after the slow producer");

        let late = Stream::new(&driver, 0).unwrap();
        let again = device_with(&driver, 0, &complement(&data), AllocKind::Plain);
        // SAFETY: both buffers outlive the synchronize below.
        unsafe {
            driver
                .copy_peer_async(again.ptr(), far.ptr(), data.len(), late.id())
                .unwrap()
        };
        let order = StreamOrder {
            src_stream: Some(late.id()),
            dst_stream: None,
        };
        let mut dst = device_with(&driver, 2, &pattern(data.len(), 41), AllocKind::Plain);
        // SAFETY: waited for below.
        let transfer = unsafe { mover.copy_async(&again, &mut dst, order) }.unwrap();
        assert_eq!(transfer.plan().route, Route::Peer);
        transfer.wait().unwrap();
        assert_bytes(
            &read(&driver, &dst),
            &data,
            "copied after the slow producer",
        );
        producer.synchronize().unwrap();
        late.synchronize().unwrap();
        assert_eq!(mover.retired_streams(), 0, "nothing was called hung");
    });
}

/// The host writes a pageable destination only after the caller's
/// `dst_stream` is done with it (here: an upload of its old bytes), on a
/// pageable download and on a host-to-host copy.
#[test]
fn host_writes_wait_for_dst_stream() {
    for_each_seed(|sim| {
        let driver: Arc<dyn Driver> = sim.clone();
        let mover = mover_with(&driver, "none", small_chunks());
        let data = pattern(300_000, 50);
        let on_device = device_with(&driver, 0, &data, AllocKind::Plain);
        for from_device in [true, false] {
            let old = pattern(data.len(), 51);
            let saved = DeviceBuffer::new(&driver, 0, data.len(), AllocKind::Plain).unwrap();
            let mut host = old.clone();
            let consumer = Stream::new(&driver, 0).unwrap();
            // SAFETY: `host` and `saved` outlive the synchronize below; the
            // move writes `host` only after this upload, as `dst_stream` orders.
            unsafe {
                driver
                    .copy_htod_async(saved.ptr(), host.as_ptr(), data.len(), consumer.id())
                    .unwrap()
            };
            let order = StreamOrder {
                src_stream: None,
                dst_stream: Some(consumer.id()),
            };
            let transfer = if from_device {
                // SAFETY: waited for below.
                unsafe { mover.copy_async(&on_device, &mut host, order) }.unwrap()
            } else {
                // SAFETY: waited for below.
                unsafe { mover.copy_async(&data, &mut host, order) }.unwrap()
            };
            let route = if from_device {
                Route::DeviceToHost
            } else {
                Route::NoOp
            };
            assert_eq!(transfer.plan().route, route);
            transfer.wait().unwrap();
            consumer.synchronize().unwrap();
            assert_bytes(&host, &data, "moved");
            assert_bytes(
                &read(&driver, &saved),
                &old,
                "the caller's upload saw the old bytes",
            );
        }
    });
}

/// Dropping a mover waits for the pinned slots and scratch buffers still
/// parked behind queued moves before freeing them.
#[test]
fn dropping_the_mover_waits_for_parked_buffers() {
    for_each_seed(|sim| {
        let driver: Arc<dyn Driver> = sim.clone();
        for (disabled, route) in [("all", Route::Staged), ("0<->1", Route::Via { gpu: 2 })] {
            let mover = mover_with(&driver, disabled, small_chunks());
            let data = pattern((1 << 20) + 7, 60);
            let src = device_with(&driver, 0, &data, AllocKind::Plain);
            let dst = device_with(&driver, 1, &complement(&data), AllocKind::Plain);
            // The release of the slots or scratch buffers queries their fence once.
            keep_parked(&sim, 1);
            // SAFETY: both buffers outlive the move: the mover's drop waits
            // for it, and the buffers drop after the check below.
            let completion = unsafe {
                mover.copy_raw_async(
                    RawBytes::Device(src.ptr()),
                    RawBytes::Device(dst.ptr()),
                    data.len(),
                    StreamOrder::default(),
                )
            }
            .unwrap();
            assert_eq!(completion.plan().route, route);
            drop(completion);
            drop(mover);
            sim.settle();
            assert_bytes(&read(&driver, &dst), &data, "the move ran to its end");
        }
    });
}

/// Two staged moves in flight hold the whole pool; a third takes the
/// first's slots only once that move is done with them.
#[test]
fn staging_slots_are_reused_only_once_free() {
    for_each_seed(|sim| {
        let driver: Arc<dyn Driver> = sim.clone();
        // 32 MiB in 16 MiB chunks, two in flight: two slots of 16 MiB a
        // move, so the pool's bound (64 MiB) fits two moves and the third
        // must wait for the first's slots.
        let policy = Policy {
            chunk_bytes: 16 << 20,
            min_chunk_bytes: 16 << 20,
            pipeline_depth: 2,
            ..Policy::default()
        };
        let mover = mover_with(&driver, "all", policy);
        let len = 32 << 20;
        let plan = mover
            .plan(Location::Cuda(0), Location::Cuda(1), len)
            .unwrap();
        assert_eq!(plan.route, Route::Staged);
        assert_eq!(
            (plan.buffers(), plan.max_chunk_len()),
            (2, 16 << 20),
            "{plan}"
        );
        let moves = 3;
        let data: Vec<Vec<u8>> = (0..moves).map(|i| pattern(len, 70 + i)).collect();
        let srcs: Vec<DeviceBuffer> = data
            .iter()
            .map(|d| device_with(&driver, 0, d, AllocKind::Plain))
            .collect();
        let mut dsts: Vec<DeviceBuffer> = (0..moves)
            .map(|_| DeviceBuffer::new(&driver, 1, len, AllocKind::Plain).unwrap())
            .collect();
        // Queries of parked sets: 1 at the first release, 1 + 2 at the
        // second move's acquire and release, 2 at the third's acquire; more
        // only make the third's wait poll a little longer.
        keep_parked(&sim, 8);
        let mut transfers = Vec::new();
        for (src, dst) in srcs.iter().zip(dsts.iter_mut()) {
            // SAFETY: every transfer is waited for below.
            transfers.push(unsafe { mover.copy_async(src, dst, StreamOrder::default()) }.unwrap());
        }
        for transfer in transfers {
            transfer.wait().unwrap();
        }
        for (dst, expected) in dsts.iter().zip(&data) {
            assert_bytes(&read(&driver, dst), expected, "each move's own bytes");
        }
    });
}
