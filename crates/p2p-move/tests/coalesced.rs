//! Coalesced staging: the staged parts of a batch travel together through
//! shared pinned slots. Every byte of every part arrives, whatever the mix
//! of sizes (0 up to many slots), of routes and of hand-overs (host relay or
//! chained by events); a failure at any driver call part-way returns an
//! error with the sources intact and nothing still running. On the deferred
//! simulator, over every schedule seed, with the race detector on.

mod common;

use std::sync::Arc;

use common::*;
use p2p_core::memory::{DeviceBuffer, PinnedBuffer};
use p2p_core::sim::{builtin_topology, seeds, CallKind, SimOptions};
use p2p_core::{AllocKind, Config, DisabledPairs, Driver, PeerTable, SimDriver};
use p2p_move::{Layout, MoveSource, MoveTarget, Mover, Policy, Route};

/// Sizes around the slot edges (16 KiB slots below): empty, one byte, odd,
/// exactly one slot, one byte over, several slots.
const PART_LENS: &[usize] = &[0, 1, 7, 4096, 16 << 10, (16 << 10) + 1, 100_000, 0, 3];

/// Staged moves only (peer copy off), small slots, two in flight; the host
/// relays groups below `relay` bytes in total.
fn staged_policy(relay: usize) -> Policy {
    Policy {
        allow_peer: false,
        chunk_bytes: 16 << 10,
        min_chunk_bytes: 16 << 10,
        pipeline_depth: 2,
        small_copy_bytes: 0,
        host_relay_bytes: relay,
        ..Policy::default()
    }
}

fn mover(driver: &Arc<dyn Driver>, policy: Policy, disabled: &str) -> Mover {
    let config = Config {
        disabled: DisabledPairs::parse(disabled).unwrap(),
        ..test_config()
    };
    Mover::new(Arc::new(PeerTable::new(driver.clone(), config)), policy).unwrap()
}

/// Parts of `lens` bytes on `from`, each its own pattern, and poisoned
/// destinations on `to`.
fn parts(
    driver: &Arc<dyn Driver>,
    from: usize,
    to: usize,
    lens: &[usize],
    seed: u64,
) -> (Vec<Vec<u8>>, Vec<DeviceBuffer>, Vec<DeviceBuffer>) {
    let data: Vec<Vec<u8>> = lens
        .iter()
        .enumerate()
        .map(|(i, &len)| pattern(len, seed + i as u64))
        .collect();
    let srcs = data
        .iter()
        .map(|d| device_with(driver, from, d, AllocKind::Plain))
        .collect();
    let dsts = data
        .iter()
        .map(|d| device_with(driver, to, &complement(d), AllocKind::Plain))
        .collect();
    (data, srcs, dsts)
}

fn check_parts(
    driver: &Arc<dyn Driver>,
    data: &[Vec<u8>],
    srcs: &[DeviceBuffer],
    dsts: &[DeviceBuffer],
) {
    for (i, expected) in data.iter().enumerate() {
        assert_bytes(&read(driver, &dsts[i]), expected, &format!("part {i}"));
        assert_bytes(&read(driver, &srcs[i]), expected, &format!("source {i}"));
    }
}

fn staged_batch(driver: Arc<dyn Driver>, relay: usize) {
    require_gpus(&driver, 2);
    let mover = mover(&driver, staged_policy(relay), "none");
    let (data, srcs, mut dsts) = parts(&driver, 0, 1, PART_LENS, 40);
    let plans = mover.copy_batch(srcs.iter().zip(dsts.iter_mut())).unwrap();
    assert_eq!(plans.len(), PART_LENS.len());
    for (plan, &len) in plans.iter().zip(PART_LENS) {
        assert_eq!(plan.bytes, len);
        if len > 0 {
            assert_eq!(plan.route, Route::Staged, "{plan:?}");
        }
    }
    check_parts(&driver, &data, &srcs, &dsts);
}

/// The whole group in one slot, the host handing it over.
fn coalesced_parts_arrive_by_host_relay(driver: Arc<dyn Driver>) {
    staged_batch(driver, usize::MAX);
}

/// Many 16 KiB slots, two in flight, the legs chained by events.
fn coalesced_parts_arrive_chained_over_many_slots(driver: Arc<dyn Driver>) {
    staged_batch(driver, 0);
}

