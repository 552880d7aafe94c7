//! Properties of the planner over generated machines, verdict matrices, moves and policies.

use p2p_move::{
    plan, InvalidDevice, Layout, Location, Plan, PlanError, Policy, Route, Side, VerdictMatrix,
    MAX_CHUNKS,
};
use proptest::prelude::*;

/// One generated planning problem.
#[derive(Clone, Debug)]
struct Case {
    verdicts: VerdictMatrix,
    src: Location,
    dst: Location,
    bytes: usize,
    policy: Policy,
}

impl Case {
    fn device_count(&self) -> usize {
        p2p_move::PeerVerdicts::device_count(&self.verdicts)
    }

    fn verified(&self, from: usize, to: usize) -> bool {
        p2p_move::PeerVerdicts::is_verified(&self.verdicts, from, to)
    }

    fn is_valid(&self, location: Location) -> bool {
        location
            .device()
            .is_none_or(|ordinal| ordinal < self.device_count())
    }

    fn plan(&self) -> Result<Plan, PlanError> {
        plan(self.src, self.dst, self.bytes, &self.verdicts, &self.policy)
    }
}

fn verdict_matrix() -> impl Strategy<Value = VerdictMatrix> {
    (1usize..=8).prop_flat_map(|n| {
        // Mostly-broken, mixed and mostly-verified machines all show up.
        (0.0f64..=1.0).prop_flat_map(move |p| {
            proptest::collection::vec(proptest::bool::weighted(p), n * n)
                .prop_map(move |cells| VerdictMatrix::from_fn(n, |from, to| cells[from * n + to]))
        })
    })
}

/// Host, or a GPU ordinal up to 9: ordinals at or past the device count are invalid.
fn location() -> impl Strategy<Value = Location> {
    prop_oneof![
        1 => Just(Location::Host),
        4 => (0usize..10).prop_map(Location::Cuda),
    ]
}

fn bytes() -> impl Strategy<Value = usize> {
    prop_oneof![
        Just(0usize),
        0usize..=4096,
        0usize..=(1 << 34),
        // Exact multiples of common chunk sizes.
        (0usize..=64).prop_map(|k| k << 20),
    ]
}

fn policy() -> impl Strategy<Value = Policy> {
    let chunk_bytes = prop_oneof![
        1 => Just(0usize),
        4 => 1usize..=4096,
        4 => 1usize..=(1 << 30),
        2 => Just(Policy::DEFAULT_CHUNK_BYTES),
    ];
    let pipeline_depth = prop_oneof![1 => Just(0usize), 8 => 1usize..=16];
    let small_copy_bytes = prop_oneof![Just(0usize), 0usize..=(1 << 20), Just(usize::MAX)];
    let min_chunk_bytes = prop_oneof![Just(0usize), 1usize..=(2 << 20)];
    (
        chunk_bytes,
        pipeline_depth,
        any::<bool>(),
        any::<bool>(),
        small_copy_bytes,
        min_chunk_bytes,
        0usize..=4,
        prop_oneof![Just(0usize), 0usize..=(4 << 20), Just(usize::MAX)],
    )
        .prop_map(
            |(
                chunk_bytes,
                pipeline_depth,
                allow_peer,
                allow_via,
                small_copy_bytes,
                min_chunk_bytes,
                max_via_middles,
                host_relay_bytes,
            )| Policy {
                chunk_bytes,
                pipeline_depth,
                allow_peer,
                allow_via,
                small_copy_bytes,
                min_chunk_bytes,
                // Tied to chunk_bytes, so a zero is the one error the
                // properties expect for chunk sizes.
                host_chunk_bytes: chunk_bytes,
                max_via_middles,
                host_relay_bytes,
            },
        )
}

/// Most chunk counts a generated plan may have, short of the refused ones:
/// plans near [`MAX_CHUNKS`] are slow to check in a debug build, and the
/// limit itself has its own test.
const GENERATED_CHUNKS: usize = 1 << 12;

