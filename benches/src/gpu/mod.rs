//! The GPU benchmark suite behind the `gpu-bench` binary: our routes against
//! raw driver baselines on cuda:0 -> cuda:1 (and through cuda:2), by size,
//! with a correctness check of every route.
//!
//! On a machine with one GPU the suite runs in loopback mode ([`Loopback`]:
//! the GPU seen as two devices), where every route through host memory runs
//! for real and the rows that need a second GPU are skipped, saying so.
//!
//! Every operation is timed on the host around the complete operation (a
//! blocking move, or raw calls followed by a stream synchronize), as a caller
//! would wait for it; the median of N reps after warm-up is reported. All
//! sizes use the same (largest) buffers. Each section records its own
//! failure and the next one still runs.

mod batch;
mod batch_buffers;
mod crossover;
mod latency;
mod loopback;
mod machine;
mod output;
mod peer;
mod staged_batch;
mod staging;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use p2p_core::memory::{DeviceBuffer, PinnedBuffer, Stream};
use p2p_core::{
    AllocKind, CacheSetting, Config, DisabledPairs, Driver, Location, PeerTable, Reason,
};
use p2p_move::{Mover, Policy, Route};

use crate::cli::Options;
use crate::pattern;
use crate::raw_baselines as raw;
use crate::raw_ranges::{DeviceRange, DeviceRangeMut};
use crate::report::{self, Check, Row, Show, Target};
use crate::timing::Reps;

pub use loopback::{Loopback, LOOPBACK_LABEL};
pub use machine::{Machine, Mode};
pub use output::{machine_lines, markdown_path};

type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

/// The pair measured: cuda:0 -> cuda:1, and cuda:2 in the middle for `via`.
const SRC: usize = 0;
const DST: usize = 1;
const MID: usize = 2;
/// What destinations hold before a checked copy: a copy that writes nothing,
/// or too little, or too much, is caught.
const POISON: u8 = 0xA5;
/// The batch: many small tensors, as a model's layer moves them.
const BATCH_COUNT: usize = 256;
const BATCH_ITEM_BYTES: usize = 16 << 10;
/// The targets apply to peer copies from 16 MiB, staged and pageable ones from 64 MiB.
const PEER_TARGET_FROM: usize = 16 << 20;
const STREAMING_TARGET_FROM: usize = 64 << 20;
const SMALLEST: usize = 4 << 10;

/// What a run found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// Every correctness check passed and nothing failed (unmet speed targets do not count).
    pub passed: bool,
    /// The tables and notes as markdown (what `gpu-bench` writes to `bench-gpu.md`).
    pub markdown: String,
}

/// Runs every section on the machine's cuda:0 and cuda:1 (and cuda:2 where
/// there is one) and prints the tables as it goes.
///
/// # Errors
/// When the shared buffers cannot be set up (too little memory, a driver failure).
pub fn run(machine: Machine, options: Options) -> BenchResult<Summary> {
    let mut bench = Bench::new(machine, options)?;
    bench.run_sections();
    Ok(bench.finish())
}

/// Raw figures by size, shown in a table of their own.
#[derive(Clone, Copy, Debug, Default)]
struct Baselines {
    peer: Option<Duration>,
    peer_pool_ungranted: Option<Duration>,
    download_src: Option<Duration>,
    upload_dst: Option<Duration>,
    upload_src: Option<Duration>,
    sequential_staging: Option<Duration>,
    pageable_round_trip: Option<Duration>,
}

/// One way of doing the batch of device-to-device copies, for the options table.
#[derive(Clone, Debug)]
struct BatchOption {
    /// What was called.
    option: String,
    /// Which devices: `peer cuda:0 -> cuda:1` or `same device cuda:0`.
    pair: String,
    time: Duration,
    /// Whether its bytes were checked and right (`None`: not checked).
    checked: Option<bool>,
}

/// One size of the staged crossover: the policy's two extremes, the default
/// policy and the raw baseline.
#[derive(Clone, Copy, Debug)]
struct Crossover {
    size: usize,
    /// `host_relay_bytes = 0`: the legs chained by events.
    chained: Duration,
    /// `host_relay_bytes = usize::MAX`: the host relays every move.
    relayed: Duration,
    default: Duration,
    /// The default policy's crossover.
    default_relay_bytes: usize,
    sequential: Duration,
}

