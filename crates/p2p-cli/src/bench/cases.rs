//! The cases of `p2p bench` and how each cell of their matrices is measured: raw peer copies on `Driver` calls, everything else through a `Mover`.

use std::sync::Arc;

use p2p_core::memory::{Event, Stream};
use p2p_core::PeerTable;
use p2p_move::{Mover, Policy};

use super::raw;
use super::sides::{Legs, Mismatch, Place};
use super::timing::{self, Clock, Runs};
use super::{BenchOptions, Progress, DEFAULT_BANDWIDTH_BYTES, DEFAULT_LATENCY_BYTES};
use crate::machine::CliError;

/// Which way host cases move.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HostDir {
    ToDevice,
    FromDevice,
    BothWays,
}

/// How a case moves its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    /// Raw `cuMemcpyPeerAsync` on pairs the probe verified.
    Peer { both_ways: bool },
    /// A blocking `Mover::copy` between two GPUs; `staged` forbids peer copy.
    Moved { staged: bool, both_ways: bool },
    /// A blocking `Mover::copy` between host memory and each GPU.
    Host { dir: HostDir, pinned: bool },
}

/// One case of the catalogue.
#[derive(Debug, PartialEq)]
pub(crate) struct Case {
    pub(crate) name: &'static str,
    pub(crate) what: &'static str,
    pub(crate) op: Op,
    /// Reported as microseconds per copy instead of GB/s.
    pub(crate) latency: bool,
}

const fn case(name: &'static str, what: &'static str, op: Op, latency: bool) -> Case {
    Case {
        name,
        what,
        op,
        latency,
    }
}

/// Every case, in the order they run and print.
pub(crate) const CATALOGUE: &[Case] = &[
    case(
        "peer",
        "direct peer copy (raw cuMemcpyPeerAsync) on verified pairs; n/a elsewhere",
        Op::Peer { both_ways: false },
        false,
    ),
    case(
        "peer-bidirectional",
        "direct peer copy both ways at once (sum of both directions)",
        Op::Peer { both_ways: true },
        false,
    ),
    case(
        "staged",
        "staged copy through pinned host memory (the mover with peer copy off)",
        Op::Moved {
            staged: true,
            both_ways: false,
        },
        false,
    ),
    case(
        "staged-bidirectional",
        "staged copy both ways at once (sum of both directions)",
        Op::Moved {
            staged: true,
            both_ways: true,
        },
        false,
    ),
    case(
        "route",
        "the route the planner picks: the figure a program gets from Mover::copy",
        Op::Moved {
            staged: false,
            both_ways: false,
        },
        false,
    ),
    case(
        "route-bidirectional",
        "the planner's routes both ways at once (sum of both directions)",
        Op::Moved {
            staged: false,
            both_ways: true,
        },
        false,
    ),
    case(
        "host-to-device-pinned",
        "pinned host memory to each GPU",
        Op::Host {
            dir: HostDir::ToDevice,
            pinned: true,
        },
        false,
    ),
    case(
        "host-to-device-pageable",
        "pageable host memory to each GPU",
        Op::Host {
            dir: HostDir::ToDevice,
            pinned: false,
        },
        false,
    ),
    case(
        "device-to-host-pinned",
        "each GPU to pinned host memory",
        Op::Host {
            dir: HostDir::FromDevice,
            pinned: true,
        },
        false,
    ),
    case(
        "device-to-host-pageable",
        "each GPU to pageable host memory",
        Op::Host {
            dir: HostDir::FromDevice,
            pinned: false,
        },
        false,
    ),
    case(
        "host-bidirectional-pinned",
        "pinned host memory to and from each GPU at once (sum)",
        Op::Host {
            dir: HostDir::BothWays,
            pinned: true,
        },
        false,
    ),
    case(
        "host-bidirectional-pageable",
        "pageable host memory to and from each GPU at once (sum)",
        Op::Host {
            dir: HostDir::BothWays,
            pinned: false,
        },
        false,
    ),
    case(
        "peer-latency",
        "time of one small direct peer copy on verified pairs",
        Op::Peer { both_ways: false },
        true,
    ),
    case(
        "staged-latency",
        "time of one small staged copy (the mover with peer copy off)",
        Op::Moved {
            staged: true,
            both_ways: false,
        },
        true,
    ),
];

