//! `p2p env`: shell settings, from the verdicts, for the other peer-to-peer users of the machine (NCCL, `CUDA_VISIBLE_DEVICES`).
//!
//! The verdicts are a veto: NCCL, PyTorch and vLLM trust the driver's claim
//! on their own, so a pair the driver claims but the probe found broken (or
//! the operator disabled) has to be switched off for them too. The driver
//! API tells us no link type (NVLink or PCIe), so no `NCCL_P2P_LEVEL` can be
//! chosen that is known to avoid exactly the broken links: peer copy is
//! turned off for NCCL as a whole, and `CUDA_VISIBLE_DEVICES` names the
//! largest sets of GPUs whose pairs all verify, for a job that wants peer
//! copy on.

use std::process::ExitCode;

use p2p_core::{PairState, PeerVerdict};
use serde_json::json;

use crate::machine::{self, CliError};
use crate::report::printable;
use crate::MachineArgs;

/// Sets of more GPUs than this are not searched exhaustively (2^n subsets).
const EXHAUSTIVE_UP_TO: usize = 20;

/// What `p2p env` recommends: values, so tests can inspect them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Settings {
    /// `NCCL_P2P_DISABLE=1` is needed: some claimed pair is vetoed.
    pub(crate) nccl_p2p_disable: bool,
    /// The largest sets of device ordinals whose every ordered pair is verified.
    pub(crate) largest_sets: Vec<Vec<usize>>,
    /// Claimed pairs the verdicts veto, with why.
    pub(crate) vetoed: Vec<(usize, usize, String)>,
}

/// The settings for `device_count` devices and their verdicts.
pub(crate) fn settings(device_count: usize, verdicts: &[PeerVerdict]) -> Settings {
    let verified = |a: usize, b: usize| {
        verdicts
            .iter()
            .any(|v| v.from == a && v.to == b && v.is_verified())
    };
    let vetoed: Vec<(usize, usize, String)> = verdicts
        .iter()
        .filter(|v| v.claimed && v.state() != PairState::Works)
        .map(|v| (v.from, v.to, v.reason.describe()))
        .collect();
    Settings {
        nccl_p2p_disable: !vetoed.is_empty(),
        largest_sets: largest_sets(device_count, verified),
        vetoed,
    }
}

/// The largest sets of devices in which every ordered pair is verified,
/// lowest ordinals first. Beyond [`EXHAUSTIVE_UP_TO`] devices, one set
/// grown greedily from cuda:0.
fn largest_sets(n: usize, verified: impl Fn(usize, usize) -> bool) -> Vec<Vec<usize>> {
    let clique = |set: &[usize]| {
        set.iter().all(|&a| {
            set.iter()
                .all(|&b| a == b || (verified(a, b) && verified(b, a)))
        })
    };
    if n == 0 {
        return Vec::new();
    }
    if n > EXHAUSTIVE_UP_TO {
        let mut set = Vec::new();
        for d in 0..n {
            set.push(d);
            if !clique(&set) {
                set.pop();
            }
        }
        return vec![set];
    }
    let mut best: Vec<Vec<usize>> = Vec::new();
    let mut best_len = 0;
    // Subsets in order of their lowest bits, so equal sizes come out ordered.
    let mut all: Vec<Vec<usize>> = (1u64..(1u64 << n))
        .map(|mask| (0..n).filter(|d| mask & (1 << d) != 0).collect())
        .collect();
    all.sort();
    for set in all {
        if set.len() < best_len || !clique(&set) {
            continue;
        }
        if set.len() > best_len {
            best_len = set.len();
            best.clear();
        }
        best.push(set);
    }
    best
}

/// `value` as one shell word: bare when it is made of characters no shell
/// treats specially, else in single quotes. The output is meant for `eval`,
/// and `CUDA_VISIBLE_DEVICES` comes from the caller's environment: an entry
/// such as `0;rm -rf ~` must stay a value, not become a command.
fn shell_word(value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ",._:-/+=".contains(c));
    if plain {
        value.to_string()
    } else {
        format!("'{}'", value.replace('\'', "'\\''"))
    }
}

