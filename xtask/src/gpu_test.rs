//! `cargo xtask gpu-test [--bundle DIR]`: builds the GPU test, CLI and bench binaries and runs them here or bundles them for a GPU machine.
//!
//! A package joins the GPU run by declaring a `cuda-tests` feature: its test
//! binaries are built with that feature on (and only its own feature is
//! named, so packages without one build as usual).

use std::fs;
use std::path::{Path, PathBuf};

use crate::libtorch::ensure_libtorch;
use crate::manifest::{workspace_manifests, Manifest};
use crate::util::{bail, project_root, Cmd, Error, Result};

pub(crate) const FEATURE: &str = "cuda-tests";
const CLI_PACKAGE: &str = "p2p-cli";
const CLI_BINARY: &str = "p2p";
const BENCH_PACKAGE: &str = "p2p-benches";
const BENCH_PREFIX: &str = "gpu-";
/// The bundle travels to the GPU machine with at most 64 MiB in all.
pub(crate) const BUNDLE_LIMIT_MIB: f64 = 64.0;
const RUN_SCRIPT: &str = include_str!("gpu_run.sh");

/// Built binaries, by role.
#[derive(Debug, Default)]
struct Binaries {
    tests: Vec<PathBuf>,
    benches: Vec<PathBuf>,
    cli: Option<PathBuf>,
}

pub(crate) fn run(bundle: Option<PathBuf>) -> Result<()> {
    let root = project_root();
    let in_place = bundle.is_none();
    if in_place && !Cmd::new("nvidia-smi").arg("-L").succeeds() {
        bail!(
            "no GPU here (`nvidia-smi -L` failed). Build a bundle with \
             `cargo xtask gpu-test --bundle target/gpu-bundle` and run \
             `target/gpu-bundle/run` from the repository root on a GPU machine."
        );
    }
    let dir = match bundle {
        Some(dir) => std::env::current_dir()
            .map_err(|err| Error::new(format!("no current directory: {err}")))?
            .join(dir),
        None => root.join("target/gpu-bundle"),
    };

    let binaries = build(&root)?;
    write_bundle(&dir, &binaries)?;

    if in_place {
        Cmd::new(dir.join("run")).run()
    } else {
        println!(
            "==> on the GPU machine, from the repository root: {}/run",
            relative_to(&dir, &root).display()
        );
        Ok(())
    }
}

