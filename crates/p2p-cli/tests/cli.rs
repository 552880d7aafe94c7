//! The `p2p` binary end to end, on simulated machines (and on whatever this machine has).

mod support;

use std::process::{Command, Output};

use serde_json::Value;
use support::{json, p2p_command, run_watched, topology, write_file};

/// Runs `p2p` with a private cache folder and a short probe deadline.
fn p2p(args: &[&str]) -> (Output, tempfile::TempDir) {
    let cache = tempfile::tempdir().unwrap();
    let output = p2p_command(args, cache.path()).output().unwrap();
    (output, cache)
}

fn pair(doc: &Value, from: u64, to: u64) -> &Value {
    doc["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["from"] == from && p["to"] == to)
        .unwrap_or_else(|| panic!("no pair {from}->{to}"))
}

#[test]
fn probe_without_a_driver_shows_the_builtin_simulation() {
    let (output, _cache) = p2p(&["probe", "--json"]);
    let doc = json(&output);
    if doc["simulated"] == false {
        // A machine with GPUs: the real matrix, complete.
        let n = doc["devices"].as_array().unwrap().len();
        assert_eq!(
            doc["pairs"].as_array().unwrap().len(),
            n * n.saturating_sub(1)
        );
        return;
    }
    assert_eq!(doc["devices"].as_array().unwrap().len(), 4);
    assert_eq!(doc["pairs"].as_array().unwrap().len(), 12);
    assert_eq!(pair(&doc, 2, 3)["verdict"], "broken");
    assert_eq!(pair(&doc, 2, 3)["reason"], "corrupt");
    assert_eq!(pair(&doc, 3, 2)["verdict"], "works");
    assert!(doc["notice"].as_str().unwrap().contains("SIMULATED"));

    let (text, _cache) = p2p(&["probe"]);
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(stdout.contains("SIMULATED machine"), "{stdout}");
    assert!(stdout.contains("no CUDA driver"), "{stdout}");
}

#[test]
fn require_gpu_exits_2_without_one() {
    let (probe, _cache) = p2p(&["probe", "--json"]);
    if json(&probe)["simulated"] == false {
        return; // this machine has a GPU
    }
    let (output, _cache) = p2p(&["probe", "--require-gpu"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("no usable GPU"));
}

#[test]
fn every_fault_gives_its_reason() {
    let (output, _cache) = p2p(&["probe", "--json", "--sim", &topology("every-fault.toml")]);
    let doc = json(&output);
    assert_eq!(doc["simulated"], true);
    let reason = |from, to| pair(&doc, from, to)["reason"].as_str().unwrap().to_string();
    assert_eq!(reason(0, 1), "verified");
    assert_eq!(reason(0, 2), "corrupt");
    assert_eq!(reason(2, 0), "verified");
    assert_eq!(reason(0, 3), "corrupt");
    assert_eq!(reason(0, 4), "corrupt");
    assert_eq!(reason(0, 5), "timeout");
    assert_eq!(reason(1, 2), "not-claimed");
    assert_eq!(reason(1, 3), "enable-failed");
    assert_eq!(reason(2, 3), "verified");
    assert_eq!(pair(&doc, 1, 3)["claimed"], true);
    assert_eq!(pair(&doc, 1, 3)["claim"]["can_access_peer"], true);
    assert_eq!(pair(&doc, 1, 2)["claim"]["access_supported"], false);
    assert_eq!(pair(&doc, 1, 2)["claimed"], false);

    let (thorough, _cache) = p2p(&[
        "probe",
        "--json",
        "--thorough",
        "--sim",
        &topology("every-fault.toml"),
    ]);
    let doc = json(&thorough);
    assert_eq!(pair(&doc, 2, 3)["reason"], "slower-than-staging");
}

#[test]
fn disabled_pairs_show_as_disabled() {
    let cache = tempfile::tempdir().unwrap();
    let output = p2p_command(
        &["probe", "--json", "--sim", &topology("every-fault.toml")],
        cache.path(),
    )
    .env("P2P_DISABLE", "0<->1")
    .output()
    .unwrap();
    let doc = json(&output);
    assert_eq!(pair(&doc, 0, 1)["verdict"], "disabled");
    assert_eq!(pair(&doc, 1, 0)["reason"], "disabled-by-policy");
}

#[test]
fn verify_on_every_fault_delivers_every_byte() {
    let (output, _cache) = p2p(&[
        "verify",
        "--json",
        "--sim",
        &topology("every-fault.toml"),
        "--moves",
        "147",
        "--max-bytes",
        "3MiB",
        "--seed",
        "7",
    ]);
    let doc = json(&output);
    assert_eq!(doc["moves"], 147);
    assert_eq!(doc["mismatches"], 0, "{doc}");
    assert_eq!(doc["errors"], 0, "{doc}");
    let routes = doc["routes"].as_object().unwrap();
    for route in [
        "noop",
        "host-to-device",
        "device-to-host",
        "peer",
        "staged",
        "via",
    ] {
        assert!(routes.contains_key(route), "no {route} move in {routes:?}");
    }
}

#[test]
fn verify_on_a_simulated_machine_reports_races_under_its_schedule_seed() {
    for schedule_seed in ["0", "4"] {
        let (output, _cache) = p2p(&[
            "verify",
            "--json",
            "--sim",
            &topology("every-fault.toml"),
            "--moves",
            "60",
            "--max-bytes",
            "1MiB",
            "--schedule-seed",
            schedule_seed,
        ]);
        let doc = json(&output);
        assert_eq!(doc["races"], 0, "{doc}");
        assert_eq!(doc["sim_problems"], serde_json::json!([]), "{doc}");
        assert_eq!(doc["schedule_seed"].to_string(), schedule_seed);
        assert_eq!(doc["mismatches"], 0, "{doc}");
    }
}

#[test]
fn plan_explains_the_route() {
    let sim = topology("rtx4090x4.toml");
    let (output, _cache) = p2p(&[
        "plan", "--json", "--sim", &sim, "--from", "cuda:0", "--to", "cuda:1", "--bytes", "64MiB",
    ]);
    let doc = json(&output);
    assert_eq!(doc["route"], "via");
    assert_eq!(doc["via"], 2);
    assert_eq!(
        doc["chunk_bytes"],
        4 << 20,
        "64 MiB in 16 chunks fills the pipeline"
    );
    assert!(doc["reason"].as_str().unwrap().contains("not verified"));

    let (output, _cache) = p2p(&[
        "plan", "--json", "--sim", &sim, "--from", "cuda:0", "--to", "cuda:2", "--bytes", "4096",
    ]);
    let doc = json(&output);
    assert_eq!(doc["route"], "peer");
    assert_eq!(doc["via"], Value::Null);

    let (output, _cache) = p2p(&[
        "plan", "--json", "--sim", &sim, "--from", "cpu", "--to", "cpu", "--bytes", "1GiB",
    ]);
    assert_eq!(json(&output)["route"], "noop");
}

#[test]
fn bad_input_gets_a_clear_error() {
    let sim = topology("rtx4090x4.toml");
    let (output, _cache) = p2p(&[
        "plan", "--sim", &sim, "--from", "cuda:9", "--to", "cpu", "--bytes", "1",
    ]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("cuda:9 does not exist"));

    let (output, _cache) = p2p(&[
        "plan", "--sim", &sim, "--from", "gpu0", "--to", "cpu", "--bytes", "1",
    ]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("cuda:N"));

    let (output, _cache) = p2p(&[
        "plan", "--sim", &sim, "--from", "cpu", "--to", "cuda:0", "--bytes", "lots",
    ]);
    assert!(!output.status.success());

    let dir = tempfile::tempdir().unwrap();
    let text = "[[gpu]]\nname = \"x\"\n\n[[peer]]\nfrom = 0\nto = 7\n";
    let bad = write_file(dir.path(), "bad.toml", text);
    let (output, _cache) = p2p(&["probe", "--sim", &bad]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("bad.toml:"), "names the file: {stderr}");
}

/// Runs `p2p` like [`p2p`] with extra environment, failing the test instead
/// of hanging if it runs for more than 60 s.
fn p2p_with(args: &[&str], env: &[(&str, &str)]) -> (Output, tempfile::TempDir) {
    let cache = tempfile::tempdir().unwrap();
    let mut command = p2p_command(args, cache.path());
    command.envs(env.iter().copied());
    (run_watched(command, &format!("p2p {args:?}")), cache)
}

/// Fails unless `p2p` exited 1 and its stderr says each of `needles`.
fn refused(output: &Output, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "no {needle:?} in: {stderr}");
    }
}

