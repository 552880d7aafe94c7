//! Helpers shared by the `p2p` binary's tests: the command with a private
//! cache and a short probe deadline, a run that cannot hang the test,
//! topology files, and the output as text or JSON.

// Each test crate uses a different subset of these helpers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The `p2p` binary running `args` with its verdict cache in `cache`, a
/// 200 ms probe deadline, and none of the operator's `P2P_*` settings.
pub(crate) fn p2p_command(args: &[&str], cache: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_p2p"));
    command
        .args(args)
        .env("P2P_CACHE_DIR", cache)
        .env("P2P_PROBE_TIMEOUT_MS", "200")
        .env_remove("P2P_DISABLE")
        .env_remove("P2P_REPROBE")
        .env_remove("P2P_NO_CACHE");
    command
}

/// Runs `command` with no input, reading both pipes on threads (so a full
/// pipe never stalls it); kills it and fails the test after 60 s.
pub(crate) fn run_watched(mut command: Command, what: &str) -> Output {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut stdout, &mut bytes).map(|_| bytes)
    });
    let err = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut stderr, &mut bytes).map(|_| bytes)
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(60) {
            child.kill().unwrap();
            panic!("{what} hung");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: out.join().unwrap().unwrap(),
        stderr: err.join().unwrap().unwrap(),
    }
}

/// The path of `name` in the repository's `topologies/` folder.
pub(crate) fn topology(name: &str) -> String {
    let path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "..", "..", "topologies", name]
        .iter()
        .collect();
    path.display().to_string()
}

/// The path of `name` in these tests' `machines/` folder.
pub(crate) fn test_machine(name: &str) -> String {
    let path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests", "machines", name]
        .iter()
        .collect();
    path.display().to_string()
}

/// Writes `bytes` to the file `name` in `dir`; returns its path.
pub(crate) fn write_file(dir: &Path, name: &str, bytes: impl AsRef<[u8]>) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path.display().to_string()
}

/// Exit status and both streams, for failure messages.
pub(crate) fn text(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The JSON `p2p` printed; fails unless it exited 0 and printed JSON.
pub(crate) fn json(output: &Output) -> Value {
    assert!(output.status.success(), "{}", text(output));
    serde_json::from_slice(&output.stdout).unwrap_or_else(|err| panic!("{err}: {}", text(output)))
}
