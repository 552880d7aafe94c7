//! `p2p verify`: random moves between every pair of locations, every byte checked.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use p2p_core::memory::{DeviceBuffer, PinnedBuffer, Stream};
use p2p_core::pattern::first_mismatch;
use p2p_core::sim::ReportKind;
use p2p_core::{AllocKind, Driver, Location};
use p2p_move::{format_size, MoveSource, MoveTarget, Mover, Policy};
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use serde_json::json;

use crate::machine::{self, CliError};
use crate::report;
use crate::MachineArgs;

/// Memory of one side of a test move.
enum Side {
    Device(DeviceBuffer),
    Pinned(PinnedBuffer),
    Pageable(Vec<u8>),
}

impl Side {
    fn alloc(
        driver: &Arc<dyn Driver>,
        location: Location,
        len: usize,
        rng: &mut StdRng,
    ) -> p2p_core::Result<Side> {
        Ok(match location {
            Location::Cuda(device) => {
                let kind = if rng.random_bool(0.5) {
                    AllocKind::Plain
                } else {
                    AllocKind::Pool
                };
                Side::Device(DeviceBuffer::new(driver, device, len, kind)?)
            }
            Location::Host if rng.random_bool(0.5) => Side::Pinned(PinnedBuffer::new(driver, len)?),
            Location::Host => Side::Pageable(host_vec(len)?),
        })
    }

    fn write(&mut self, driver: &Arc<dyn Driver>, data: &[u8]) -> p2p_core::Result<()> {
        match self {
            Side::Device(buffer) => {
                buffer.write_from_slice(data, &Stream::new(driver, buffer.device())?)
            }
            Side::Pinned(buffer) => {
                buffer.as_mut_slice()[..data.len()].copy_from_slice(data);
                Ok(())
            }
            Side::Pageable(buffer) => {
                buffer.copy_from_slice(data);
                Ok(())
            }
        }
    }

    fn read(&self, driver: &Arc<dyn Driver>) -> p2p_core::Result<Vec<u8>> {
        match self {
            Side::Device(buffer) => buffer.read_to_vec(&Stream::new(driver, buffer.device())?),
            Side::Pinned(buffer) => Ok(buffer.as_slice().to_vec()),
            Side::Pageable(buffer) => Ok(buffer.clone()),
        }
    }

    fn source(&self) -> &dyn MoveSource {
        match self {
            Side::Device(b) => b,
            Side::Pinned(b) => b,
            Side::Pageable(b) => b,
        }
    }

    fn target(&mut self) -> &mut dyn MoveTarget {
        match self {
            Side::Device(b) => b,
            Side::Pinned(b) => b,
            Side::Pageable(b) => b,
        }
    }
}

/// `len` zero bytes of host memory, or an error where there is not enough
/// (a plain `vec!` would abort the process).
fn host_vec(len: usize) -> p2p_core::Result<Vec<u8>> {
    let mut out = Vec::new();
    out.try_reserve_exact(len)
        .map_err(|_| p2p_core::Error::OutOfMemory {
            place: "the host (pageable memory)".into(),
            bytes: len,
        })?;
    out.resize(len, 0);
    Ok(out)
}

/// How many copies of a move's data host memory holds at once at most: the
/// data, its complement, and the destination read back (pageable sides and
/// simulated GPUs take more, but not all at once at the largest size).
const HOST_COPIES_PER_MOVE: u64 = 3;

/// Refuses a `--max-bytes` that this host cannot hold, before any move.
fn check_max_bytes(max_bytes: usize) -> Result<(), CliError> {
    let Some(total) = host_memory_bytes() else {
        return Ok(()); // not Linux: each move's allocations are checked instead
    };
    if (max_bytes as u64).saturating_mul(HOST_COPIES_PER_MOVE) > total {
        return Err(CliError::BadValue {
            option: "--max-bytes",
            value: format_size(max_bytes),
            message: format!(
                "a move holds up to {HOST_COPIES_PER_MOVE} copies of its data in host memory, \
                 and this host has {} in all",
                format_size(total.min(usize::MAX as u64) as usize)
            ),
        });
    }
    Ok(())
}

/// `MemTotal` of `/proc/meminfo`, in bytes (Linux only).
fn host_memory_bytes() -> Option<u64> {
    let text = p2p_core::files::read_regular_file(
        std::path::Path::new("/proc/meminfo"),
        1 << 20,
        "reading host memory size",
    )
    .ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib.saturating_mul(1024))
}

