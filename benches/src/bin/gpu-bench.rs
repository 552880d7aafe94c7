//! `gpu-bench`: p2p-move's routes against raw CUDA driver baselines on real
//! GPUs, by size, with a correctness check of every route (the suite is
//! `p2p_benches::gpu`; this file opens the driver, picks the machine mode
//! and maps the outcome to an exit status).
//!
//! With one GPU (or `--loopback`) the GPU is shown as two devices
//! (`p2p_benches::gpu::Loopback`): the routes through host memory run for
//! real, and the rows that need a second GPU are skipped, saying so.
//!
//! Exit status: 0 when every correctness check passed (unmet speed targets
//! do not fail the run), 1 when a check or a driver call failed, 2 when there
//! is no CUDA driver or the arguments are wrong.

use std::process::ExitCode;
use std::sync::Arc;

use p2p_benches::cli::{self, Command};
use p2p_benches::gpu::{self, Machine};
use p2p_benches::raw_batch::RawBatch;
use p2p_core::{CudaDriver, Driver};

/// No driver, bad arguments: nothing was measured.
const EXIT_CANNOT_RUN: u8 = 2;

fn main() -> ExitCode {
    let options = match cli::parse(std::env::args().skip(1)) {
        Ok(Command::Run(options)) => options,
        Ok(Command::Help) => {
            println!("{}", cli::usage());
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("gpu-bench: {message}");
            return ExitCode::from(EXIT_CANNOT_RUN);
        }
    };
    let cuda = match CudaDriver::new() {
        Ok(driver) => Arc::new(driver),
        Err(p2p_core::Error::NoDriver { detail }) => {
            eprintln!(
                "gpu-bench: no CUDA driver on this machine ({detail}).\n\
                 gpu-bench: nothing measured: run it on a machine with NVIDIA GPUs \
                 (`cargo xtask bench --bundle DIR`, then `DIR/run` there)."
            );
            return ExitCode::from(EXIT_CANNOT_RUN);
        }
        Err(err) => {
            eprintln!("gpu-bench: opening the CUDA driver failed: {err}");
            return ExitCode::FAILURE;
        }
    };
    println!("{}", gpu::machine_lines(cuda.as_ref()).join("\n"));
    // The batched-copy rows queue on cuda:0's streams, which in loopback
    // mode are the one GPU's too.
    let raw_batch = cuda
        .context(0)
        .map_err(|err| format!("cuda:0 has no context: {err}"))
        .and_then(RawBatch::open);
    let loopback = options.loopback;
    let machine = match Machine::new(cuda.clone() as Arc<dyn Driver>, loopback) {
        Ok(machine) => machine.with_raw_batch(raw_batch),
        Err(err) => {
            eprintln!("gpu-bench: {err}");
            return ExitCode::FAILURE;
        }
    };
    println!("gpu-bench: {}", machine.mode.label());
    let summary = match gpu::run(machine, options) {
        Ok(summary) => summary,
        Err(err) => {
            eprintln!("gpu-bench: setting up the buffers failed: {err}");
            return ExitCode::FAILURE;
        }
    };
    let path = gpu::markdown_path();
    let written = path
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| std::fs::write(&path, &summary.markdown));
    match written {
        Ok(()) => println!("\nmarkdown table written to {}", path.display()),
        Err(err) => {
            eprintln!("gpu-bench: writing {}: {err}", path.display());
            return ExitCode::FAILURE;
        }
    }
    if summary.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
