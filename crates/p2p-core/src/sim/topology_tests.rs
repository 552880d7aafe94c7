//! Tests of topology parsing: the documented example, the defaults, and that every mistake names its line.

use std::path::Path;

use super::topology::line_column;
use super::*;
use crate::Result;

const EXAMPLE: &str = r#"[machine]
name = "4 x RTX 4090 on PCIe"   # optional
driver_version = 12080          # optional; part of the cache fingerprint
[[gpu]]
name = "Sim RTX 4090"
pci = "0000:01:00.0"            # optional
memory_mib = 24576              # optional
host_gbps = 25.0                # optional; pinned copy speed to and from host
[[gpu]]
[[peer]]
from = 0
to = 1
both = true                     # optional, default false: the same for 1 -> 0
claimed = true                  # optional, default true: what cuDeviceCanAccessPeer says
gbps = 50.0                     # optional
fault = "none"                  # optional: none | zeros | corrupt | drop-tail | hang | late | enable-fails
"#;

fn parse(text: &str) -> Result<Topology> {
    Topology::parse(text, Path::new("machines/test.toml"))
}

/// Parses `text`, which must be malformed, and returns (line, column, message).
fn failure(text: &str) -> (usize, usize, String) {
    match parse(text) {
        Err(Error::Topology {
            path,
            line,
            column,
            message,
        }) => {
            assert_eq!(path, Path::new("machines/test.toml"));
            (line, column, message)
        }
        other => panic!("expected a topology error for {text:?}, got {other:?}"),
    }
}

#[test]
fn the_documented_example_parses() {
    let topology = parse(EXAMPLE).unwrap();
    assert_eq!(topology.machine_name, "4 x RTX 4090 on PCIe");
    assert_eq!(topology.driver_version, 12080);
    assert_eq!(topology.gpus.len(), 2);
    let gpu = &topology.gpus[0];
    assert_eq!(gpu.name, "Sim RTX 4090");
    assert_eq!(gpu.pci_bus_id, "0000:01:00.0");
    assert_eq!(gpu.memory_mib, 24576);
    assert_eq!(gpu.host_gbps, 25.0);
    let expected = PeerSpec {
        from: 0,
        to: 1,
        claimed: true,
        gbps: 50.0,
        fault: Fault::None,
    };
    assert_eq!(topology.peer(0, 1), Some(&expected));
    assert_eq!(
        topology.peer(1, 0),
        Some(&PeerSpec {
            from: 1,
            to: 0,
            ..expected
        })
    );
    assert_eq!(topology.peers.len(), 2);
}

#[test]
fn defaults_fill_everything_left_out() {
    let topology = parse("[[gpu]]\n[[gpu]]\n[[peer]]\nfrom = 1\nto = 0\n").unwrap();
    assert_eq!(topology.machine_name, DEFAULT_MACHINE_NAME);
    assert_eq!(topology.driver_version, DEFAULT_DRIVER_VERSION);
    let infos = topology.device_infos();
    assert_eq!(infos[1].ordinal, 1);
    assert_eq!(infos[1].name, "Simulated GPU 1");
    assert_eq!(infos[1].pci_bus_id, "0000:01:00.0");
    assert_eq!(infos[0].pci_bus_id, "0000:00:00.0");
    assert_eq!(infos[0].total_memory_bytes, DEFAULT_MEMORY_MIB << 20);
    assert_eq!(infos[0].compute_capability, (8, 9));
    assert_eq!(infos[0].copy_engines, 2);
    assert_eq!(topology.gpus[0].host_gbps, DEFAULT_HOST_GBPS);
    let peer = topology.peer(1, 0).unwrap();
    assert!(peer.claimed);
    assert_eq!(peer.gbps, DEFAULT_PEER_GBPS);
    assert_eq!(peer.fault, Fault::None);
    assert_eq!(topology.peer(0, 1), None, "both defaults to false");
}

#[test]
fn uuids_are_deterministic_distinct_and_depend_on_the_machine_name() {
    let a = parse("[[gpu]]\n[[gpu]]\n").unwrap();
    let again = parse("[[gpu]]\n[[gpu]]\n").unwrap();
    let other = parse("[machine]\nname = \"other box\"\n[[gpu]]\n[[gpu]]\n").unwrap();
    assert_eq!(a.gpus[0].uuid, again.gpus[0].uuid);
    assert_ne!(a.gpus[0].uuid, a.gpus[1].uuid);
    assert_ne!(a.gpus[0].uuid, other.gpus[0].uuid);
    let uuid = &a.gpus[0].uuid;
    assert!(uuid.starts_with("GPU-sim-"), "{uuid}");
    let groups: Vec<usize> = uuid["GPU-sim-".len()..].split('-').map(str::len).collect();
    assert_eq!(groups, [8, 4, 4, 4, 12], "{uuid}");
}

