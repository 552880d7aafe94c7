//! `cargo xtask bench --bundle DIR`: the GPU benchmark binaries (gpu-bench, tch-bench, `p2p bench`) and xtask itself in one folder, with a `run` script that writes a result file.

use std::fs;
use std::path::{Path, PathBuf};

use crate::gpu_test::{
    artifacts, file_name, io_error, make_executable, relative_to, size_of_dir, BUNDLE_LIMIT_MIB,
    FEATURE,
};
use crate::libtorch::ensure_libtorch;
use crate::manifest::{workspace_manifests, Manifest};
use crate::util::{bail, project_root, Cmd, Error, Result};

const RUN_SCRIPT: &str = include_str!("bench_run.sh");

/// Builds every GPU benchmark binary into `DIR/bin` and writes `DIR/run`.
pub(crate) fn bundle(dir: &Path) -> Result<()> {
    let root = project_root();
    let dir = std::env::current_dir()
        .map_err(|err| Error::new(format!("no current directory: {err}")))?
        .join(dir);
    let manifests = workspace_manifests(&root)?;
    let package = |name: &str| {
        manifests
            .iter()
            .find(|m| m.package_name().is_ok_and(|n| n == name))
    };

    let mut binaries: Vec<PathBuf> = Vec::new();
    let wanted = |name: &str| {
        name == "p2p" || name == "xtask" || name.starts_with("gpu-") || name.ends_with("-bench")
    };
    for name in ["p2p-cli", "xtask"] {
        binaries.extend(build_bins(name, None, false)?);
    }
    if let Some(benches) = package("p2p-benches") {
        binaries.extend(build_bins("p2p-benches", Some(benches), false)?);
    }
    if let Some(tch) = package("p2p-tch") {
        if tch.depends_on("tch") {
            binaries.extend(build_bins("p2p-tch", Some(tch), true)?);
        } else {
            println!("==> p2p-tch does not depend on `tch`: no tch-bench in the bundle");
        }
    }
    binaries.retain(|path| wanted(&file_name(path)));
    binaries.sort();
    binaries.dedup();
    let names: Vec<String> = binaries.iter().map(|p| file_name(p)).collect();
    for needed in ["p2p", "xtask"] {
        if !names.iter().any(|n| n == needed) {
            bail!("the build produced no `{needed}` binary");
        }
    }

    let bin = dir.join("bin");
    if bin.exists() {
        fs::remove_dir_all(&bin).map_err(|err| io_error("cannot clear", &bin, err))?;
    }
    fs::create_dir_all(&bin).map_err(|err| io_error("cannot create", &bin, err))?;
    let mut stripped = true;
    for source in &binaries {
        let target = bin.join(file_name(source));
        fs::copy(source, &target).map_err(|err| io_error("cannot copy into", &target, err))?;
        stripped &= Cmd::new("strip").arg(&target).succeeds();
    }
    if !stripped {
        println!("warning: `strip` failed on some binaries; the bundle keeps their symbols");
    }
    let benches: Vec<String> = names
        .iter()
        .filter(|n| n.starts_with("gpu-") || n.ends_with("-bench"))
        .cloned()
        .collect();
    let run = dir.join("run");
    fs::write(&run, render_run_script(&benches, &commit(&root))?)
        .map_err(|err| io_error("cannot write", &run, err))?;
    make_executable(&run)?;

    let (files, bytes) = size_of_dir(&dir)?;
    let mib = bytes as f64 / (1024.0 * 1024.0);
    println!(
        "==> bench bundle {}: {} ({files} files, {mib:.1} MiB)",
        dir.display(),
        names.join(", ")
    );
    if mib > BUNDLE_LIMIT_MIB {
        bail!("the bundle is {mib:.1} MiB, over the {BUNDLE_LIMIT_MIB} MiB that can be carried to the GPU machine");
    }
    println!(
        "==> on the GPU machine, from the repository root: {}/run; then commit the result file it names under benchmarks/results/ and run `cargo xtask bench --report`",
        relative_to(&dir, &root).display()
    );
    Ok(())
}

/// Builds the binaries of `package` in release (GPU feature on where it
/// declares one, libtorch where it needs it) and returns their paths.
fn build_bins(package: &str, manifest: Option<&Manifest>, libtorch: bool) -> Result<Vec<PathBuf>> {
    let mut cmd = Cmd::cargo().args([
        "build",
        "--release",
        "-p",
        package,
        "--bins",
        "--message-format=json-render-diagnostics",
    ]);
    if manifest.is_some_and(|m| m.declares_feature(FEATURE)) {
        cmd = cmd.args(["--features", &format!("{package}/{FEATURE}")]);
    }
    if libtorch {
        cmd = ensure_libtorch()?.apply(cmd)?;
    }
    Ok(artifacts(&cmd.read()?)
        .into_iter()
        .filter(|a| a.is_bin)
        .map(|a| a.executable)
        .collect())
}

/// The commit being bundled, `-dirty` when the work tree has changes; `unknown` outside git.
fn commit(root: &Path) -> String {
    let git = |args: &[&str]| {
        Cmd::new("git")
            .arg("-C")
            .arg(root)
            .args(args)
            .quiet()
            .read_silently()
            .ok()
    };
    match git(&["rev-parse", "--short", "HEAD"]) {
        Some(hash) if !hash.trim().is_empty() => {
            let dirty = git(&["status", "--porcelain"]).is_some_and(|s| !s.trim().is_empty());
            format!("{}{}", hash.trim(), if dirty { "-dirty" } else { "" })
        }
        _ => "unknown".into(),
    }
}

