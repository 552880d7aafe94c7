//! `p2p plan`: the route a move would take, and why.

use std::process::ExitCode;

use p2p_core::Location;
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
            "reason": plan.reason(),
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
        _ => {}
    }
    println!("  why: {}", plan.reason());
    Ok(ExitCode::SUCCESS)
}
