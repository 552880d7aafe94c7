//! `p2p bench`: transfer matrices over ordered pairs (row = source, column = destination), every copy checked byte for byte.
//!
//! The cases (see [`cases::CATALOGUE`]) are measured cell by cell: a warm-up
//! copy, then `--iterations` timed ones, each bracketed by timing events on a
//! stream of the device the cell belongs to (`timing`). Before every copy
//! the destination is poisoned, after it the destination is read back and
//! compared with the source's pattern: a copy that delivers wrong bytes
//! marks its cell and fails the run, however fast it was. On `--sim` the
//! events are stamped by the simulator's virtual clock, so the figures are
//! the topology's speeds.

mod cases;
mod catalogue;
mod output;
mod raw;
mod sides;
mod timing;

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use p2p_core::PeerTable;

use crate::machine::{self, CliError};
use crate::MachineArgs;

pub(crate) use cases::CATALOGUE;

/// Bandwidth cases move this much per copy unless `--size` says otherwise.
pub(crate) const DEFAULT_BANDWIDTH_BYTES: usize = 512 << 20;
/// Latency cases move this much per copy unless `--size` says otherwise.
pub(crate) const DEFAULT_LATENCY_BYTES: usize = 4 << 10;

/// What the command line asked for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct BenchOptions {
    /// Case names; empty means every case.
    pub(crate) cases: Vec<String>,
    /// Bytes per copy for every case; `None`: each case's default.
    pub(crate) size: Option<usize>,
    /// Timed copies per cell (the median is reported).
    pub(crate) iterations: usize,
    /// Only this ordered pair (and, for host cases, only its two devices).
    pub(crate) pair: Option<(usize, usize)>,
    /// Show min and max beside the median.
    pub(crate) verbose: bool,
}

/// Parses `A->B` (`0->1` or `cuda:0->cuda:1`).
pub(crate) fn parse_pair(text: &str) -> Result<(usize, usize), String> {
    let (a, b) = text
        .split_once("->")
        .ok_or_else(|| format!("`{text}` is not a pair: write `0->1`"))?;
    let ordinal = |s: &str| {
        let s = s.trim();
        s.strip_prefix("cuda:")
            .unwrap_or(s)
            .parse::<usize>()
            .map_err(|_| format!("`{s}` in `{text}` is not a device ordinal"))
    };
    let (a, b) = (ordinal(a)?, ordinal(b)?);
    if a == b {
        return Err(format!(
            "`{text}`: a pair needs two different devices (`0->1`)"
        ));
    }
    Ok((a, b))
}

/// `p2p bench --list`: every case, one line each.
pub(crate) fn list() -> ExitCode {
    let width = CATALOGUE.iter().map(|c| c.name.len()).max().unwrap_or(0);
    for case in CATALOGUE {
        println!("{:<width$}  {} [{}]", case.name, case.what, case.unit());
    }
    ExitCode::SUCCESS
}

/// `p2p bench`: measures the chosen cases and prints them (text or JSON).
/// Exits 1 when any copy delivered wrong bytes or any cell failed.
pub(crate) fn run(
    args: &MachineArgs,
    options: &BenchOptions,
    json: bool,
    markdown: Option<&Path>,
) -> Result<ExitCode, CliError> {
    let chosen = cases::choose(&options.cases)?;
    if options.iterations == 0 {
        return Err(CliError::Usage(
            "--iterations must be at least 1".to_string(),
        ));
    }
    // Moves both ways at once run on two host threads, ordered by spawning
    // and joining them, which a simulated machine's race detector cannot see.
    let threaded = chosen.iter().any(|case| case.uses_threads());
    let machine = machine::open_with(args, threaded)?;
    if let Some((a, b)) = options.pair {
        machine.driver().check_device(a)?;
        machine.driver().check_device(b)?;
    }
    if !json {
        crate::report::banner(&machine);
    }
    let progress = Progress::new(&machine.table, &chosen, options);
    let results = measure_all(&machine.table, &chosen, options, &progress);
    progress.finish();
    // On a simulated machine, its race detector and borrow checks judge the
    // bench's own ordering too: a report fails the run.
    let sim_problems = machine
        .sim
        .as_ref()
        .and_then(|sim| sim.check_clean().err())
        .map(|problems| problems.to_string());
    let failed =
        sim_problems.is_some() || results.iter().any(|r| r.status() == cases::Status::Error);
    if let Some(problems) = &sim_problems {
        eprintln!("p2p bench: {problems}");
    }
    if json {
        let mut doc = output::document(&machine, options, &results);
        doc["simulator_problems"] = serde_json::json!(sim_problems);
        if sim_problems.is_some() {
            doc["passed"] = serde_json::json!(false);
        }
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        output::print_text(options, &results);
    }
    if let Some(path) = markdown {
        std::fs::write(path, output::markdown(&machine, options, &results)).map_err(|err| {
            CliError::Usage(format!("writing --markdown {}: {err}", path.display()))
        })?;
    }
    for result in &results {
        for mismatch in &result.mismatches {
            eprintln!("MISMATCH {}: {mismatch}", result.case.name);
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Measures `chosen` on the machine of `table`, in catalogue order.
pub(crate) fn measure_all(
    table: &Arc<PeerTable>,
    chosen: &[&'static cases::Case],
    options: &BenchOptions,
    progress: &Progress,
) -> Vec<cases::CaseResult> {
    chosen
        .iter()
        .map(|case| cases::measure(table, case, options, progress))
        .collect()
}

/// The progress bar on stderr, drawn only when stderr is a terminal.
#[derive(Debug)]
pub(crate) struct Progress {
    bar: indicatif::ProgressBar,
}

impl Progress {
    fn new(table: &PeerTable, chosen: &[&'static cases::Case], options: &BenchOptions) -> Progress {
        let cells: usize = chosen
            .iter()
            .map(|case| case.cell_count(table.device_count(), options.pair))
            .sum();
        let steps = (cells * (options.iterations + 1)) as u64;
        let bar = if std::io::stderr().is_terminal() {
            let bar = indicatif::ProgressBar::new(steps);
            if let Ok(style) =
                indicatif::ProgressStyle::with_template("{bar:32} {pos}/{len} copies  {msg}")
            {
                bar.set_style(style);
            }
            bar
        } else {
            indicatif::ProgressBar::hidden()
        };
        Progress { bar }
    }

    /// A bar that draws nothing (tests).
    #[cfg(test)]
    pub(crate) fn hidden() -> Progress {
        Progress {
            bar: indicatif::ProgressBar::hidden(),
        }
    }

    pub(crate) fn cell(&self, label: String) {
        self.bar.set_message(label);
    }

    pub(crate) fn step(&self) {
        self.bar.inc(1);
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests;