/// The cases named (in catalogue order), or all of them.
pub(crate) fn choose(names: &[String]) -> Result<Vec<&'static Case>, CliError> {
    for name in names {
        if !CATALOGUE.iter().any(|c| c.name == name) {
            let known: Vec<&str> = CATALOGUE.iter().map(|c| c.name).collect();
            return Err(CliError::Usage(format!(
                "no case `{name}`; the cases are: {} (see `p2p bench --list`)",
                known.join(", ")
            )));
        }
    }
    Ok(CATALOGUE
        .iter()
        .filter(|c| names.is_empty() || names.iter().any(|n| n == c.name))
        .collect())
}

impl Case {
    /// `GB/s` or `us`, as the JSON says.
    pub(crate) fn unit(&self) -> &'static str {
        if self.latency {
            "us"
        } else {
            "GB/s"
        }
    }

    pub(crate) fn bytes(&self, options: &BenchOptions) -> usize {
        options.size.unwrap_or(if self.latency {
            DEFAULT_LATENCY_BYTES
        } else {
            DEFAULT_BANDWIDTH_BYTES
        })
    }

    /// Whether cells run moves on more than one host thread (both ways at once through a mover).
    pub(crate) fn uses_threads(&self) -> bool {
        matches!(
            self.op,
            Op::Moved {
                both_ways: true,
                ..
            } | Op::Host {
                dir: HostDir::BothWays,
                ..
            }
        )
    }

    fn is_pair_case(&self) -> bool {
        !matches!(self.op, Op::Host { .. })
    }

    /// Row and column labels: devices by devices, or host by devices.
    fn labels(&self, n: usize) -> (Vec<String>, Vec<String>) {
        let devices: Vec<String> = (0..n).map(|d| format!("cuda:{d}")).collect();
        let host = vec!["host".to_string()];
        match self.op {
            Op::Host {
                dir: HostDir::FromDevice,
                ..
            } => (devices, host),
            Op::Host { .. } => (host, devices),
            _ => (devices.clone(), devices),
        }
    }

    /// The cells to measure: (row, column) of the matrix.
    fn cells(&self, n: usize, pair: Option<(usize, usize)>) -> Vec<(usize, usize)> {
        let in_pair = |d: usize| pair.is_none_or(|(a, b)| d == a || d == b);
        match self.op {
            Op::Host {
                dir: HostDir::FromDevice,
                ..
            } => (0..n).filter(|&d| in_pair(d)).map(|d| (d, 0)).collect(),
            Op::Host { .. } => (0..n).filter(|&d| in_pair(d)).map(|d| (0, d)).collect(),
            _ => (0..n)
                .flat_map(|a| (0..n).map(move |b| (a, b)))
                .filter(|&(a, b)| a != b && pair.is_none_or(|p| p == (a, b)))
                .collect(),
        }
    }

    /// How many cells a run measures (for the progress bar).
    pub(crate) fn cell_count(&self, n: usize, pair: Option<(usize, usize)>) -> usize {
        self.cells(n, pair).len()
    }
}

/// One cell of a result matrix.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Cell {
    /// Not part of this run (the diagonal, or outside `--pair`).
    Unmeasured,
    /// Cannot be measured here, and why (a pair not verified for peer copy).
    NotAvailable(String),
    /// The median, min and max figure, and the route taken (route cases).
    Measured {
        median: f64,
        min: f64,
        max: f64,
        route: Option<String>,
    },
    /// A copy delivered wrong bytes: its speed means nothing.
    Wrong(Vec<String>),
    /// A driver or mover call failed.
    Failed(String),
}

/// How a case came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Status {
    Passed,
    Waived,
    Error,
}

impl Status {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Status::Passed => "passed",
            Status::Waived => "waived",
            Status::Error => "error",
        }
    }
}

/// One case's matrix and what went wrong.
#[derive(Clone, Debug)]
pub(crate) struct CaseResult {
    pub(crate) case: &'static Case,
    pub(crate) bytes: usize,
    pub(crate) rows: Vec<String>,
    pub(crate) columns: Vec<String>,
    pub(crate) cells: Vec<Vec<Cell>>,
    /// Why nothing was measured, when nothing could be.
    pub(crate) waived: Option<String>,
    /// Failures outside any cell (making the mover).
    pub(crate) errors: Vec<String>,
    /// Every wrong copy, in words.
    pub(crate) mismatches: Vec<String>,
}

impl CaseResult {
    pub(crate) fn status(&self) -> Status {
        let bad = self
            .cells
            .iter()
            .flatten()
            .any(|c| matches!(c, Cell::Wrong(_) | Cell::Failed(_)));
        if bad || !self.errors.is_empty() {
            Status::Error
        } else if self.waived.is_some() {
            Status::Waived
        } else {
            Status::Passed
        }
    }