fn build(root: &Path) -> Result<Binaries> {
    let manifests = workspace_manifests(root)?;
    let mut binaries = Binaries::default();

    let gpu_packages: Vec<&Manifest> = manifests
        .iter()
        .filter(|m| m.declares_feature(FEATURE))
        .collect();
    if gpu_packages.is_empty() {
        println!("==> no package declares a `{FEATURE}` feature: no test binaries to build");
    } else {
        let mut cmd = Cmd::cargo().args([
            "test",
            "--release",
            "--no-run",
            "--message-format=json-render-diagnostics",
        ]);
        let mut features = Vec::new();
        for manifest in &gpu_packages {
            let name = manifest.package_name()?;
            features.push(format!("{name}/{FEATURE}"));
            cmd = cmd.args(["-p", &name]);
        }
        cmd = cmd.args(["--features", &features.join(",")]);
        if gpu_packages.iter().any(|m| m.depends_on("tch")) {
            cmd = ensure_libtorch()?.apply(cmd)?;
        }
        // Only test targets with GPU tests travel: the others test the
        // simulator, which CI runs, and would only make the bundle larger.
        binaries.tests = artifacts(&cmd.read()?)
            .into_iter()
            .filter(|a| a.test && a.src_path.as_deref().is_some_and(has_gpu_tests))
            .map(|a| a.executable)
            .collect();

        // Packages built on libtorch carry their GPU benchmark (`tch-bench`)
        // and examples as bins and examples: run them with the benches.
        for manifest in gpu_packages.iter().filter(|m| m.depends_on("tch")) {
            let name = manifest.package_name()?;
            let cmd = Cmd::cargo().args([
                "build",
                "--release",
                "-p",
                &name,
                "--bins",
                "--examples",
                "--features",
                &format!("{name}/{FEATURE}"),
                "--message-format=json-render-diagnostics",
            ]);
            let cmd = ensure_libtorch()?.apply(cmd)?;
            binaries.benches.extend(
                artifacts(&cmd.read()?)
                    .into_iter()
                    .filter(|a| {
                        (a.is_bin && file_name(&a.executable).ends_with("-bench")) || a.is_example
                    })
                    .map(|a| a.executable),
            );
        }
    }

    let cli = Cmd::cargo().args([
        "build",
        "--release",
        "-p",
        CLI_PACKAGE,
        "--message-format=json-render-diagnostics",
    ]);
    binaries.cli = artifacts(&cli.read()?)
        .into_iter()
        .find(|a| a.is_bin && file_name(&a.executable) == CLI_BINARY)
        .map(|a| a.executable);
    if binaries.cli.is_none() {
        bail!("`cargo build -p {CLI_PACKAGE}` produced no `{CLI_BINARY}` binary");
    }

    if let Some(benches) = manifests
        .iter()
        .find(|m| m.package_name().is_ok_and(|name| name == BENCH_PACKAGE))
    {
        if benches.has_bins() {
            let mut cmd = Cmd::cargo().args([
                "build",
                "--release",
                "-p",
                BENCH_PACKAGE,
                "--bins",
                "--message-format=json-render-diagnostics",
            ]);
            if benches.declares_feature(FEATURE) {
                cmd = cmd.args(["--features", &format!("{BENCH_PACKAGE}/{FEATURE}")]);
            }
            binaries.benches.extend(
                artifacts(&cmd.read()?)
                    .into_iter()
                    .filter(|a| a.is_bin && file_name(&a.executable).starts_with(BENCH_PREFIX))
                    .map(|a| a.executable),
            );
        }
    }

    binaries.tests.sort();
    binaries.tests.dedup();
    binaries.benches.sort();
    binaries.benches.dedup();
    Ok(binaries)
}

fn write_bundle(dir: &Path, binaries: &Binaries) -> Result<()> {
    let bin = dir.join("bin");
    // Only what this task owns: binaries of an earlier build must not run again.
    if bin.exists() {
        fs::remove_dir_all(&bin).map_err(|err| io_error("cannot clear", &bin, err))?;
    }
    fs::create_dir_all(&bin).map_err(|err| io_error("cannot create", &bin, err))?;

    let all = binaries
        .tests
        .iter()
        .chain(&binaries.benches)
        .chain(&binaries.cli);
    let mut stripped = true;
    for source in all {
        let target = bin.join(file_name(source));
        fs::copy(source, &target).map_err(|err| io_error("cannot copy into", &target, err))?;
        stripped &= Cmd::new("strip").arg(&target).succeeds();
    }
    if !stripped {
        println!("warning: `strip` failed on some binaries; the bundle keeps their symbols");
    }

    let script = render_run_script(&names(&binaries.tests), &names(&binaries.benches))?;
    let run = dir.join("run");
    fs::write(&run, script).map_err(|err| io_error("cannot write", &run, err))?;
    make_executable(&run)?;

    let (files, bytes) = size_of_dir(dir)?;
    let mib = bytes as f64 / (1024.0 * 1024.0);
    println!(
        "==> bundle {}: {} test, {} bench and 1 CLI binaries; {files} files, {mib:.1} MiB",
        dir.display(),
        binaries.tests.len(),
        binaries.benches.len(),
    );
    if mib > BUNDLE_LIMIT_MIB {
        bail!("the bundle is {mib:.1} MiB, over the {BUNDLE_LIMIT_MIB} MiB that can be carried to the GPU machine");
    }
    Ok(())
}

