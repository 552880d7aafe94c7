//! The planner's reasons, its serialised names, and which pairs it asks about.

use std::cell::RefCell;

use p2p_move::{
    plan, Chunk, InvalidDevice, Layout, Location, PeerVerdicts, Plan, PlanError, Policy, Route,
    Side, VerdictMatrix,
};

const MIB: usize = 1 << 20;

/// The default policy with chunks that never shrink, so reasons name the
/// policy's chunk size, the same for host routes (`shrinking_chunks_fill_the_pipeline`
/// covers shrinking and host chunks).
fn fixed_chunks() -> Policy {
    Policy {
        min_chunk_bytes: usize::MAX,
        host_chunk_bytes: Policy::DEFAULT_CHUNK_BYTES,
        ..Policy::default()
    }
}

fn plan_ok(
    src: Location,
    dst: Location,
    bytes: usize,
    verdicts: &dyn PeerVerdicts,
    policy: &Policy,
) -> Plan {
    match plan(src, dst, bytes, verdicts, policy) {
        Ok(plan) => plan,
        Err(error) => panic!("planning {src} -> {dst} failed: {error}"),
    }
}

fn gpu(ordinal: usize) -> Location {
    Location::Cuda(ordinal)
}

/// Verified exactly on the listed directed pairs.
fn matrix(device_count: usize, verified: &[(usize, usize)]) -> VerdictMatrix {
    VerdictMatrix::from_fn(device_count, |from, to| verified.contains(&(from, to)))
}

#[test]
fn peer_reason() {
    let plan = plan_ok(
        gpu(0),
        gpu(1),
        512 * MIB,
        &VerdictMatrix::all_verified(2),
        &fixed_chunks(),
    );
    assert_eq!(plan.route, Route::Peer);
    assert_eq!(
        plan.reason(),
        "cuda:0 -> cuda:1 verified by probe: direct peer copy"
    );
    assert_eq!(
        plan.chunks().collect::<Vec<_>>(),
        [Chunk {
            offset: 0,
            len: 512 * MIB
        }]
    );
    assert_eq!(plan.layout, Layout::Whole);
}

#[test]
fn via_reason_picks_the_lowest_verified_middle() {
    // 2 -> 3 broken; 2 -> 0 -> 3 and 2 -> 1 -> 3 both work: 0 wins.
    let verdicts = matrix(4, &[(2, 0), (0, 3), (2, 1), (1, 3)]);
    let plan = plan_ok(gpu(2), gpu(3), 20 * MIB, &verdicts, &fixed_chunks());
    assert_eq!(plan.route, Route::Via { gpu: 0 });
    assert_eq!(
        plan.reason(),
        "peer copy cuda:2 -> cuda:3 not verified; cuda:2 -> cuda:0 -> cuda:3 both verified: \
         via cuda:0 in 8 MiB chunks, 4 in flight"
    );
    let lens: Vec<usize> = plan.chunks().map(|chunk| chunk.len).collect();
    assert_eq!(lens, [8 * MIB, 8 * MIB, 4 * MIB]);
    assert_eq!(
        plan.layout,
        Layout::Pipelined {
            chunk_bytes: 8 * MIB,
            depth: 4
        }
    );
}

#[test]
fn via_needs_both_legs() {
    // 0 -> 2 works but 2 -> 1 does not; 1 is the destination and may not be the middle.
    let verdicts = matrix(3, &[(0, 2), (1, 1), (0, 0)]);
    let plan = plan_ok(gpu(0), gpu(1), 16 * MIB, &verdicts, &fixed_chunks());
    assert_eq!(plan.route, Route::Staged);
    assert_eq!(
        plan.reason(),
        "peer copy cuda:0 -> cuda:1 not verified and no verified third GPU: \
         staged through pinned host memory in 8 MiB chunks, 4 in flight"
    );
}

