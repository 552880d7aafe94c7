//! The latency path of small staged moves: below `Policy::host_relay_bytes`
//! the host hands the bytes from one leg to the other (as sequential
//! staging does), from it on the legs are chained on the GPUs. The planner
//! decides, the plan says so, and the executor follows the plan.

mod common;

use std::sync::Arc;

use common::*;
use p2p_core::sim::CallKind;
use p2p_core::{AllocKind, Driver, Location, PeerTable};
use p2p_move::{plan, Layout, Mover, Policy, Route, VerdictMatrix};

const A: Location = Location::Cuda(0);
const B: Location = Location::Cuda(1);

fn policy(relay: usize) -> Policy {
    Policy {
        host_relay_bytes: relay,
        ..Policy::default()
    }
}

#[test]
fn staged_moves_below_the_crossover_are_relayed_by_the_host() {
    let broken = VerdictMatrix::from_fn(3, |_, _| false);
    for (bytes, relay, expected) in [
        (4096, 1 << 20, true),
        ((1 << 20) - 1, 1 << 20, true),
        (1 << 20, 1 << 20, false),
        (4096, 0, false),
        (1, 2, true),
        // Never more than a chunk (8 MiB by default) in one relayed piece.
        (8 << 20, usize::MAX, true),
        ((8 << 20) + 1, usize::MAX, false),
    ] {
        let plan = plan(A, B, bytes, &broken, &policy(relay)).unwrap();
        assert_eq!(plan.route, Route::Staged);
        assert_eq!(
            plan.layout == Layout::HostRelay,
            expected,
            "{bytes} bytes, crossover {relay}: {plan:?}"
        );
    }
    // Zero bytes move nothing, whatever the crossover.
    let empty = plan(A, B, 0, &broken, &policy(usize::MAX)).unwrap();
    assert_eq!(empty.layout, Layout::Empty);
}

#[test]
fn only_staged_moves_are_relayed() {
    let verified = VerdictMatrix::from_fn(3, |_, _| true);
    let via_only = VerdictMatrix::from_fn(3, |from, to| !matches!((from, to), (0, 1)));
    for (verdicts, from, to) in [
        (&verified, A, B),
        (&via_only, A, B),
        (&verified, Location::Host, B),
        (&verified, A, Location::Host),
    ] {
        let plan = plan(from, to, 4096, verdicts, &policy(usize::MAX)).unwrap();
        assert_ne!(plan.layout, Layout::HostRelay, "{plan:?}");
    }
}

#[test]
fn a_host_relay_says_so_in_words_and_json() {
    let broken = VerdictMatrix::from_fn(2, |_, _| false);
    let plan = plan(A, B, 4096, &broken, &Policy::default()).unwrap();
    assert_eq!(plan.layout, Layout::HostRelay);
    assert!(
        plan.reason().contains("the host handing it"),
        "{}",
        plan.reason()
    );
    let json = serde_json::to_value(&plan).unwrap();
    assert_eq!(json["layout"], "host-relay", "{json}");
    let back: p2p_move::Plan = serde_json::from_value(json).unwrap();
    assert_eq!(back, plan);
}

/// The executor follows the plan's hand-over: a host wait and no stream
/// wait for a relay, a stream wait and no host wait inside the move for a
/// chained copy; the bytes arrive either way.
#[test]
fn the_executor_hands_over_as_planned() {
    for (relay, host_relayed) in [(usize::MAX, true), (0, false)] {
        let sim = sim_seeded(5);
        let driver: Arc<dyn Driver> = sim.clone();
        let staged = Policy {
            allow_peer: false,
            ..policy(relay)
        };
        let mover = Mover::new(
            Arc::new(PeerTable::new(driver.clone(), test_config())),
            staged,
        )
        .unwrap();
        let data = pattern(4096, 9);
        let src = device_with(&driver, 0, &data, AllocKind::Plain);
        let mut dst = device_with(&driver, 1, &complement(&data), AllocKind::Plain);
        mover.copy(&src, &mut dst).unwrap();
        let before = sim.call_counts();
        // SAFETY: waited for right below, never leaked.
        let transfer =
            unsafe { mover.copy_async(&src, &mut dst, p2p_move::StreamOrder::default()) }.unwrap();
        let queued = sim.call_counts().since(&before);
        transfer.wait().unwrap();
        assert_eq!(
            queued.of(CallKind::HostWait) > 0,
            host_relayed,
            "crossover {relay}: {queued:?}"
        );
        assert_eq!(
            queued.of(CallKind::Wait) > 0,
            !host_relayed,
            "crossover {relay}: {queued:?}"
        );
        assert_bytes(&read(&driver, &dst), &data, "destination");
        assert_clean(&sim);
    }
}
