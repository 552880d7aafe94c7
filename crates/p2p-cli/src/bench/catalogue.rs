//! The catalogue of `p2p bench`: each case's name, what it moves and how, its unit, and the cells of its matrix.

use super::{BenchOptions, DEFAULT_BANDWIDTH_BYTES, DEFAULT_LATENCY_BYTES};
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

    pub(super) fn is_pair_case(&self) -> bool {
        !matches!(self.op, Op::Host { .. })
    }

    /// Row and column labels: devices by devices, or host by devices.
    pub(super) fn labels(&self, n: usize) -> (Vec<String>, Vec<String>) {
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
    pub(super) fn cells(&self, n: usize, pair: Option<(usize, usize)>) -> Vec<(usize, usize)> {
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