#[test]
fn staged_reasons_say_why_not_peer_and_not_via() {
    let two = plan_ok(
        gpu(1),
        gpu(0),
        16 * MIB,
        &VerdictMatrix::new(2),
        &fixed_chunks(),
    );
    assert_eq!(two.route, Route::Staged);
    assert_eq!(
        two.reason(),
        "peer copy cuda:1 -> cuda:0 not verified and no third GPU to go through: \
         staged through pinned host memory in 8 MiB chunks, 4 in flight"
    );

    let no_peer = Policy {
        allow_peer: false,
        ..fixed_chunks()
    };
    let disabled = plan_ok(
        gpu(0),
        gpu(1),
        16 * MIB,
        &VerdictMatrix::all_verified(2),
        &no_peer,
    );
    assert_eq!(disabled.route, Route::Staged);
    assert_eq!(
        disabled.reason(),
        "peer copy cuda:0 -> cuda:1 disabled by policy: \
         staged through pinned host memory in 8 MiB chunks, 4 in flight"
    );

    let no_via = Policy {
        allow_via: false,
        ..fixed_chunks()
    };
    let verdicts = matrix(3, &[(0, 2), (2, 1)]);
    let via_off = plan_ok(gpu(0), gpu(1), 16 * MIB, &verdicts, &no_via);
    assert_eq!(via_off.route, Route::Staged);
    assert_eq!(
        via_off.reason(),
        "peer copy cuda:0 -> cuda:1 not verified and hops through a third GPU disabled by policy: \
         staged through pinned host memory in 8 MiB chunks, 4 in flight"
    );
}

#[test]
fn host_reasons() {
    let verdicts = VerdictMatrix::new(1);
    let up = plan_ok(Location::Host, gpu(0), 3 * MIB, &verdicts, &fixed_chunks());
    assert_eq!(up.route, Route::HostToDevice);
    assert_eq!(
        up.reason(),
        "cpu -> cuda:0: host-to-device copy in one 3 MiB chunk"
    );
    assert_eq!(
        up.layout,
        Layout::Pipelined {
            chunk_bytes: 8 * MIB,
            depth: 4
        }
    );

    let down = plan_ok(gpu(0), Location::Host, 17 * MIB, &verdicts, &fixed_chunks());
    assert_eq!(down.route, Route::DeviceToHost);
    assert_eq!(
        down.reason(),
        "cuda:0 -> cpu: device-to-host copy in 8 MiB chunks, 4 in flight"
    );
    assert_eq!(down.chunk_count(), 3);
}

#[test]
fn small_copies_are_not_pipelined() {
    // Below the host-relay crossover, the host hands a staged copy over.
    let plan = plan_ok(
        gpu(0),
        gpu(1),
        4096,
        &VerdictMatrix::new(2),
        &fixed_chunks(),
    );
    assert_eq!(plan.layout, Layout::HostRelay);
    assert!(
        plan.reason().ends_with(
            "staged through pinned host memory in one 4 KiB piece, the host handing it from one leg to the other"
        ),
        "{}",
        plan.reason()
    );
    // Without the relay: one piece, the legs chained.
    let plan = plan_ok(
        gpu(0),
        gpu(1),
        4096,
        &VerdictMatrix::new(2),
        &Policy {
            host_relay_bytes: 0,
            ..fixed_chunks()
        },
    );
    assert_eq!(plan.route, Route::Staged);
    assert!(
        plan.reason().ends_with(
            "staged through pinned host memory in one 4 KiB chunk (small copy: no pipeline)"
        ),
        "{}",
        plan.reason()
    );
    assert_eq!(plan.layout, Layout::Whole);

    // A small-copy size above the chunk size: several chunks, one at a time.
    let policy = Policy {
        chunk_bytes: 16 << 10,
        host_chunk_bytes: 16 << 10,
        small_copy_bytes: 1 << 20,
        ..fixed_chunks()
    };
    let plan = plan_ok(
        Location::Host,
        gpu(0),
        40 << 10,
        &VerdictMatrix::new(1),
        &policy,
    );
    assert_eq!(
        plan.reason(),
        "cpu -> cuda:0: host-to-device copy in 16 KiB chunks, one at a time"
    );
    assert_eq!(plan.chunk_count(), 3);
    assert_eq!(plan.layout.depth(), 1);
}

