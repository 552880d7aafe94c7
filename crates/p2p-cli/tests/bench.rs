//! `p2p bench`, `p2p env` and `p2p probe --exit-code` end to end, on small simulated machines with broken pairs.

mod support;

use std::process::Output;

use serde_json::Value;
use support::{json, p2p_command, test_machine, text, topology};

/// Runs `p2p` with a private cache folder, a short probe deadline and
/// every GPU of the machine visible.
fn p2p(args: &[&str]) -> Output {
    let cache = tempfile::tempdir().expect("temp dir");
    p2p_command(args, cache.path())
        .env_remove("CUDA_VISIBLE_DEVICES")
        .output()
        .expect("run p2p")
}

fn case<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["cases"]
        .as_array()
        .and_then(|cases| cases.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no case {name} in {doc}"))
}

fn shape(matrix: &Value) -> (usize, usize) {
    let rows = matrix.as_array().expect("rows");
    let columns = rows.first().and_then(Value::as_array).map_or(0, Vec::len);
    assert!(rows
        .iter()
        .all(|r| r.as_array().map(Vec::len) == Some(columns)));
    (rows.len(), columns)
}

fn list() -> Vec<String> {
    let output = p2p(&["bench", "--list"]);
    assert!(output.status.success(), "{}", text(&output));
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next().map(str::to_string))
        .collect()
}

#[test]
fn bench_lists_its_cases() {
    let names = list();
    for name in [
        "peer",
        "peer-bidirectional",
        "staged",
        "staged-bidirectional",
        "route",
        "route-bidirectional",
        "host-to-device-pinned",
        "host-to-device-pageable",
        "device-to-host-pinned",
        "device-to-host-pageable",
        "host-bidirectional-pinned",
        "host-bidirectional-pageable",
        "peer-latency",
        "staged-latency",
    ] {
        assert!(
            names.iter().any(|n| n == name),
            "{name} missing from {names:?}"
        );
    }
}