#[test]
fn every_fault_name_parses() {
    for (name, fault) in [
        ("none", Fault::None),
        ("zeros", Fault::Zeros),
        ("corrupt", Fault::Corrupt),
        ("drop-tail", Fault::DropTail),
        ("hang", Fault::Hang),
        ("enable-fails", Fault::EnableFails),
    ] {
        let text = format!("[[gpu]]\n[[gpu]]\n[[peer]]\nfrom = 0\nto = 1\nfault = \"{name}\"\n");
        assert_eq!(parse(&text).unwrap().peer(0, 1).unwrap().fault, fault);
        assert_eq!(fault.name(), name);
    }
}

#[test]
fn a_late_fault_takes_its_time_and_only_it_takes_late_ms() {
    let late = "[[gpu]]\n[[gpu]]\n[[peer]]\nfrom = 0\nto = 1\nfault = \"late\"\nlate_ms = 40\n";
    let fault = parse(late).unwrap().peer(0, 1).unwrap().fault;
    assert_eq!(fault, Fault::Late { ms: 40 });
    assert_eq!(
        (fault.name(), fault.to_string()),
        ("late", "late (40 ms)".to_string())
    );
    let (line, _, message) =
        failure("[[gpu]]\n[[gpu]]\n[[peer]]\nfrom = 0\nto = 1\nfault = \"late\"\n");
    assert_eq!(line, 3);
    assert!(message.contains("late_ms"), "{message}");
    let (line, column, message) =
        failure("[[gpu]]\n[[gpu]]\n[[peer]]\nfrom = 0\nto = 1\nfault = \"hang\"\nlate_ms = 5\n");
    assert_eq!((line, column), (7, 11));
    assert!(message.contains("only for fault = \"late\""), "{message}");
}

#[test]
fn the_builtin_topology_parses_with_one_broken_direction() {
    let topology = parse(BUILTIN_TOPOLOGY).unwrap();
    assert_eq!(topology.gpus.len(), 4);
    assert!(topology
        .gpus
        .iter()
        .all(|gpu| gpu.name == "Simulated RTX 4090"));
    for from in 0..4 {
        for to in 0..4 {
            if from == to {
                continue;
            }
            let peer = topology.peer(from, to).unwrap();
            assert!(peer.claimed && peer.gbps == 25.0, "{from} -> {to}");
            let fault = if (from, to) == (2, 3) {
                Fault::Zeros
            } else {
                Fault::None
            };
            assert_eq!(peer.fault, fault, "{from} -> {to}");
        }
    }
}

#[test]
fn bad_toml_names_its_line() {
    let (line, column, _) = failure("[[gpu]]\nname = \"a\"\n[[gpu]\n");
    assert_eq!((line, column), (3, 7));
    let (line, _, _) = failure("[[gpu]]\nname = \"unterminated\n");
    assert_eq!(line, 2);
}

#[test]
fn unknown_keys_and_tables_name_their_line() {
    let (line, column, message) = failure("[[gpu]]\nname = \"a\"\nmemory_gb = 24\n");
    assert_eq!((line, column), (3, 1));
    assert!(message.contains("memory_gb"), "{message}");
    let (line, _, message) = failure("[[gpu]]\n\n[gpus]\nx = 1\n");
    assert_eq!(line, 3);
    assert!(message.contains("gpus"), "{message}");
    let (line, _, message) = failure("[machine]\nname = \"m\"\ncores = 4\n");
    assert_eq!(line, 3);
    assert!(message.contains("cores"), "{message}");
}

#[test]
fn an_unknown_fault_names_its_line() {
    let (line, column, message) =
        failure("[[gpu]]\n[[gpu]]\n[[peer]]\nfrom = 0\nto = 1\nfault = \"melts\"\n");
    assert_eq!((line, column), (6, 9));
    assert!(
        message.contains("melts") && message.contains("drop-tail"),
        "{message}"
    );
}

#[test]
fn a_peer_naming_a_missing_gpu_names_its_line() {
    let (line, column, message) = failure("[[gpu]]\n[[gpu]]\n[[peer]]\nfrom = 0\nto = 2\n");
    assert_eq!((line, column), (5, 6));
    assert!(
        message.contains("gpu 2") && message.contains("2 [[gpu]]"),
        "{message}"
    );
    let (line, _, _) = failure("[[gpu]]\n[[peer]]\nfrom = 7\nto = 0\n");
    assert_eq!(line, 3);
}

#[test]
fn a_negative_ordinal_names_its_line() {
    let (line, _, _) = failure("[[gpu]]\n[[gpu]]\n[[peer]]\nfrom = -1\nto = 0\n");
    assert_eq!(line, 4);
}

#[test]
fn a_peer_to_itself_names_its_entry() {
    let (line, column, message) = failure("[[gpu]]\n[[gpu]]\n\n[[peer]]\nfrom = 1\nto = 1\n");
    assert_eq!((line, column), (4, 1));
    assert!(message.contains("itself"), "{message}");
}

