//! `p2p probe`: the devices and the directed peer matrix, claimed vs found.

use std::process::ExitCode;
use std::time::Instant;

use p2p_core::{PairState, PeerClaim, PeerVerdict};
use serde_json::json;

use crate::machine::{self, CliError};
use crate::report::{self, printable};
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
            printable(&d.name),
            printable(&d.uuid),
            printable(&d.pci_bus_id),
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
        print!("{}", matrix(n, &verdicts));
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
                    printable(&v.reason.describe())
                );
            }
        }
    }
    match cache_file {
        Some(path) => println!("\nVerdict cache: {}", printable(&path)),
        None => println!("\nVerdict cache: off"),
    }
    println!("Probe time: {probe_seconds:.3} s");
    Ok(success)
}

/// The claimed / found matrix, one row per source device. Verdicts are
/// indexed by pair first: looking each cell up in the list would take
/// n^4 steps (minutes at 1000 GPUs).
fn matrix(n: usize, verdicts: &[PeerVerdict]) -> String {
    use std::fmt::Write;
    let mut by_pair: Vec<Option<&PeerVerdict>> = vec![None; n * n];
    for v in verdicts.iter().filter(|v| v.from < n && v.to < n) {
        by_pair[v.from * n + v.to] = Some(v);
    }
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(
        out,
        "\nPeer copy, row = from, column = to (claimed by the driver / found by the probe):"
    );
    let _ = write!(out, "{:>8}", "");
    for to in 0..n {
        let _ = write!(out, "  {:>14}", format!("cuda:{to}"));
    }
    out.push('\n');
    for from in 0..n {
        let _ = write!(out, "{:>8}", format!("cuda:{from}"));
        for cell in &by_pair[from * n..(from + 1) * n] {
            let cell = cell
                .map(|v| format!("{} / {}", if v.claimed { "yes" } else { "no" }, short(v)))
                .unwrap_or_else(|| "-".to_string());
            let _ = write!(out, "  {cell:>14}");
        }
        out.push('\n');
    }
    out
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

#[cfg(test)]
mod tests {
    use p2p_core::{PeerVerdict, Reason};

    fn verdict(from: usize, to: usize, reason: Reason) -> PeerVerdict {
        PeerVerdict {
            from,
            to,
            claimed: true,
            reason,
            peer_gbps: None,
            probe_micros: 0,
        }
    }

    #[test]
    fn matrix_puts_each_verdict_in_its_cell() {
        let verdicts = [
            verdict(1, 0, Reason::Verified),
            verdict(0, 1, Reason::Timeout { after_ms: 5 }),
            verdict(0, 7, Reason::Verified), // out of range: ignored, no panic
        ];
        let text = super::matrix(2, &verdicts);
        let rows: Vec<&str> = text.lines().skip(3).collect();
        assert_eq!(rows.len(), 2, "{text}");
        let cells = |row: &str| -> Vec<String> {
            row.split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(String::from)
                .collect()
        };
        assert_eq!(cells(rows[0]), ["cuda:0", "-", "yes / timeout"]);
        assert_eq!(cells(rows[1]), ["cuda:1", "yes / works", "-"]);
    }
}
