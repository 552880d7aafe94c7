//! Project tasks for p2p-move, run as `cargo xtask <task>` (see `USAGE`).
//!
//! No argument-parsing crate: xtask builds before anything else, so it avoids
//! adding dependencies here.

mod bench;
mod bench_bundle;
mod bench_report;
mod bench_results;
mod downstream;
mod gpu_test;
mod libtorch;
mod manifest;
mod test;
#[cfg(test)]
mod tidy;
mod util;

use std::path::PathBuf;
use std::process::ExitCode;

use util::{bail, Result};

const USAGE: &str = "\
usage: cargo xtask <task>

tasks:
  test                    cargo fmt --check, clippy -D warnings and tests for the workspace,
                          `cargo check` of the crates in xtask/downstream (cudarc users'
                          feature sets), then p2p-tch (with PyTorch 2.11.0 in .venv once it
                          depends on tch)
  gpu-test                build the GPU test, CLI and gpu-* bench binaries (release, feature
                          cuda-tests) and run them here; needs a GPU (`nvidia-smi -L`)
  gpu-test --bundle DIR   the same binaries, stripped, into DIR/bin with a DIR/run script;
                          run `DIR/run` from the repository root on the GPU machine
                          (results in $OUT, else target/gpu-results)
  cuda-versions           cargo check of p2p-core and p2p-move with each CUDA version feature
                          (one cudarc build each: run it when the backend's driver calls change)
  bench [-- ARGS]         criterion CPU benchmarks: cargo bench -p p2p-benches [-- ARGS]
  bench --bundle DIR      the GPU benchmarks (gpu-bench, tch-bench, `p2p bench`), release and
                          stripped, into DIR/bin with a DIR/run script that writes a result file
  bench --report          BENCHMARKS.md from the result files in benchmarks/results/
  bench --collect DIR     (run by DIR/run) one result file from a GPU run's output folder
  help                    this text
";

fn main() -> ExitCode {
    match dispatch() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch() -> Result<()> {
    let mut args = Vec::new();
    for arg in std::env::args_os().skip(1) {
        match arg.into_string() {
            Ok(arg) => args.push(arg),
            Err(arg) => bail!("argument {arg:?} is not UTF-8\n\n{USAGE}"),
        }
    }
    let (task, rest) = match args.split_first() {
        Some((task, rest)) => (task.as_str(), rest),
        None => ("help", &[][..]),
    };
    if rest.iter().any(|arg| arg == "-h" || arg == "--help") && task != "bench" {
        print!("{USAGE}");
        return Ok(());
    }
    match task {
        "help" | "-h" | "--help" => {
            print!("{USAGE}");
            Ok(())
        }
        "test" => {
            no_more_arguments(task, rest)?;
            test::run()
        }
        "cuda-versions" => {
            no_more_arguments(task, rest)?;
            downstream::check_cuda_versions()
        }
        "gpu-test" => match rest {
            [] => gpu_test::run(None),
            [flag, dir] if flag == "--bundle" => gpu_test::run(Some(PathBuf::from(dir))),
            [flag] if flag == "--bundle" => bail!("`--bundle` needs a directory\n\n{USAGE}"),
            _ => bail!(
                "unexpected arguments for gpu-test: {}\n\n{USAGE}",
                rest.join(" ")
            ),
        },
        "bench" => match rest {
            [] => bench::run(&[]),
            [flag, dir] if flag == "--bundle" => bench_bundle::bundle(&PathBuf::from(dir)),
            [flag] if flag == "--report" => bench_report::write_report(),
            [flag, dir] if flag == "--collect" => bench::collect(&PathBuf::from(dir)),
            [flag] if flag == "--bundle" || flag == "--collect" => {
                bail!("`{flag}` needs a directory\n\n{USAGE}")
            }
            [separator, extra @ ..] if separator == "--" => bench::run(extra),
            _ => bail!(
                "bench takes --bundle DIR, --report, --collect DIR, or arguments for criterion after `--`: cargo xtask bench -- {}\n\n{USAGE}",
                rest.join(" ")
            ),
        },
        other => bail!("unknown task `{other}`\n\n{USAGE}"),
    }
}

fn no_more_arguments(task: &str, rest: &[String]) -> Result<()> {
    if rest.is_empty() {
        Ok(())
    } else {
        bail!(
            "unexpected arguments for {task}: {}\n\n{USAGE}",
            rest.join(" ")
        )
    }
}