/// What one case measured: our figure, compared in one row per baseline
/// ([`Bench::push_rows`]).
struct Measured {
    route: String,
    size: String,
    bytes: usize,
    ours: Duration,
    show: Show,
    /// Whether our route delivered the right bytes in its check.
    correct: bool,
}

impl Measured {
    /// One copy of `bytes`.
    fn sized(route: &str, bytes: usize, ours: Duration, correct: bool) -> Measured {
        Measured {
            route: route.to_string(),
            size: p2p_move::format_size(bytes),
            bytes,
            ours,
            show: Show::for_size(bytes),
            correct,
        }
    }

    /// A batch of `BATCH_COUNT` tensors of `BATCH_ITEM_BYTES`.
    fn batch(route: &str, ours: Duration, correct: bool) -> Measured {
        Measured {
            route: route.to_string(),
            size: batch_buffers::batch_size(),
            bytes: BATCH_COUNT * BATCH_ITEM_BYTES,
            ours,
            show: Show::Time,
            correct,
        }
    }
}

/// Stream-ordered pool memory on both sides of the pair.
struct PoolPair {
    src: DeviceBuffer,
    dst: DeviceBuffer,
}

/// The movers a run uses.
struct Movers {
    /// The environment's default: probes the pair, stages where it must.
    main: Mover,
    /// Peer copy broken: disabled by policy on two GPUs, not claimed in
    /// loopback mode; no hop through a third GPU.
    staged: Mover,
    /// Peer copy of the pair disabled, hops allowed.
    via: Mover,
}

/// The buffers every section shares, and what the sections found.
struct Bench {
    driver: Arc<dyn Driver>,
    mode: Mode,
    raw_batch: std::result::Result<crate::raw_batch::RawBatch, String>,
    options: Options,
    sizes: Vec<usize>,
    /// The source bytes: the reference for every check, and the pageable source.
    pattern: Vec<u8>,
    /// `cuMemAlloc` memory holding `pattern`, on cuda:0.
    src: DeviceBuffer,
    /// `cuMemAlloc` memory on cuda:1.
    dst: DeviceBuffer,
    /// `cuMemAlloc` memory on cuda:0: the pageable upload's destination.
    local_dst: DeviceBuffer,
    pinned: PinnedBuffer,
    /// Pageable host memory: ExLlamaV2's fallback goes through it.
    pageable: Vec<u8>,
    /// A stream on each device of the pair, indexed by ordinal (`SRC`, `DST`).
    streams: Vec<Stream>,
    rows: Vec<Row>,
    baselines: BTreeMap<usize, Baselines>,
    batch_options: Vec<BatchOption>,
    crossovers: Vec<Crossover>,
    checks: Vec<Check>,
    notes: Vec<String>,
    errors: Vec<String>,
}

impl Bench {
    fn new(machine: Machine, options: Options) -> BenchResult<Bench> {
        let Machine {
            driver,
            mode,
            raw_batch,
        } = machine;
        let sizes = options.sizes();
        let max = sizes.iter().copied().max().unwrap_or(SMALLEST);
        let streams = [SRC, DST]
            .into_iter()
            .map(|device| Stream::new(&driver, device))
            .collect::<p2p_core::Result<Vec<_>>>()?;
        let pattern = pattern::pattern(max, 1);
        let mut src = DeviceBuffer::new(&driver, SRC, max, AllocKind::Plain)?;
        src.write_from_slice(&pattern, &streams[SRC])?;
        Ok(Bench {
            dst: DeviceBuffer::new(&driver, DST, max, AllocKind::Plain)?,
            local_dst: DeviceBuffer::new(&driver, SRC, max, AllocKind::Plain)?,
            pinned: PinnedBuffer::new(&driver, max)?,
            pageable: vec![0; max],
            src,
            pattern,
            streams,
            driver,
            mode,
            raw_batch,
            options,
            sizes,
            rows: Vec::new(),
            baselines: BTreeMap::new(),
            batch_options: Vec::new(),
            crossovers: Vec::new(),
            checks: Vec::new(),
            notes: Vec::new(),
            errors: Vec::new(),
        })
    }

    fn max(&self) -> usize {
        self.pattern.len()
    }

    fn reps(&self, bytes: usize) -> Reps {
        Reps::for_size(bytes, self.options.quick)
    }

    fn loopback(&self) -> bool {
        self.mode == Mode::Loopback
    }

