//! `p2p plan`: the route a move would take, and why.

use std::process::ExitCode;

use p2p_core::Location;
use p2p_move::{format_size, plan, Policy, Route};
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
            "chunk_bytes": plan.chunk_bytes,
            "chunks": plan.chunks.len(),
            "pipeline_depth": plan.pipeline_depth,
            "reason": plan.reason,
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
    if let Some(chunk) = plan.chunk_bytes {
        println!(
            "  {} chunk(s) of up to {}, {} in flight",
            plan.chunks.len(),
            format_size(chunk),
            plan.pipeline_depth.unwrap_or(1)
        );
    }
    println!("  why: {}", plan.reason);
    Ok(ExitCode::SUCCESS)
}
