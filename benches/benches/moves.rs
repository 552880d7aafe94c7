//! CPU benchmark: our own CPU time per move, for every kind of move whose
//! driver calls `p2p_benches::driver_calls` counts, next to those counts.
//!
//! Runs on the simulated machine in eager mode (every queued operation runs
//! at once), so the simulator's scheduling does not dominate; what is timed
//! is planning, scheduling, submitting and waiting, plus the simulator's
//! own bookkeeping and the memcpy of the bytes (which dominates from a few
//! MiB up). After the benchmarks it prints the counts with the time of each
//! move and writes them to `target/criterion/driver-calls.md`.
//!
//! Run with `cargo xtask bench` (or `cargo bench -p p2p-benches --bench moves`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use p2p_benches::driver_calls::{count_all, table, EXECUTION};
use p2p_benches::sim_moves::{catalogue, SimMove};

/// Samples per case (criterion's sample size).
const SAMPLES: usize = 20;

/// Per case, the mean time per move of each of criterion's calls of the
/// routine, in order (warm-up first, then one per sample).
static TIMES: Mutex<Vec<(&'static str, Vec<Duration>)>> = Mutex::new(Vec::new());

fn moves(c: &mut Criterion) {
    let mut group = c.benchmark_group("sim-calls");
    group.sample_size(SAMPLES);
    for case in catalogue() {
        let mut rig = match SimMove::new(&case, EXECUTION) {
            Ok(rig) => rig,
            Err(err) => panic!("{}: {err}", case.name),
        };
        group.throughput(Throughput::Bytes(case.total_bytes() as u64));
        let mut means = Vec::new();
        group.bench_function(case.name, |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    if let Err(err) = rig.run() {
                        panic!("{}: {err}", case.name);
                    }
                }
                let elapsed = start.elapsed();
                means.push(elapsed / u32::try_from(iters.max(1)).unwrap_or(u32::MAX));
                elapsed
            })
        });
        if let Err(err) = rig.check() {
            panic!("{}: {err}", case.name);
        }
        TIMES
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((case.name, means));
    }
    group.finish();
}

/// The median of the per-sample means (the last [`SAMPLES`] calls: criterion
/// warms up first); fewer under `--test`, where each routine runs once.
fn median_of_samples(means: &[Duration]) -> Option<Duration> {
    let mut samples = means[means.len().saturating_sub(SAMPLES)..].to_vec();
    samples.sort();
    samples.get(samples.len() / 2).copied()
}

/// Prints the counts with the times and writes them next to criterion's results.
fn report(_: &mut Criterion) {
    let rows = match count_all() {
        Ok(rows) => rows,
        Err(err) => panic!("counting driver calls: {err}"),
    };
    let times: HashMap<&str, Duration> = TIMES
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter_map(|(name, means)| Some((*name, median_of_samples(means)?)))
        .collect();
    let time = |name: &str| times.get(name).copied();
    let text = format!(
        "# Driver calls and our CPU time per move (simulated machine, eager mode)\n\n\
         CPU time: the median over criterion's samples of the mean time per move, on the \
         simulated machine (the simulator's bookkeeping and memcpy included; no GPU).\n\n{}",
        table(&rows, Some(&time))
    );
    println!("\n{text}");
    let dir = std::env::var_os("CRITERION_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    // The workspace's target folder: `benches/` is one level below the root.
                    let package = Path::new(env!("CARGO_MANIFEST_DIR"));
                    package.parent().unwrap_or(package).join("target")
                });
            target.join("criterion")
        });
    let path = dir.join("driver-calls.md");
    match std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, &text)) {
        Ok(()) => println!("==> driver calls per move: {}", path.display()),
        Err(err) => eprintln!("cannot write {}: {err}", path.display()),
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    targets = moves, report
}
criterion_main!(benches);
