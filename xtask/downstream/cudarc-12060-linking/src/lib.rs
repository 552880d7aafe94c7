//! Downstream check: a crate on CUDA 12.6 that links the driver (`dynamic-linking`), using p2p-core and p2p-move on the same cudarc.

use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaSlice, CudaStream, DriverError};
use p2p_core::{Config, CudaDriver, PeerTable, StreamId};
use p2p_move::{Mover, Plan, Policy};

/// A mover over the program's own contexts, moving one of its slices.
pub fn move_slice(
    contexts: Vec<Arc<CudaContext>>,
    src: &CudaSlice<f32>,
    dst: &mut CudaSlice<f32>,
) -> Result<Plan, p2p_move::Error> {
    let driver = Arc::new(CudaDriver::from_contexts(contexts)?);
    let table = Arc::new(PeerTable::new(driver, Config::from_env()?));
    let mover = Mover::new(table, Policy::default())?;
    mover.memcpy_dtod(src, dst)
}

/// cudarc's streams and errors are ours too.
pub fn ids(stream: &Arc<CudaStream>, err: DriverError) -> (StreamId, p2p_core::Error) {
    (StreamId::from(stream), err.into())
}
