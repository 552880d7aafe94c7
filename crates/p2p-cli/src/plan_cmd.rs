//! `p2p plan`: the route a move would take, and why.

use std::process::ExitCode;

use p2p_core::config::ENV_DISABLE;
use p2p_core::{Location, Reason};
use p2p_move::{format_size, plan, Layout, Policy, Route};
use serde_json::json;

use crate::machine::{self, CliError};
use crate::report;
use crate::MachineArgs;

pub(crate) fn run(
    args: &MachineArgs,
    from: Location,
    to: Location,
    bytes: usize,
    json: bool,
) -> Result<ExitCode, CliError> {
    let machine = machine::open(args)?;
    let plan = plan(from, to, bytes, machine.table.as_ref(), &Policy::default())
        .map_err(p2p_move::Error::from)?;
    let reason = explain_policy(&machine, from, to, &plan.reason());
    let via = match plan.route {
        Route::Via { gpu } => Some(gpu),
        _ => None,
    };
    if json {
        let doc = json!({
            "simulated": machine.simulated(),
            "from": from.to_string(),
            "to": to.to_string(),
            "bytes": bytes,
            "route": plan.route.name(),
            "via": via,
            "layout": plan.layout,
            "chunk_bytes": plan.layout.chunk_bytes(),
            "chunks": plan.chunk_count(),
            "pipeline_depth": plan.layout.chunk_bytes().map(|_| plan.layout.depth()),
            "why": plan.why,
            "reason": reason,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(ExitCode::SUCCESS);
    }
    report::banner(&machine);
    println!(
        "\n{from} -> {to}, {}: {}",
        format_size(bytes),
        plan.route.name()
    );
    match plan.layout {
        Layout::Pipelined { chunk_bytes, depth } => println!(
            "  {} chunk(s) of up to {}, {depth} in flight",
            plan.chunk_count(),
            format_size(chunk_bytes),
        ),
        Layout::Whole => println!("  one piece, no pipeline"),
        Layout::HostRelay => println!("  one piece, handed between the legs by the host"),
        _ => {}
    }
    println!("  why: {reason}");
    Ok(ExitCode::SUCCESS)
}

/// The planner's reason, saying "disabled by policy" where the operator
/// turned the direct pair off (`P2P_DISABLE`): "not verified" would send
/// them looking for a broken path that may be fine.
fn explain_policy(
    machine: &machine::Machine,
    from: Location,
    to: Location,
    reason: &str,
) -> String {
    let (Location::Cuda(a), Location::Cuda(b)) = (from, to) else {
        return reason.to_string();
    };
    match machine.table.known(a, b) {
        Some(verdict) if verdict.reason == Reason::DisabledByPolicy => {
            let not_verified = format!("peer copy {from} -> {to} not verified");
            let disabled = format!("peer copy {from} -> {to} disabled by policy ({ENV_DISABLE})");
            if reason.contains(&not_verified) {
                reason.replacen(&not_verified, &disabled, 1)
            } else {
                format!("{disabled}; {reason}")
            }
        }
        _ => reason.to_string(),
    }
}
