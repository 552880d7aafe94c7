//! The CUDA backend for the tests that need real GPUs: the driver, or a
//! failure that says what is missing (a GPU test that found no GPU must not
//! count as passed).

use std::sync::Arc;

use p2p_core::{CudaDriver, Driver};

/// The CUDA backend, or a failure that says why there is none.
pub(crate) fn cuda_driver() -> Arc<dyn Driver> {
    match CudaDriver::new() {
        Ok(driver) => Arc::new(driver),
        Err(err) => panic!("[Unsupported: needs a CUDA GPU] {err}"),
    }
}

/// The CUDA backend with two GPUs or more, or a failure that says why not.
pub(crate) fn two_gpu_driver() -> Arc<dyn Driver> {
    let driver = cuda_driver();
    super::require_gpus(&driver, 2);
    driver
}