/// The run script with the binary lists filled in.
fn render_run_script(tests: &[String], benches: &[String]) -> Result<String> {
    let list = |items: &[String]| {
        items
            .iter()
            .map(|item| format!("'{item}'"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    for name in tests.iter().chain(benches) {
        // Names go into the script between single quotes.
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        {
            bail!("binary name `{name}` has characters the run script does not quote");
        }
    }
    let (tests_line, benches_line) = ("TESTS=()\n", "BENCHES=()\n");
    if RUN_SCRIPT.matches(tests_line).count() != 1 || RUN_SCRIPT.matches(benches_line).count() != 1
    {
        bail!("xtask/src/gpu_run.sh must hold one `TESTS=()` line and one `BENCHES=()` line");
    }
    Ok(RUN_SCRIPT
        .replacen(tests_line, &format!("TESTS=({})\n", list(tests)), 1)
        .replacen(benches_line, &format!("BENCHES=({})\n", list(benches)), 1))
}

/// Whether the test target rooted at `src_path` holds GPU tests: code under
/// the `cuda-tests` feature, or bodies run on every backend by the
/// `backend_tests!` macro (whose CUDA variants need the feature). Unreadable
/// sources count as GPU tests, so nothing is left out by mistake.
fn has_gpu_tests(src_path: &Path) -> bool {
    match fs::read_to_string(src_path) {
        Ok(text) => {
            text.contains(&format!("feature = \"{FEATURE}\"")) || text.contains("backend_tests!")
        }
        Err(_) => true,
    }
}

/// One `compiler-artifact` line of cargo's JSON output, as far as it matters here.
#[derive(Debug, PartialEq)]
pub(crate) struct Artifact {
    pub(crate) executable: PathBuf,
    /// Built as a test harness (`"profile":{...,"test":true}`).
    pub(crate) test: bool,
    /// A `[[bin]]` target.
    pub(crate) is_bin: bool,
    /// An example (`examples/*.rs`).
    pub(crate) is_example: bool,
    /// The target's root source file.
    pub(crate) src_path: Option<PathBuf>,
}

/// The executables in `cargo --message-format=json` output. Read by string
/// search: cargo writes one compact object per line, and xtask keeps no JSON dependency.
pub(crate) fn artifacts(json_lines: &str) -> Vec<Artifact> {
    json_lines
        .lines()
        .filter(|line| line.contains(r#""reason":"compiler-artifact""#))
        .filter_map(|line| {
            let executable = string_field(line, "executable")?;
            let profile = object_field(line, "profile").unwrap_or("");
            let target = object_field(line, "target").unwrap_or("");
            Some(Artifact {
                executable: PathBuf::from(executable),
                test: profile.contains(r#""test":true"#),
                is_bin: target.contains(r#""kind":["bin"]"#),
                is_example: target.contains(r#""kind":["example"]"#),
                src_path: string_field(target, "src_path").map(PathBuf::from),
            })
        })
        .collect()
}

/// The string value of `"key":"..."`, unescaped; `None` for `null` or absent.
fn string_field(line: &str, key: &str) -> Option<String> {
    let start = line.find(&format!("\"{key}\":\""))? + key.len() + 4;
    let mut value = String::new();
    let mut chars = line[start..].chars();
    loop {
        match chars.next()? {
            '"' => return Some(value),
            '\\' => match chars.next()? {
                'n' => value.push('\n'),
                't' => value.push('\t'),
                other => value.push(other),
            },
            c => value.push(c),
        }
    }
}

/// The text of a flat object value `"key":{...}` (cargo's `target` and `profile` hold no nested objects).
fn object_field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let start = line.find(&format!("\"{key}\":{{"))?;
    let end = start + line[start..].find('}')?;
    Some(&line[start..=end])
}

fn names(paths: &[PathBuf]) -> Vec<String> {
    paths.iter().map(|path| file_name(path)).collect()
}

pub(crate) fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default()
}

pub(crate) fn relative_to(path: &Path, base: &Path) -> PathBuf {
    path.strip_prefix(base)
        .map_or_else(|_| path.to_path_buf(), Path::to_path_buf)
}

pub(crate) fn make_executable(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))
        .map_err(|err| io_error("cannot chmod", path, err))
}

/// Number of files and their total size under `dir`.
pub(crate) fn size_of_dir(dir: &Path) -> Result<(usize, u64)> {
    let mut files = 0;
    let mut bytes = 0;
    let entries = fs::read_dir(dir).map_err(|err| io_error("cannot list", dir, err))?;
    for entry in entries {
        let entry = entry.map_err(|err| io_error("cannot list", dir, err))?;
        let path = entry.path();
        if path.is_dir() {
            let (f, b) = size_of_dir(&path)?;
            files += f;
            bytes += b;
        } else {
            files += 1;
            bytes += entry
                .metadata()
                .map_err(|err| io_error("cannot stat", &path, err))?
                .len();
        }
    }
    Ok((files, bytes))
}

pub(crate) fn io_error(what: &str, path: &Path, err: std::io::Error) -> Error {
    Error::new(format!("{what} {}: {err}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_test_and_bin_artifacts() {
        let output = [
            r#"{"reason":"compiler-artifact","package_id":"registry+https://github.com/rust-lang/crates.io-index#libc@0.2.0","target":{"kind":["lib"],"crate_types":["lib"],"name":"libc","src_path":"/x/lib.rs","edition":"2021","doc":true,"doctest":true,"test":true},"profile":{"opt_level":"3","debuginfo":0,"debug_assertions":false,"overflow_checks":false,"test":false},"features":[],"filenames":["/t/liblibc.rlib"],"executable":null,"fresh":true}"#,
            r#"{"reason":"compiler-artifact","package_id":"path+file:///w/crates/p2p-core#0.1.0","target":{"kind":["test"],"crate_types":["bin"],"name":"cuda_backend","src_path":"/w/crates/p2p-core/tests/cuda_backend.rs","edition":"2021","doc":false,"doctest":false,"test":true},"profile":{"opt_level":"3","debuginfo":0,"debug_assertions":false,"overflow_checks":false,"test":true},"features":["cuda-tests"],"filenames":["/t/release/deps/cuda_backend-0123abcd"],"executable":"/t/release/deps/cuda_backend-0123abcd","fresh":false}"#,
            r#"{"reason":"compiler-artifact","package_id":"path+file:///w/crates/p2p-cli#0.1.0","target":{"kind":["bin"],"crate_types":["bin"],"name":"p2p","src_path":"/w/crates/p2p-cli/src/main.rs","edition":"2021","doc":true,"doctest":false,"test":true},"profile":{"opt_level":"3","debuginfo":0,"debug_assertions":false,"overflow_checks":false,"test":false},"features":[],"filenames":["/t/release/p2p"],"executable":"/t/release/p2p","fresh":true}"#,
            r#"{"reason":"build-finished","success":true}"#,
        ]
        .join("\n");
        assert_eq!(
            artifacts(&output),
            vec![
                Artifact {
                    executable: "/t/release/deps/cuda_backend-0123abcd".into(),
                    test: true,
                    is_bin: false,
                    is_example: false,
                    src_path: Some("/w/crates/p2p-core/tests/cuda_backend.rs".into()),
                },
                Artifact {
                    executable: "/t/release/p2p".into(),
                    test: false,
                    is_bin: true,
                    is_example: false,
                    src_path: Some("/w/crates/p2p-cli/src/main.rs".into()),
                },
            ]
        );
    }

    #[test]
    fn only_test_targets_with_gpu_tests_travel() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        assert!(has_gpu_tests(
            &root.join("crates/p2p-core/tests/cuda_backend.rs")
        ));
        assert!(has_gpu_tests(
            &root.join("crates/p2p-move/tests/executor.rs")
        ));
        assert!(!has_gpu_tests(&root.join("crates/p2p-move/tests/waits.rs")));
        assert!(has_gpu_tests(&root.join("no/such/file.rs")));
    }

    #[test]
    fn unescapes_string_fields() {
        assert_eq!(
            string_field(r#"{"executable":"/a \"b\"\\c"}"#, "executable").as_deref(),
            Some(r#"/a "b"\c"#)
        );
        assert_eq!(string_field(r#"{"executable":null}"#, "executable"), None);
    }

    #[test]
    fn run_script_lists_the_binaries() {
        let script = render_run_script(&["cuda_backend-0123abcd".into()], &[]).unwrap();
        assert!(script.contains("TESTS=('cuda_backend-0123abcd')\n"));
        assert!(script.contains("BENCHES=()\n"));
        assert!(render_run_script(&["a b".into()], &[]).is_err());
    }
}