#[test]
fn a_duplicate_pair_names_both_entries() {
    let text =
        "[[gpu]]\n[[gpu]]\n[[peer]]\nfrom = 0\nto = 1\nboth = true\n[[peer]]\nfrom = 1\nto = 0\n";
    let (line, _, message) = failure(text);
    assert_eq!(line, 7);
    assert!(
        message.contains("1 -> 0") && message.contains("line 3"),
        "{message}"
    );
    let text = "[[gpu]]\n[[gpu]]\n[[peer]]\nfrom = 0\nto = 1\n[[peer]]\nfrom = 0\nto = 1\n";
    assert_eq!(failure(text).0, 6);
}

#[test]
fn a_missing_endpoint_names_its_entry() {
    let (line, _, message) = failure("[[gpu]]\n[[gpu]]\n[[peer]]\nfrom = 0\n");
    assert!(line >= 3, "line {line}");
    assert!(message.contains("to"), "{message}");
}

#[test]
fn bad_numbers_name_their_line() {
    let (line, _, message) = failure("[[gpu]]\n[[gpu]]\n[[peer]]\nfrom = 0\nto = 1\ngbps = -3.0\n");
    assert_eq!(line, 6);
    assert!(message.contains("gbps"), "{message}");
    let (line, _, _) = failure("[[gpu]]\nhost_gbps = 0.0\n");
    assert_eq!(line, 2);
    let (line, _, _) = failure("[[gpu]]\nhost_gbps = nan\n");
    assert_eq!(line, 2);
    let (line, _, _) = failure("[[gpu]]\nmemory_mib = -1\n");
    assert_eq!(line, 2);
    let (line, _, _) = failure("[[gpu]]\nmemory_mib = 9223372036854775807\n");
    assert_eq!(line, 2);
    let (line, _, message) = failure("[machine]\ndriver_version = 0\n[[gpu]]\n");
    assert_eq!(line, 2);
    assert!(message.contains("driver_version"), "{message}");
    let (line, _, _) = failure("[[gpu]]\nname = 4090\n");
    assert_eq!(line, 2);
}

#[test]
fn bad_and_duplicate_pci_addresses_name_their_line() {
    let (line, column, message) = failure("[[gpu]]\npci = \"01:00.0\"\n");
    assert_eq!((line, column), (2, 7));
    assert!(message.contains("01:00.0"), "{message}");
    let (line, _, message) =
        failure("[[gpu]]\npci = \"0000:01:00.0\"\n[[gpu]]\npci = \"0000:01:00.0\"\n");
    assert_eq!(line, 4);
    assert!(message.contains("gpu 0"), "{message}");
    // A made-up address steps around the ones the file gives.
    let mixed =
        parse("[[gpu]]\npci = \"0000:01:00.0\"\n[[gpu]]\n[[gpu]]\npci = \"0000:02:00.0\"\n")
            .unwrap();
    let buses: Vec<&str> = mixed
        .gpus
        .iter()
        .map(|gpu| gpu.pci_bus_id.as_str())
        .collect();
    assert_eq!(buses, ["0000:01:00.0", "0000:03:00.0", "0000:02:00.0"]);
    let upper = parse("[[gpu]]\npci = \"0000:AB:00.0\"\n").unwrap();
    assert_eq!(upper.gpus[0].pci_bus_id, "0000:ab:00.0");
}

#[test]
fn an_empty_machine_is_allowed() {
    let topology = parse("").unwrap();
    assert!(topology.gpus.is_empty() && topology.peers.is_empty());
}

#[test]
fn line_column_counts_characters_from_one() {
    assert_eq!(line_column("abc", 0), (1, 1));
    assert_eq!(line_column("ab\ncd", 3), (2, 1));
    assert_eq!(line_column("ab\ncd", 4), (2, 2));
    assert_eq!(line_column("é\néé x", 8), (2, 4));
    assert_eq!(line_column("ab", 99), (1, 3));
    // An offset inside a multi-byte character counts as that character.
    assert_eq!(line_column("é", 1), (1, 1));
}

#[test]
fn files_are_read_and_missing_files_are_io_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("box.toml");
    std::fs::write(&path, EXAMPLE).unwrap();
    let driver = SimDriver::from_file(&path).unwrap();
    assert_eq!(driver.machine_name(), "4 x RTX 4090 on PCIe");
    match SimDriver::from_file(dir.path().join("missing.toml")) {
        Err(Error::Io { path, .. }) => assert!(path.ends_with("missing.toml")),
        other => panic!("expected an I/O error, got {other:?}"),
    }
    std::fs::write(&path, "[[gpu]]\nbogus = 1\n").unwrap();
    match SimDriver::from_file(&path) {
        Err(err @ Error::Topology { .. }) => {
            let shown = err.to_string();
            assert!(
                shown.contains("box.toml:2:1:") && shown.contains("bogus"),
                "{shown}"
            );
        }
        other => panic!("expected a topology error, got {other:?}"),
    }
}
