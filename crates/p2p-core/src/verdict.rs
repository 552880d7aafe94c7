//! The verdict on one ordered pair: does direct peer copy deliver correct bytes?

use serde::{Deserialize, Serialize};

/// Why a pair works or not. Serialised as the kebab-case names the CLI prints.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Reason {
    /// A real copy delivered every byte.
    Verified,
    /// The driver does not claim peer access for this direction.
    NotClaimed,
    /// `cuCtxEnablePeerAccess` failed.
    EnableFailed { detail: String },
    /// The copy finished but delivered wrong bytes; `offset` is the first bad one.
    Corrupt {
        offset: u64,
        expected: u8,
        found: u8,
    },
    /// The copy did not finish within the probe deadline.
    Timeout { after_ms: u64 },
    /// Thorough mode: correct, but slower than staging through pinned host memory.
    SlowerThanStaging {
        /// Written as `measured_peer_gbps`: the verdict's own `peer_gbps`
        /// sits in the same JSON object (the reason is flattened into it),
        /// and a key written twice makes the whole file unreadable.
        #[serde(rename = "measured_peer_gbps")]
        peer_gbps: f64,
        staged_gbps: f64,
    },
    /// Peer copy turned off by the operator (environment or policy).
    DisabledByPolicy,
}

impl Reason {
    /// The kebab-case name (`verified`, `not-claimed`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Reason::Verified => "verified",
            Reason::NotClaimed => "not-claimed",
            Reason::EnableFailed { .. } => "enable-failed",
            Reason::Corrupt { .. } => "corrupt",
            Reason::Timeout { .. } => "timeout",
            Reason::SlowerThanStaging { .. } => "slower-than-staging",
            Reason::DisabledByPolicy => "disabled-by-policy",
        }
    }

    /// Whether the reason may not hold for long: a timeout (a busy or
    /// recovering GPU) or a failure to enable access (process state such as
    /// too many peers). Cached with an expiry, not for good.
    pub fn is_transient(&self) -> bool {
        matches!(self, Reason::Timeout { .. } | Reason::EnableFailed { .. })
    }

    /// One line for people: the name and the detail.
    pub fn describe(&self) -> String {
        match self {
            Reason::Verified => "verified".into(),
            Reason::NotClaimed => "not-claimed: the driver reports no peer access".into(),
            Reason::EnableFailed { detail } => format!("enable-failed: {detail}"),
            Reason::Corrupt {
                offset,
                expected,
                found,
            } => {
                format!("corrupt: first bad byte at offset {offset} (expected {expected:#04x}, found {found:#04x})")
            }
            Reason::Timeout { after_ms } => {
                format!("timeout: the copy did not finish within {after_ms} ms")
            }
            Reason::SlowerThanStaging {
                peer_gbps,
                staged_gbps,
            } => {
                format!(
                    "slower-than-staging: peer {peer_gbps:.1} GB/s < staged {staged_gbps:.1} GB/s"
                )
            }
            Reason::DisabledByPolicy => "disabled-by-policy".into(),
        }
    }
}

/// The overall state of a pair, as `p2p probe --json` prints it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PairState {
    Works,
    Broken,
    Disabled,
}

/// The verdict on the ordered pair `from -> to`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeerVerdict {
    pub from: usize,
    pub to: usize,
    /// What the driver claimed (`cuDeviceCanAccessPeer` and the access attribute).
    pub claimed: bool,
    #[serde(flatten)]
    pub reason: Reason,
    /// Measured peer bandwidth in GB/s (thorough mode only).
    pub peer_gbps: Option<f64>,
    /// How long the probe took, in microseconds (0 for verdicts that needed no copy).
    pub probe_micros: u64,
}

impl PeerVerdict {
    /// Peer copy may be used for this direction.
    pub fn is_verified(&self) -> bool {
        matches!(self.reason, Reason::Verified)
    }

    /// Works, broken, or disabled by policy.
    pub fn state(&self) -> PairState {
        match self.reason {
            Reason::Verified => PairState::Works,
            Reason::DisabledByPolicy => PairState::Disabled,
            _ => PairState::Broken,
        }
    }
}
