//! `cargo xtask bench`: the criterion CPU benchmarks of `p2p-benches`; `--bundle DIR` for the GPU benchmarks, `--report` for BENCHMARKS.md, `--collect DIR` for a GPU run's result file.

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
    println!("    GPU benchmarks: `cargo xtask bench --bundle target/bench-bundle`, then `target/bench-bundle/run` on the GPU machine");
    Ok(())
}

fn criterion_dir() -> PathBuf {
    // A relative CARGO_TARGET_DIR is taken from the root, where cargo ran; an absolute one replaces it.
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| PathBuf::from("target"), PathBuf::from);
    project_root().join(target).join("criterion")
}

/// `xtask bench --collect DIR`: prints the path of the result file written.
pub(crate) fn collect(dir: &std::path::Path) -> Result<()> {
    let path = crate::bench_report::collect(dir)?;
    println!("==> result file {}", path.display());
    Ok(())
}