fn case() -> impl Strategy<Value = Case> {
    (verdict_matrix(), location(), location(), bytes(), policy()).prop_map(
        |(verdicts, src, dst, bytes, mut policy)| {
            let chunks = bytes.checked_div(policy.chunk_bytes).unwrap_or(0);
            if (GENERATED_CHUNKS..=MAX_CHUNKS).contains(&chunks) {
                policy.chunk_bytes = bytes / GENERATED_CHUNKS + 1;
            }
            Case {
                verdicts,
                src,
                dst,
                bytes,
                policy,
            }
        },
    )
}

/// A case whose inputs are valid, with its (successful) plan.
fn planned() -> impl Strategy<Value = (Case, Plan)> {
    case().prop_filter_map("invalid input or too many chunks", |case| {
        case.plan().ok().map(|plan| (case, plan))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// Errors exactly for bad input, in a fixed order: policy, then devices, then chunk count.
    #[test]
    fn errors_exactly_for_invalid_input(case in case()) {
        let result = case.plan();
        let n = case.device_count();
        if case.policy.chunk_bytes == 0 {
            prop_assert!(
                matches!(&result, Err(PlanError::InvalidPolicy { field: "chunk_bytes", value: 0, .. })),
                "{result:?}"
            );
        } else if case.policy.pipeline_depth == 0 {
            prop_assert!(
                matches!(&result, Err(PlanError::InvalidPolicy { field: "pipeline_depth", value: 0, .. })),
                "{result:?}"
            );
        } else if !case.is_valid(case.src) {
            prop_assert_eq!(result, Err(PlanError::InvalidDevice(InvalidDevice { side: Some(Side::Source), ordinal: case.src.device().unwrap_or(usize::MAX), count: n })));
        } else if !case.is_valid(case.dst) {
            prop_assert_eq!(result, Err(PlanError::InvalidDevice(InvalidDevice { side: Some(Side::Destination), ordinal: case.dst.device().unwrap_or(usize::MAX), count: n })));
        } else {
            match result {
                Ok(_) => {}
                Err(PlanError::TooManyChunks { bytes, chunk_bytes, chunks, limit }) => {
                    prop_assert_eq!(bytes, case.bytes);
                    prop_assert_eq!(chunk_bytes, case.policy.chunk_bytes);
                    prop_assert_eq!(chunks, bytes.div_ceil(chunk_bytes));
                    prop_assert_eq!(limit, MAX_CHUNKS);
                    prop_assert!(chunks > MAX_CHUNKS);
                }
                Err(other) => prop_assert!(false, "unexpected error {other:?}"),
            }
        }
    }

    #[test]
    fn noop_iff_locations_are_equal((case, plan) in planned()) {
        prop_assert_eq!(plan.route == Route::NoOp, case.src == case.dst);
        prop_assert_eq!((plan.src, plan.dst, plan.bytes), (case.src, case.dst, case.bytes));
    }

    /// The route fits the kinds of location, and is the best one the verdicts and policy allow.
    #[test]
    fn route_is_the_best_allowed((case, plan) in planned()) {
        let expected = match (case.src, case.dst) {
            _ if case.src == case.dst => Route::NoOp,
            (Location::Host, _) => Route::HostToDevice,
            (_, Location::Host) => Route::DeviceToHost,
            (Location::Cuda(a), Location::Cuda(b)) => {
                if case.policy.allow_peer && case.verified(a, b) {
                    Route::Peer
                } else if case.policy.allow_peer && case.policy.allow_via {
                    (0..case.device_count())
                        .filter(|&k| k != a && k != b)
                        .take(case.policy.max_via_middles)
                        .find(|&k| case.verified(a, k) && case.verified(k, b))
                        .map_or(Route::Staged, |gpu| Route::Via { gpu })
                } else {
                    Route::Staged
                }
            }
        };
        prop_assert_eq!(plan.route, expected);
    }

    /// Safety, stated on its own: no peer copy over a leg that is not verified or not allowed.
    #[test]
    fn never_an_unverified_leg((case, plan) in planned()) {
        match (plan.route, case.src, case.dst) {
            (Route::Peer, Location::Cuda(a), Location::Cuda(b)) => {
                prop_assert!(case.policy.allow_peer);
                prop_assert!(case.verified(a, b));
            }
            (Route::Via { gpu }, Location::Cuda(a), Location::Cuda(b)) => {
                prop_assert!(case.policy.allow_peer && case.policy.allow_via);
                prop_assert!(gpu != a && gpu != b, "via {gpu} for {a} -> {b}");
                prop_assert!(gpu < case.device_count());
                prop_assert!(case.verified(a, gpu) && case.verified(gpu, b));
                prop_assert!(case.device_count() >= 3);
            }
            (Route::Peer | Route::Via { .. }, src, dst) => {
                prop_assert!(false, "{:?} between {src} and {dst}", plan.route);
            }
            _ => {}
        }
    }

    /// Chunks tile 0..bytes in order, each non-empty; chunked routes keep to chunk_bytes.
    #[test]
    fn chunks_cover_the_bytes_once((case, plan) in planned()) {
        if plan.route == Route::NoOp || case.bytes == 0 {
            prop_assert!(plan.chunks().next().is_none());
            prop_assert_eq!(plan.layout, Layout::Empty);
            return Ok(());
        }
        let mut next = 0;
        let chunks: Vec<_> = plan.chunks().collect();
        prop_assert_eq!(chunks.len(), plan.chunk_count());
        for chunk in &chunks {
            prop_assert_eq!(chunk.offset, next);
            prop_assert!(chunk.len > 0);
            next = chunk.end();
        }
        prop_assert_eq!(next, case.bytes);
        if plan.route.is_chunked() {
            let host = matches!(plan.route, Route::HostToDevice | Route::DeviceToHost);
            let chunk_bytes = if host {
                case.policy.host_chunk_bytes_for(case.bytes)
            } else {
                case.policy.chunk_bytes_for(case.bytes)
            };
            if plan.route == Route::Staged
                && case.bytes < case.policy.host_relay_bytes
                && case.bytes <= case.policy.chunk_bytes
            {
                // Below the crossover a staged copy is one piece the host relays.
                prop_assert_eq!(plan.layout, Layout::HostRelay);
                prop_assert_eq!(chunks.len(), 1);
                return Ok(());
            }
            prop_assert_ne!(plan.layout, Layout::HostRelay);
            let small = case.bytes < case.policy.small_copy_bytes;
            if small && case.bytes <= chunk_bytes {
                // A small copy that fits one chunk is one whole piece.
                prop_assert_eq!(plan.layout, Layout::Whole);
                prop_assert_eq!(chunks.len(), 1);
                return Ok(());
            }
            prop_assert_eq!(plan.layout.chunk_bytes(), Some(chunk_bytes));
            let most = if host { case.policy.host_chunk_bytes } else { case.policy.chunk_bytes };
            prop_assert!(chunk_bytes <= most, "never above the policy's chunk size");
            prop_assert!(
                chunk_bytes >= case.policy.min_chunk_bytes.min(most),
                "never below the minimum"
            );
            prop_assert!(chunks.iter().all(|chunk| chunk.len <= chunk_bytes));
            // All but the last are full.
            let (_, full) = chunks.split_last().unwrap_or_else(|| unreachable!());
            prop_assert!(full.iter().all(|chunk| chunk.len == chunk_bytes));
            let depth = if small { 1 } else { case.policy.pipeline_depth };
            prop_assert_eq!(plan.layout.depth(), depth);
        } else {
            prop_assert_eq!(plan.route, Route::Peer);
            prop_assert_eq!(chunks.len(), 1);
            prop_assert_eq!(plan.layout, Layout::Whole);
        }
    }

    #[test]
    fn plans_are_deterministic(case in case()) {
        let first = case.plan();
        let again = case.plan();
        let copy = case.clone();
        prop_assert_eq!(&first, &again);
        prop_assert_eq!(&first, &copy.plan());
    }

    /// The reason names the endpoints, the route's key facts, and empty copies.
    #[test]
    fn reasons_name_what_was_decided((case, plan) in planned()) {
        prop_assert!(plan.reason().contains(&case.src.to_string()), "{}", plan.reason());
        match plan.route {
            Route::NoOp => prop_assert!(plan.reason().contains("nothing to move")),
            Route::Peer => prop_assert!(plan.reason().contains("direct peer copy")),
            Route::Via { gpu } => {
                let via = format!("via cuda:{gpu}");
                prop_assert!(plan.reason().contains(&via), "{}", plan.reason());
            }
            Route::Staged => prop_assert!(plan.reason().contains("staged through pinned host memory")),
            Route::HostToDevice => prop_assert!(plan.reason().contains("host-to-device")),
            Route::DeviceToHost => prop_assert!(plan.reason().contains("device-to-host")),
            other => prop_assert!(false, "unknown route {other:?}"),
        }
        if plan.route != Route::NoOp {
            prop_assert!(plan.reason().contains(&case.dst.to_string()), "{}", plan.reason());
            prop_assert_eq!(case.bytes == 0, plan.reason().contains("nothing to copy"), "{}", plan.reason());
        }
    }

    /// `format_size` reads back exactly when it printed no rounded decimals, and closely otherwise.
    #[test]
    fn sizes_read_back(bytes in prop_oneof![any::<usize>(), 0usize..(1 << 40), (0usize..4096, 0u32..5).prop_map(|(m, e)| m << (10 * e))]) {
        let text = p2p_move::format_size(bytes);
        let parsed = p2p_move::parse_size(&text);
        if parsed != Ok(bytes) {
            // Only a rounded value may read back differently: two decimals of
            // the printed unit, within half a hundredth of it.
            let (value, unit) = text.split_once(' ').unwrap_or((&text, ""));
            prop_assert!(value.split_once('.').is_some_and(|(_, decimals)| decimals.len() == 2), "{}", text);
            let unit_bytes = p2p_move::parse_size(&format!("1 {unit}")).map_err(|e| TestCaseError::fail(e.to_string()))? as f64;
            let value: f64 = value.parse().map_err(|_| TestCaseError::fail(text.clone()))?;
            let error = (value * unit_bytes - bytes as f64).abs();
            prop_assert!(error <= unit_bytes / 200.0 * 1.0001, "{} printed as {}", bytes, text);
        }
    }
}

proptest! {
    // Serialising thousands of chunks is slow in a debug build; the shape matters, not the count.
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn plans_round_trip_through_json((_case, plan) in planned()) {
        let json = serde_json::to_string(&plan).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let back: Plan = serde_json::from_str(&json).map_err(|e| TestCaseError::fail(format!("{e}: {json}")))?;
        prop_assert_eq!(back, plan);
    }
}

#[test]
fn too_many_chunks_is_refused() {
    let policy = Policy {
        chunk_bytes: 1,
        host_chunk_bytes: 1,
        ..Policy::default()
    };
    let result = plan(
        Location::Host,
        Location::Cuda(0),
        MAX_CHUNKS + 1,
        &VerdictMatrix::new(1),
        &policy,
    );
    assert_eq!(
        result,
        Err(PlanError::TooManyChunks {
            bytes: MAX_CHUNKS + 1,
            chunk_bytes: 1,
            chunks: MAX_CHUNKS + 1,
            limit: MAX_CHUNKS,
        })
    );
    // Exactly at the limit is fine, and a peer copy never needs chunks.
    let at_limit = plan(
        Location::Host,
        Location::Cuda(0),
        MAX_CHUNKS,
        &VerdictMatrix::new(1),
        &policy,
    );
    assert_eq!(at_limit.map(|plan| plan.chunk_count()), Ok(MAX_CHUNKS));
    let peer = plan(
        Location::Cuda(0),
        Location::Cuda(1),
        usize::MAX,
        &VerdictMatrix::all_verified(2),
        &policy,
    );
    assert_eq!(peer.map(|plan| plan.chunk_count()), Ok(1));
}
