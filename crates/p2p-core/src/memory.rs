//! Owning wrappers over driver handles: freed on drop, never panics; errors
//! of a drop are recorded for [`check_drop_errors`].

use std::fmt;
use std::sync::{Arc, Mutex};

use bytemuck::Pod;

use crate::{AllocKind, DeviceAddr, Driver, Error, EventId, Result, StreamId};

/// Errors from `Drop` of the owning wrappers, kept until [`check_drop_errors`]
/// takes them (as cudarc's `record_err` / `check_err` do): a failed free in
/// `Drop` is visible to the program, not only logged. At most
/// [`DROP_ERRORS_KEPT`] are kept; later ones are counted.
static DROP_ERRORS: Mutex<(Vec<(String, Error)>, usize)> = Mutex::new((Vec::new(), 0));

/// How many drop errors [`check_drop_errors`] can report at most.
pub const DROP_ERRORS_KEPT: usize = 64;

/// Records an error of a `Drop` (what was being done, and why it failed):
/// logged now and kept for [`check_drop_errors`].
pub fn record_drop_error(what: String, err: Error) {
    tracing::warn!("{what}: {err}");
    let mut kept = DROP_ERRORS.lock().unwrap_or_else(|e| e.into_inner());
    if kept.0.len() < DROP_ERRORS_KEPT {
        kept.0.push((what, err));
    } else {
        kept.1 += 1;
    }
}

/// Takes the errors recorded by `Drop`s since the last call: `Ok` if there
/// were none, else every kept one (what failed, and why) and how many more
/// were only counted.
pub fn check_drop_errors() -> std::result::Result<(), (Vec<(String, Error)>, usize)> {
    let mut kept = DROP_ERRORS.lock().unwrap_or_else(|e| e.into_inner());
    if kept.0.is_empty() && kept.1 == 0 {
        return Ok(());
    }
    Err((std::mem::take(&mut kept.0), std::mem::take(&mut kept.1)))
}

/// Device memory owned by this value, freed on drop (a failure to free is
/// recorded for [`check_drop_errors`], never a panic).
///
/// ```
/// use std::sync::Arc;
/// use p2p_core::memory::{DeviceBuffer, Stream};
/// use p2p_core::{AllocKind, Driver, SimDriver};
///
/// let driver: Arc<dyn Driver> = Arc::new(SimDriver::builtin());
/// let mut buffer = DeviceBuffer::new(&driver, 1, 4, AllocKind::Plain)?;
/// let stream = Stream::new(&driver, 1)?;
/// buffer.write_from_slice(&[1, 2, 3, 4], &stream)?;
/// assert_eq!(buffer.read_to_vec(&stream)?, [1, 2, 3, 4]);
///
/// // Five bytes do not fit in four: an error, and nothing is written.
/// let err = buffer.write_from_slice(&[0; 5], &stream).unwrap_err();
/// println!("{err}"); // size mismatch: 5 bytes do not fit a buffer of 4
/// # Ok::<(), p2p_core::Error>(())
/// ```
pub struct DeviceBuffer {
    driver: Arc<dyn Driver>,
    ptr: DeviceAddr,
    len: usize,
}

impl DeviceBuffer {
    /// Allocates `len` bytes (0 is allowed) on `device`. The bytes are not
    /// cleared: fresh memory holds whatever it held.
    ///
    /// # Errors
    /// [`Error::InvalidDevice`] for an ordinal the driver lacks,
    /// [`Error::OutOfMemory`] when the device is full, [`Error::Cuda`] for
    /// another driver failure.
    pub fn new(
        driver: &Arc<dyn Driver>,
        device: usize,
        len: usize,
        kind: AllocKind,
    ) -> Result<Self> {
        driver.check_device(device)?;
        let ptr = driver.alloc_device(device, len, kind)?;
        Ok(DeviceBuffer {
            driver: driver.clone(),
            ptr,
            len,
        })
    }

