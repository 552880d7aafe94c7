//! `tch-bench`: `safe_move` against `Tensor::to_device` (PyTorch's peer path) and against ExLlamaV2's fallback, on two GPUs, as a markdown table.
//!
//! Rows, all cuda:0 -> cuda:1, in one run:
//!
//! * by size, 4 KiB to 1 GiB, with peer copy working: `safe_move` (the
//!   mover from the environment, unchanged) against `to_device`. Target: never
//!   slower beyond noise, taken as 10 % + 2 us;
//! * the same sizes with peer copy broken (disabled by policy, no hop through
//!   a third GPU: the staged route) against ExLlamaV2's fallback reproduced
//!   with tch: non-blocking copy to the CPU, synchronise the source device,
//!   non-blocking copy to the destination, synchronise the destination
//!   device. Targets: at least 5 x faster for 4 KiB, at least 2 x from 16 MiB up;
//! * a tuple of 256 tensors of 16 KiB: one `safe_move` against a tuple of
//!   `to_device` calls. Target: at least 10 x faster.
//!
//! Every timing is the median over repeated runs of the operation followed
//! by a synchronisation of the destination device (so each measures a move
//! that is complete), after warm-up runs. The table starts with the cards
//! and the verdict of the pair, and is also written to `$OUT/bench-tch.md`
//! when `OUT` is set. Exits 2 without two GPUs; with `--strict`, exits 1 if
//! a target is missed.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Instant;

use p2p_tch::{Config, DisabledPairs, Mode, Policy, Route, TchMover};
use tch::{Device, Kind, Tensor};

const SIZES: [usize; 8] = [
    4 << 10,
    64 << 10,
    1 << 20,
    16 << 20,
    64 << 20,
    256 << 20,
    512 << 20,
    1 << 30,
];
const TUPLE_LEN: usize = 256;
const TUPLE_TENSOR_BYTES: usize = 16 << 10;
const FROM: Device = Device::Cuda(0);
const TO: Device = Device::Cuda(1);

