//! `cargo xtask test`: formatting, clippy and tests for the workspace, the downstream cudarc checks, then `p2p-tch` (with libtorch once it needs it).

use std::time::Instant;

use crate::libtorch::{ensure_libtorch, LibtorchEnv};
use crate::manifest::Manifest;
use crate::util::{format_duration, project_root, Cmd, Result};

/// Runs every step in order and stops at the first failure.
pub(crate) fn run() -> Result<()> {
    let start = Instant::now();

    Cmd::cargo().args(["fmt", "--all", "--", "--check"]).run()?;
    // No `--workspace`: that would select every member, p2p-tch included;
    // without it cargo takes `default-members`, which leave p2p-tch out.
    Cmd::cargo()
        .args(["clippy", "--quiet", "--all-targets", "--", "-D", "warnings"])
        .run()?;
    // The GPU tests run only on a GPU machine, but they must compile here:
    // an API change that breaks them is caught in CI, not on the GPU.
    Cmd::cargo()
        .args([
            "clippy",
            "--quiet",
            "--all-targets",
            "--features",
            "p2p-core/cuda-tests,p2p-move/cuda-tests",
            "--",
            "-D",
            "warnings",
        ])
        .run()?;
    Cmd::cargo().args(["test", "--quiet"]).run()?;
    crate::downstream::check_all()?;

    let tch_manifest = Manifest::read(&project_root().join("crates/p2p-tch"))?;
    let libtorch = if tch_manifest.depends_on("tch") {
        Some(ensure_libtorch()?)
    } else {
        println!("==> p2p-tch does not depend on `tch` yet: testing it without libtorch");
        None
    };
    with_libtorch(
        libtorch.as_ref(),
        Cmd::cargo().args([
            "clippy",
            "--quiet",
            "-p",
            "p2p-tch",
            "--all-targets",
            "--features",
            "cuda-tests",
            "--",
            "-D",
            "warnings",
        ]),
    )?
    .run()?;
    with_libtorch(
        libtorch.as_ref(),
        Cmd::cargo().args(["test", "--quiet", "-p", "p2p-tch"]),
    )?
    .run()?;

    println!(
        "==> all steps passed in {}",
        format_duration(start.elapsed())
    );
    Ok(())
}

fn with_libtorch(libtorch: Option<&LibtorchEnv>, cmd: Cmd) -> Result<Cmd> {
    match libtorch {
        Some(env) => env.apply(cmd),
        None => Ok(cmd),
    }
}
