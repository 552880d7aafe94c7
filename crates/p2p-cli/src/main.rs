//! The `p2p` command: probe the peer matrix, plan a move, verify moves, bench routes.

mod bench;
mod env_cmd;
mod machine;
mod plan_cmd;
mod probe_cmd;
mod report;
mod verify_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Safe, fast tensor moves between CUDA GPUs: what works on this machine, and how bytes would move.
#[derive(Debug, Parser)]
#[command(name = "p2p", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Options every subcommand shares.
#[derive(Debug, clap::Args)]
struct MachineArgs {
    /// Use a simulated machine described by this TOML topology file instead of the real GPUs.
    #[arg(long, value_name = "FILE")]
    sim: Option<PathBuf>,
    /// Fail (exit 2) instead of falling back to the built-in simulated machine when there is no GPU.
    #[arg(long)]
    require_gpu: bool,
    /// Ignore cached verdicts and probe again (same as P2P_REPROBE=1).
    #[arg(long)]
    reprobe: bool,
    /// How long a probe copy may take before the pair is declared hung (1 or more).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    probe_timeout_ms: Option<u64>,
    /// Also time peer copy against staging; a slower peer path is not used.
    #[arg(long)]
    thorough: bool,
    /// Schedule seed of a simulated machine: which queued work runs when
    /// (default: P2P_SIM_SEED, else a fixed seed). Replays a reported race.
    #[arg(long, value_name = "S")]
    schedule_seed: Option<u64>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show the devices and, for every ordered pair, what the driver claims and what the probe found.
    Probe {
        #[command(flatten)]
        machine: MachineArgs,
        /// Print one JSON document instead of tables.
        #[arg(long)]
        json: bool,
        /// Exit 3 when a pair the driver claims is found broken (for scripts and CI).
        #[arg(long)]
        exit_code: bool,
    },
    /// Measure transfer matrices (row = source, column = destination), every copy checked byte for byte.
    Bench {
        #[command(flatten)]
        machine: MachineArgs,
        /// List the cases and exit.
        #[arg(long)]
        list: bool,
        /// Run only this case (repeatable; see --list).
        #[arg(long = "case", value_name = "NAME")]
        cases: Vec<String>,
        /// Bytes per copy (KiB/MiB/GiB); default 512 MiB for bandwidth cases, 4 KiB for latency cases.
        #[arg(long, value_parser = parse_bytes)]
        size: Option<usize>,
        /// Timed copies per cell, after one warm-up; the median is reported.
        #[arg(long, default_value_t = 5)]
        iterations: usize,
        /// Only this ordered pair, e.g. `0->1` (host cases: only its two devices).
        #[arg(long, value_parser = bench::parse_pair)]
        pair: Option<(usize, usize)>,
        /// Show min and max beside each median.
        #[arg(long)]
        verbose: bool,
        #[arg(long)]
        json: bool,
        /// Also write the matrices as markdown tables to FILE (for benchmark result files).
        #[arg(long, value_name = "FILE")]
        markdown: Option<PathBuf>,
    },
    /// Print shell settings for other peer-to-peer users (NCCL, CUDA_VISIBLE_DEVICES) from the verdicts.
    Env {
        #[command(flatten)]
        machine: MachineArgs,
        #[arg(long)]
        json: bool,
    },
    /// Show the route a move would take, and why.
    Plan {
        #[command(flatten)]
        machine: MachineArgs,
        /// Where the bytes are: `cpu` or `cuda:N`.
        #[arg(long)]
        from: p2p_core::Location,
        /// Where they go: `cpu` or `cuda:N`.
        #[arg(long)]
        to: p2p_core::Location,
        /// How many: plain bytes or with KiB/MiB/GiB.
        #[arg(long, value_parser = parse_bytes)]
        bytes: usize,
        #[arg(long)]
        json: bool,
    },
    /// Move random data between every pair of locations and check every byte.
    Verify {
        #[command(flatten)]
        machine: MachineArgs,
        /// How many moves.
        #[arg(long, default_value_t = 200)]
        moves: usize,
        /// Seed of the random sizes and data (same seed, same moves).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Largest move: plain bytes or with KiB/MiB/GiB.
        #[arg(long, value_parser = parse_bytes, default_value = "64MiB")]
        max_bytes: usize,
        #[arg(long)]
        json: bool,
    },
}

fn parse_bytes(text: &str) -> Result<usize, String> {
    p2p_move::parse_size(text).map_err(|err| err.to_string())
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("P2P_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, not in logs or pipes.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Probe {
            machine,
            json,
            exit_code,
        } => probe_cmd::run(&machine, json, exit_code),
        Command::Bench { list: true, .. } => Ok(bench::list()),
        Command::Bench {
            machine,
            list: false,
            cases,
            size,
            iterations,
            pair,
            verbose,
            json,
            markdown,
        } => {
            let options = bench::BenchOptions {
                cases,
                size,
                iterations,
                pair,
                verbose,
            };
            bench::run(&machine, &options, json, markdown.as_deref())
        }
        Command::Env { machine, json } => env_cmd::run(&machine, json),
        Command::Plan {
            machine,
            from,
            to,
            bytes,
            json,
        } => plan_cmd::run(&machine, from, to, bytes, json),
        Command::Verify {
            machine,
            moves,
            seed,
            max_bytes,
            json,
        } => verify_cmd::run(&machine, moves, seed, max_bytes, json),
    };
    match outcome {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(err.exit_code())
        }
    }
}
