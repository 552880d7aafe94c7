//! Measuring the cases of `p2p bench`, cell by cell: raw peer copies on `Driver` calls, everything else through a `Mover`.

use std::sync::Arc;

use p2p_core::memory::{Event, Stream};
use p2p_core::PeerTable;
use p2p_move::{Mover, Policy};

pub(crate) use super::catalogue::{choose, Case, HostDir, Op, CATALOGUE};
use super::raw;
use super::sides::{Legs, Mismatch, Place};
use super::timing::{self, Clock, Runs};
use super::{BenchOptions, Progress};

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
                    return Err(p2p_move::Error::Core(p2p_core::Error::Unsupported(
                        "a mover case without a mover".into(),
                    )))
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
                    Err(p2p_move::Error::Core(p2p_core::Error::Unsupported(
                        "a move's thread panicked".into(),
                    )))
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
