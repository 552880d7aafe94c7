//! `gpu-bench`: p2p-move's routes against raw CUDA driver baselines on real
//! GPUs, by size, with a correctness check of every route (the suite is
//! `p2p_benches::gpu`; this file opens the driver and maps the outcome to an
//! exit status).
//!
//! Exit status: 0 when every correctness check passed (unmet speed targets
//! do not fail the run), 1 when a check or a driver call failed, 2 when there
//! is no CUDA driver, fewer than 2 GPUs, or the arguments are wrong.

use std::process::ExitCode;
use std::sync::Arc;

use p2p_benches::cli::{self, Command};
use p2p_benches::gpu;
use p2p_core::{CudaDriver, Driver};

/// No driver, too few GPUs, bad arguments: nothing was measured.
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
    let driver: Arc<dyn Driver> = match CudaDriver::new() {
        Ok(driver) => Arc::new(driver),
        Err(p2p_core::Error::NoDriver { detail }) => {
            eprintln!(
                "gpu-bench: no CUDA driver on this machine ({detail}).\n\
                 gpu-bench: nothing measured: run it on a machine with 2 or more NVIDIA GPUs \
                 (`cargo xtask gpu-test --bundle DIR`, then `DIR/run` there)."
            );
            return ExitCode::from(EXIT_CANNOT_RUN);
        }
        Err(err) => {
            eprintln!("gpu-bench: opening the CUDA driver failed: {err}");
            return ExitCode::FAILURE;
        }
    };
    println!("{}", gpu::machine_lines(driver.as_ref()).join("\n"));
    if driver.device_count() < 2 {
        eprintln!(
            "gpu-bench: nothing measured: this machine has {} GPU; the benchmark needs 2 (3 for the via rows)",
            driver.device_count()
        );
        return ExitCode::from(EXIT_CANNOT_RUN);
    }
    match gpu::run(driver, options) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(err) => {
            eprintln!("gpu-bench: setting up the buffers failed: {err}");
            ExitCode::FAILURE
        }
    }
}