/// The run script with the benchmark list and the commit filled in.
fn render_run_script(benches: &[String], commit: &str) -> Result<String> {
    let plain = |s: &str| {
        s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
    };
    for name in benches.iter().map(String::as_str).chain([commit]) {
        if !plain(name) {
            bail!("`{name}` has characters the run script does not quote");
        }
    }
    let (benches_line, commit_line) = ("BENCHES=()\n", "COMMIT=unknown\n");
    if RUN_SCRIPT.matches(benches_line).count() != 1 || RUN_SCRIPT.matches(commit_line).count() != 1
    {
        bail!(
            "xtask/src/bench_run.sh must hold one `BENCHES=()` line and one `COMMIT=unknown` line"
        );
    }
    let list: Vec<String> = benches.iter().map(|b| format!("'{b}'")).collect();
    Ok(RUN_SCRIPT
        .replacen(benches_line, &format!("BENCHES=({})\n", list.join(" ")), 1)
        .replacen(commit_line, &format!("COMMIT='{commit}'\n"), 1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::prepend_path_var;

    #[test]
    fn run_script_names_the_benches_and_the_commit() {
        let script =
            render_run_script(&["gpu-bench".into(), "tch-bench".into()], "880903c-dirty").unwrap();
        assert!(script.contains("BENCHES=('gpu-bench' 'tch-bench')\n"));
        assert!(script.contains("COMMIT='880903c-dirty'\n"));
        assert!(
            script.contains("bench --collect"),
            "the script writes the result file"
        );
        assert!(render_run_script(&["a b".into()], "x").is_err());
        assert!(render_run_script(&[], "x;rm").is_err());
    }

    /// Writes an executable shell script.
    fn script(path: &Path, body: &str) {
        fs::write(path, format!("#!/usr/bin/env bash\n{body}\n")).unwrap();
        make_executable(path).unwrap();
    }

    /// Runs the rendered script in a bundle of stand-ins on a "machine" of
    /// one GPU (a fake `nvidia-smi` first on `PATH`), with `gpu-bench`
    /// exiting `gpu_bench_exit`; returns the exit status, the output and run-info.tsv.
    fn run_on_one_gpu(name: &str, gpu_bench_exit: u8) -> (bool, String, String) {
        let dir = std::env::temp_dir().join(format!("xtask-{name}-{}", std::process::id()));
        let (bin, fake_path, results) = (dir.join("bin"), dir.join("path"), dir.join("results"));
        for folder in [&bin, &fake_path, &results] {
            fs::create_dir_all(folder).unwrap();
        }
        script(
            &fake_path.join("nvidia-smi"),
            r#"case "$*" in
  *name*) echo "NVIDIA H200" ;;
  *driver_version*) echo "580.159.04" ;;
  -L) echo "GPU 0: NVIDIA H200 (UUID: GPU-0)" ;;
  *) echo "topology" ;;
esac"#,
        );
        script(&bin.join("p2p"), "echo '{}'");
        script(
            &bin.join("gpu-bench"),
            &format!("echo '## Results' > \"$OUT/bench-gpu.md\"\nexit {gpu_bench_exit}"),
        );
        script(
            &bin.join("tch-bench"),
            "echo 'tch-bench needs two CUDA GPUs; PyTorch sees 1.' >&2\nexit 2",
        );
        script(&bin.join("xtask"), "echo \"==> result file $3/r.tsv\"");
        let run = dir.join("run");
        let text = render_run_script(&["gpu-bench".into(), "tch-bench".into()], "abc1234").unwrap();
        fs::write(&run, text).unwrap();
        make_executable(&run).unwrap();
        let output = std::process::Command::new(&run)
            .env("PATH", prepend_path_var("PATH", &fake_path).unwrap())
            .env("OUT", &results)
            .output()
            .unwrap();
        let info = fs::read_to_string(results.join("run-info.tsv")).unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        fs::remove_dir_all(&dir).unwrap();
        (output.status.success(), stdout, info)
    }

    #[test]
    fn a_bench_that_cannot_run_here_is_skipped_and_noted() {
        let (passed, stdout, info) = run_on_one_gpu("skip", 0);
        assert!(passed, "{stdout}");
        assert!(stdout.contains("ok    gpu-bench"), "{stdout}");
        assert!(stdout.contains("skip  tch-bench"), "{stdout}");
        assert!(stdout.contains("result file"), "{stdout}");
        assert!(info.contains("kind\tnvidia-h200-x1\n"), "{info}");
        assert!(
            info.contains("note\ttch-bench did not run on this machine (exit 2): tch-bench needs two CUDA GPUs; PyTorch sees 1.\n"),
            "{info}"
        );
        assert!(info.contains("loopback: one GPU seen as two"), "{info}");
    }

    #[test]
    fn a_bench_that_fails_fails_the_run() {
        let (passed, stdout, _) = run_on_one_gpu("fail", 1);
        assert!(!passed, "{stdout}");
        assert!(stdout.contains("FAIL  gpu-bench"), "{stdout}");
    }
}