/// Both directions of a pair and a second pair in one batch: a group each.
fn coalesced_groups_per_pair(driver: Arc<dyn Driver>) {
    require_gpus(&driver, 3);
    let mover = mover(&driver, staged_policy(0), "none");
    let (d01, s01, mut t01) = parts(&driver, 0, 1, &[5000, 20_000, 1], 50);
    let (d10, s10, mut t10) = parts(&driver, 1, 0, &[33_000, 2], 60);
    let (d21, s21, mut t21) = parts(&driver, 2, 1, &[16 << 10, 9], 70);
    let mut items: Vec<(&DeviceBuffer, &mut DeviceBuffer)> = Vec::new();
    // Interleaved, so that grouping, not the order given, makes the groups.
    let mut a = s01.iter().zip(t01.iter_mut());
    let mut b = s10.iter().zip(t10.iter_mut());
    let mut c = s21.iter().zip(t21.iter_mut());
    loop {
        let before = items.len();
        items.extend(a.next());
        items.extend(b.next());
        items.extend(c.next());
        if items.len() == before {
            break;
        }
    }
    mover.copy_batch(items).unwrap();
    check_parts(&driver, &d01, &s01, &t01);
    check_parts(&driver, &d10, &s10, &t10);
    check_parts(&driver, &d21, &s21, &t21);
}

backend_tests! {
    coalesced =>
    coalesced_parts_arrive_by_host_relay,
    coalesced_parts_arrive_chained_over_many_slots,
    coalesced_groups_per_pair,
}

/// The builtin machine (2 -> 3 delivers zeros), deferred, per seed.
fn for_each_builtin_seed(body: impl Fn(Arc<SimDriver>)) {
    for seed in seeds() {
        let sim = Arc::new(SimDriver::with_options(
            builtin_topology(),
            SimOptions::default().seed(seed),
        ));
        body(sim.clone());
        assert_clean(&sim);
    }
}

/// Peer, staged (coalesced), pinned host-to-device, device-to-host (pinned
/// and pageable), same-device and empty moves in one batch: every route's
/// bytes arrive.
#[test]
fn a_batch_of_mixed_routes_delivers_every_part() {
    for_each_builtin_seed(|sim| {
        let driver: Arc<dyn Driver> = sim.clone();
        let policy = Policy {
            allow_via: false,
            chunk_bytes: 16 << 10,
            min_chunk_bytes: 16 << 10,
            ..Policy::default()
        };
        let mover = mover(&driver, policy, "none");
        let (d_peer, s_peer, mut t_peer) = parts(&driver, 0, 1, &[3000], 80);
        let (d_staged, s_staged, mut t_staged) = parts(&driver, 2, 3, &[40_000, 10, 0, 4096], 90);
        let (d_same, s_same, mut t_same) = parts(&driver, 1, 1, &[777], 100);
        let up_data = pattern(5000, 110);
        let mut up_src = PinnedBuffer::new(&driver, up_data.len()).unwrap();
        up_src.as_mut_slice().copy_from_slice(&up_data);
        let mut up_dst = device_with(&driver, 3, &complement(&up_data), AllocKind::Plain);
        let down_data = pattern(6000, 120);
        let down_src = device_with(&driver, 2, &down_data, AllocKind::Plain);
        let mut down_dst = vec![0u8; down_data.len()];
        let pinned_down_src = device_with(&driver, 0, &up_data, AllocKind::Plain);
        let mut pinned_down_dst = PinnedBuffer::new(&driver, up_data.len()).unwrap();

        let mut items: Vec<(&dyn MoveSource, &mut dyn MoveTarget)> = Vec::new();
        items.push((&s_peer[0], &mut t_peer[0]));
        let mut staged = s_staged.iter().zip(t_staged.iter_mut());
        items.extend(
            staged
                .next()
                .map(|(s, d)| (s as &dyn MoveSource, d as &mut dyn MoveTarget)),
        );
        items.push((&up_src, &mut up_dst));
        items.extend(
            staged
                .next()
                .map(|(s, d)| (s as &dyn MoveSource, d as &mut dyn MoveTarget)),
        );
        items.push((&s_same[0], &mut t_same[0]));
        items.push((&down_src, &mut down_dst));
        items.push((&pinned_down_src, &mut pinned_down_dst));
        for (s, d) in staged {
            items.push((s, d));
        }
        let plans = mover.copy_batch(items).unwrap();
        let routes: Vec<Route> = plans.iter().map(|p| p.route).collect();
        assert!(routes.contains(&Route::Peer), "{routes:?}");
        assert!(routes.contains(&Route::Staged), "{routes:?}");
        assert!(routes.contains(&Route::HostToDevice), "{routes:?}");
        assert!(routes.contains(&Route::DeviceToHost), "{routes:?}");
        check_parts(&driver, &d_peer, &s_peer, &t_peer);
        check_parts(&driver, &d_staged, &s_staged, &t_staged);
        check_parts(&driver, &d_same, &s_same, &t_same);
        assert_bytes(&read(&driver, &up_dst), &up_data, "upload");
        assert_bytes(&down_dst, &down_data, "download");
        assert_bytes(pinned_down_dst.as_slice(), &up_data, "pinned download");
    });
}