    /// A buffer on `stream`'s device holding a copy of `data`, written on
    /// `stream` (blocking): [`DeviceBuffer::new`] and
    /// [`DeviceBuffer::write_from_slice`] in one.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use p2p_core::memory::{DeviceBuffer, Stream};
    /// use p2p_core::{AllocKind, Driver, SimDriver};
    ///
    /// let driver: Arc<dyn Driver> = Arc::new(SimDriver::builtin());
    /// let stream = Stream::new(&driver, 1)?;
    /// let buffer = DeviceBuffer::from_slice(&driver, b"bytes", AllocKind::Pool, &stream)?;
    /// assert_eq!((buffer.device(), buffer.len()), (1, 5));
    /// assert_eq!(buffer.read_to_vec(&stream)?, b"bytes");
    /// # Ok::<(), p2p_core::Error>(())
    /// ```
    pub fn from_slice(
        driver: &Arc<dyn Driver>,
        data: &[u8],
        kind: AllocKind,
        stream: &Stream,
    ) -> Result<Self> {
        let mut buffer = DeviceBuffer::new(driver, stream.device(), data.len(), kind)?;
        buffer.write_from_slice(data, stream)?;
        Ok(buffer)
    }

    /// The start of the buffer, for the driver's `unsafe` calls; valid
    /// while `self` lives.
    pub fn ptr(&self) -> DeviceAddr {
        self.ptr
    }

    /// The size in bytes, as allocated.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the buffer holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The ordinal of the device the memory is on.
    pub fn device(&self) -> usize {
        self.ptr.device
    }

    /// Copies the whole buffer to a new `Vec`, blocking on `stream`.
    pub fn read_to_vec(&self, stream: &Stream) -> Result<Vec<u8>> {
        let mut out = vec![0u8; self.len];
        if self.len > 0 {
            // SAFETY: `out` holds `len` bytes and outlives the synchronize below;
            // `self` is live for the same span.
            unsafe {
                self.driver
                    .copy_dtoh_async(out.as_mut_ptr(), self.ptr, self.len, stream.id())?
            };
            if let Err(err) = stream.synchronize_after_copy() {
                // The copy may still write into `out` some day.
                std::mem::forget(out);
                return Err(err);
            }
        }
        Ok(out)
    }

    /// Overwrites the start of the buffer with `data`, blocking on `stream`.
    /// More bytes than the buffer holds is [`Error::SizeMismatch`], with
    /// nothing written.
    pub fn write_from_slice(&mut self, data: &[u8], stream: &Stream) -> Result<()> {
        if data.len() > self.len {
            return Err(Error::SizeMismatch {
                src_bytes: data.len(),
                dst_bytes: self.len,
            });
        }
        if !data.is_empty() {
            // SAFETY: both ranges are in bounds and live until the synchronize below.
            unsafe {
                self.driver
                    .copy_htod_async(self.ptr, data.as_ptr(), data.len(), stream.id())?
            };
            stream.synchronize_after_copy()?;
        }
        Ok(())
    }

    /// [`DeviceBuffer::read_to_vec`] as values of `T`. A buffer whose length
    /// is not a whole number of `T`s is [`Error::SizeMismatch`].
    pub fn read_to_vec_of<T: Pod>(&self, stream: &Stream) -> Result<Vec<T>> {
        whole_elements::<T>(self.len)?;
        let size = std::mem::size_of::<T>();
        let bytes = self.read_to_vec(stream)?;
        if size == 0 {
            return Ok(Vec::new());
        }
        // A Vec<u8> is not aligned for T: copy into one that is.
        let mut out = vec![T::zeroed(); self.len / size];
        bytemuck::cast_slice_mut(&mut out).copy_from_slice(&bytes);
        Ok(out)
    }

    /// [`DeviceBuffer::write_from_slice`] from values of `T`.
    pub fn write_from_slice_of<T: Pod>(&mut self, data: &[T], stream: &Stream) -> Result<()> {
        self.write_from_slice(bytemuck::cast_slice(data), stream)
    }

