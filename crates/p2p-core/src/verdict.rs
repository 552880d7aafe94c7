//! The verdict on one ordered pair: does direct peer copy deliver correct bytes?

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a pair works or not. Serialised as the kebab-case names the CLI prints.
///
/// `Display` writes one line for people, the name and the detail (the same
/// text as [`Reason::describe`]):
///
/// ```
/// use p2p_core::Reason;
///
/// let reason = Reason::Corrupt { offset: 1234, expected: 0x5a, found: 0x00 };
/// assert_eq!(
///     reason.to_string(),
///     "corrupt: first bad byte at offset 1234 (expected 0x5a, found 0x00)"
/// );
/// assert_eq!(reason.name(), "corrupt");
/// assert!(!reason.is_transient());
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Reason {
    /// A real copy delivered every byte.
    Verified,
    /// The driver does not claim peer access for this direction.
    NotClaimed,
    /// `cuCtxEnablePeerAccess` failed although the driver claims the pair
    /// (transient: cached with an expiry).
    EnableFailed {
        /// The driver's error, as its message.
        detail: String,
    },
    /// The copy finished but delivered wrong bytes.
    Corrupt {
        /// Offset of the first wrong byte (in the probe's pattern, or in
        /// the move that found the pair broken).
        offset: u64,
        /// The byte the pattern has there.
        expected: u8,
        /// The byte that arrived.
        found: u8,
    },
    /// The copy did not finish within the probe deadline (transient: cached
    /// with an expiry, as a busy or recovering GPU may answer later).
    Timeout {
        /// The deadline that passed, in milliseconds.
        after_ms: u64,
    },
    /// Thorough mode: correct, but slower than staging through pinned host memory.
    SlowerThanStaging {
        /// The measured direct peer bandwidth, in GB/s.
        ///
        /// Written as `measured_peer_gbps`: the verdict's own `peer_gbps`
        /// sits in the same JSON object (the reason is flattened into it),
        /// and a key written twice makes the whole file unreadable.
        #[serde(rename = "measured_peer_gbps")]
        peer_gbps: f64,
        /// The measured bandwidth of staging through pinned host memory, in GB/s.
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

    /// One line for people: the name and the detail (the same as `Display`).
    pub fn describe(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Reason {
    /// The name and the detail, for example `timeout: the copy did not
    /// finish within 2000 ms`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Verified => f.write_str("verified"),
            Reason::NotClaimed => f.write_str("not-claimed: the driver reports no peer access"),
            Reason::EnableFailed { detail } => write!(f, "enable-failed: {detail}"),
            Reason::Corrupt {
                offset,
                expected,
                found,
            } => write!(
                f,
                "corrupt: first bad byte at offset {offset} (expected {expected:#04x}, found {found:#04x})"
            ),
            Reason::Timeout { after_ms } => {
                write!(f, "timeout: the copy did not finish within {after_ms} ms")
            }
            Reason::SlowerThanStaging {
                peer_gbps,
                staged_gbps,
            } => write!(
                f,
                "slower-than-staging: peer {peer_gbps:.1} GB/s < staged {staged_gbps:.1} GB/s"
            ),
            Reason::DisabledByPolicy => f.write_str("disabled-by-policy"),
        }
    }
}

/// The overall state of a pair, as `p2p probe --json` prints it
/// (`Display` writes the same kebab-case word).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PairState {
    /// Direct peer copy was verified: moves may take it.
    Works,
    /// Not claimed, not enabled, wrong bytes, too slow or hung: moves take another route.
    Broken,
    /// Turned off by the operator (`P2P_DISABLE`, [`crate::Config::disabled`]).
    Disabled,
}

impl fmt::Display for PairState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PairState::Works => "works",
            PairState::Broken => "broken",
            PairState::Disabled => "disabled",
        })
    }
}

/// The verdict on the ordered pair `from -> to`: what the driver claimed and
/// what a real copy found.
///
/// Verdicts are directed: `0 -> 1` may work while `1 -> 0` does not. Get
/// them from a [`crate::PeerTable`] (probed once, cached) or, one-off, from
/// [`crate::probe_pair`]. `Display` writes one line such as
/// `cuda:2 -> cuda:3: corrupt: first bad byte at offset 0 (expected 0x.., found 0x00)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeerVerdict {
    /// The device the bytes come from (its ordinal).
    pub from: usize,
    /// The device the bytes go to (its ordinal).
    pub to: usize,
    /// What the driver claimed (`cuDeviceCanAccessPeer` and the access attribute).
    pub claimed: bool,
    /// Why peer copy may or may not be used; only [`Reason::Verified`] allows it.
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

impl fmt::Display for PeerVerdict {
    /// `cuda:FROM -> cuda:TO: REASON`, with the measured bandwidth when a
    /// thorough probe measured one.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cuda:{} -> cuda:{}: {}", self.from, self.to, self.reason)?;
        match (&self.reason, self.peer_gbps) {
            // The reason already carries the figure.
            (Reason::SlowerThanStaging { .. }, _) | (_, None) => Ok(()),
            (_, Some(gbps)) => write!(f, " ({gbps:.1} GB/s)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(reason: Reason, peer_gbps: Option<f64>) -> PeerVerdict {
        PeerVerdict {
            from: 2,
            to: 3,
            claimed: true,
            reason,
            peer_gbps,
            probe_micros: 0,
        }
    }

    #[test]
    fn verdicts_display_pair_reason_and_bandwidth() {
        assert_eq!(
            verdict(Reason::Verified, Some(48.25)).to_string(),
            "cuda:2 -> cuda:3: verified (48.2 GB/s)"
        );
        assert_eq!(
            verdict(Reason::Timeout { after_ms: 2000 }, None).to_string(),
            "cuda:2 -> cuda:3: timeout: the copy did not finish within 2000 ms"
        );
        // The slower-than-staging reason carries the figure already.
        let slow = Reason::SlowerThanStaging {
            peer_gbps: 3.0,
            staged_gbps: 20.0,
        };
        assert_eq!(
            verdict(slow, Some(3.0)).to_string(),
            "cuda:2 -> cuda:3: slower-than-staging: peer 3.0 GB/s < staged 20.0 GB/s"
        );
    }

    #[test]
    fn every_reason_displays_its_name_first() {
        let reasons = [
            Reason::Verified,
            Reason::NotClaimed,
            Reason::EnableFailed {
                detail: "CUDA_ERROR_TOO_MANY_PEERS".into(),
            },
            Reason::Corrupt {
                offset: 7,
                expected: 1,
                found: 0,
            },
            Reason::Timeout { after_ms: 5 },
            Reason::SlowerThanStaging {
                peer_gbps: 1.0,
                staged_gbps: 2.0,
            },
            Reason::DisabledByPolicy,
        ];
        for reason in reasons {
            let text = reason.to_string();
            assert!(text.starts_with(reason.name()), "{text}");
            assert_eq!(reason.describe(), text);
        }
        let states = [PairState::Works, PairState::Broken, PairState::Disabled];
        let words: Vec<String> = states.iter().map(PairState::to_string).collect();
        assert_eq!(words, ["works", "broken", "disabled"]);
        // The same words as the JSON the CLI prints.
        for (state, word) in states.iter().zip(&words) {
            assert_eq!(
                serde_json::to_string(state).ok(),
                Some(format!("\"{word}\""))
            );
        }
    }
}