    /// The movers: on two GPUs the staged one disables the pair by policy;
    /// in loopback mode the driver does not claim it, so the main table
    /// already stages.
    fn movers(&self) -> p2p_move::Result<Movers> {
        let main_table = Arc::new(PeerTable::new(self.driver.clone(), Config::default()));
        let disabled = Config {
            disabled: DisabledPairs::Pairs([(SRC, DST)].into_iter().collect()),
            cache: CacheSetting::Off,
            ..Config::default()
        };
        let disabled_table = Arc::new(PeerTable::new(self.driver.clone(), disabled));
        let no_via = Policy {
            allow_via: false,
            ..Policy::default()
        };
        let staged_table = if self.loopback() {
            main_table.clone()
        } else {
            disabled_table.clone()
        };
        Ok(Movers {
            main: Mover::new(main_table, Policy::default())?,
            staged: Mover::new(staged_table, no_via)?,
            via: Mover::new(disabled_table, Policy::default())?,
        })
    }

    /// Runs every section. Each one's failure is recorded and the next one still runs.
    fn run_sections(&mut self) {
        println!("{}", self.mode.description());
        if !self.loopback() {
            for (accessor, owner) in [(DST, SRC), (SRC, DST)] {
                if let Err(err) = self.driver.enable_peer_access(accessor, owner) {
                    self.note(format!(
                        "enabling peer access for cuda:{accessor} to cuda:{owner} failed ({err}): \
                         raw peer copies are staged by the driver"
                    ));
                }
            }
        }
        let movers = match self.movers() {
            Ok(movers) => movers,
            Err(err) => {
                self.errors.push(format!("making the movers: {err}"));
                return;
            }
        };
        let Movers { main, staged, via } = &movers;

        // Probe first: raw waits have no deadline, so raw peer copies run
        // only on a pair the probe verified (a hung copy would hang the run).
        let probed = self.section("probe", |b| b.probe(main));
        let peer_verified = probed == Some(Route::Peer);
        if self.loopback() {
            self.note(format!(
                "peer and pool memory rows skipped ({LOOPBACK_LABEL}: there is no second GPU \
                 to copy to); device-to-device rows run on one GPU, cuda:0 -> cuda:0"
            ));
        } else if !peer_verified {
            self.note(
                "peer and pool memory rows skipped, device-to-device rows on one GPU: \
                 cuda:0 -> cuda:1 is not a verified peer pair here"
                    .into(),
            );
        }
        // Before any move of pool memory: once a mover has granted pool
        // access, raw copies of pool memory are fast too, for good.
        let pools = if peer_verified {
            self.section(
                "raw peer, pool memory without a grant",
                Bench::raw_pool_ungranted,
            )
            .flatten()
        } else {
            None
        };

        if peer_verified {
            self.section("peer", |b| b.peer(main));
            if let Some(pools) = pools {
                self.section("peer, pool memory", |b| b.peer_pool(main, pools));
            }
        }
        self.section("staged", |b| b.staged(staged));
        self.section("staged crossover: host relay or event chaining", |b| {
            b.crossover(staged)
        });
        self.section("pageable host to device", |b| b.pageable(main));
        self.section("via", |b| b.via(via, staged));
        self.section("batch, peer copy broken", |b| b.staged_batch(staged));
        // One GPU's copies run everywhere, so loopback and two-GPU runs
        // share rows; the peer pair's only where it is verified.
        let pairs = if peer_verified {
            vec![(SRC, SRC), (SRC, DST)]
        } else {
            vec![(SRC, SRC)]
        };
        for &(src, dst) in &pairs {
            self.section(
                &format!("non-blocking 4 KiB, {}", pair_name(src, dst)),
                |b| b.non_blocking(main, src, dst),
            );
        }
        for &(src, dst) in &pairs {
            self.section(
                &format!("batched device-to-device copies, {}", pair_name(src, dst)),
                |b| b.batch(main, src, dst),
            );
        }
    }

    /// The plan of cuda:0 -> cuda:1 by the main mover, noted; in loopback
    /// mode the probe must have said "not claimed".
    fn probe(&mut self, main: &Mover) -> BenchResult<Route> {
        let route = self.plan_route("peer", main, Location::Cuda(SRC), Location::Cuda(DST))?;
        if self.loopback() {
            let verdict = main.table().verdict(SRC, DST)?;
            self.note(format!("probe: {verdict}"));
            if verdict.reason != Reason::NotClaimed || route != Route::Staged {
                return Err(format!(
                    "{LOOPBACK_LABEL}: expected the pair not claimed and a staged plan, got {verdict} and {route}"
                )
                .into());
            }
        }
        Ok(route)
    }