#[test]
fn noop_and_empty_reasons() {
    let verdicts = VerdictMatrix::all_verified(2);
    let policy = fixed_chunks();
    for bytes in [0, 1, 512 * MIB] {
        let same = plan_ok(gpu(1), gpu(1), bytes, &verdicts, &policy);
        assert_eq!(same.route, Route::NoOp);
        assert_eq!(
            same.reason(),
            "source and destination are both cuda:1: nothing to move"
        );
        assert!(same.chunks().next().is_none());
    }
    let host = plan_ok(Location::Host, Location::Host, 10, &verdicts, &policy);
    assert_eq!(host.route, Route::NoOp);

    let empty = plan_ok(gpu(0), gpu(1), 0, &verdicts, &policy);
    assert_eq!(empty.route, Route::Peer);
    assert_eq!(
        empty.reason(),
        "cuda:0 -> cuda:1 verified by probe: direct peer copy; 0 bytes: nothing to copy"
    );
    assert!(empty.chunks().next().is_none());

    let empty_staged = plan_ok(gpu(0), gpu(1), 0, &VerdictMatrix::new(2), &policy);
    assert_eq!(empty_staged.route, Route::Staged);
    assert!(empty_staged
        .reason()
        .ends_with("staged through pinned host memory; 0 bytes: nothing to copy"));
    assert_eq!(empty_staged.layout, Layout::Empty);
}

#[test]
fn errors_say_what_and_with_what() {
    let verdicts = VerdictMatrix::all_verified(2);
    let error = plan(gpu(0), gpu(2), 1, &verdicts, &fixed_chunks()).unwrap_err();
    assert_eq!(
        error,
        PlanError::InvalidDevice(InvalidDevice {
            side: Some(Side::Destination),
            ordinal: 2,
            count: 2
        })
    );
    assert_eq!(
        error.to_string(),
        "the destination cuda:2 does not exist: this machine has 2 GPU(s) (cuda:0 to cuda:1)"
    );
    // Even a move from a missing GPU to itself is refused, not a silent no-op.
    assert!(plan(gpu(5), gpu(5), 1, &verdicts, &fixed_chunks()).is_err());

    let zero_chunk = Policy {
        chunk_bytes: 0,
        ..fixed_chunks()
    };
    let error = plan(gpu(0), gpu(1), 1, &verdicts, &zero_chunk).unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid policy: chunk_bytes = 0, but it must be at least 1 byte"
    );
    let zero_depth = Policy {
        pipeline_depth: 0,
        ..fixed_chunks()
    };
    assert!(matches!(
        plan(gpu(0), gpu(1), 1, &verdicts, &zero_depth),
        Err(PlanError::InvalidPolicy {
            field: "pipeline_depth",
            ..
        })
    ));

    let mut matrix = VerdictMatrix::new(2);
    assert!(matrix.set(0, 1, true).is_ok());
    assert!(matrix.is_verified(0, 1) && !matrix.is_verified(1, 0));
    assert_eq!(
        matrix.set(1, 7, true),
        Err(PlanError::InvalidDevice(InvalidDevice {
            side: None,
            ordinal: 7,
            count: 2
        }))
    );
    assert!(!matrix.is_verified(0, 7));
}

