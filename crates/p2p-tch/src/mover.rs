//! [`TchMover`]: moves tensors between the CPU and CUDA devices by the fastest route known to deliver correct bytes.
//!
//! The semantics it implements (ordering with PyTorch's streams, blocking
//! and non-blocking, what the result is) are documented once, in the crate
//! docs. The flow of one call: check every tensor and the destination
//! (nothing is touched before all pass); give back tensors already on the
//! destination; materialise the other sources on their own devices;
//! allocate the destinations with PyTorch (`prepare`); queue one batch per
//! source device, ordered with the current streams (`raw::queue`); then
//! wait, or park the tensors until an event on the destination stream fires.

use std::sync::Arc;
use std::time::Duration;

use p2p_core::{Config, CudaDriver, Driver, InvalidDevice, Location, PeerTable, Side, StreamId};
use p2p_move::{Mover, Plan, Policy, StreamOrder};
use tch::{Device, Tensor};

use crate::error::{CudaMissing, Error, Result, TorchCudaError};
use crate::movable::{self, Movable};
use crate::prepare::{self, Source};
use crate::raw::{self, InFlight, TensorCopy, TorchCuda};

/// Whether a move returns once its bytes are at the destination, or once it is queued.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Returns once the bytes are at the destination.
    #[default]
    Blocking,
    /// Returns once the copies are queued, ordered with PyTorch's current
    /// streams (see the crate docs); moves to the CPU still wait.
    NonBlocking,
}

/// How long [`TchMover::synchronize`] waits for each pending move.
const SYNCHRONIZE_DEADLINE: Duration = Duration::from_secs(120);

/// Moves tch tensors by the fastest verified route: peer copy, staging
/// through pinned host memory, or a hop through a third GPU.
///
/// Holds a `p2p_move::Mover` (copy streams, events, pinned buffers) over the
/// verdicts of a `PeerTable` on the CUDA driver. Cheap to share across
/// threads (`&TchMover` is all a move needs). Most programs use the
/// process-wide one behind [`crate::safe_move`]; build one yourself for
/// another [`Config`] or [`Policy`] (tests, a pair forced off).
#[derive(Debug)]
pub struct TchMover {
    /// Declared first so that it is dropped first: it waits for pending
    /// moves while the mover and the driver still exist.
    in_flight: InFlight,
    mover: Mover,
    torch: &'static TorchCuda,
    driver: Arc<dyn Driver>,
    verify: bool,
    packing: bool,
}

impl TchMover {
    /// A mover with `config` (disabled pairs, verdict cache, probe deadline)
    /// and `policy` (chunk sizes, routes allowed).
    ///
    /// # Errors
    /// [`Error::NoCuda`] when `libtorch_cuda.so` cannot be loaded, PyTorch
    /// sees no GPU, the CUDA driver is missing, or PyTorch and the driver
    /// disagree on how many GPUs there are; [`Error::Move`] for a policy the
    /// planner cannot use.
    pub fn new(config: Config, policy: Policy) -> Result<TchMover> {
        let no_cuda = |missing| Error::NoCuda {
            asked_for: None,
            missing,
        };
        let torch = raw::torch_cuda()
            .map_err(|err| no_cuda(CudaMissing::TorchCuda(TorchCudaError(err))))?;
        let torch_gpus = torch_device_count();
        if torch_gpus == 0 {
            return Err(no_cuda(CudaMissing::NoDevice {
                library: torch.path.clone(),
            }));
        }
        let driver = CudaDriver::new().map_err(|err| {
            no_cuda(CudaMissing::Driver {
                torch_gpus,
                source: Arc::new(err.into()),
            })
        })?;
        if driver.device_count() != torch_gpus {
            return Err(no_cuda(CudaMissing::CountMismatch {
                torch_gpus,
                driver_gpus: driver.device_count(),
            }));
        }
        let driver: Arc<dyn Driver> = Arc::new(driver);
        let table = Arc::new(PeerTable::new(driver.clone(), config));
        let mover = Mover::new(table, policy)?;
        Ok(TchMover {
            in_flight: InFlight::new(),
            mover,
            torch,
            driver,
            verify: false,
            packing: true,
        })
    }

    /// A mover with the operator's settings (`P2P_*` environment variables)
    /// and the default policy: what [`crate::safe_move`] uses.
    pub fn from_env() -> Result<TchMover> {
        let config = Config::from_env().map_err(p2p_move::Error::from)?;
        TchMover::new(config, Policy::default())
    }

    /// Reads every destination back after the move and compares it with the
    /// source (slow: for tests and the paranoid). Moves then always wait.
    pub fn with_verify(mut self, verify: bool) -> TchMover {
        self.mover = self.mover.with_verify(verify);
        self.verify = verify;
        self
    }

