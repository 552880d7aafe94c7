//! CPU benchmarks: the planner over 8 GPUs for every route, and whole moves
//! on the simulated machine (peer 0 -> 1, and 2 -> 3, whose peer path is
//! broken in the built-in machine, via a third GPU and staged).
//!
//! Run with `cargo xtask bench` (or `cargo bench -p p2p-benches --bench planner`).

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use p2p_core::memory::DeviceBuffer;
use p2p_core::{AllocKind, Config, Driver, Location, PeerTable, SimDriver};
use p2p_move::{plan, Mover, Policy, Route, VerdictMatrix};

const GPUS: usize = 8;
/// Large enough that chunked routes make several chunks (8 of the default 8 MiB).
const PLANNED_BYTES: usize = 64 << 20;

fn planner(c: &mut Criterion) {
    let policy = Policy::default();
    let all = VerdictMatrix::all_verified(GPUS);
    let none = VerdictMatrix::new(GPUS);
    // 0 -> 1 broken, everything else verified: via the lowest other GPU (2).
    let hole = VerdictMatrix::from_fn(GPUS, |from, to| (from, to) != (0, 1));
    // 0 -> 1 broken and only GPU 7 verified both ways: the search walks every candidate.
    let far = VerdictMatrix::from_fn(GPUS, |from, to| matches!((from, to), (0, 7) | (7, 1)));
    let cases: [(&str, Location, Location, &VerdictMatrix, Route); 7] = [
        (
            "noop",
            Location::Cuda(3),
            Location::Cuda(3),
            &all,
            Route::NoOp,
        ),
        (
            "host-to-device",
            Location::Host,
            Location::Cuda(5),
            &all,
            Route::HostToDevice,
        ),
        (
            "device-to-host",
            Location::Cuda(5),
            Location::Host,
            &all,
            Route::DeviceToHost,
        ),
        (
            "peer",
            Location::Cuda(0),
            Location::Cuda(1),
            &all,
            Route::Peer,
        ),
        (
            "via-first",
            Location::Cuda(0),
            Location::Cuda(1),
            &hole,
            Route::Via { gpu: 2 },
        ),
        (
            "via-last",
            Location::Cuda(0),
            Location::Cuda(1),
            &far,
            Route::Via { gpu: 7 },
        ),
        (
            "staged",
            Location::Cuda(0),
            Location::Cuda(1),
            &none,
            Route::Staged,
        ),
    ];
    let mut group = c.benchmark_group("plan-8-gpus");
    group.throughput(Throughput::Elements(1));
    for (name, src, dst, verdicts, route) in cases {
        let made = plan(src, dst, PLANNED_BYTES, verdicts, &policy).expect("a valid plan");
        assert_eq!(made.route, route, "{name}: {}", made.reason());
        group.bench_function(name, |b| {
            b.iter(|| {
                plan(
                    black_box(src),
                    black_box(dst),
                    black_box(PLANNED_BYTES),
                    verdicts,
                    &policy,
                )
            })
        });
    }
    group.finish();
}

/// One simulated move: a mover, and source and destination buffers.
struct SimMove {
    mover: Mover,
    src: DeviceBuffer,
    dst: DeviceBuffer,
}

impl SimMove {
    fn new(
        driver: &Arc<dyn Driver>,
        from: usize,
        to: usize,
        bytes: usize,
        policy: Policy,
        route: Route,
    ) -> SimMove {
        let table = Arc::new(PeerTable::new(driver.clone(), Config::default()));
        let mover = Mover::new(table, policy).expect("a valid policy");
        let src =
            DeviceBuffer::new(driver, from, bytes, AllocKind::Plain).expect("simulated memory");
        let dst = DeviceBuffer::new(driver, to, bytes, AllocKind::Plain).expect("simulated memory");
        // Probes the pairs now, so the timed moves find their verdicts known.
        let planned = mover
            .plan(Location::Cuda(from), Location::Cuda(to), bytes)
            .expect("a plan");
        assert_eq!(
            planned.route,
            route,
            "cuda:{from} -> cuda:{to}: {}",
            planned.reason()
        );
        SimMove { mover, src, dst }
    }
}

fn simulated_moves(c: &mut Criterion) {
    let driver: Arc<dyn Driver> = Arc::new(SimDriver::builtin());
    let no_via = Policy {
        allow_via: false,
        ..Policy::default()
    };
    let mut group = c.benchmark_group("sim-move");
    for bytes in [4 << 10, 16 << 20] {
        let cases = [
            ("peer-0-1", 0, 1, Policy::default(), Route::Peer),
            ("via-2-3", 2, 3, Policy::default(), Route::Via { gpu: 0 }),
            ("staged-2-3", 2, 3, no_via.clone(), Route::Staged),
        ];
        group.throughput(Throughput::Bytes(bytes as u64));
        for (name, from, to, policy, route) in cases {
            let SimMove {
                mover,
                src,
                mut dst,
            } = SimMove::new(&driver, from, to, bytes, policy, route);
            group.bench_with_input(
                BenchmarkId::new(name, p2p_move::format_size(bytes)),
                &bytes,
                |b, _| b.iter(|| mover.copy(&src, &mut dst).expect("a simulated move")),
            );
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    targets = planner, simulated_moves
}
criterion_main!(benches);
