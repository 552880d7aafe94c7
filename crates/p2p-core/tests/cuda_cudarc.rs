//! The CUDA backend beside a program's own cudarc code, and its manners with
//! the caller's current context (`--features cuda-tests`, run by `cargo xtask gpu-test`).
//!
//! Every test needs a GPU and fails, never passes, without one; tests that
//! need two fail with "needs two GPUs" on a machine with fewer.
#![cfg(feature = "cuda-tests")]

use std::process::Command;
use std::sync::Arc;

use p2p_core::cudarc::driver::{result, sys, CudaContext};
use p2p_core::memory::{DeviceBuffer, Stream};
use p2p_core::{AllocKind, CudaDriver, Driver, Error, StreamId};

fn cuda_driver() -> CudaDriver {
    match CudaDriver::new() {
        Ok(driver) => driver,
        Err(err) => panic!("these tests need a CUDA GPU: {err}"),
    }
}

/// The context bound to this thread, or null.
fn current_context() -> sys::CUcontext {
    result::ctx::get_current()
        .expect("cuCtxGetCurrent")
        .unwrap_or(std::ptr::null_mut())
}

/// Whether the device's primary context exists now (anyone in the process retains it).
fn primary_context_active(ordinal: usize) -> bool {
    let device = result::device::get(ordinal as i32).expect("cuDeviceGet");
    let (mut flags, mut active) = (0u32, 0i32);
    // SAFETY: both out-pointers are live locals; `device` came from cuDeviceGet.
    let status = unsafe { sys::cuDevicePrimaryCtxGetState(device, &mut flags, &mut active) };
    assert_eq!(status, sys::CUresult::CUDA_SUCCESS);
    active != 0
}

/// Uses device 0 the ways that bind its context (including its private
/// allocation stream, which `Drop` destroys in that context).
fn use_device_zero(driver: &Arc<dyn Driver>) {
    let stream = Stream::new(driver, 0).unwrap();
    let mut buffer = DeviceBuffer::new(driver, 0, 1 << 16, AllocKind::Pool).unwrap();
    buffer.write_from_slice(&[7u8; 1 << 16], &stream).unwrap();
    assert_eq!(buffer.read_to_vec(&stream).unwrap(), vec![7u8; 1 << 16]);
}

#[test]
fn dropping_the_driver_leaves_no_context_current_where_there_was_none() {
    // SAFETY: null unbinds whatever this test thread had bound.
    unsafe { result::ctx::set_current(std::ptr::null_mut()) }.unwrap();
    let driver: Arc<dyn Driver> = Arc::new(cuda_driver());
    use_device_zero(&driver);
    assert!(current_context().is_null(), "a call left its context bound");
    drop(driver);
    assert!(
        current_context().is_null(),
        "dropping the driver left a context bound on the caller's thread"
    );
}

#[test]
fn dropping_the_driver_binds_back_the_callers_context() {
    let count = cuda_driver().device_count();
    // The caller works on the last device; the driver on device 0.
    let callers = CudaContext::new(count - 1).unwrap();
    callers.bind_to_thread().unwrap();
    let driver: Arc<dyn Driver> = Arc::new(cuda_driver());
    use_device_zero(&driver);
    assert_eq!(current_context(), callers.cu_ctx());
    drop(driver);
    assert_eq!(
        current_context(),
        callers.cu_ctx(),
        "dropping the driver changed the caller's current context"
    );
}

#[test]
fn a_driver_over_cudarc_contexts_shares_them_and_their_streams() {
    let context = CudaContext::new(0).unwrap();
    let driver = CudaDriver::from_contexts([context.clone()]).unwrap();
    assert!(Arc::ptr_eq(&driver.context(0).unwrap(), &context));
    let driver: Arc<dyn Driver> = Arc::new(driver);

    // A slice cudarc wrote on its own stream, copied by our driver on that stream.
    let stream = context.new_stream().unwrap();
    let want: Vec<u8> = (0..1 << 20).map(|i| (i * 7 + 3) as u8).collect();
    let slice = stream.clone_htod(&want).unwrap();
    let ours = DeviceBuffer::new(&driver, 0, want.len(), AllocKind::Plain).unwrap();
    let id = StreamId::from(&stream);
    assert_eq!(id.device, 0);
    let (src, _record) = p2p_core::cudarc::driver::DevicePtr::device_ptr(&slice, &stream);
    let src = p2p_core::DeviceAddr {
        device: 0,
        addr: src,
    };
    // SAFETY: both ranges hold `want.len()` bytes and outlive the synchronize.
    unsafe { driver.copy_peer_async(ours.ptr(), src, want.len(), id) }.unwrap();
    driver.synchronize_stream(id).unwrap();
    let check = Stream::new(&driver, 0).unwrap();
    assert_eq!(ours.read_to_vec(&check).unwrap(), want);
}

#[test]
fn a_non_primary_context_is_refused() {
    let context = CudaContext::new_non_primary(0, 0).unwrap();
    match CudaDriver::from_contexts([context]) {
        Err(Error::Unsupported(message)) => assert!(message.contains("primary"), "{message}"),
        other => panic!("expected Unsupported, got {other:?}"),
    }
}

const PINNING_CHILD: &str = "P2P_PINNING_CHILD";

/// In a fresh process (so no other test's contexts exist): the caller has a
/// context on the last GPU only; pinning must use it, not create one on GPU 0.
#[test]
fn pinning_creates_no_context_on_an_idle_gpu() {
    let count = cuda_driver().device_count();
    assert!(count >= 2, "needs two GPUs: this machine shows {count}");
    let status = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "pinning_child",
            "--include-ignored",
            "--nocapture",
        ])
        .env(PINNING_CHILD, "1")
        .status()
        .unwrap();
    assert!(status.success(), "the child process failed: {status}");
}

#[test]
#[ignore = "run in a fresh process by pinning_creates_no_context_on_an_idle_gpu"]
fn pinning_child() {
    if std::env::var(PINNING_CHILD).as_deref() != Ok("1") {
        // Run with `--include-ignored` beside other tests, whose contexts
        // would make it meaningless: the parent test is the one that counts.
        eprintln!("pinning_child runs only in the process pinning_creates_no_context_on_an_idle_gpu starts");
        return;
    }
    let driver = cuda_driver();
    let last = driver.device_count() - 1;
    assert!(
        !primary_context_active(0),
        "GPU 0 has a context before the test"
    );
    let callers = CudaContext::new(last).unwrap();
    let pinned = driver.alloc_pinned(1 << 20).unwrap();
    assert!(
        !primary_context_active(0),
        "pinning host memory created a context on idle GPU 0"
    );
    // SAFETY: from alloc_pinned above, freed once, unused.
    unsafe { driver.free_pinned(pinned) }.unwrap();
    drop(callers);
}
