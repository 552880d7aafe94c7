//! What the simulator reports about the code driving it: races, use after free, frees and returns while work still runs.

use std::fmt;

use crate::MemRange;

/// What kind of mistake a [`SimReport`] is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ReportKind {
    /// Two accesses to overlapping bytes, at least one a write, that no
    /// event, stream order or host wait orders.
    Race,
    /// An operation ran on memory that had been freed.
    UseAfterFree,
    /// Memory was freed while queued work still used it, or before the host
    /// waited for work that used it.
    FreeWhileInUse,
    /// A safe API returned (told the simulator the caller may touch a range
    /// again) while work on that range was still queued, or had run without
    /// the host waiting for it.
    BorrowReleasedWhileInUse,
}

impl fmt::Display for ReportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReportKind::Race => "race",
            ReportKind::UseAfterFree => "use after free",
            ReportKind::FreeWhileInUse => "free while in use",
            ReportKind::BorrowReleasedWhileInUse => "borrow released while in use",
        })
    }
}

/// Read or write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AccessKind {
    /// The bytes are read.
    Read,
    /// The bytes are written.
    Write,
}

/// One side of a report: an operation on a stream, or something the host did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Actor {
    /// The driver call (`cuMemcpyHtoDAsync`, `cuMemFree`, ...) and its size.
    pub what: String,
    /// Whether it reads or writes the range of the report.
    pub access: AccessKind,
    /// Where it runs: `stream cuda:D#N` or `host thread NAME`.
    pub on: String,
    /// The host thread that made the driver call.
    pub called_by: String,
    /// The driver call's number on this machine, counting every call from 1
    /// (the same under the same seed, so it can be found again).
    pub call_number: u64,
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let access = match self.access {
            AccessKind::Read => "reads",
            AccessKind::Write => "writes",
        };
        if self.on == self.called_by {
            write!(
                f,
                "{} ({access}) by {} at driver call #{}",
                self.what, self.on, self.call_number
            )
        } else {
            write!(
                f,
                "{} ({access}) on {}, queued by {} at driver call #{}",
                self.what, self.on, self.called_by, self.call_number
            )
        }
    }
}

/// One mistake the simulator saw.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SimReport {
    /// What kind of mistake.
    pub kind: ReportKind,
    /// The bytes concerned (for a race: where the two accesses overlap).
    pub range: MemRange,
    /// The earlier party: for a race the first access, for the other
    /// kinds the operation that used the memory.
    pub first: Actor,
    /// The later party: the second access of a race, the free, or the
    /// return; `None` for a use after free.
    pub second: Option<Actor>,
}

/// `cuda:D 0xADDR+LEN` or `host 0xADDR+LEN`.
pub(super) fn describe_range(range: &MemRange) -> String {
    match *range {
        MemRange::Device { addr, len } => {
            format!("cuda:{} {:#x}+{len}", addr.device, addr.addr)
        }
        MemRange::Host { addr, len } => format!("host {addr:#x}+{len}"),
    }
}

impl fmt::Display for SimReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let range = describe_range(&self.range);
        match (&self.kind, &self.second) {
            (ReportKind::Race, Some(second)) => write!(
                f,
                "race on {range}: [{}] and [{second}] are not ordered by any event, stream or host wait",
                self.first
            ),
            (ReportKind::FreeWhileInUse, Some(second)) => write!(
                f,
                "free while in use of {range}: [{second}] while [{}] had not finished or had not been waited for",
                self.first
            ),
            (ReportKind::BorrowReleasedWhileInUse, Some(second)) => write!(
                f,
                "borrow released while in use: {range} went back to its owner ([{second}]) while [{}] had not finished or had not been waited for",
                self.first
            ),
            (kind, second) => {
                write!(f, "{kind} on {range}: [{}]", self.first)?;
                match second {
                    Some(second) => write!(f, " and [{second}]"),
                    None => write!(f, " touched memory that had been freed"),
                }
            }
        }
    }
}

/// The error of [`SimDriver::check_clean`](super::SimDriver::check_clean):
/// every report, and the seed that replays the schedule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimProblems {
    /// The machine's schedule seed.
    pub seed: u64,
    /// Everything reported, in order.
    pub reports: Vec<SimReport>,
    /// Reports beyond the ones kept (the simulator keeps the first few hundred).
    pub dropped: u64,
}

impl fmt::Display for SimProblems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total = self.reports.len() as u64 + self.dropped;
        writeln!(
            f,
            "the simulated machine saw {total} problem(s) (replay this schedule with P2P_SIM_SEED={}):",
            self.seed
        )?;
        for (i, report) in self.reports.iter().enumerate() {
            writeln!(f, "  {}. {report}", i + 1)?;
        }
        if self.dropped > 0 {
            writeln!(f, "  ... and {} more", self.dropped)?;
        }
        Ok(())
    }
}

impl std::error::Error for SimProblems {}

/// The most reports a machine keeps; later ones are only counted.
pub(super) const MAX_REPORTS: usize = 500;

/// The reports of one machine.
#[derive(Debug, Default)]
pub(super) struct Reports {
    pub(super) kept: Vec<SimReport>,
    pub(super) dropped: u64,
    /// Someone asked for the reports (so dropping the machine need not print them).
    pub(super) looked_at: bool,
}

impl Reports {
    pub(super) fn push(&mut self, report: SimReport) {
        if self.kept.contains(&report) {
            return;
        }
        if self.kept.len() < MAX_REPORTS {
            tracing::debug!("simulator: {report}");
            self.kept.push(report);
        } else {
            self.dropped += 1;
        }
    }
}