#[test]
fn bench_on_a_machine_with_broken_pairs() {
    let sim = test_machine("three.toml");
    let output = p2p(&[
        "bench",
        "--json",
        "--sim",
        &sim,
        "--size",
        "192KiB",
        "--iterations",
        "2",
    ]);
    let doc = json(&output);
    assert_eq!(doc["simulated"], true);
    assert_eq!(doc["passed"], true, "{doc}");
    assert_eq!(doc["mismatches"], 0);
    assert_eq!(doc["driver_version"], "12.8");
    let devices = doc["devices"].as_array().expect("devices");
    assert_eq!(devices.len(), 3);
    assert_eq!(devices[2]["pci_bus_id"], "0000:03:00.0");
    assert!(devices[0]["uuid"]
        .as_str()
        .is_some_and(|u| u.starts_with("GPU-")));
    let names: Vec<&str> = doc["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(names, list(), "every case, in --list order");

    let peer = case(&doc, "peer");
    assert_eq!(peer["status"], "passed");
    assert_eq!(peer["unit"], "GB/s");
    assert_eq!(peer["bytes"], 192 << 10);
    assert_eq!(shape(&peer["matrix"]), (3, 3));
    let m = &peer["matrix"];
    for (row, column) in [(0, 1), (1, 0), (2, 0)] {
        assert!(
            m[row][column].as_f64().is_some_and(|x| x > 0.0),
            "{row}->{column}: {peer}"
        );
    }
    for (row, column) in [(0, 0), (0, 2), (1, 2), (2, 1)] {
        assert!(m[row][column].is_null(), "{row}->{column}: {peer}");
    }
    let reasons = peer["not_measured"].as_array().expect("not measured");
    assert_eq!(reasons.len(), 3, "{peer}");
    let reason = |row: &str, column: &str| {
        reasons
            .iter()
            .find(|r| r["row"] == row && r["column"] == column)
            .and_then(|r| r["reason"].as_str())
            .unwrap_or_else(|| panic!("no reason for {row} -> {column}: {peer}"))
            .to_string()
    };
    assert!(reason("cuda:0", "cuda:2").contains("corrupt"));
    assert!(reason("cuda:1", "cuda:2").contains("not-claimed"));
    let sum = peer["sum"].as_f64().expect("sum");
    let (min, max) = (
        peer["min"].as_f64().expect("min"),
        peer["max"].as_f64().expect("max"),
    );
    assert!(min <= max && sum >= 3.0 * min - 1e-9, "{peer}");

    // Both ways needs both directions verified: only 0 <-> 1.
    let both = case(&doc, "peer-bidirectional");
    assert!(both["matrix"][2][0].is_null(), "{both}");
    assert!(both["matrix"][0][1].is_number(), "{both}");

    // The planner's route exists for every pair, and says which.
    let route = case(&doc, "route");
    assert_eq!(route["status"], "passed");
    for row in 0..3 {
        for column in 0..3 {
            assert_eq!(
                route["matrix"][row][column].is_number(),
                row != column,
                "{route}"
            );
        }
    }
    assert_eq!(route["routes"][0][1], "peer");
    assert_eq!(route["routes"][0][2], "staged");
    assert_eq!(route["routes"][2][1], "via cuda:0");

    assert_eq!(
        shape(&case(&doc, "host-to-device-pageable")["matrix"]),
        (1, 3)
    );
    assert_eq!(
        shape(&case(&doc, "device-to-host-pinned")["matrix"]),
        (3, 1)
    );
    assert_eq!(case(&doc, "device-to-host-pinned")["rows"][2], "cuda:2");
    assert_eq!(
        case(&doc, "host-bidirectional-pinned")["columns"][0],
        "cuda:0"
    );
    let latency = case(&doc, "staged-latency");
    assert_eq!(latency["unit"], "us");
    assert!(latency["matrix"][1][2].as_f64().is_some_and(|us| us > 0.0));
}

#[test]
fn bench_text_defaults_pair_and_bad_arguments() {
    let sim = test_machine("three.toml");
    let output = p2p(&[
        "bench",
        "--sim",
        &sim,
        "--case",
        "peer",
        "--case",
        "peer-latency",
        "--iterations",
        "1",
        "--verbose",
        "--size",
        "64KiB",
    ]);
    assert!(output.status.success(), "{}", text(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("SIMULATED machine"), "{stdout}");
    assert!(stdout.contains("from \\ to"), "{stdout}");
    assert!(
        stdout.contains("n/a cuda:0 -> cuda:2: not verified for peer copy: corrupt"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("staged-latency"),
        "only the cases asked for: {stdout}"
    );

    // Without --size each kind of case takes its own default.
    let output = p2p(&[
        "bench",
        "--json",
        "--sim",
        &sim,
        "--case",
        "peer-latency",
        "--pair",
        "0->1",
        "--iterations",
        "1",
    ]);
    let doc = json(&output);
    let latency = case(&doc, "peer-latency");
    assert_eq!(latency["bytes"], 4096);
    assert!(latency["matrix"][0][1].is_number(), "{latency}");
    assert!(
        latency["matrix"][1][0].is_null(),
        "--pair keeps one cell: {latency}"
    );
    assert_eq!(latency["not_measured"].as_array().map(Vec::len), Some(0));

    for bad in [
        &["bench", "--sim", &sim, "--case", "warp-drive"][..],
        &["bench", "--sim", &sim, "--pair", "0->7"],
        &["bench", "--sim", &sim, "--pair", "1->1"],
        &["bench", "--sim", &sim, "--iterations", "0"],
        &["bench", "--sim", &sim, "--size", "lots"],
    ] {
        let output = p2p(bad);
        assert!(!output.status.success(), "{bad:?}: {}", text(&output));
        assert!(
            !String::from_utf8_lossy(&output.stderr).is_empty(),
            "{bad:?} says why"
        );
    }
}

#[test]
fn env_vetoes_claimed_broken_pairs() {
    let sim = test_machine("three.toml");
    let output = p2p(&["env", "--sim", &sim]);
    assert!(output.status.success(), "{}", text(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines.contains(&"export NCCL_P2P_DISABLE=1"), "{stdout}");
    assert!(
        lines.contains(&"export CUDA_VISIBLE_DEVICES=0,1"),
        "{stdout}"
    );
    let comments: Vec<&&str> = lines.iter().filter(|l| l.starts_with("# cuda:")).collect();
    assert_eq!(
        comments.len(),
        1,
        "one line per claimed broken pair: {stdout}"
    );
    assert!(comments[0].starts_with("# cuda:0 -> cuda:2:") && comments[0].contains("corrupt"));
    // Every other line is a comment or an export: safe to `eval`.
    assert!(
        lines
            .iter()
            .all(|l| l.starts_with('#') || l.starts_with("export ")),
        "{stdout}"
    );

    let doc = json(&p2p(&["env", "--json", "--sim", &sim]));
    assert_eq!(doc["settings"]["NCCL_P2P_DISABLE"], "1");
    assert_eq!(doc["settings"]["CUDA_VISIBLE_DEVICES"], "0,1");
    assert_eq!(doc["largest_verified_sets"], serde_json::json!([[0, 1]]));
    assert_eq!(doc["vetoed_pairs"][0]["from"], 0);
    assert_eq!(doc["vetoed_pairs"][0]["to"], 2);

    let healthy = test_machine("two-healthy.toml");
    let doc = json(&p2p(&["env", "--json", "--sim", &healthy]));
    assert_eq!(doc["settings"]["NCCL_P2P_DISABLE"], Value::Null);
    assert_eq!(doc["settings"]["CUDA_VISIBLE_DEVICES"], "0,1");
}

#[test]
fn env_on_the_four_gpu_topology_offers_every_largest_set() {
    let doc = json(&p2p(&[
        "env",
        "--json",
        "--sim",
        &topology("rtx4090x4.toml"),
    ]));
    // 0 <-> 1 and 2 <-> 3 are broken: four pairs of two GPUs remain.
    assert_eq!(
        doc["largest_verified_sets"],
        serde_json::json!([[0, 2], [0, 3], [1, 2], [1, 3]])
    );
    assert_eq!(doc["vetoed_pairs"].as_array().map(Vec::len), Some(4));
}

#[test]
fn probe_exit_code_says_whether_a_claimed_pair_is_broken() {
    let three = test_machine("three.toml");
    let healthy = test_machine("two-healthy.toml");
    assert_eq!(
        p2p(&["probe", "--sim", &three, "--exit-code"])
            .status
            .code(),
        Some(3)
    );
    assert_eq!(
        p2p(&["probe", "--json", "--sim", &three, "--exit-code"])
            .status
            .code(),
        Some(3)
    );
    assert_eq!(
        p2p(&["probe", "--sim", &three]).status.code(),
        Some(0),
        "off by default"
    );
    assert_eq!(
        p2p(&["probe", "--sim", &healthy, "--exit-code"])
            .status
            .code(),
        Some(0)
    );
}
