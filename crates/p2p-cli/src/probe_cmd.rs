//! `p2p probe`: the devices and the directed peer matrix, claimed vs found.

use std::process::ExitCode;
use std::time::Instant;

use p2p_core::{PairState, PeerClaim, PeerVerdict};
use serde_json::json;

use crate::machine::{self, CliError};
use crate::report;
use crate::MachineArgs;

/// `--exit-code`: the status when a pair the driver claims is found broken.
pub(crate) const EXIT_CLAIMED_PAIR_BROKEN: u8 = 3;

pub(crate) fn run(args: &MachineArgs, json: bool, exit_code: bool) -> Result<ExitCode, CliError> {
    let machine = machine::open(args)?;
    let driver = machine.driver();
    let started = Instant::now();
    let verdicts = machine.table.probe_all()?;
    let probe_seconds = started.elapsed().as_secs_f64();
    let cache_file = machine.table.cache_path().map(|p| p.display().to_string());
    let claimed_broken = verdicts
        .iter()
        .any(|v| v.claimed && v.state() == PairState::Broken);
    let success = if exit_code && claimed_broken {
        ExitCode::from(EXIT_CLAIMED_PAIR_BROKEN)
    } else {
        ExitCode::SUCCESS
    };

    if json {
        let devices: Vec<_> = driver
            .devices()
            .iter()
            .map(|d| {
                json!({
                    "ordinal": d.ordinal,
                    "name": d.name,
                    "uuid": d.uuid,
                    "pci_bus_id": d.pci_bus_id,
                    "compute_capability": format!("{}.{}", d.compute_capability.0, d.compute_capability.1),
                    "total_memory_bytes": d.total_memory_bytes,
                    "copy_engines": d.copy_engines,
                })
            })
            .collect();
        let pairs = verdicts
            .iter()
            .map(|v| Ok(pair_json(v, &driver.claim(v.from, v.to)?)))
            .collect::<Result<Vec<_>, CliError>>()?;
        let doc = json!({
            "simulated": machine.simulated(),
            "machine": machine.name,
            "notice": machine.notice,
            "driver_version": driver.driver_version(),
            "devices": devices,
            "pairs": pairs,
            "cache_file": cache_file,
            "probe_seconds": probe_seconds,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(success);
    }

    report::banner(&machine);
    println!("\nDevices:");
    for d in driver.devices() {
        println!(
            "  cuda:{:<2} {:<28} {}  {}  sm_{}{}  {:.0} GiB  {} copy engine(s)",
            d.ordinal,
            d.name,
            d.uuid,
            d.pci_bus_id,
            d.compute_capability.0,
            d.compute_capability.1,
            d.total_memory_bytes as f64 / (1u64 << 30) as f64,
            d.copy_engines
        );
    }
    let n = driver.device_count();
    if n < 2 {
        println!("\nOnly {n} GPU: no pairs to probe.");
    } else {
        println!(
            "\nPeer copy, row = from, column = to (claimed by the driver / found by the probe):"
        );
        print!("{:>8}", "");
        for to in 0..n {
            print!("  {:>14}", format!("cuda:{to}"));
        }
        println!();
        for from in 0..n {
            print!("{:>8}", format!("cuda:{from}"));
            for to in 0..n {
                let cell = verdicts
                    .iter()
                    .find(|v| v.from == from && v.to == to)
                    .map(|v| format!("{} / {}", if v.claimed { "yes" } else { "no" }, short(v)))
                    .unwrap_or_else(|| "-".to_string());
                print!("  {cell:>14}");
            }
            println!();
        }
        let broken: Vec<_> = verdicts.iter().filter(|v| !v.is_verified()).collect();
        if broken.is_empty() {
            println!("\nEvery pair verified: direct peer copy delivers correct bytes everywhere.");
        } else {
            println!("\nNot used for direct peer copy:");
            for v in broken {
                println!(
                    "  cuda:{} -> cuda:{}: {}",
                    v.from,
                    v.to,
                    v.reason.describe()
                );
            }
        }
    }
    match cache_file {
        Some(path) => println!("\nVerdict cache: {path}"),
        None => println!("\nVerdict cache: off"),
    }
    println!("Probe time: {probe_seconds:.3} s");
    Ok(success)
}

fn short(v: &PeerVerdict) -> &'static str {
    match v.state() {
        PairState::Works => "works",
        PairState::Disabled => "disabled",
        PairState::Broken => v.reason.name(),
    }
}

/// One pair for `--json`: the verdict, and the driver's claim in full.
fn pair_json(v: &PeerVerdict, claim: &PeerClaim) -> serde_json::Value {
    let state = match v.state() {
        PairState::Works => "works",
        PairState::Broken => "broken",
        PairState::Disabled => "disabled",
    };
    json!({
        "from": v.from,
        "to": v.to,
        "claimed": v.claimed,
        "verdict": state,
        "reason": v.reason.name(),
        "detail": v.reason.describe(),
        "peer_gbps": v.peer_gbps,
        "probe_micros": v.probe_micros,
        "claim": {
            "can_access_peer": claim.can_access_peer,
            "access_supported": claim.access_supported,
            "performance_rank": claim.performance_rank,
            "native_atomics": claim.native_atomics,
        },
    })
}