    /// Whether small tensors of one call may share destination allocations
    /// (on by default).
    ///
    /// In a call that moves several tensors, those of at most
    /// [`PACK_MAX_TENSOR_BYTES`](crate::PACK_MAX_TENSOR_BYTES) with the same
    /// dtype are given destinations that are views into shared allocations of
    /// at most [`PACK_BYTES`](crate::PACK_BYTES), each at an offset aligned
    /// to [`PACK_ALIGN_BYTES`](crate::PACK_ALIGN_BYTES): one allocation and a
    /// view cost less than an allocation per tensor, which is most of what a
    /// small tensor's move costs. The views are disjoint, so writing one never
    /// changes another, and each is contiguous; but they share a storage
    /// (`storage_offset` is not 0), and a pack is freed only when the last of
    /// its views is. PyTorch's caching allocator already carves allocations
    /// under 1 MiB out of shared 2 MiB segments, so packs keep no more memory
    /// alive than it would. Turn packing off where results must own separate
    /// storages.
    pub fn with_packing(mut self, packing: bool) -> TchMover {
        self.packing = packing;
        self
    }

    /// The executor underneath, for its plans and statistics.
    pub fn mover(&self) -> &Mover {
        &self.mover
    }

    /// The verdicts of every ordered pair of GPUs (probed on first use).
    pub fn table(&self) -> &Arc<PeerTable> {
        self.mover.table()
    }

    /// How many CUDA devices this process sees.
    pub fn device_count(&self) -> usize {
        self.driver.device_count()
    }

    /// The plan a move of `bytes` from `from` to `to` follows (probing the
    /// pairs it depends on, if not known yet): its route says peer, staged or via.
    pub fn plan(&self, from: Device, to: Device, bytes: usize) -> Result<Plan> {
        let from = self.location(from, Side::Source)?;
        let to = self.location(to, Side::Destination)?;
        Ok(self.mover.plan(from, to, bytes)?)
    }

    /// Moves `value` (a tensor, or a slice, array, `Vec` or tuple of them) to
    /// `device` and gives it back in the same shape. See the crate docs for
    /// the ordering and what the result is.
    pub fn move_to<T: Movable + ?Sized>(
        &self,
        value: &T,
        device: Device,
        mode: Mode,
    ) -> Result<T::Output> {
        let tensors = movable::list(value);
        let sources = tensors
            .iter()
            .enumerate()
            .map(|(index, tensor)| prepare::inspect(index, tensor))
            .collect::<Result<Vec<_>>>()?;
        let moved = self.move_inspected(sources, device, mode)?;
        rebuild(value, moved)
    }

    /// Waits for every non-blocking move of this mover and releases the
    /// tensors it kept for them.
    pub fn synchronize(&self) -> Result<()> {
        self.in_flight
            .wait_all(SYNCHRONIZE_DEADLINE)
            .map_err(|err| Error::Move(err.into()))
    }

    /// Non-blocking moves whose tensors this mover still holds (finished ones
    /// are released on the next call).
    pub fn pending_moves(&self) -> usize {
        self.in_flight.len()
    }

    /// The ordinal check of the API boundary: once here, against PyTorch's
    /// device count, before any layer below sees the device.
    fn location(&self, device: Device, side: Side) -> Result<Location> {
        match device {
            Device::Cpu => Ok(Location::Host),
            Device::Cuda(ordinal) if ordinal < self.device_count() => Ok(Location::Cuda(ordinal)),
            Device::Cuda(ordinal) => Err(Error::InvalidDevice(InvalidDevice {
                side: Some(side),
                ordinal,
                count: self.device_count(),
            })),
            other => Err(Error::UnsupportedDevice { device: other }),
        }
    }

    /// PyTorch's current stream on `device`, for the calling thread.
    fn current_stream(&self, device: usize) -> Result<StreamId> {
        self.torch
            .current_stream(device)
            .map_err(|err| Error::NoCuda {
                asked_for: Some(Device::Cuda(device)),
                missing: CudaMissing::TorchCuda(TorchCudaError(err)),
            })
    }

    /// Moves each (already inspected) source to `to`; results in the same order.
    pub(crate) fn move_inspected(
        &self,
        sources: Vec<Source<'_>>,
        to: Device,
        mode: Mode,
    ) -> Result<Vec<Tensor>> {
        self.location(to, Side::Destination)?;
        for source in &sources {
            self.location(source.device, Side::Source)?;
        }
        self.in_flight.reclaim();

        let mut results: Vec<Option<Tensor>> = (0..sources.len()).map(|_| None).collect();
        let mut jobs: Vec<&Source<'_>> = Vec::new();
        for source in &sources {
            if source.device == to {
                results[source.index] = Some(source.tensor.shallow_clone());
            } else if prepare::is_quantized(source.kind) {
                results[source.index] = Some(move_through_host(source, to)?);
            } else {
                jobs.push(source);
            }
        }
        if !jobs.is_empty() {
            let destinations = self.copy_all(&jobs, to, mode)?;
            for (job, destination) in jobs.iter().zip(destinations) {
                results[job.index] = Some(destination);
            }
        }
        // Every slot was filled above: by a shallow clone, a host move or a copy.
        Ok(results.into_iter().flatten().collect())
    }

