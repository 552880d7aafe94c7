//! What an inference engine does with a model split across GPUs: hidden states move from GPU to GPU at every layer boundary, here with `p2p_tch`, and with peer copy forced off on one pair.
//!
//! The layers (matmul, then GELU, with a residual connection) are spread
//! evenly over every visible GPU. Peer copy from cuda:0 to cuda:1 is turned
//! off by policy, so that boundary takes another route (staging through
//! pinned host memory, or a hop through a third GPU) while the others use
//! whatever their verdict allows; the route of each boundary is printed. The
//! output is checked against the same computation on one device.
//!
//! ```sh
//! cargo run --release -p p2p-tch --example layer_split   # needs libtorch, see the crate docs
//! ```
//!
//! With fewer than two GPUs it explains why there is nothing to split and
//! exits successfully.

use std::process::ExitCode;
use std::time::Instant;

use p2p_tch::{device_name, Config, DisabledPairs, Mode, Policy, TchMover};
use tch::{Device, Kind, Tensor};

const LAYERS: usize = 24;
const HIDDEN: i64 = 2048;
const TOKENS: i64 = 64;
const PASSES: usize = 5;

/// One layer: its weight and the device it lives on.
struct Layer {
    weight: Tensor,
    device: Device,
}

fn main() -> ExitCode {
    let gpus = match p2p_tch::init() {
        Ok(()) => usize::try_from(tch::Cuda::device_count()).unwrap_or(0),
        Err(err) => {
            println!("PyTorch's CUDA library is not available ({err}).");
            0
        }
    };
    if gpus < 2 {
        println!(
            "This example splits a model's layers across GPUs and moves hidden states between \
             them; PyTorch sees {gpus} GPU(s), so there is nothing to split. Run it on a machine \
             with two or more GPUs."
        );
        return ExitCode::SUCCESS;
    }
    match run(gpus) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

fn run(gpus: usize) -> Result<bool, Box<dyn std::error::Error>> {
    // The operator's settings, plus peer copy cuda:0 -> cuda:1 forced off.
    let mut config = Config::from_env()?;
    config.disabled = match config.disabled {
        DisabledPairs::None => DisabledPairs::Pairs([(0, 1)].into_iter().collect()),
        DisabledPairs::Pairs(mut pairs) => {
            pairs.insert((0, 1));
            DisabledPairs::Pairs(pairs)
        }
        DisabledPairs::All => DisabledPairs::All,
    };
    let mover = TchMover::new(config, Policy::default())?;
    tch::manual_seed(7);

    let layers: Vec<Layer> = (0..LAYERS)
        .map(|index| {
            let device = Device::Cuda(index * gpus / LAYERS);
            let weight =
                Tensor::randn([HIDDEN, HIDDEN], (Kind::Float, device)) / (HIDDEN as f64).sqrt();
            Layer { weight, device }
        })
        .collect();
    let input = Tensor::randn([TOKENS, HIDDEN], (Kind::Float, Device::Cuda(0)));
    let bytes = (TOKENS * HIDDEN) as usize * Kind::Float.elt_size_in_bytes();

    println!("{LAYERS} layers of {HIDDEN} x {HIDDEN} over {gpus} GPUs; hidden states of {TOKENS} tokens ({bytes} bytes)");
    for (index, pair) in layers.windows(2).enumerate() {
        if pair[0].device != pair[1].device {
            report_boundary(
                &mover,
                &format!("layer {index} -> {}", index + 1),
                pair[0].device,
                pair[1].device,
                bytes,
            )?;
        }
    }
    if let Some(last) = layers.last() {
        report_boundary(&mover, "output back", last.device, Device::Cuda(0), bytes)?;
    }

    // The split model, moving hidden states non-blocking as an engine would.
    let mut output = input.shallow_clone();
    let start = Instant::now();
    for _ in 0..PASSES {
        output = forward_split(&mover, &layers, &input)?;
    }
    tch::Cuda::synchronize(0);
    let split_time = start.elapsed() / PASSES as u32;

    // The same computation on cuda:0 alone.
    let weights_on_0: Vec<Tensor> = layers
        .iter()
        .map(|layer| layer.weight.to_device(Device::Cuda(0)))
        .collect();
    let expected = weights_on_0
        .iter()
        .fold(input.shallow_clone(), |x, w| layer_step(&x, w));

    let difference = (&output - &expected).abs().max().double_value(&[]);
    let scale = expected.abs().max().double_value(&[]);
    println!(
        "forward pass across {gpus} GPUs: {:.2} ms",
        split_time.as_secs_f64() * 1e3
    );
    println!("largest difference from the single-device result: {difference:.3e} (values up to {scale:.3e})");
    let ok = difference <= 1e-4 * scale.max(1.0);
    println!(
        "{}",
        if ok {
            "OK: the split model computes the same result"
        } else {
            "FAILED: the results differ"
        }
    );
    Ok(ok)
}

/// Runs every layer on its device, moving the hidden states at each boundary.
fn forward_split(mover: &TchMover, layers: &[Layer], input: &Tensor) -> p2p_tch::Result<Tensor> {
    let mut x = input.shallow_clone();
    for layer in layers {
        if x.device() != layer.device {
            x = mover.move_to(&x, layer.device, Mode::NonBlocking)?;
        }
        x = layer_step(&x, &layer.weight);
    }
    mover.move_to(&x, Device::Cuda(0), Mode::NonBlocking)
}

fn layer_step(x: &Tensor, weight: &Tensor) -> Tensor {
    x + x.matmul(weight).gelu("none")
}

fn report_boundary(
    mover: &TchMover,
    what: &str,
    from: Device,
    to: Device,
    bytes: usize,
) -> p2p_tch::Result<()> {
    let plan = mover.plan(from, to, bytes)?;
    println!(
        "  {what}: {} -> {}: {} ({})",
        device_name(from),
        device_name(to),
        plan.route,
        plan.reason()
    );
    Ok(())
}