/// A random size: some zeros, mostly log-uniform up to `max`, often odd.
fn random_size(rng: &mut StdRng, max: usize) -> usize {
    if max == 0 || rng.random_bool(0.08) {
        return 0;
    }
    let bits = usize::BITS - max.leading_zeros();
    let size = 1usize << rng.random_range(0..bits);
    (size + rng.random_range(0..size.max(2))).clamp(1, max)
}

pub(crate) fn run(
    args: &MachineArgs,
    moves: usize,
    seed: u64,
    max_bytes: usize,
    json: bool,
) -> Result<ExitCode, CliError> {
    check_max_bytes(max_bytes)?;
    let machine = machine::open(args)?;
    let driver = machine.driver().clone();
    let mover = Mover::new(machine.table.clone(), Policy::default())?;
    let locations: Vec<Location> = std::iter::once(Location::Host)
        .chain((0..driver.device_count()).map(Location::Cuda))
        .collect();
    let pairs: Vec<(Location, Location)> = locations
        .iter()
        .flat_map(|&a| locations.iter().map(move |&b| (a, b)))
        .collect();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut routes: BTreeMap<String, usize> = BTreeMap::new();
    let mut mismatches = 0usize;
    let mut failures: Vec<String> = Vec::new();
    let mut bytes_moved = 0usize;
    let started = Instant::now();

    if !json {
        report::banner(&machine);
        println!(
            "\n{moves} random moves between {} locations, up to {} each, seed {seed}",
            locations.len(),
            format_size(max_bytes)
        );
    }
    for i in 0..moves {
        let (from, to) = pairs[i % pairs.len()];
        let len = random_size(&mut rng, max_bytes);
        let outcome = (|| -> Result<Option<String>, CliError> {
            let mut data = host_vec(len)?;
            rng.fill_bytes(&mut data);
            let mut poison = host_vec(len)?;
            for (p, d) in poison.iter_mut().zip(&data) {
                *p = !d;
            }
            let mut src = Side::alloc(&driver, from, len, &mut rng)?;
            let mut dst = Side::alloc(&driver, to, len, &mut rng)?;
            src.write(&driver, &data)?;
            dst.write(&driver, &poison)?;
            let plan = mover.copy(src.source(), dst.target())?;
            *routes.entry(plan.route.name().to_string()).or_default() += 1;
            let found = dst.read(&driver)?;
            if let Some(mismatch) = first_mismatch(&data, &found) {
                return Ok(Some(format!(
                    "move {i}: {from} -> {to}, {len} bytes by {}: {mismatch}",
                    plan.route
                )));
            }
            if src.read(&driver)? != data {
                return Ok(Some(format!(
                    "move {i}: {from} -> {to}, {len} bytes: the SOURCE changed"
                )));
            }
            Ok(None)
        })();
        match outcome {
            Ok(None) => bytes_moved += len,
            Ok(Some(mismatch)) => {
                mismatches += 1;
                failures.push(mismatch);
            }
            Err(err) => failures.push(format!(
                "move {i}: {from} -> {to}, {len} bytes: error: {err}"
            )),
        }
    }
    let errors = failures.len() - mismatches;
    let seconds = started.elapsed().as_secs_f64();
    // On a simulated machine, what its race detector and memory checks saw.
    let sim_reports = machine
        .sim
        .as_ref()
        .map(|sim| sim.reports())
        .unwrap_or_default();
    let races = sim_reports
        .iter()
        .filter(|report| report.kind == ReportKind::Race)
        .count();
    let sim_problems: Vec<String> = sim_reports.iter().map(ToString::to_string).collect();
    let schedule_seed = machine.sim.as_ref().map(|sim| sim.seed());
    if json {
        let doc = json!({
            "simulated": machine.simulated(),
            "moves": moves,
            "mismatches": mismatches,
            "errors": errors,
            "routes": routes,
            "bytes_moved": bytes_moved,
            "seconds": seconds,
            "failures": failures,
            "races": races,
            "sim_problems": sim_problems,
            "schedule_seed": schedule_seed,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        println!("\nRoutes taken:");
        for (route, count) in &routes {
            println!("  {route:<16} {count}");
        }
        for failure in &failures {
            println!("FAILED {failure}");
        }
        for problem in &sim_problems {
            println!("SIMULATOR {problem}");
        }
        println!(
            "\n{moves} moves, {} moved, {mismatches} mismatches, {errors} errors, {seconds:.2} s",
            format_size(bytes_moved)
        );
        if let Some(seed) = schedule_seed {
            println!(
                "{races} races, {} simulator reports (schedule seed {seed}: --schedule-seed {seed} replays it)",
                sim_problems.len()
            );
        }
    }
    Ok(if failures.is_empty() && sim_problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
