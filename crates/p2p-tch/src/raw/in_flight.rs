//! Non-blocking moves still in flight: their tensors, parked behind the
//! fence that marks the end of their copies.

use std::sync::Mutex;
use std::time::Duration;

use p2p_move::{Fence, Parked};
use tch::Tensor;

/// How long dropping an [`InFlight`] waits for each move.
const DROP_DEADLINE: Duration = Duration::from_secs(60);

/// The tensors of every non-blocking move, each move's set let go once its
/// fence has fired. Dropping waits for every move (a hung one leaks its
/// tensors: a reference to the storage that is never given back).
#[derive(Debug)]
pub(crate) struct InFlight {
    pending: Mutex<Parked<Tensor>>,
}

impl InFlight {
    pub(crate) fn new() -> InFlight {
        InFlight {
            pending: Mutex::new(Parked::new(DROP_DEADLINE)),
        }
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Parked<Tensor>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Moves not known to be finished.
    pub(crate) fn len(&self) -> usize {
        self.pending().parked_len()
    }

    pub(crate) fn push(&self, done: Fence, tensors: Vec<Tensor>) {
        self.pending().park(tensors, done);
    }

    /// Lets go of the tensors of every finished move. A fence that cannot
    /// be queried counts as not fired: its tensors stay alive rather than
    /// risk being freed under a running copy.
    pub(crate) fn reclaim(&self) {
        let finished = {
            let mut pending = self.pending();
            pending.reclaim();
            pending.take_free()
        };
        // Outside the lock: freeing a tensor calls into PyTorch.
        drop(finished);
    }

    /// Waits for every move (each up to `deadline`) and lets go of its
    /// tensors. A move that does not finish in time keeps its tensors
    /// forever (leaked); the first such error is returned once all moves
    /// have been handled.
    pub(crate) fn wait_all(&self, deadline: Duration) -> Result<(), p2p_core::Error> {
        let (leaked, finished) = {
            let mut pending = self.pending();
            let leaked = pending.wait_all(deadline, |_| {});
            (leaked, pending.take_free())
        };
        drop(finished);
        match leaked.first_error {
            Some(err) => {
                tracing::error!(
                    "{} non-blocking move(s) did not finish ({err}); leaking their tensors",
                    leaked.sets
                );
                Err(err)
            }
            None => Ok(()),
        }
    }
}