#[test]
fn values_that_cannot_work_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in [
        ("empty.toml", ""),
        ("comments.toml", "# just a comment\n\n# and another\n"),
    ] {
        let path = write_file(dir.path(), name, text);
        let (output, _cache) = p2p_with(&["probe", "--sim", &path], &[]);
        refused(&output, &[name, "no GPU"]);
    }
    let sim = topology("every-fault.toml");
    let (output, _cache) = p2p_with(&["probe", "--sim", &sim, "--probe-timeout-ms", "0"], &[]);
    assert_eq!(output.status.code(), Some(2), "clap's usage error");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("'0'") && stderr.contains("--probe-timeout-ms"),
        "{stderr}"
    );
    for value in ["0->99", "1->1", ",,,"] {
        let (output, _cache) = p2p_with(&["probe", "--sim", &sim], &[("P2P_DISABLE", value)]);
        refused(&output, &["P2P_DISABLE", value]);
    }
}

#[test]
fn verify_refuses_more_than_host_memory_up_front() {
    let (output, _cache) = p2p_with(
        &[
            "verify",
            "--sim",
            &topology("every-fault.toml"),
            "--moves",
            "3",
            "--max-bytes",
            "64TiB",
        ],
        &[],
    );
    if cfg!(target_os = "linux") {
        refused(&output, &["--max-bytes", "host"]);
    } else {
        assert!(!output.status.success());
    }
}

