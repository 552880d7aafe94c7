//! How a plan cuts its bytes: [`Layout`], and the [`Chunks`] it yields.

use serde::{Deserialize, Serialize};

/// One piece of the copy: bytes `offset..offset + len` of source and
/// destination alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Chunk {
    /// Offset of the first byte.
    pub offset: usize,
    /// Number of bytes; never 0.
    pub len: usize,
}

impl Chunk {
    /// One past the last byte.
    pub fn end(&self) -> usize {
        self.offset + self.len
    }
}

/// How the bytes of a move are cut and how many pieces are in flight.
///
/// Serialised internally tagged as `layout`: `empty`, `whole`,
/// `host-relay`, `pipelined` (with `chunk_bytes` and `depth`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "layout", rename_all = "kebab-case")]
pub enum Layout {
    /// Nothing to copy: a no-op, or zero bytes.
    Empty,
    /// All the bytes in one piece, with no pipeline: a direct peer copy,
    /// or a small copy on a chunked route (through one buffer, the legs
    /// chained on the GPUs).
    Whole,
    /// All the bytes in one piece through one buffer, the host handing over
    /// between the legs: it waits for the first and then queues the second.
    /// For staged copies below [`Policy::host_relay_bytes`](crate::Policy::host_relay_bytes),
    /// where a host round trip costs less than chaining two GPUs' streams.
    HostRelay,
    /// Pieces of `chunk_bytes` (the last one shorter), `depth` in flight
    /// (1 = one at a time). An executor needs `min(depth, chunks)` buffers.
    Pipelined {
        /// The size of every piece but the last.
        chunk_bytes: usize,
        /// How many pieces may be in flight; at least 1.
        depth: usize,
    },
}

impl Layout {
    /// The pieces of a move of `bytes` bytes, in order, covering `0..bytes`
    /// once each.
    pub fn chunks(&self, bytes: usize) -> Chunks {
        let (piece, bytes) = match *self {
            Layout::Empty => (1, 0),
            Layout::Whole | Layout::HostRelay => (bytes.max(1), bytes),
            Layout::Pipelined { chunk_bytes, .. } => (chunk_bytes.max(1), bytes),
        };
        Chunks {
            next: 0,
            bytes,
            piece,
        }
    }

    /// How many pieces a move of `bytes` bytes has.
    pub fn chunk_count(&self, bytes: usize) -> usize {
        match *self {
            Layout::Empty => 0,
            Layout::Whole | Layout::HostRelay => usize::from(bytes > 0),
            Layout::Pipelined { chunk_bytes, .. } => bytes.div_ceil(chunk_bytes.max(1)),
        }
    }

    /// The piece size of a pipelined layout.
    pub fn chunk_bytes(&self) -> Option<usize> {
        match *self {
            Layout::Pipelined { chunk_bytes, .. } => Some(chunk_bytes),
            _ => None,
        }
    }

    /// How many pieces may be in flight (1 for a whole copy or a host relay, 0 for none).
    pub fn depth(&self) -> usize {
        match *self {
            Layout::Empty => 0,
            Layout::Whole | Layout::HostRelay => 1,
            Layout::Pipelined { depth, .. } => depth,
        }
    }
}

/// The pieces of a plan, made on the fly (a plan stores no list of them).
#[derive(Clone, Debug)]
pub struct Chunks {
    next: usize,
    bytes: usize,
    piece: usize,
}

impl Iterator for Chunks {
    type Item = Chunk;

    fn next(&mut self) -> Option<Chunk> {
        if self.next >= self.bytes {
            return None;
        }
        let chunk = Chunk {
            offset: self.next,
            len: self.piece.min(self.bytes - self.next),
        };
        self.next = chunk.end();
        Some(chunk)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = (self.bytes - self.next.min(self.bytes)).div_ceil(self.piece);
        (left, Some(left))
    }
}

impl ExactSizeIterator for Chunks {}