/// Via moves (2 -> 3 through cuda:0 on the builtin machine) travel as one
/// group through scratch buffers on the middle GPU, over many of them.
#[test]
fn coalesced_via_parts_arrive() {
    for_each_builtin_seed(|sim| {
        let driver: Arc<dyn Driver> = sim.clone();
        let policy = Policy {
            chunk_bytes: 16 << 10,
            min_chunk_bytes: 16 << 10,
            pipeline_depth: 2,
            small_copy_bytes: 0,
            ..Policy::default()
        };
        let mover = mover(&driver, policy, "none");
        let (data, srcs, mut dsts) = parts(&driver, 2, 3, PART_LENS, 150);
        mover.copy_batch(srcs.iter().zip(dsts.iter_mut())).unwrap();
        let before = sim.call_counts();
        let plans = mover.copy_batch(srcs.iter().zip(dsts.iter_mut())).unwrap();
        let calls = sim.call_counts().since(&before);
        assert!(
            plans.iter().any(|p| p.route == Route::Via { gpu: 0 }),
            "{plans:?}"
        );
        // About 9 buffers of 16 KiB, two legs each: a batched copy per leg
        // and buffer, not one per part and leg.
        let buffers = PART_LENS.iter().sum::<usize>().div_ceil(16 << 10) as u64;
        assert!(calls.of(CallKind::Copy) <= 2 * buffers, "{calls:?}");
        check_parts(&driver, &data, &srcs, &dsts);
    });
}

/// 48 staged parts of 16 KiB cost a handful of events, not a few per part:
/// they travel as one group (one slot relayed by the host, below the
/// crossover).
#[test]
fn coalesced_parts_share_their_events() {
    let sim = sim_seeded(3);
    let driver: Arc<dyn Driver> = sim.clone();
    let policy = Policy {
        allow_peer: false,
        ..Policy::default()
    };
    let mover = mover(&driver, policy, "none");
    let lens = vec![16 << 10; 48];
    let (data, srcs, mut dsts) = parts(&driver, 0, 1, &lens, 130);
    // A first batch sets up streams, events and slots.
    mover.copy_batch(srcs.iter().zip(dsts.iter_mut())).unwrap();
    let before = sim.call_counts();
    mover.copy_batch(srcs.iter().zip(dsts.iter_mut())).unwrap();
    let calls = sim.call_counts().since(&before);
    let plan = mover
        .plan(
            p2p_core::Location::Cuda(0),
            p2p_core::Location::Cuda(1),
            48 << 14,
        )
        .unwrap();
    assert_eq!(plan.layout, Layout::HostRelay, "{plan:?}");
    assert!(
        calls.of(CallKind::Record) <= 4 && calls.of(CallKind::Wait) <= 2,
        "48 parts as one group: {calls:?}"
    );
    check_parts(&driver, &data, &srcs, &dsts);
    assert_clean(&sim);
}

/// A failure at every driver call of a coalesced batch, in turn: an error,
/// the sources intact, and (the clean check) no copy still running on the
/// borrowed memory once the call returned.
#[test]
fn a_failure_anywhere_in_a_coalesced_batch_loses_nothing() {
    const LENS: &[usize] = &[20_000, 1, 40_000];
    // A machine and a mover whose streams, events and slots are set up.
    let setup = |seed: u64, relay: usize| {
        let sim = sim_seeded(seed);
        let driver: Arc<dyn Driver> = sim.clone();
        let mover = mover(&driver, staged_policy(relay), "none");
        let (data, srcs, mut dsts) = parts(&driver, 0, 1, LENS, 140);
        mover.copy_batch(srcs.iter().zip(dsts.iter_mut())).unwrap();
        (sim, driver, mover, data, srcs, dsts)
    };
    for kind in [
        CallKind::Copy,
        CallKind::Record,
        CallKind::Wait,
        CallKind::HostWait,
    ] {
        for relay in [0, usize::MAX] {
            for seed in seeds().into_iter().take(2) {
                // How many calls of `kind` the batch makes when all goes well.
                let (sim, _driver, mover, _data, srcs, mut dsts) = setup(seed, relay);
                let before = sim.call_counts();
                mover.copy_batch(srcs.iter().zip(dsts.iter_mut())).unwrap();
                let calls = sim.call_counts().since(&before).of(kind);
                if matches!(kind, CallKind::Copy | CallKind::Record) {
                    assert!(calls > 0, "{kind:?}: the batch makes no such call");
                }
                drop((mover, srcs, dsts));
                for nth in 1..=calls {
                    let (sim, driver, mover, data, srcs, mut dsts) = setup(seed, relay);
                    sim.fail_call(kind, nth);
                    let result = mover.copy_batch(srcs.iter().zip(dsts.iter_mut()));
                    assert!(
                        result.is_err(),
                        "{kind:?} call {nth} of {calls} failed, yet the batch succeeded"
                    );
                    for (i, expected) in data.iter().enumerate() {
                        assert_bytes(&read(&driver, &srcs[i]), expected, &format!("source {i}"));
                    }
                    assert_clean(&sim);
                }
            }
        }
    }
}
