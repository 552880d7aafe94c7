//! Tests of `p2p bench` on simulated machines, in process: a path that goes bad after the probe, and what the document says of it.

use std::path::Path;
use std::sync::Arc;

use p2p_core::sim::Fault;
use p2p_core::{Config, Driver, PeerTable, SimDriver};

use super::cases::{self, Cell, Status};
use super::{measure_all, output, BenchOptions, Progress};
use crate::machine::Machine;

/// Two GPUs joined both ways by a healthy peer path, slower one way.
const HEALTHY_PAIR: &str = r#"
[machine]
name = "2 healthy sim GPUs"
[[gpu]]
name = "Sim A"
[[gpu]]
name = "Sim B"
[[peer]]
from = 0
to = 1
gbps = 100.0
[[peer]]
from = 1
to = 0
gbps = 50.0
"#;

fn machine() -> (Arc<SimDriver>, Machine) {
    let sim = Arc::new(
        SimDriver::from_toml_str(HEALTHY_PAIR, Path::new("healthy.toml")).expect("topology parses"),
    );
    let driver: Arc<dyn Driver> = sim.clone();
    let table = Arc::new(PeerTable::new(driver, Config::default()));
    let machine = Machine {
        table,
        notice: None,
        name: "2 healthy sim GPUs".into(),
        sim: Some(sim.clone()),
    };
    (sim, machine)
}

fn options(cases: &[&str]) -> BenchOptions {
    BenchOptions {
        cases: cases.iter().map(|c| c.to_string()).collect(),
        size: Some(64 << 10),
        iterations: 2,
        pair: None,
        verbose: true,
    }
}

#[test]
fn a_path_that_goes_bad_after_the_probe_fails_its_cells_and_the_run() {
    let (sim, machine) = machine();
    let verdicts = machine.table.probe_all().expect("probe");
    assert!(verdicts.iter().all(|v| v.is_verified()), "{verdicts:?}");
    // The probe saw 0 -> 1 deliver; from now on it corrupts.
    sim.set_peer_fault(0, 1, Fault::Corrupt).expect("set fault");

    let options = options(&["peer", "route", "staged"]);
    let chosen = cases::choose(&options.cases).expect("cases exist");
    let results = measure_all(&machine.table, &chosen, &options, &Progress::hidden());
    let [peer, staged, route] = &results[..] else {
        panic!("three cases, in catalogue order: {results:?}")
    };
    for broken in [peer, route] {
        assert_eq!(broken.status(), Status::Error, "{broken:?}");
        assert!(matches!(broken.cells[0][1], Cell::Wrong(_)), "{broken:?}");
        assert!(
            matches!(broken.cells[1][0], Cell::Measured { .. }),
            "{broken:?}"
        );
        assert!(
            broken.mismatches[0].contains("WRONG BYTES"),
            "{:?}",
            broken.mismatches
        );
    }
    // Staging never takes the peer path: still right.
    assert_eq!(staged.status(), Status::Passed, "{staged:?}");

    let doc = output::document(&machine, &options, &results);
    assert_eq!(doc["passed"], false);
    assert_eq!(doc["simulated"], true);
    let peer = &doc["cases"][0];
    assert_eq!(peer["name"], "peer");
    assert_eq!(peer["status"], "error");
    assert!(
        peer["matrix"][0][1].is_null(),
        "a wrong copy has no figure: {peer}"
    );
    assert!(peer["matrix"][1][0].is_number(), "{peer}");
    assert!(
        peer["matrix_min"][1][0].is_number(),
        "--verbose adds min: {peer}"
    );
    assert_eq!(peer["failures"][0]["row"], "cuda:0");
    assert_eq!(peer["failures"][0]["column"], "cuda:1");
    assert!(doc["mismatches"].as_u64().unwrap_or(0) >= 2, "{doc}");
}

#[test]
fn a_healthy_pair_passes_with_the_topologys_speed() {
    let (sim, machine) = machine();
    let options = options(&["peer", "peer-bidirectional", "device-to-host-pinned"]);
    let chosen = cases::choose(&options.cases).expect("cases exist");
    let results = measure_all(&machine.table, &chosen, &options, &Progress::hidden());
    for result in &results {
        assert_eq!(result.status(), Status::Passed, "{result:?}");
    }
    // The bench's own copies, events and reads were ordered: no race, no
    // queued operation on memory it had let go of.
    if let Err(problems) = sim.check_clean() {
        panic!("{problems}");
    }
    let Cell::Measured {
        median, min, max, ..
    } = results[0].cells[0][1]
    else {
        panic!("{:?}", results[0])
    };
    // 64 KiB at 100 GB/s plus a 5 µs launch, on the virtual clock.
    let expected = 65536.0 / ((65536.0 / 100.0 + 5000.0) * 1e-9) / 1e9;
    assert!(
        (median - expected).abs() < 0.05 * expected,
        "{median} vs {expected}"
    );
    assert!(min <= median && median <= max);
    // Both ways at once: twice the bytes, done when the slower direction is.
    let Cell::Measured { median: both, .. } = results[1].cells[0][1] else {
        panic!("{:?}", results[1])
    };
    let slower = 2.0 * 65536.0 / ((65536.0 / 50.0 + 5000.0) * 1e-9) / 1e9;
    assert!((both - slower).abs() < 0.05 * slower, "{both} vs {slower}");
    assert_eq!(results[2].cells.len(), 2, "one row per device");
    assert_eq!(results[2].cells[0].len(), 1, "one host column");
}

#[test]
fn pairs_parse_and_unknown_cases_are_refused() {
    assert_eq!(super::parse_pair("0->1"), Ok((0, 1)));
    assert_eq!(super::parse_pair("cuda:3->cuda:1"), Ok((3, 1)));
    assert!(super::parse_pair("1->1").is_err());
    assert!(super::parse_pair("0-1").is_err());
    assert!(super::parse_pair("a->1").is_err());
    assert!(cases::choose(&["nope".to_string()]).is_err());
    assert_eq!(
        cases::choose(&[]).map(|c| c.len()).ok(),
        Some(cases::CATALOGUE.len())
    );
}
