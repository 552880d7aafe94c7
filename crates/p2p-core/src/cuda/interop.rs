//! Conversions between cudarc's types and ours, for programs that use both:
//! a cudarc stream is a [`StreamId`], a cudarc driver error is an [`Error`].

use std::sync::Arc;

use cudarc::driver::{CudaStream, DriverError};

use super::handle_to_raw;
use crate::{Error, StreamId};

/// The stream of a cudarc [`CudaStream`]: its device's ordinal and its
/// `CUstream` (null for the context's default stream, as ours). Valid with a
/// `CudaDriver` whose context on that device is the stream's (a primary
/// context: see `CudaDriver::from_contexts`).
impl From<&CudaStream> for StreamId {
    fn from(stream: &CudaStream) -> StreamId {
        StreamId {
            device: stream.context().ordinal(),
            raw: handle_to_raw(stream.cu_stream()),
        }
    }
}

/// As for `&CudaStream`: cudarc hands its streams out as `Arc`s.
impl From<&Arc<CudaStream>> for StreamId {
    fn from(stream: &Arc<CudaStream>) -> StreamId {
        StreamId::from(stream.as_ref())
    }
}

/// A failed cudarc call as [`Error::Cuda`]. cudarc's error carries the code
/// alone, so the call is named as "a cudarc call".
impl From<DriverError> for Error {
    fn from(DriverError(code): DriverError) -> Error {
        Error::Cuda {
            call: "a cudarc call",
            code: code as u32,
            name: format!("{code:?}"),
        }
    }
}
