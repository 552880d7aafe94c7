//! The end of a run: the tables printed, the markdown made, the outcome.

use std::path::PathBuf;
use std::time::Duration;

use p2p_core::Driver;
use p2p_move::format_size;

use super::{Bench, Summary, BATCH_COUNT, BATCH_ITEM_BYTES, SMALLEST};
use crate::report::{self, Show, Table};
use crate::timing::LARGE_COPY_BYTES;

impl Bench {
    /// Prints the tables and returns what the run found, markdown included.
    pub(super) fn finish(self) -> Summary {
        let machine = self.mode.label();
        let results = Table::of_rows(&self.rows, &machine);
        let baselines = self.baselines_table();
        let options = self.batch_options_table();
        let crossover = self.crossover_table();
        println!("\n== {}", self.mode.description());
        println!("\n== results (ratio = our speed / the baseline's; above 1 we are faster)\n");
        print!("{}", results.to_text());
        println!("\n== raw baselines\n");
        print!("{}", baselines.to_text());
        if !options.rows.is_empty() {
            println!("\n== {BATCH_OPTIONS_TITLE}\n");
            print!("{}", options.to_text());
        }
        if !crossover.rows.is_empty() {
            println!("\n== {CROSSOVER_TITLE}\n");
            print!("{}", crossover.to_text());
        }
        println!("\n== correctness");
        for check in &self.checks {
            println!("{}", check.line());
        }

        let markdown = self.markdown(&results, &baselines, &options, &crossover);
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
            "\ngpu-bench ({machine}): {} rows, targets met {met}, not met {unmet}; correctness checks {} passed, {failed_checks} FAILED; {} error(s)",
            self.rows.len(),
            self.checks.len() - failed_checks,
            self.errors.len()
        );
        for error in &self.errors {
            println!("error: {error}");
        }
        Summary {
            passed: self.errors.is_empty() && failed_checks == 0,
            markdown,
        }
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
            "ExLlamaV2 fallback (pageable)",
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
                cell(b.pageable_round_trip),
            ]);
        }
        table
    }

    /// Every way of doing the batch of device-to-device copies, side by side.
    fn batch_options_table(&self) -> Table {
        let mut table = Table::new(&[
            "option",
            "pair",
            "machine",
            "time",
            "per copy",
            "× 256 separate Mover::copy",
            "× 256 (raw copy + sync)",
            "bytes",
        ]);
        let reference = |prefix: &str| {
            self.batch_options
                .iter()
                .find(|o| o.option.starts_with(prefix))
                .map(|o| o.time)
        };
        let separate = reference(&format!("{BATCH_COUNT} separate"));
        let raw_each = reference(&format!("{BATCH_COUNT} × (raw"));
        let ratio = |base: Option<Duration>, time: Duration| {
            base.filter(|_| !time.is_zero()).map_or_else(
                || "—".to_string(),
                |base| format!("{:.2}", base.as_secs_f64() / time.as_secs_f64()),
            )
        };
        for option in &self.batch_options {
            table.push(vec![
                option.option.clone(),
                option.pair.clone(),
                self.mode.label(),
                report::format_time(option.time),
                report::format_time(option.time / BATCH_COUNT as u32),
                ratio(separate, option.time),
                ratio(raw_each, option.time),
                match option.checked {
                    Some(true) => "ok".into(),
                    Some(false) => "FAILED (wrong bytes)".into(),
                    None => "—".into(),
                },
            ]);
        }
        table
    }

    /// The staged crossover: each extreme of `host_relay_bytes` by size.
    fn crossover_table(&self) -> Table {
        let default_relay = self.crossovers.first().map_or(0, |c| c.default_relay_bytes);
        let mut table = Table::new(&[
            "size",
            "machine",
            "event chaining (host_relay_bytes = 0)",
            "host relay (host_relay_bytes = MAX)",
            &format!(
                "default policy (host_relay_bytes = {})",
                format_size(default_relay)
            ),
            "sequential staging, raw",
            "faster extreme",
        ]);
        for c in &self.crossovers {
            let faster = if c.relayed <= c.chained {
                format!(
                    "host relay, by {:.2}×",
                    c.chained.as_secs_f64() / c.relayed.as_secs_f64().max(1e-12)
                )
            } else {
                format!(
                    "event chaining, by {:.2}×",
                    c.relayed.as_secs_f64() / c.chained.as_secs_f64().max(1e-12)
                )
            };
            let show = |time| report::figure(Show::for_size(c.size), c.size, time);
            table.push(vec![
                format_size(c.size),
                self.mode.label(),
                show(c.chained),
                show(c.relayed),
                show(c.default),
                show(c.sequential),
                faster,
            ]);
        }
        table
    }

    fn markdown(
        &self,
        results: &Table,
        baselines: &Table,
        options: &Table,
        crossover: &Table,
    ) -> String {
        let reps_small = self.reps(SMALLEST);
        let reps_large = self.reps(LARGE_COPY_BYTES);
        let mut out = String::from("# GPU benchmark: p2p-move against raw driver calls\n\n");
        out += "```\n";
        out += &machine_lines(self.driver.as_ref()).join("\n");
        out += "\n```\n\n";
        out += &format!("{}\n\n", self.mode.description());
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
        // Text after a table is that table's note in the result file (and
        // BENCHMARKS.md), where the text above the first table is not kept.
        out += &format!("\n{}\n", self.mode.description());
        out += "\n## Raw baselines\n\n";
        out += &baselines.to_markdown();
        if !options.rows.is_empty() {
            out += &format!("\n## {BATCH_OPTIONS_TITLE}\n\n");
            out += &options.to_markdown();
            out += &format!(
                "\nOne table for every way of moving the batch of {BATCH_COUNT} × {}: our \
                 `copy_batch`, separate copies, and the driver's batched copy with each source \
                 access order and flag, in one call or split across two streams. `bytes`: \
                 the option's correctness check (— where it is a baseline not checked).\n",
                format_size(BATCH_ITEM_BYTES)
            );
        }
        if !crossover.rows.is_empty() {
            out += &format!("\n## {CROSSOVER_TITLE}\n\n");
            out += &crossover.to_markdown();
            out += "\nStaged moves with the policy's crossover between host relay (the host \
                    waits for the download, then queues the upload) and event chaining (the \
                    legs chained on the GPUs, pipelined) forced to each extreme: the \
                    crossover is the size from which event chaining is the faster one.\n";
        }
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

/// The title of the staged crossover table.
const CROSSOVER_TITLE: &str = "Staged crossover: host relay or event chaining";
/// The title of the table of batched-copy options.
const BATCH_OPTIONS_TITLE: &str = "Batched device-to-device copies: every option";

/// `$OUT/bench-gpu.md` where `OUT` is set, else `target/bench-gpu.md`.
pub fn markdown_path() -> PathBuf {
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
