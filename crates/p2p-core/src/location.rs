//! Where bytes live: host memory or one CUDA device.

use std::fmt;
use std::str::FromStr;

/// A place that holds bytes.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum Location {
    /// Host (CPU) memory, pinned or pageable.
    Host,
    /// Memory of the CUDA device with this ordinal (in visible order).
    Cuda(usize),
}

impl Location {
    /// The device ordinal, if this is a device.
    pub fn device(self) -> Option<usize> {
        match self {
            Location::Host => None,
            Location::Cuda(ordinal) => Some(ordinal),
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Host => f.write_str("cpu"),
            Location::Cuda(ordinal) => write!(f, "cuda:{ordinal}"),
        }
    }
}

/// A location string that is neither `cpu` nor `cuda:N`.
#[derive(Debug, thiserror::Error)]
#[error("invalid location {0:?}: expected `cpu` or `cuda:N`")]
pub struct ParseLocationError(String);

impl FromStr for Location {
    type Err = ParseLocationError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let lower = text.trim().to_ascii_lowercase();
        if lower == "cpu" || lower == "host" {
            return Ok(Location::Host);
        }
        lower
            .strip_prefix("cuda:")
            .and_then(|n| n.parse().ok())
            .map(Location::Cuda)
            .ok_or_else(|| ParseLocationError(text.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        assert_eq!("cpu".parse::<Location>().unwrap(), Location::Host);
        assert_eq!("cuda:3".parse::<Location>().unwrap(), Location::Cuda(3));
        assert_eq!(Location::Cuda(1).to_string(), "cuda:1");
        assert!("gpu1".parse::<Location>().is_err());
        assert!("cuda:".parse::<Location>().is_err());
    }
}