    /// Runs one section; an error is recorded (and fails the run) instead of ending it.
    fn section<T>(
        &mut self,
        name: &str,
        body: impl FnOnce(&mut Bench) -> BenchResult<T>,
    ) -> Option<T> {
        println!("\n== {name}");
        match body(self) {
            Ok(value) => Some(value),
            Err(err) => {
                let message = format!("{name}: {err}");
                eprintln!("gpu-bench: ERROR {message}");
                self.errors.push(message);
                None
            }
        }
    }

    fn note(&mut self, note: String) {
        println!("note: {note}");
        self.notes.push(note);
    }

    fn push_row(&mut self, row: Row) {
        println!(
            "{:<32} {:>13}  ours {:>12}  baseline {:>12}  ratio {:>6.2}  {}  [{}]",
            row.route,
            row.size,
            report::figure(row.show, row.bytes, row.ours),
            report::figure(row.show, row.bytes, row.baseline),
            row.ratio(),
            row.outcome().label(),
            row.baseline_name
        );
        self.rows.push(row);
    }

    /// One row per baseline: `(its time, what it is, the target)`.
    fn push_rows(
        &mut self,
        case: &Measured,
        baselines: impl IntoIterator<Item = (Duration, String, Option<Target>)>,
    ) {
        for (baseline, baseline_name, target) in baselines {
            self.push_row(Row {
                route: case.route.clone(),
                size: case.size.clone(),
                bytes: case.bytes,
                ours: case.ours,
                baseline,
                baseline_name,
                show: case.show,
                target,
                correct: case.correct,
            });
        }
    }

    fn push_check(&mut self, check: Check) -> bool {
        println!("check: {}", check.line());
        let passed = check.passed();
        self.checks.push(check);
        passed
    }

    /// The plan `mover` makes for `src -> dst` at the largest size, noted.
    fn plan_route(
        &mut self,
        label: &str,
        mover: &Mover,
        src: Location,
        dst: Location,
    ) -> BenchResult<Route> {
        let planned = mover.plan(src, dst, self.max())?;
        self.note(format!("{label}: {}", planned.reason()));
        Ok(planned.route)
    }
}

/// `same device cuda:0` or `peer cuda:0 -> cuda:1`.
fn pair_name(src: usize, dst: usize) -> String {
    if src == dst {
        format!("same device cuda:{src}")
    } else {
        format!("peer cuda:{src} -> cuda:{dst}")
    }
}

/// Peer copy: 4 KiB within 1.3x raw time; from 16 MiB, 0.97x raw speed.
fn peer_target(size: usize) -> Option<Target> {
    if size == SMALLEST {
        Some(Target::time_within(1.3, "raw"))
    } else if size >= PEER_TARGET_FROM {
        Some(Target::speed(0.97, "raw"))
    } else {
        None
    }
}

/// The checked copy's length: a little short of the largest size and odd,
/// so a chunked route ends on a partial chunk and an overrun shows.
fn check_len(max: usize) -> usize {
    if max > 2 * SMALLEST {
        max - 4093
    } else {
        max
    }
}

/// Our blocking move of the first `len` bytes of `src` into `dst`.
fn move_prefix(
    mover: &Mover,
    src: &DeviceBuffer,
    dst: &mut DeviceBuffer,
    len: usize,
) -> p2p_move::Result<()> {
    mover
        .copy(
            &DeviceRange::new(src, len),
            &mut DeviceRangeMut::new(dst, len),
        )
        .map(drop)
}

/// Poisons `dst`, has `copy` write `expected.len()` bytes into its start,
/// reads the whole buffer back and compares: the copied bytes must be
/// `expected`, the rest still poison.
fn check_copy(
    driver: &dyn Driver,
    stream: &Stream,
    route: &str,
    dst: &mut DeviceBuffer,
    expected: &[u8],
    copy: impl FnOnce(&mut DeviceBuffer) -> p2p_move::Result<()>,
) -> BenchResult<Check> {
    raw::poison(driver, dst, POISON, stream)?;
    let problem = match copy(dst) {
        Ok(()) => pattern::check_copy(&dst.read_to_vec(stream)?, expected, POISON),
        Err(p2p_move::Error::VerifyFailed { offset, .. }) => {
            Some(format!("the mover's verify failed at byte {offset}"))
        }
        Err(err) => return Err(err.into()),
    };
    Ok(Check {
        route: route.to_string(),
        bytes: expected.len(),
        problem,
    })
}