    /// The medians of the measured cells.
    pub(crate) fn figures(&self) -> Vec<f64> {
        self.cells
            .iter()
            .flatten()
            .filter_map(|c| match c {
                Cell::Measured { median, .. } => Some(*median),
                _ => None,
            })
            .collect()
    }
}

/// Measures every cell of `case`.
pub(crate) fn measure(
    table: &Arc<PeerTable>,
    case: &'static Case,
    options: &BenchOptions,
    progress: &Progress,
) -> CaseResult {
    let n = table.device_count();
    let (rows, columns) = case.labels(n);
    let mut result = CaseResult {
        case,
        bytes: case.bytes(options),
        cells: vec![vec![Cell::Unmeasured; columns.len()]; rows.len()],
        rows,
        columns,
        waived: None,
        errors: Vec::new(),
        mismatches: Vec::new(),
    };
    if case.is_pair_case() && n < 2 {
        result.waived = Some(format!("needs 2 GPUs; this machine has {n}"));
        return result;
    }
    if n == 0 {
        result.waived = Some("this machine has no GPU".into());
        return result;
    }
    let mover = match case.op {
        Op::Peer { .. } => None,
        Op::Moved { staged: true, .. } => Some(Policy {
            allow_peer: false,
            ..Policy::default()
        }),
        _ => Some(Policy::default()),
    }
    .map(|policy| Mover::new(table.clone(), policy))
    .transpose();
    let mover = match mover {
        Ok(mover) => mover,
        Err(err) => {
            result.errors.push(format!("making the mover: {err}"));
            return result;
        }
    };
    let index = CATALOGUE.iter().position(|c| c == case).unwrap_or(0) as u64;
    for (row, column) in case.cells(n, options.pair) {
        let (from, to) = match case.op {
            Op::Host {
                dir: HostDir::FromDevice,
                ..
            } => (row, row),
            Op::Host { .. } => (column, column),
            _ => (row, column),
        };
        let label = format!(
            "{} {} -> {}",
            case.name, result.rows[row], result.columns[column]
        );
        progress.cell(label);
        let seed = index * 1_000_003 + (row * 1009 + column) as u64;
        let cell = Measurer {
            table,
            mover: mover.as_ref(),
            case,
            bytes: result.bytes,
            iterations: options.iterations,
            progress,
            seed,
        }
        .cell(from, to, &mut result.mismatches);
        result.cells[row][column] = cell;
    }
    if matches!(case.op, Op::Peer { .. })
        && result.figures().is_empty()
        && result.status() != Status::Error
    {
        result.waived =
            Some("no pair measured: no ordered pair is verified for direct peer copy".into());
    }
    result
}

/// What measuring one cell needs.
struct Measurer<'a> {
    table: &'a Arc<PeerTable>,
    mover: Option<&'a Mover>,
    case: &'static Case,
    bytes: usize,
    iterations: usize,
    progress: &'a Progress,
    seed: u64,
}