    /// Gives up ownership without freeing: for memory that a hung copy may
    /// still write to, where freeing would let the driver reuse it under the copy.
    pub fn leak(self) -> DeviceAddr {
        let ptr = self.ptr;
        std::mem::forget(self);
        ptr
    }
}

impl Drop for DeviceBuffer {
    fn drop(&mut self) {
        // SAFETY: we own `ptr`, it came from `alloc_device`, and this is the only free.
        if let Err(err) = unsafe { self.driver.free_device(self.ptr) } {
            record_drop_error(
                format!("freeing {} bytes on cuda:{}", self.len, self.ptr.device),
                err,
            );
        }
    }
}

impl fmt::Debug for DeviceBuffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceBuffer")
            .field("ptr", &self.ptr)
            .field("len", &self.len)
            .finish()
    }
}

/// Page-locked (pinned) host memory owned by this value, freed on drop.
///
/// Devices reach it by DMA, so copies to and from it are asynchronous and
/// fast; the bytes are also a plain slice for the host
/// ([`PinnedBuffer::as_slice`]). Fresh memory is not cleared.
pub struct PinnedBuffer {
    driver: Arc<dyn Driver>,
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the buffer is plain host memory owned by this value; access goes
// through `&self`/`&mut self`, so the usual borrow rules keep it race-free.
unsafe impl Send for PinnedBuffer {}
// SAFETY: shared access only hands out `&[u8]`.
unsafe impl Sync for PinnedBuffer {}

impl PinnedBuffer {
    /// Allocates `len` bytes of pinned host memory (0 is allowed).
    ///
    /// # Errors
    /// [`Error::OutOfMemory`] when the host cannot pin that much, [`Error::Cuda`]
    /// for another driver failure.
    pub fn new(driver: &Arc<dyn Driver>, len: usize) -> Result<Self> {
        let ptr = driver.alloc_pinned(len.max(1))?;
        Ok(PinnedBuffer {
            driver: driver.clone(),
            ptr,
            len,
        })
    }

    /// The start of the memory, for the driver's `unsafe` copies; valid
    /// while `self` lives.
    pub fn as_ptr(&self) -> *const u8 {
        self.ptr
    }

    /// The start of the memory, for copies into it.
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.ptr
    }

    /// The size in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the buffer holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes, for the host to read. Wait for copies into the buffer first.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `ptr` is a live allocation of at least `len` bytes owned by self.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    /// The bytes, for the host to write. Wait for copies out of the buffer first.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as above, and `&mut self` makes this the only access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }

    /// The bytes as values of `T` (pinned memory is page-aligned). A length
    /// that is not a whole number of `T`s is [`Error::SizeMismatch`].
    pub fn as_slice_of<T: Pod>(&self) -> Result<&[T]> {
        whole_elements::<T>(self.len)?;
        bytemuck::try_cast_slice(self.as_slice()).map_err(|err| misaligned::<T>(err))
    }

    /// [`PinnedBuffer::as_slice_of`], for the host to write.
    pub fn as_mut_slice_of<T: Pod>(&mut self) -> Result<&mut [T]> {
        whole_elements::<T>(self.len)?;
        bytemuck::try_cast_slice_mut(self.as_mut_slice()).map_err(|err| misaligned::<T>(err))
    }
}

impl Drop for PinnedBuffer {
    fn drop(&mut self) {
        // SAFETY: we own `ptr`, it came from `alloc_pinned`, and this is the only free.
        if let Err(err) = unsafe { self.driver.free_pinned(self.ptr) } {
            record_drop_error(format!("freeing {} pinned bytes", self.len), err);
        }
    }
}

impl fmt::Debug for PinnedBuffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PinnedBuffer")
            .field("len", &self.len)
            .finish()
    }
}

/// A stream owned by this value, destroyed on drop.
pub struct Stream {
    driver: Arc<dyn Driver>,
    id: StreamId,
}