fn main() -> ExitCode {
    let strict = std::env::args().skip(1).any(|arg| arg == "--strict");
    let gpus = match p2p_tch::init() {
        Ok(()) => tch::Cuda::device_count(),
        Err(err) => {
            eprintln!("tch-bench: {err}");
            0
        }
    };
    if gpus < 2 {
        eprintln!(
            "tch-bench needs two CUDA GPUs; PyTorch sees {gpus}. Run it on the 2-GPU machine."
        );
        return ExitCode::from(2);
    }
    match run() {
        Ok(report) => {
            print!("{}", report.text);
            if let Some(dir) = std::env::var_os("OUT") {
                let path = std::path::Path::new(&dir).join("bench-tch.md");
                if let Err(err) = std::fs::write(&path, &report.text) {
                    eprintln!("tch-bench: cannot write {}: {err}", path.display());
                    return ExitCode::FAILURE;
                }
            }
            if strict && report.missed > 0 {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(err) => {
            eprintln!("tch-bench: {err}");
            ExitCode::FAILURE
        }
    }
}

struct Report {
    text: String,
    missed: usize,
}

fn run() -> Result<Report, Box<dyn std::error::Error>> {
    let env = Config::from_env()?;
    let peer = TchMover::new(
        Config {
            disabled: DisabledPairs::None,
            ..env.clone()
        },
        Policy::default(),
    )?;
    let broken = TchMover::new(
        Config {
            disabled: DisabledPairs::Pairs([(0, 1), (1, 0)].into_iter().collect()),
            ..env
        },
        Policy {
            allow_via: false,
            ..Policy::default()
        },
    )?;

    let mut out = String::new();
    writeln!(
        out,
        "# tch-bench: safe_move vs to_device vs ExLlamaV2's fallback\n"
    )?;
    for info in peer.table().driver().devices() {
        writeln!(
            out,
            "- cuda:{}: {} ({}, {})",
            info.ordinal, info.name, info.uuid, info.pci_bus_id
        )?;
    }
    let driver_version = peer.table().driver().driver_version();
    writeln!(
        out,
        "- CUDA driver {}.{}",
        driver_version / 1000,
        (driver_version % 1000) / 10
    )?;
    let verdict = peer.table().verdict(0, 1)?;
    let peer_plan = peer.plan(FROM, TO, 1 << 20)?;
    let broken_plan = broken.plan(FROM, TO, 1 << 20)?;
    writeln!(
        out,
        "- verdict cuda:0 -> cuda:1: {}",
        verdict.reason.describe()
    )?;
    writeln!(
        out,
        "- safe_move, peer working: {} ({})",
        peer_plan.route,
        peer_plan.reason()
    )?;
    writeln!(
        out,
        "- safe_move, peer broken: {} ({})",
        broken_plan.route,
        broken_plan.reason()
    )?;
    let peer_works = peer_plan.route == Route::Peer;
    if !peer_works {
        writeln!(out, "\n**Peer copy cuda:0 -> cuda:1 is not verified on this machine: the \"peer working\" rows measure {} instead.**", peer_plan.route)?;
    }
    writeln!(
        out,
        "\nMedian time of a complete move (the operation, then a synchronisation of cuda:1).\n"
    )?;

    let mut missed = 0;
    let mut rows = Vec::new();
    for &bytes in &SIZES {
        let src = Tensor::randint(256, [bytes as i64], (Kind::Uint8, FROM));
        let iterations = (4usize << 30).div_euclid(bytes.max(1)).clamp(5, 300);
        let to_device = median(iterations, || Ok(src.to_device(TO)))?;
        let ours = median(iterations, || peer.move_to(&src, TO, Mode::Blocking))?;
        let ours_nb = median(iterations, || peer.move_to(&src, TO, Mode::NonBlocking))?;
        let exllama = median(iterations, || Ok(exllama_fallback(&src, TO)))?;
        let staged = median(iterations, || broken.move_to(&src, TO, Mode::Blocking))?;
        rows.push((bytes, to_device, ours, ours_nb, exllama, staged));
    }

    writeln!(out, "## Peer copy working: safe_move vs to_device\n")?;
    writeln!(out, "| size | to_device | safe_move | safe_move non-blocking | to_device / safe_move | target | met |")?;
    writeln!(out, "|---:|---:|---:|---:|---:|---|---|")?;
    for &(bytes, to_device, ours, ours_nb, _, _) in &rows {
        let met = ours <= to_device * 1.10 + 2e-6;
        missed += usize::from(!met);
        writeln!(
            out,
            "| {} | {} | {} | {} | {:.2} x | not slower (10 % + 2 us) | {} |",
            size(bytes),
            timing(to_device, bytes),
            timing(ours, bytes),
            timing(ours_nb, bytes),
            to_device / ours,
            yes_no(met)
        )?;
    }

    writeln!(
        out,
        "\n## Peer copy broken: safe_move (staged) vs ExLlamaV2's fallback\n"
    )?;
    writeln!(
        out,
        "| size | ExLlamaV2 fallback | safe_move (staged) | speed-up | target | met |"
    )?;
    writeln!(out, "|---:|---:|---:|---:|---|---|")?;
    for &(bytes, _, _, _, exllama, staged) in &rows {
        let speedup = exllama / staged;
        let (target, met) = match bytes {
            b if b <= 4 << 10 => ("at least 5 x", Some(speedup >= 5.0)),
            b if b >= 16 << 20 => ("at least 2 x", Some(speedup >= 2.0)),
            _ => ("none", None),
        };
        missed += usize::from(met == Some(false));
        writeln!(
            out,
            "| {} | {} | {} | {:.2} x | {target} | {} |",
            size(bytes),
            timing(exllama, bytes),
            timing(staged, bytes),
            speedup,
            met.map_or("-", yes_no)
        )?;
    }

    let tensors: Vec<Tensor> = (0..TUPLE_LEN)
        .map(|_| Tensor::randint(256, [TUPLE_TENSOR_BYTES as i64], (Kind::Uint8, FROM)))
        .collect();
    let total = TUPLE_LEN * TUPLE_TENSOR_BYTES;
    let each_to_device = median(30, || {
        Ok(tensors.iter().map(|t| t.to_device(TO)).collect::<Vec<_>>())
    })?;
    let batched = median(30, || peer.move_to(&tensors, TO, Mode::Blocking))?;
    let batched_nb = median(30, || peer.move_to(&tensors, TO, Mode::NonBlocking))?;
    let each_exllama = median(10, || {
        Ok(tensors
            .iter()
            .map(|t| exllama_fallback(t, TO))
            .collect::<Vec<_>>())
    })?;
    let batched_staged = median(30, || broken.move_to(&tensors, TO, Mode::Blocking))?;
    let speedup = each_to_device / batched;
    let met = speedup >= 10.0;
    missed += usize::from(!met);
    writeln!(
        out,
        "\n## A tuple of {TUPLE_LEN} tensors of {}\n",
        size(TUPLE_TENSOR_BYTES)
    )?;
    writeln!(
        out,
        "| what | time | speed-up over the to_device tuple | target | met |"
    )?;
    writeln!(out, "|---|---:|---:|---|---|")?;
    writeln!(
        out,
        "| tuple of to_device calls | {} | 1.00 x | | |",
        timing(each_to_device, total)
    )?;
    writeln!(
        out,
        "| safe_move of the tuple (peer working) | {} | {speedup:.2} x | at least 10 x | {} |",
        timing(batched, total),
        yes_no(met)
    )?;
    writeln!(
        out,
        "| safe_move of the tuple, non-blocking | {} | {:.2} x | | |",
        timing(batched_nb, total),
        each_to_device / batched_nb
    )?;
    writeln!(
        out,
        "| ExLlamaV2 fallback, tensor by tensor (peer broken) | {} | {:.2} x | | |",
        timing(each_exllama, total),
        each_to_device / each_exllama
    )?;
    writeln!(
        out,
        "| safe_move of the tuple (peer broken, staged) | {} | {:.2} x | | |",
        timing(batched_staged, total),
        each_to_device / batched_staged
    )?;
    writeln!(out, "\n{} target(s) missed.", missed)?;
    Ok(Report { text: out, missed })
}

/// ExLlamaV2's fallback: non-blocking copy to the CPU, synchronise the source
/// device, non-blocking copy to the destination, synchronise the destination.
fn exllama_fallback(src: &Tensor, to: Device) -> Tensor {
    let on_host = src.to_device_(Device::Cpu, src.kind(), true, false);
    tch::Cuda::synchronize(device_index(src.device()));
    let out = on_host.to_device_(to, src.kind(), true, false);
    tch::Cuda::synchronize(device_index(to));
    out
}

/// Median seconds of `op` followed by a synchronisation of the destination,
/// after three warm-up runs.
fn median<T>(
    iterations: usize,
    mut op: impl FnMut() -> p2p_tch::Result<T>,
) -> p2p_tch::Result<f64> {
    let mut run = || -> p2p_tch::Result<f64> {
        let start = Instant::now();
        let result = op()?;
        tch::Cuda::synchronize(device_index(TO));
        let elapsed = start.elapsed().as_secs_f64();
        drop(result);
        Ok(elapsed)
    };
    for _ in 0..3 {
        run()?;
    }
    let mut times = (0..iterations.max(1))
        .map(|_| run())
        .collect::<p2p_tch::Result<Vec<f64>>>()?;
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

fn device_index(device: Device) -> i64 {
    match device {
        Device::Cuda(ordinal) => ordinal as i64,
        _ => -1,
    }
}

fn size(bytes: usize) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{} GiB", b >> 30),
        b if b >= 1 << 20 => format!("{} MiB", b >> 20),
        b => format!("{} KiB", b >> 10),
    }
}

/// `12.3 us (0.33 GB/s)`.
fn timing(seconds: f64, bytes: usize) -> String {
    let gbps = bytes as f64 / seconds / 1e9;
    if seconds < 1e-3 {
        format!("{:.1} us ({gbps:.2} GB/s)", seconds * 1e6)
    } else {
        format!("{:.2} ms ({gbps:.1} GB/s)", seconds * 1e3)
    }
}

fn yes_no(met: bool) -> &'static str {
    if met {
        "yes"
    } else {
        "**no**"
    }
}