#[test]
fn plan_on_a_pair_disabled_by_policy_says_so() {
    let sim = topology("rtx4090x4.toml");
    let args = [
        "plan", "--json", "--sim", &sim, "--from", "cuda:0", "--to", "cuda:2", "--bytes", "64MiB",
    ];
    let (output, _cache) = p2p_with(&args, &[("P2P_DISABLE", "0->2")]);
    let reason = json(&output)["reason"].as_str().unwrap().to_string();
    assert!(reason.contains("disabled by policy"), "{reason}");
    assert!(!reason.contains("cuda:2 not verified"), "{reason}");
    let (output, _cache) = p2p_with(&args, &[]);
    assert_eq!(
        json(&output)["route"],
        "peer",
        "the pair works without the policy"
    );
}

#[test]
fn the_no_driver_hint_names_the_real_command() {
    let (output, _cache) = p2p_with(&["probe"], &[]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !stdout.contains("SIMULATED") {
        return; // a machine with a driver: no hint to give
    }
    assert!(stdout.contains("`p2p probe --sim FILE`"), "{stdout}");
    assert!(!stdout.contains("`p2p --sim FILE`"), "{stdout}");
}

#[test]
fn warnings_carry_no_colour_codes_into_a_pipe() {
    let sim = topology("every-fault.toml");
    let (output, cache) = p2p_with(&["probe", "--json", "--sim", &sim], &[]);
    let path = json(&output)["cache_file"].as_str().unwrap().to_string();
    std::fs::write(&path, "{ not json").unwrap();
    let output = p2p_command(&["probe", "--json", "--sim", &sim], cache.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("corrupt"),
        "a warning was printed: {stderr}"
    );
    assert!(
        !stderr.contains('\u{1b}'),
        "colour codes in a pipe: {stderr:?}"
    );
}

#[test]
fn names_from_a_topology_are_printed_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let text = "[machine]\nname = \"evil\\u001b[2J\\nFORGED LINE\"\n[[gpu]]\nname = \"gpu\\rX\"\n[[gpu]]\n";
    let path = write_file(dir.path(), "evil.toml", text);
    let (output, _cache) = p2p_with(&["probe", "--sim", &path], &[]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(
        !stdout.contains('\u{1b}') && !stdout.contains('\r'),
        "{stdout:?}"
    );
    assert!(!stdout.lines().any(|l| l.starts_with("FORGED")), "{stdout}");
    assert!(stdout.contains("evil\\u{1b}[2J\\nFORGED LINE"), "{stdout}");
    assert!(stdout.contains("gpu\\rX"), "{stdout}");
}

#[cfg(unix)]
#[test]
fn special_files_as_topology_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo.toml");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    for path in [fifo.to_str().unwrap(), "/dev/zero"] {
        let (output, _cache) = p2p_with(&["probe", "--sim", path], &[]);
        refused(&output, &[path, "not a regular file"]);
    }
}

#[test]
fn text_probe_of_a_big_machine_shows_every_cell() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::from("[machine]\nname = \"big\"\n");
    for _ in 0..300 {
        text.push_str("[[gpu]]\n");
    }
    text.push_str("[[peer]]\nfrom = 298\nto = 299\n");
    let path = write_file(dir.path(), "big.toml", text);
    let (output, _cache) = p2p_with(&["probe", "--sim", &path], &[("P2P_NO_CACHE", "1")]);
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    let row = stdout
        .lines()
        .find(|l| l.starts_with("cuda:298"))
        .expect("a row per GPU");
    let cells: Vec<&str> = row
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(cells.len(), 301, "{row}");
    assert_eq!(cells[299], "-", "a device with itself");
    assert_eq!(cells[300], "yes / works");
    assert_eq!(cells[1], "no / not-claimed");
}
