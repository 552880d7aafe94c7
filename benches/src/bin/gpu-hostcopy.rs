//! How fast can the host copy pageable memory into pinned staging buffers?
//! The pageable host-to-device route is bound by this copy; this binary
//! measures the candidates (one thread, rayon, scoped threads) on the GPU
//! host, where core counts and memory bandwidth differ from the build machine.

use std::sync::Arc;
use std::time::Instant;

use p2p_core::memory::PinnedBuffer;
use p2p_core::{CudaDriver, Driver};
use rayon::prelude::*;

fn median(mut times: Vec<f64>) -> f64 {
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn time(reps: usize, mut work: impl FnMut()) -> f64 {
    work();
    median(
        (0..reps)
            .map(|_| {
                let start = Instant::now();
                work();
                start.elapsed().as_secs_f64()
            })
            .collect(),
    )
}

fn main() -> std::process::ExitCode {
    let driver: Arc<dyn Driver> = match CudaDriver::new() {
        Ok(driver) => Arc::new(driver),
        Err(err) => {
            eprintln!("gpu-hostcopy needs a CUDA driver: {err}");
            return std::process::ExitCode::from(2);
        }
    };
    println!("host threads: {}", rayon::current_num_threads());
    println!("| chunk | 1 thread | rayon 8 | rayon 16 | rayon 32 | scoped 8 | scoped 16 |");
    println!("|---|---|---|---|---|---|---|");
    for chunk in [1usize << 20, 4 << 20, 8 << 20, 32 << 20] {
        let source: Vec<u8> = (0..chunk).map(|i| i as u8).collect();
        let mut pinned = match PinnedBuffer::new(&driver, chunk) {
            Ok(buffer) => buffer,
            Err(err) => {
                eprintln!("pinning {chunk} bytes: {err}");
                return std::process::ExitCode::FAILURE;
            }
        };
        let gbps = |seconds: f64| chunk as f64 / seconds / 1e9;
        let one = time(20, || pinned.as_mut_slice().copy_from_slice(&source));
        let rayon_with = |threads: usize, pinned: &mut PinnedBuffer| {
            let piece = chunk.div_ceil(threads);
            time(20, || {
                pinned
                    .as_mut_slice()
                    .par_chunks_mut(piece)
                    .zip(source.par_chunks(piece))
                    .for_each(|(t, f)| t.copy_from_slice(f))
            })
        };
        let scoped_with = |threads: usize, pinned: &mut PinnedBuffer| {
            let piece = chunk.div_ceil(threads);
            time(20, || {
                std::thread::scope(|scope| {
                    for (t, f) in pinned
                        .as_mut_slice()
                        .chunks_mut(piece)
                        .zip(source.chunks(piece))
                    {
                        scope.spawn(move || t.copy_from_slice(f));
                    }
                })
            })
        };
        let r8 = rayon_with(8, &mut pinned);
        let r16 = rayon_with(16, &mut pinned);
        let r32 = rayon_with(32, &mut pinned);
        let s8 = scoped_with(8, &mut pinned);
        let s16 = scoped_with(16, &mut pinned);
        println!(
            "| {} MiB | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
            chunk >> 20,
            gbps(one),
            gbps(r8),
            gbps(r16),
            gbps(r32),
            gbps(s8),
            gbps(s16)
        );
    }
    std::process::ExitCode::SUCCESS
}
