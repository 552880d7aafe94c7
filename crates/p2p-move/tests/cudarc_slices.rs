//! Moves of cudarc's own slices (pool memory from cudarc's allocator) with
//! `Mover::memcpy_dtod`, read back by cudarc on the destination's stream
//! with no host synchronization in between (`--features cuda-tests`).
//!
//! Each test fails, never passes, without the GPUs it needs.
#![cfg(feature = "cuda-tests")]

use std::sync::Arc;

use p2p_core::pattern::{self, first_mismatch};
use p2p_core::{Config, CudaDriver, PeerTable};
use p2p_move::cudarc::driver::{CudaContext, CudaSlice, CudaStream};
use p2p_move::{Mover, Policy};

fn contexts(needed: usize) -> Vec<Arc<CudaContext>> {
    let count = CudaContext::device_count().expect("these tests need a CUDA GPU") as usize;
    assert!(
        count >= needed,
        "needs {needed} GPUs: this machine shows {count}"
    );
    (0..needed).map(|d| CudaContext::new(d).unwrap()).collect()
}

fn mover(contexts: &[Arc<CudaContext>]) -> Mover {
    let driver = Arc::new(CudaDriver::from_contexts(contexts.iter().cloned()).unwrap());
    Mover::new(
        Arc::new(PeerTable::new(driver, Config::default())),
        Policy::default(),
    )
    .unwrap()
}

/// Keeps `stream` busy for a while, so work queued after it that is not
/// ordered behind it runs first and shows.
fn busy(stream: &Arc<CudaStream>, scratch: &mut CudaSlice<u8>) {
    for _ in 0..16 {
        stream.memset_zeros(scratch).unwrap();
    }
}

/// Moves a pattern from a slice on `src_stream` into one on `dst_stream`
/// and back into a third, each time with cudarc work queued right before
/// (writing the source) and right after (overwriting the source, reading
/// the destination), and no host wait between.
fn check_moves(mover: &Mover, src_stream: &Arc<CudaStream>, dst_stream: &Arc<CudaStream>) {
    let len = (32 << 20) + 5;
    let want = pattern::bytes(len, 0x5c);
    let staged = src_stream.clone_htod(&want).unwrap();
    let mut src = src_stream.alloc_zeros::<u8>(len).unwrap();
    let mut dst = dst_stream.alloc_zeros::<u8>(len).unwrap();
    let mut back = src_stream.alloc_zeros::<u8>(len).unwrap();
    let mut scratch = src_stream.alloc_zeros::<u8>(256 << 20).unwrap();
    src_stream.synchronize().unwrap();

    // The source is written by cudarc behind busy work; the move must wait for it.
    busy(src_stream, &mut scratch);
    src_stream.memcpy_dtod(&staged, &mut src).unwrap();
    let plan = mover.memcpy_dtod(&src, &mut dst).unwrap();
    eprintln!("cuda:{} -> cuda:{}: {plan:?}", src.ordinal(), dst.ordinal());
    // Overwritten at once: the move must have read it first.
    src_stream.memset_zeros(&mut src).unwrap();
    let got = dst_stream.clone_dtoh(&dst).unwrap();
    assert_eq!(
        first_mismatch(&want, &got),
        None,
        "the destination does not hold the source's bytes"
    );

    // And back, through views, into a third slice on the source's stream.
    let plan = mover
        .memcpy_dtod(&dst.slice(..), &mut back.slice_mut(..))
        .unwrap();
    eprintln!("back: {plan:?}");
    dst_stream.memset_zeros(&mut dst).unwrap();
    let got = src_stream.clone_dtoh(&back).unwrap();
    assert_eq!(first_mismatch(&want, &got), None, "the way back lost bytes");

    // A destination too short is an error, and touches nothing.
    let mut short = dst_stream.alloc_zeros::<u8>(len - 1).unwrap();
    assert!(mover.memcpy_dtod(&back, &mut short).is_err());
}

#[test]
fn cudarc_slices_move_between_two_streams_of_one_gpu() {
    let contexts = contexts(1);
    let mover = mover(&contexts);
    let (a, b) = (
        contexts[0].new_stream().unwrap(),
        contexts[0].new_stream().unwrap(),
    );
    check_moves(&mover, &a, &b);
}

#[test]
fn cudarc_slices_move_both_ways_between_two_gpus() {
    let contexts = contexts(2);
    let mover = mover(&contexts);
    let s0 = contexts[0].new_stream().unwrap();
    let s1 = contexts[1].new_stream().unwrap();
    check_moves(&mover, &s0, &s1);
    check_moves(&mover, &s1, &s0);
}

#[test]
fn cudarc_slices_move_on_the_contexts_default_streams() {
    let contexts = contexts(2);
    let mover = mover(&contexts);
    check_moves(
        &mover,
        &contexts[0].default_stream(),
        &contexts[1].default_stream(),
    );
}