    /// Allocates, queues and (unless non-blocking) waits for the copies of `jobs`.
    fn copy_all(&self, jobs: &[&Source<'_>], to: Device, mode: Mode) -> Result<Vec<Tensor>> {
        let materialised = jobs
            .iter()
            .map(|job| prepare::materialise(job))
            .collect::<Result<Vec<_>>>()?;
        let destinations = prepare::allocate(jobs, to, self.packing)?;
        let non_blocking = mode == Mode::NonBlocking && !self.verify && to != Device::Cpu;

        // One batch per source device: the order names one source stream.
        let mut groups: Vec<(Device, Vec<TensorCopy<'_>>)> = Vec::new();
        for ((job, materialised), dst) in jobs.iter().zip(&materialised).zip(&destinations) {
            if job.bytes == 0 {
                continue;
            }
            let copy = TensorCopy {
                src: materialised.as_ref().unwrap_or(job.tensor),
                dst,
                src_device: job.device,
                dst_device: to,
                bytes: job.bytes,
            };
            match groups.iter_mut().find(|(device, _)| *device == job.device) {
                Some((_, copies)) => copies.push(copy),
                None => groups.push((job.device, vec![copy])),
            }
        }
        if groups.is_empty() {
            return Ok(destinations);
        }

        let dst_stream = match to {
            Device::Cuda(ordinal) => Some(self.current_stream(ordinal)?),
            _ => None,
        };
        let mut queued = Vec::with_capacity(groups.len());
        let mut src_streams = Vec::new();
        for (device, copies) in groups {
            let src_stream = match device {
                Device::Cuda(ordinal) => Some(self.current_stream(ordinal)?),
                _ => None,
            };
            let order = StreamOrder {
                src_stream,
                dst_stream,
            };
            match raw::queue(&self.mover, copies, order) {
                Ok(batch) => queued.push(batch),
                Err(err) => {
                    // Nothing of ours may outlive the failure on these tensors.
                    for batch in queued {
                        let _ = batch.wait();
                    }
                    return Err(err.into());
                }
            }
            src_streams.extend(src_stream);
        }

        match dst_stream {
            Some(dst_stream) if non_blocking => {
                self.finish_later(queued, dst_stream, &src_streams)?
            }
            _ => {
                let mut first_error = None;
                for batch in queued {
                    if let Err(err) = batch.wait() {
                        first_error.get_or_insert(err);
                    }
                }
                if let Some(err) = first_error {
                    return Err(err.into());
                }
            }
        }
        Ok(destinations)
    }

    /// Non-blocking: marks the end of the copies with an event on the
    /// destination's current stream (which already waits for them), makes the
    /// sources' current streams wait for it, and parks the tensors until it
    /// fires. If any of that fails, waits for the copies instead.
    fn finish_later(
        &self,
        queued: Vec<raw::QueuedCopies>,
        dst_stream: StreamId,
        src_streams: &[StreamId],
    ) -> Result<()> {
        let marked = self.mover.events().record(dst_stream).and_then(|fence| {
            src_streams
                .iter()
                .try_for_each(|&src| self.driver.stream_wait_event(src, fence.id()))
                .map(|()| fence)
        });
        match marked {
            Ok(fence) => {
                raw::park(queued, &self.in_flight, fence);
                Ok(())
            }
            Err(err) => {
                tracing::warn!("could not order a non-blocking move with PyTorch's streams ({err}); waiting for it instead");
                let mut first_error = None;
                for batch in queued {
                    if let Err(err) = batch.wait() {
                        first_error.get_or_insert(err);
                    }
                }
                first_error.map_or(Ok(()), |err| Err(err.into()))
            }
        }
    }
}

/// Devices PyTorch sees (`torch.cuda.device_count()`); 0 without CUDA.
pub(crate) fn torch_device_count() -> usize {
    usize::try_from(tch::Cuda::device_count()).unwrap_or(0)
}

/// Quantized tensors: PyTorch's own copies through host memory (module docs).
fn move_through_host(source: &Source<'_>, to: Device) -> Result<Tensor> {
    let fail = |device: Device| {
        move |err| {
            prepare::torch_failure(
                device,
                source.bytes,
                source.kind,
                "moving a quantized tensor through host memory",
                err,
            )
        }
    };
    let host = source
        .tensor
        .f_to_device(Device::Cpu)
        .map_err(fail(Device::Cpu))?;
    if to == Device::Cpu {
        return Ok(host);
    }
    host.f_to_device(to).map_err(fail(to))
}

/// `value`'s shape again, from the moved tensors.
pub(crate) fn rebuild<T: Movable + ?Sized>(value: &T, moved: Vec<Tensor>) -> Result<T::Output> {
    let listed = moved.len();
    let mut iter = moved.into_iter();
    let output = value.rebuild(&mut iter);
    let left = iter.len();
    match output {
        Some(output) if left == 0 => Ok(output),
        Some(_) => Err(Error::MovableMismatch {
            listed,
            used: listed - left,
        }),
        None => Err(Error::MovableMismatch {
            listed,
            used: listed + 1,
        }),
    }
}
