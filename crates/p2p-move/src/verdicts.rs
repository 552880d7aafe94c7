//! What the planner asks about peer pairs: [`PeerVerdicts`], and a plain matrix of answers.

use p2p_core::InvalidDevice;

use crate::error::PlanError;

/// Verdict lookup the planner consults.
///
/// The real implementation (`p2p-core`'s `PeerTable`) probes a pair lazily on
/// first use, so the planner asks only about pairs it may use: nothing for
/// host routes, only `from -> to` when peer copy works, and third GPUs only
/// when it does not and via routes are allowed.
pub trait PeerVerdicts {
    /// Number of GPUs; valid ordinals are `0..device_count()`.
    fn device_count(&self) -> usize;

    /// Whether direct peer copy `from -> to` is known to deliver correct
    /// bytes. Unknown or out-of-range pairs are not verified.
    fn is_verified(&self, from: usize, to: usize) -> bool;
}

impl<T: PeerVerdicts + ?Sized> PeerVerdicts for &T {
    fn device_count(&self) -> usize {
        (**self).device_count()
    }

    fn is_verified(&self, from: usize, to: usize) -> bool {
        (**self).is_verified(from, to)
    }
}

/// A fixed matrix of verdicts, for tests, benches and the CLI's `plan`
/// command on a described machine.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct VerdictMatrix {
    device_count: usize,
    /// Row-major: `verified[from * device_count + to]`.
    verified: Vec<bool>,
}

impl VerdictMatrix {
    /// `device_count` GPUs, no pair verified.
    pub fn new(device_count: usize) -> Self {
        Self::from_fn(device_count, |_, _| false)
    }

    /// `device_count` GPUs, every pair verified (the diagonal too, though
    /// the planner never asks about it).
    pub fn all_verified(device_count: usize) -> Self {
        Self::from_fn(device_count, |_, _| true)
    }

    /// `device_count` GPUs, `from -> to` verified where `verified(from, to)`.
    pub fn from_fn(device_count: usize, mut verified: impl FnMut(usize, usize) -> bool) -> Self {
        let verified = (0..device_count)
            .flat_map(|from| (0..device_count).map(move |to| (from, to)))
            .map(|(from, to)| verified(from, to))
            .collect();
        VerdictMatrix {
            device_count,
            verified,
        }
    }

    /// Sets the verdict on `from -> to`; an ordinal out of range is an error
    /// (it may come from a user's command line).
    pub fn set(&mut self, from: usize, to: usize, verified: bool) -> Result<(), PlanError> {
        for ordinal in [from, to] {
            InvalidDevice::check(None, ordinal, self.device_count)?;
        }
        self.verified[from * self.device_count + to] = verified;
        Ok(())
    }
}

impl PeerVerdicts for VerdictMatrix {
    fn device_count(&self) -> usize {
        self.device_count
    }

    fn is_verified(&self, from: usize, to: usize) -> bool {
        from < self.device_count
            && to < self.device_count
            && self.verified[from * self.device_count + to]
    }
}
