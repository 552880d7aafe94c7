//! The end of a run: the tables printed, the markdown written, the outcome.

use std::path::PathBuf;
use std::time::Duration;

use p2p_core::Driver;
use p2p_move::format_size;

use super::{Bench, SMALLEST};
use crate::report::{self, Show, Table};
use crate::timing::LARGE_COPY_BYTES;

impl Bench {
    /// Prints the tables, writes the markdown; returns whether the run succeeded.
    pub(super) fn finish(self) -> bool {
        let results = Table::of_rows(&self.rows);
        let baselines = self.baselines_table();
        println!("\n== results (ratio = our speed / the baseline's; above 1 we are faster)\n");
        print!("{}", results.to_text());
        println!("\n== raw baselines\n");
        print!("{}", baselines.to_text());
        println!("\n== correctness");
        for check in &self.checks {
            println!("{}", check.line());
        }

        let markdown = self.markdown(&results, &baselines);
        let path = markdown_path();
        let written = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(&path, markdown));
        let mut failed = !self.errors.is_empty();
        match written {
            Ok(()) => println!("\nmarkdown table written to {}", path.display()),
            Err(err) => {
                eprintln!("gpu-bench: writing {}: {err}", path.display());
                failed = true;
            }
        }

        let failed_checks = self.checks.iter().filter(|c| !c.passed()).count();
        let unmet = self
            .rows
            .iter()
            .filter(|r| r.outcome() == report::Outcome::NotMet)
            .count();
        let met = self
            .rows
            .iter()
            .filter(|r| r.outcome() == report::Outcome::Met)
            .count();
        println!(
            "\ngpu-bench: {} rows, targets met {met}, not met {unmet}; correctness checks {} passed, {failed_checks} FAILED; {} error(s)",
            self.rows.len(),
            self.checks.len() - failed_checks,
            self.errors.len()
        );
        for error in &self.errors {
            println!("error: {error}");
        }
        !failed && failed_checks == 0
    }

    fn baselines_table(&self) -> Table {
        let mut table = Table::new(&[
            "size",
            "peer, cuMemAlloc",
            "peer, pool, no grant",
            "pinned D2H cuda:0",
            "pinned H2D cuda:1",
            "pinned H2D cuda:0",
            "sequential staging",
        ]);
        for (&size, b) in &self.baselines {
            let cell = |time: Option<Duration>| {
                time.map_or_else(
                    || "—".to_string(),
                    |t| report::figure(Show::for_size(size), size, t),
                )
            };
            table.push(vec![
                format_size(size),
                cell(b.peer),
                cell(b.peer_pool_ungranted),
                cell(b.download_src),
                cell(b.upload_dst),
                cell(b.upload_src),
                cell(b.sequential_staging),
            ]);
        }
        table
    }

    fn markdown(&self, results: &Table, baselines: &Table) -> String {
        let reps_small = self.reps(SMALLEST);
        let reps_large = self.reps(LARGE_COPY_BYTES);
        let mut out = String::from("# GPU benchmark: p2p-move against raw driver calls\n\n");
        out += "```\n";
        out += &machine_lines(self.driver.as_ref()).join("\n");
        out += "\n```\n\n";
        out += &format!(
            "Host-timed complete operations (blocking moves; raw calls then a stream synchronize), \
             median of {} reps ({} from {} up) after warm-up{}. Same buffers for every size. \
             GB/s are decimal (10^9 bytes/s); sizes up to {} show the time per operation. \
             ratio = our speed / the baseline's (above 1: we are faster).\n\n",
            reps_small.timed,
            reps_large.timed,
            format_size(LARGE_COPY_BYTES),
            if self.options.quick { " (--quick)" } else { "" },
            format_size(report::SHOW_TIME_UP_TO),
        );
        out += "## Results\n\n";
        out += &results.to_markdown();
        out += "\n## Raw baselines\n\n";
        out += &baselines.to_markdown();
        out += "\n## Correctness\n\n";
        for check in &self.checks {
            out += &format!("- `{}`\n", check.line());
        }
        if !self.notes.is_empty() || !self.errors.is_empty() {
            out += "\n## Notes\n\n";
            for note in &self.notes {
                out += &format!("- {note}\n");
            }
            for error in &self.errors {
                out += &format!("- ERROR: {error}\n");
            }
        }
        out
    }
}

/// `$OUT/bench-gpu.md` where `OUT` is set, else `target/bench-gpu.md`.
pub(super) fn markdown_path() -> PathBuf {
    let dir = std::env::var_os("OUT")
        .filter(|dir| !dir.is_empty())
        .map_or_else(|| PathBuf::from("target"), PathBuf::from);
    dir.join("bench-gpu.md")
}

/// The driver version and the visible devices, one line each.
pub fn machine_lines(driver: &dyn Driver) -> Vec<String> {
    let version = driver.driver_version();
    let mut lines = vec![format!(
        "CUDA driver {}.{} ({version}), {} GPU(s):",
        version / 1000,
        version % 1000 / 10,
        driver.device_count()
    )];
    for device in driver.devices() {
        lines.push(format!(
            "  cuda:{} {} ({}, {}, {} copy engines)",
            device.ordinal,
            device.name,
            device.pci_bus_id,
            format_size(device.total_memory_bytes as usize),
            device.copy_engines
        ));
    }
    lines
}
