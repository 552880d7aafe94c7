//! Why the planner chose a route: [`Why`], a value tests can match and people can read.

use std::fmt;

use p2p_core::Location;
use serde::{Deserialize, Serialize};

/// The reason behind a [`Plan`](crate::Plan)'s route. `Display` gives the
/// sentence `p2p plan` prints; tests match on the variant.
///
/// Serialised internally tagged as `why` with kebab-case names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "why", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Why {
    /// Source and destination are the same place.
    SamePlace {
        /// Where both are.
        at: Location,
    },
    /// Host memory to a GPU.
    HostToDevice {
        /// The source (host).
        src: Location,
        /// The destination GPU.
        dst: Location,
    },
    /// A GPU to host memory.
    DeviceToHost {
        /// The source GPU.
        src: Location,
        /// The destination (host).
        dst: Location,
    },
    /// The direct pair was verified by the probe.
    PeerVerified {
        /// The source GPU.
        src: Location,
        /// The destination GPU.
        dst: Location,
    },
    /// The policy turned peer copy off.
    PeerDisabledByPolicy {
        /// The source GPU.
        src: Location,
        /// The destination GPU.
        dst: Location,
    },
    /// The pair is not verified and the policy turned via routes off.
    NotVerifiedViaDisabled {
        /// The source GPU.
        src: Location,
        /// The destination GPU.
        dst: Location,
    },
    /// The pair is not verified and the machine has no third GPU.
    NotVerifiedNoThirdGpu {
        /// The source GPU.
        src: Location,
        /// The destination GPU.
        dst: Location,
    },
    /// The pair is not verified and no third GPU asked about has both legs
    /// verified.
    NotVerifiedNoVerifiedMiddle {
        /// The source GPU.
        src: Location,
        /// The destination GPU.
        dst: Location,
        /// How many third GPUs were asked about ([`crate::Policy::max_via_middles`]).
        asked: usize,
        /// How many third GPUs the machine has.
        available: usize,
    },
    /// The pair is not verified; both legs through `gpu` are.
    ViaVerifiedMiddle {
        /// The source GPU.
        src: Location,
        /// The destination GPU.
        dst: Location,
        /// The middle GPU's ordinal.
        gpu: usize,
    },
}

const STAGED: &str = "staged through pinned host memory";

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Why::SamePlace { at } => {
                write!(f, "source and destination are both {at}: nothing to move")
            }
            Why::HostToDevice { src, dst } => write!(f, "{src} -> {dst}: host-to-device copy"),
            Why::DeviceToHost { src, dst } => write!(f, "{src} -> {dst}: device-to-host copy"),
            Why::PeerVerified { src, dst } => {
                write!(f, "{src} -> {dst} verified by probe: direct peer copy")
            }
            Why::PeerDisabledByPolicy { src, dst } => {
                write!(f, "peer copy {src} -> {dst} disabled by policy: {STAGED}")
            }
            Why::NotVerifiedViaDisabled { src, dst } => write!(
                f,
                "peer copy {src} -> {dst} not verified and hops through a third GPU \
                 disabled by policy: {STAGED}"
            ),
            Why::NotVerifiedNoThirdGpu { src, dst } => write!(
                f,
                "peer copy {src} -> {dst} not verified and no third GPU to go through: {STAGED}"
            ),
            Why::NotVerifiedNoVerifiedMiddle {
                src,
                dst,
                asked,
                available,
            } if asked < available => write!(
                f,
                "peer copy {src} -> {dst} not verified and no verified third GPU among the \
                 {asked} of {available} asked (max_via_middles): {STAGED}"
            ),
            Why::NotVerifiedNoVerifiedMiddle { src, dst, .. } => write!(
                f,
                "peer copy {src} -> {dst} not verified and no verified third GPU: {STAGED}"
            ),
            Why::ViaVerifiedMiddle { src, dst, gpu } => write!(
                f,
                "peer copy {src} -> {dst} not verified; {src} -> cuda:{gpu} -> {dst} both \
                 verified: via cuda:{gpu}"
            ),
        }
    }
}