impl Stream {
    /// A new non-blocking stream on `device` ([`Error::InvalidDevice`] for
    /// an ordinal the driver lacks).
    pub fn new(driver: &Arc<dyn Driver>, device: usize) -> Result<Self> {
        driver.check_device(device)?;
        let id = driver.create_stream(device)?;
        Ok(Stream {
            driver: driver.clone(),
            id,
        })
    }

    /// The handle, for the driver's calls; valid while `self` lives.
    pub fn id(&self) -> StreamId {
        self.id
    }

    /// The ordinal of the device the stream belongs to.
    pub fn device(&self) -> usize {
        self.id.device
    }

    /// Blocks until everything queued on the stream has finished. This has
    /// no deadline; for one, use [`Driver::wait_stream`].
    pub fn synchronize(&self) -> Result<()> {
        self.driver.synchronize_stream(self.id)
    }

    /// [`Stream::synchronize`], tried once more if it fails: the blocking
    /// helpers must not return (and let their host memory go) while their
    /// copy may still be queued.
    fn synchronize_after_copy(&self) -> Result<()> {
        self.synchronize().or_else(|err| {
            tracing::debug!(
                "synchronizing a stream of cuda:{} failed ({err}); trying once more",
                self.id.device
            );
            self.synchronize()
        })
    }

    /// Gives up ownership without destroying: for a stream with hung work on it.
    pub fn leak(self) -> StreamId {
        let id = self.id;
        std::mem::forget(self);
        id
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        // SAFETY: we own the stream and destroy it once.
        if let Err(err) = unsafe { self.driver.destroy_stream(self.id) } {
            record_drop_error(
                format!("destroying a stream on cuda:{}", self.id.device),
                err,
            );
        }
    }
}

impl fmt::Debug for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Stream").field(&self.id).finish()
    }
}

/// An event owned by this value, destroyed on drop.
pub struct Event {
    driver: Arc<dyn Driver>,
    id: EventId,
}

impl Event {
    /// An event for ordering only (no timing).
    pub fn new(driver: &Arc<dyn Driver>, device: usize) -> Result<Self> {
        driver.check_device(device)?;
        let id = driver.create_event(device)?;
        Ok(Event {
            driver: driver.clone(),
            id,
        })
    }

    /// An event whose time can be read ([`Driver::event_elapsed_ms`]).
    pub fn with_timing(driver: &Arc<dyn Driver>, device: usize) -> Result<Self> {
        driver.check_device(device)?;
        let id = driver.create_timing_event(device)?;
        Ok(Event {
            driver: driver.clone(),
            id,
        })
    }

    /// The handle, for the driver's calls; valid while `self` lives.
    pub fn id(&self) -> EventId {
        self.id
    }

    /// Records the event at the current end of `stream` (see [`Driver::record_event`]).
    pub fn record(&self, stream: &Stream) -> Result<()> {
        self.driver.record_event(self.id, stream.id())
    }

    /// Gives up ownership without destroying: for an event behind hung work.
    pub fn leak(self) -> EventId {
        let id = self.id;
        std::mem::forget(self);
        id
    }
}

impl Drop for Event {
    fn drop(&mut self) {
        // SAFETY: we own the event and destroy it once.
        if let Err(err) = unsafe { self.driver.destroy_event(self.id) } {
            record_drop_error(
                format!("destroying an event on cuda:{}", self.id.device),
                err,
            );
        }
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Event").field(&self.id).finish()
    }
}

/// `Ok` when `bytes` is a whole number of `T`s, else the mismatch (a typed
/// view may not cut an element in two).
fn whole_elements<T: Pod>(bytes: usize) -> Result<()> {
    let size = std::mem::size_of::<T>();
    if size == 0 || bytes % size == 0 {
        Ok(())
    } else {
        Err(Error::SizeMismatch {
            src_bytes: bytes,
            dst_bytes: bytes - bytes % size,
        })
    }
}

fn misaligned<T>(err: bytemuck::PodCastError) -> Error {
    Error::Unsupported(format!(
        "a pinned buffer viewed as {}: {err:?}",
        std::any::type_name::<T>()
    ))
}