impl Measurer<'_> {
    /// One cell: `from -> to` for pair cases, device `from` (== `to`) for host cases.
    fn cell(&self, from: usize, to: usize, mismatches: &mut Vec<String>) -> Cell {
        if let Op::Peer { both_ways } = self.case.op {
            let directions: &[(usize, usize)] = if both_ways {
                &[(from, to), (to, from)]
            } else {
                &[(from, to)]
            };
            for &(a, b) in directions {
                // The cell names the forward pair; only the reverse one needs naming.
                let which = if (a, b) == (from, to) {
                    String::new()
                } else {
                    format!("the reverse direction cuda:{a} -> cuda:{b} is ")
                };
                match self.table.verdict(a, b) {
                    Ok(v) if v.is_verified() => {}
                    Ok(v) => {
                        return Cell::NotAvailable(format!(
                            "{which}not verified for peer copy: {}",
                            v.reason.describe()
                        ))
                    }
                    Err(err) => return Cell::NotAvailable(format!("{which}not probed: {err}")),
                }
            }
        }
        match self.run(from, to) {
            Ok(Ok(cell)) => cell,
            Ok(Err(wrong)) => {
                let lines: Vec<String> = wrong.iter().map(Mismatch::to_string).collect();
                mismatches.extend(lines.iter().cloned());
                Cell::Wrong(lines)
            }
            Err(err) => Cell::Failed(err.to_string()),
        }
    }

    fn copies(&self, from: usize, to: usize) -> Vec<(Place, Place)> {
        let (a, b) = (Place::Device(from), Place::Device(to));
        match self.case.op {
            Op::Peer { both_ways } | Op::Moved { both_ways, .. } => {
                if both_ways {
                    vec![(a, b), (b, a)]
                } else {
                    vec![(a, b)]
                }
            }
            Op::Host { dir, pinned } => {
                let host = if pinned {
                    Place::Pinned
                } else {
                    Place::Pageable
                };
                match dir {
                    HostDir::ToDevice => vec![(host, a)],
                    HostDir::FromDevice => vec![(a, host)],
                    HostDir::BothWays => vec![(host, a), (a, host)],
                }
            }
        }
    }

    /// The warm-up and the timed copies; `Ok(Err(..))` when bytes were wrong.
    fn run(&self, from: usize, to: usize) -> p2p_move::Result<Result<Cell, Vec<Mismatch>>> {
        let driver = self.table.driver();
        let copies = self.copies(from, to);
        let mut legs = Legs::new(driver, &copies, self.bytes, self.seed)?;
        let clock = Clock::new(driver, from)?;
        // Both directions of a raw peer pair: a stream and a timing-free
        // event on the other device.
        let other = match self.case.op {
            Op::Peer { both_ways: true } => {
                Some((Stream::new(driver, to)?, Event::new(driver, to)?))
            }
            _ => None,
        };
        if let Op::Peer { .. } = self.case.op {
            driver.enable_peer_access(from, to)?;
            if other.is_some() {
                driver.enable_peer_access(to, from)?;
            }
        }
        let deadline = timing::deadline_for(self.bytes);
        let moved_bytes = self.bytes * copies.len();
        let mut runs = Runs::default();
        let mut route = None;
        for iteration in 0..=self.iterations {
            legs.poison(iteration)?;
            let ms = match (self.case.op, self.mover) {
                (Op::Peer { .. }, _) => raw::timed_peer(
                    driver.as_ref(),
                    &clock,
                    other.as_ref().map(|(s, e)| (s, e)),
                    &mut legs,
                    deadline,
                )?,
                (_, Some(mover)) => {
                    let (ms, taken) = timed_moves(&clock, mover, &mut legs, deadline)?;
                    route = Some(taken);
                    ms
                }
                (_, None) => {
                    return Err(p2p_move::Error::Internal(
                        "a mover case without a mover".into(),
                    ))
                }
            };
            self.progress.step();
            let wrong = legs.check(iteration)?;
            if !wrong.is_empty() {
                return Ok(Err(wrong));
            }
            if iteration > 0 {
                runs.push(ms);
            }
        }
        let changed = legs.check_sources(self.iterations)?;
        if !changed.is_empty() {
            return Ok(Err(changed));
        }
        let figure =
            |ms: Option<f64>| timing::figure(self.case.latency, moved_bytes, ms.unwrap_or(0.0));
        // The fastest run is the largest bandwidth but the smallest time.
        let (low, high) = if self.case.latency {
            (runs.min_ms(), runs.max_ms())
        } else {
            (runs.max_ms(), runs.min_ms())
        };
        Ok(Ok(Cell::Measured {
            median: figure(runs.median_ms()),
            min: figure(low),
            max: figure(high),
            route: route.filter(|_| matches!(self.case.op, Op::Moved { staged: false, .. })),
        }))
    }
}

/// Times blocking moves of every leg at once (one thread per leg beyond
/// the first); returns the milliseconds and the route(s) taken.
fn timed_moves(
    clock: &Clock,
    mover: &Mover,
    legs: &mut Legs,
    deadline: std::time::Duration,
) -> p2p_move::Result<(f64, String)> {
    let mut routes = Vec::new();
    let ms = clock.time(deadline, |_, _| -> p2p_move::Result<()> {
        let (first, rest) = match legs.legs.split_first_mut() {
            Some(split) => split,
            None => return Ok(()),
        };
        let plans = std::thread::scope(|scope| {
            let others: Vec<_> = rest
                .iter_mut()
                .map(|leg| scope.spawn(move || mover.copy(leg.src.source(), leg.dst.target())))
                .collect();
            let mut plans = vec![mover.copy(first.src.source(), first.dst.target())];
            for handle in others {
                plans.push(handle.join().unwrap_or_else(|_| {
                    Err(p2p_move::Error::Internal("a move's thread panicked".into()))
                }));
            }
            plans
        });
        for plan in plans {
            routes.push(plan?.route.to_string());
        }
        Ok(())
    })?;
    routes.dedup();
    Ok((ms, routes.join(" + ")))
}
