//! `cargo xtask bench`: the criterion CPU benchmarks of `p2p-benches` (GPU benchmarks run from the gpu-test bundle).

use std::path::PathBuf;

use crate::util::{project_root, Cmd, Result};

/// Runs `cargo bench -p p2p-benches`, passing `extra` after `--` (a filter, `--save-baseline NAME`, ...).
pub(crate) fn run(extra: &[String]) -> Result<()> {
    let mut cmd = Cmd::cargo().args(["bench", "-p", "p2p-benches"]);
    if !extra.is_empty() {
        cmd = cmd.arg("--").args(extra);
    }
    cmd.run()?;
    println!(
        "==> criterion results: {} (one folder per benchmark; `new/estimates.json` holds the figures)",
        criterion_dir().display()
    );
    println!("    GPU benchmarks are `gpu-*` binaries: `cargo xtask gpu-test --bundle target/gpu-bundle`, then `target/gpu-bundle/run` on the GPU machine");
    Ok(())
}

fn criterion_dir() -> PathBuf {
    // A relative CARGO_TARGET_DIR is taken from the root, where cargo ran; an absolute one replaces it.
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| PathBuf::from("target"), PathBuf::from);
    project_root().join(target).join("criterion")
}