/// The ordinals as `CUDA_VISIBLE_DEVICES` wants them. When it is already
/// set, our ordinal `i` is its `i`th entry.
fn visible_devices(set: &[usize], current: Option<&str>) -> String {
    let entries: Option<Vec<&str>> = current.map(|c| c.split(',').map(str::trim).collect());
    set.iter()
        .map(|&d| match &entries {
            Some(entries) => entries
                .get(d)
                .map_or_else(|| d.to_string(), |e| e.to_string()),
            None => d.to_string(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

pub(crate) fn run(args: &MachineArgs, json: bool) -> Result<ExitCode, CliError> {
    let machine = machine::open(args)?;
    let verdicts = machine.table.probe_all()?;
    let n = machine.driver().device_count();
    let found = settings(n, &verdicts);
    let current = std::env::var("CUDA_VISIBLE_DEVICES").ok();
    let visible: Vec<String> = found
        .largest_sets
        .iter()
        .map(|set| visible_devices(set, current.as_deref()))
        .collect();
    if json {
        let doc = json!({
            "simulated": machine.simulated(),
            "machine": machine.name,
            "settings": {
                "NCCL_P2P_DISABLE": found.nccl_p2p_disable.then_some("1"),
                "CUDA_VISIBLE_DEVICES": visible.first(),
            },
            "largest_verified_sets": found.largest_sets,
            "cuda_visible_devices_choices": visible,
            "vetoed_pairs": found.vetoed.iter().map(|(from, to, why)| json!({
                "from": from, "to": to, "reason": why,
            })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(ExitCode::SUCCESS);
    }
    let kind = if machine.simulated() {
        "SIMULATED machine"
    } else {
        "machine"
    };
    // Comments stay one line each (names come from topology files and
    // drivers, and a line break in one would start a command under `eval`).
    println!(
        "# p2p env: peer-to-peer settings from the verdicts of the {kind} {}",
        printable(&machine.name)
    );
    println!("# use: eval \"$(p2p env)\"");
    for (from, to, why) in &found.vetoed {
        println!(
            "# cuda:{from} -> cuda:{to}: claimed by the driver, not to be used: {}",
            printable(why)
        );
    }
    if found.nccl_p2p_disable {
        println!("# the driver API gives no link types, so no NCCL_P2P_LEVEL is known to avoid only these links");
        println!("export NCCL_P2P_DISABLE=1");
    } else if n >= 2 {
        println!("# every pair the driver claims verified: peer copy may stay on");
    }
    match visible.split_first() {
        Some((first, rest)) => {
            println!(
                "# the largest set(s) of GPUs whose pairs all verify ({} GPU(s)):",
                found.largest_sets[0].len()
            );
            println!("export CUDA_VISIBLE_DEVICES={}", shell_word(first));
            for other in rest {
                println!(
                    "# or: export CUDA_VISIBLE_DEVICES={}",
                    printable(&shell_word(other))
                );
            }
        }
        None => println!("# no GPU: nothing to set"),
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn largest_sets_need_both_directions() {
        // 0-1-2 all verified both ways; 3 verified with 0 only one way.
        let ok = |a: usize, b: usize| (a < 3 && b < 3) || (a == 3 && b == 0);
        assert_eq!(largest_sets(4, ok), vec![vec![0, 1, 2]]);
        // Two triangles of the same size: both, lowest first.
        let two = |a: usize, b: usize| a != 1 && b != 1 || a != 2 && b != 2;
        assert_eq!(largest_sets(4, two), vec![vec![0, 1, 3], vec![0, 2, 3]]);
        // Nothing verified: each GPU alone.
        assert_eq!(largest_sets(2, |_, _| false), vec![vec![0], vec![1]]);
        assert!(largest_sets(0, |_, _| true).is_empty());
        assert_eq!(largest_sets(25, |_, _| true)[0].len(), 25);
    }

    #[test]
    fn values_for_eval_stay_one_word() {
        assert_eq!(shell_word("0,1"), "0,1");
        assert_eq!(shell_word("GPU-3f2a,MIG-1/2"), "GPU-3f2a,MIG-1/2");
        assert_eq!(shell_word("0;touch x;,1"), "'0;touch x;,1'");
        assert_eq!(shell_word("a'b"), "'a'\\''b'");
        assert_eq!(shell_word("$(id)"), "'$(id)'");
        assert_eq!(shell_word(""), "''");
    }

    #[test]
    fn visible_devices_map_through_the_current_setting() {
        assert_eq!(visible_devices(&[0, 2], None), "0,2");
        assert_eq!(visible_devices(&[0, 1], Some("3, 5")), "3,5");
        assert_eq!(visible_devices(&[0, 2], Some("GPU-a,GPU-b")), "GPU-a,2");
    }
}