#[test]
fn serialised_names() {
    let names: Vec<String> = [
        Route::NoOp,
        Route::HostToDevice,
        Route::DeviceToHost,
        Route::Peer,
        Route::Staged,
        Route::Via { gpu: 2 },
    ]
    .iter()
    .map(|route| {
        assert_eq!(
            serde_json::to_value(route)
                .ok()
                .and_then(|v| v["route"].as_str().map(String::from)),
            Some(route.name().to_string())
        );
        route.to_string()
    })
    .collect();
    assert_eq!(
        names,
        [
            "noop",
            "host-to-device",
            "device-to-host",
            "peer",
            "staged",
            "via cuda:2"
        ]
    );

    let plan = plan_ok(
        gpu(0),
        gpu(1),
        10,
        &matrix(3, &[(0, 2), (2, 1)]),
        &fixed_chunks(),
    );
    let json = serde_json::to_value(&plan).unwrap_or_default();
    assert_eq!(json["route"], "via");
    assert_eq!(json["gpu"], 2);
    assert_eq!(json["bytes"], 10);
    assert_eq!(json["layout"], "whole");
    assert_eq!(json["why"]["why"], "via-verified-middle");

    // Policies read from config: missing fields default, unknown ones are refused.
    let policy: Policy = serde_json::from_str(r#"{"chunk_bytes": 1048576}"#).unwrap_or_default();
    assert_eq!(policy.chunk_bytes, MIB);
    assert_eq!(policy.pipeline_depth, Policy::DEFAULT_PIPELINE_DEPTH);
    assert!(serde_json::from_str::<Policy>(r#"{"chunk_size": 1}"#).is_err());
}

/// Records every question, to check that the planner asks (and so a lazy table probes) only what it needs.
struct Recording {
    inner: VerdictMatrix,
    asked: RefCell<Vec<(usize, usize)>>,
}

impl Recording {
    fn new(inner: VerdictMatrix) -> Self {
        Recording {
            inner,
            asked: RefCell::new(Vec::new()),
        }
    }

    fn asked_for(&self, src: Location, dst: Location, policy: &Policy) -> Vec<(usize, usize)> {
        self.asked.borrow_mut().clear();
        plan_ok(src, dst, MIB, self, policy);
        self.asked.borrow().clone()
    }
}

impl PeerVerdicts for Recording {
    fn device_count(&self) -> usize {
        self.inner.device_count()
    }

    fn is_verified(&self, from: usize, to: usize) -> bool {
        self.asked.borrow_mut().push((from, to));
        self.inner.is_verified(from, to)
    }
}

#[test]
fn asks_only_about_pairs_it_may_use() {
    let policy = fixed_chunks();
    let all = Recording::new(VerdictMatrix::all_verified(8));
    assert_eq!(all.asked_for(gpu(3), gpu(5), &policy), [(3, 5)]);
    assert_eq!(all.asked_for(Location::Host, gpu(5), &policy), []);
    assert_eq!(all.asked_for(gpu(5), Location::Host, &policy), []);
    assert_eq!(all.asked_for(gpu(5), gpu(5), &policy), []);
    let no_peer = Policy {
        allow_peer: false,
        ..fixed_chunks()
    };
    assert_eq!(all.asked_for(gpu(3), gpu(5), &no_peer), []);

    // 3 -> 5 broken: the search stops at the first middle that works, and
    // asks about a second leg only where the first one works.
    let partial = Recording::new(matrix(8, &[(3, 1), (3, 2), (2, 5)]));
    let every_middle = Policy {
        max_via_middles: 6,
        ..fixed_chunks()
    };
    assert_eq!(
        partial.asked_for(gpu(3), gpu(5), &every_middle),
        [(3, 5), (3, 0), (3, 1), (1, 5), (3, 2), (2, 5)]
    );
    // By default it asks about two middles at most (each question may probe,
    // and create contexts on, a GPU the caller never named), and says so.
    assert_eq!(
        partial.asked_for(gpu(3), gpu(5), &policy),
        [(3, 5), (3, 0), (3, 1), (1, 5)]
    );
    let bounded = plan_ok(gpu(3), gpu(5), MIB, &partial, &policy);
    assert_eq!(bounded.route, Route::Staged);
    assert!(
        bounded
            .reason()
            .contains("no verified third GPU among the 2 of 6 asked (max_via_middles)"),
        "{}",
        bounded.reason()
    );
    let none = Policy {
        max_via_middles: 0,
        ..fixed_chunks()
    };
    assert_eq!(partial.asked_for(gpu(3), gpu(5), &none), [(3, 5)]);
    let no_via = Policy {
        allow_via: false,
        ..fixed_chunks()
    };
    assert_eq!(partial.asked_for(gpu(3), gpu(5), &no_via), [(3, 5)]);
}

#[test]
fn shrinking_chunks_fill_the_pipeline() {
    let verdicts = VerdictMatrix::new(2);
    let policy = Policy::default();
    let chunk = |bytes: usize| {
        plan_ok(gpu(0), gpu(1), bytes, &verdicts, &policy)
            .layout
            .chunk_bytes()
    };
    assert_eq!(
        chunk(1 << 30),
        Some(8 * MIB),
        "large copies use the full chunk"
    );
    assert_eq!(chunk(64 * MIB), Some(4 * MIB), "16 chunks for 4 in flight");
    assert_eq!(chunk(4 * MIB), Some(MIB), "never below the minimum");
    let host = |bytes: usize| {
        plan_ok(Location::Host, gpu(0), bytes, &verdicts, &policy)
            .layout
            .chunk_bytes()
    };
    assert_eq!(
        host(1 << 30),
        Some(16 * MIB),
        "host routes use large chunks"
    );
    assert_eq!(
        host(32 * MIB),
        Some(8 * MIB),
        "four of them for a medium copy"
    );
    let reason = plan_ok(gpu(0), gpu(1), 64 * MIB, &verdicts, &policy).reason();
    assert!(reason.ends_with("in 4 MiB chunks, 4 in flight"), "{reason}");
}
