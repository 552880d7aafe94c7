//! Operator settings: which pairs are disabled, the cache, the probe deadline.
//!
//! Read from `P2P_*` environment variables by [`Config::from_env`]; tests and
//! programs build a [`Config`] directly instead.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use crate::probe::ProbeOptions;
use crate::{Error, Result};

/// `P2P_DISABLE`: `all`, or ordered pairs `0->1,2->3`, or `0<->1` for both ways.
pub const ENV_DISABLE: &str = "P2P_DISABLE";
/// `P2P_REPROBE=1`: ignore cached verdicts and probe again.
pub const ENV_REPROBE: &str = "P2P_REPROBE";
/// `P2P_CACHE_DIR`: where the verdict cache lives.
pub const ENV_CACHE_DIR: &str = "P2P_CACHE_DIR";
/// `P2P_NO_CACHE=1`: neither read nor write the cache.
pub const ENV_NO_CACHE: &str = "P2P_NO_CACHE";
/// `P2P_PROBE_TIMEOUT_MS`: how long a probe copy may take.
pub const ENV_PROBE_TIMEOUT_MS: &str = "P2P_PROBE_TIMEOUT_MS";

/// Pairs on which peer copy is turned off by the operator.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum DisabledPairs {
    /// Peer copy allowed wherever the probe verifies it.
    #[default]
    None,
    /// Peer copy off everywhere.
    All,
    /// Peer copy off for these ordered pairs.
    Pairs(BTreeSet<(usize, usize)>),
}

impl DisabledPairs {
    /// Whether `from -> to` is disabled.
    pub fn contains(&self, from: usize, to: usize) -> bool {
        match self {
            DisabledPairs::None => false,
            DisabledPairs::All => from != to,
            DisabledPairs::Pairs(set) => set.contains(&(from, to)),
        }
    }

    /// Parses `all`, `none`, or `0->1,2->3,1<->2` (also `1` for all and `0`
    /// or nothing for none). Every item must be a pair of two different
    /// ordinals; a list with no pair at all (`,,,`) is refused, not read as
    /// "none".
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        let text = text.trim();
        match text.to_ascii_lowercase().as_str() {
            "" | "none" | "0" => return Ok(DisabledPairs::None),
            "all" | "1" => return Ok(DisabledPairs::All),
            _ => {}
        }
        let mut set = BTreeSet::new();
        for item in text.split(',').map(str::trim) {
            if item.is_empty() {
                return Err(format!(
                    "`{text}` has an empty item; write pairs separated by commas, like `0->1,2<->3`"
                ));
            }
            let (both, parts) = if let Some((a, b)) = item.split_once("<->") {
                (true, (a, b))
            } else if let Some((a, b)) = item.split_once("->") {
                (false, (a, b))
            } else {
                return Err(format!("`{item}` is not a pair; write `0->1` or `0<->1`"));
            };
            let ordinal = |s: &str| {
                s.trim()
                    .parse::<usize>()
                    .map_err(|_| format!("`{}` in `{item}` is not a device ordinal", s.trim()))
            };
            let (from, to) = (ordinal(parts.0)?, ordinal(parts.1)?);
            if from == to {
                return Err(format!(
                    "`{item}` pairs cuda:{from} with itself; a device's copies within itself never use peer access"
                ));
            }
            set.insert((from, to));
            if both {
                set.insert((to, from));
            }
        }
        Ok(DisabledPairs::Pairs(set))
    }

    /// `Err` naming the first pair with an ordinal past `device_count` (a
    /// pair that cannot exist on this machine is a typo, not a no-op).
    pub fn check_devices(&self, device_count: usize) -> std::result::Result<(), String> {
        let DisabledPairs::Pairs(set) = self else {
            return Ok(());
        };
        match set
            .iter()
            .find(|(from, to)| (*from).max(*to) >= device_count)
        {
            Some(&(from, to)) => Err(format!(
                "the pair {from}->{to} names cuda:{}, but this machine has {device_count} GPU(s)",
                from.max(to)
            )),
            None => Ok(()),
        }
    }
}

/// Where cached verdicts are read from and written to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CacheSetting {
    /// No cache: every process probes afresh.
    Off,
    /// Cache files in this folder (one per machine fingerprint).
    Dir(PathBuf),
}

impl CacheSetting {
    /// The platform's cache folder + `p2p-move` (`~/.cache/p2p-move` on Linux).
    pub fn platform_default() -> CacheSetting {
        match dirs::cache_dir() {
            Some(dir) => CacheSetting::Dir(dir.join("p2p-move")),
            None => {
                tracing::warn!("no cache directory on this platform; verdicts will not be cached (set {ENV_CACHE_DIR})");
                CacheSetting::Off
            }
        }
    }
}

/// Everything a [`crate::PeerTable`] needs to know besides the driver.
///
/// Programs usually take the operator's settings with [`Config::from_env`];
/// tests and programs with settings of their own build one directly
/// ([`Config::default`] is "no pairs disabled, no cache"):
///
/// ```
/// use std::time::Duration;
/// use p2p_core::{CacheSetting, Config, DisabledPairs};
///
/// let config = Config {
///     disabled: DisabledPairs::parse("0<->1")?, // both directions of 0 and 1
///     cache: CacheSetting::Dir(std::env::temp_dir().join("p2p-move-example")),
///     ..Config::default()
/// };
/// assert!(config.disabled.contains(1, 0));
///
/// // The same from variables, as `Config::from_env` reads them.
/// let vars = |name: &str| match name {
///     "P2P_DISABLE" => Some("0<->1".to_string()),
///     "P2P_PROBE_TIMEOUT_MS" => Some("500".to_string()),
///     "P2P_NO_CACHE" => Some("1".to_string()),
///     _ => None,
/// };
/// let from_vars = Config::from_vars(vars)?;
/// assert_eq!(from_vars.disabled, config.disabled);
/// assert_eq!(from_vars.probe.deadline, Duration::from_millis(500));
/// assert_eq!(from_vars.cache, CacheSetting::Off);
///
/// // A value that cannot be used is an error naming the variable.
/// let err = Config::from_vars(|name| (name == "P2P_DISABLE").then(|| "0=>1".to_string()))
///     .unwrap_err();
/// println!("{err}"); // environment variable P2P_DISABLE="0=>1" is invalid: ...
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Pairs whose peer copy the operator turned off (`P2P_DISABLE`): their
    /// verdict is `disabled-by-policy`, without a probe, and their peer
    /// access is disabled.
    pub disabled: DisabledPairs,
    /// Ignore cached verdicts (new verdicts are still written).
    pub reprobe: bool,
    /// Where verdicts are cached across processes (`P2P_CACHE_DIR`,
    /// `P2P_NO_CACHE`).
    pub cache: CacheSetting,
    /// How probes run: deadline (`P2P_PROBE_TIMEOUT_MS`), sizes, thorough mode.
    pub probe: ProbeOptions,
}

impl Default for Config {
    /// No pairs disabled, no cache, default probe options: what tests want.
    fn default() -> Self {
        Config {
            disabled: DisabledPairs::None,
            reprobe: false,
            cache: CacheSetting::Off,
            probe: ProbeOptions::default(),
        }
    }
}

impl Config {
    /// Settings from the process environment (the `P2P_*` variables of this
    /// module's constants), on top of the platform's cache folder.
    ///
    /// # Errors
    /// [`Error::InvalidEnv`], naming the variable and its value, for a value
    /// that cannot be used (a malformed `P2P_DISABLE`, a flag that is not
    /// `1`/`0`, a timeout that is not a positive number of milliseconds).
    /// A disabled pair naming a GPU the machine lacks is not caught here
    /// (the machine is not known yet): see [`DisabledPairs::check_devices`].
    ///
    /// A variable of ours whose value is not UTF-8 text is an error naming
    /// it (read as unset, a `P2P_DISABLE` the operator set would silently
    /// turn nothing off), except `P2P_CACHE_DIR`, which is any path.
    pub fn from_env() -> Result<Config> {
        for name in [ENV_DISABLE, ENV_REPROBE, ENV_NO_CACHE, ENV_PROBE_TIMEOUT_MS] {
            if let Err(std::env::VarError::NotUnicode(raw)) = std::env::var(name) {
                return Err(Error::InvalidEnv {
                    name,
                    value: raw.to_string_lossy().into_owned(),
                    message: "not UTF-8 text".into(),
                });
            }
        }
        let mut config = Config::from_vars(|name| std::env::var(name).ok())?;
        let raw_dir = std::env::var_os(ENV_CACHE_DIR).filter(|dir| !dir.is_empty());
        if let (Some(dir), true) = (raw_dir, config.cache != CacheSetting::Off) {
            if dir.to_str().is_none() {
                config.cache = CacheSetting::Dir(PathBuf::from(dir));
            }
        }
        Ok(config)
    }

    /// Settings from any variable lookup (testable without touching the process environment).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Config> {
        let mut config = Config {
            cache: CacheSetting::platform_default(),
            ..Config::default()
        };
        if let Some(value) = var(ENV_DISABLE) {
            config.disabled =
                DisabledPairs::parse(&value).map_err(|message| Error::InvalidEnv {
                    name: ENV_DISABLE,
                    value: value.clone(),
                    message,
                })?;
        }
        config.reprobe = flag(&var, ENV_REPROBE)?;
        if let Some(dir) = var(ENV_CACHE_DIR).filter(|d| !d.trim().is_empty()) {
            config.cache = CacheSetting::Dir(PathBuf::from(dir));
        }
        if flag(&var, ENV_NO_CACHE)? {
            config.cache = CacheSetting::Off;
        }
        if let Some(value) = var(ENV_PROBE_TIMEOUT_MS) {
            let ms: u64 = value
                .trim()
                .parse()
                .ok()
                .filter(|&ms| ms > 0)
                .ok_or_else(|| Error::InvalidEnv {
                    name: ENV_PROBE_TIMEOUT_MS,
                    value: value.clone(),
                    message: "expected a whole number of milliseconds above 0".into(),
                })?;
            config.probe.deadline = Duration::from_millis(ms);
        }
        Ok(config)
    }
}

fn flag(var: &impl Fn(&str) -> Option<String>, name: &'static str) -> Result<bool> {
    match var(name).as_deref().map(str::trim) {
        None | Some("") | Some("0") | Some("false") | Some("no") => Ok(false),
        Some("1") | Some("true") | Some("yes") => Ok(true),
        Some(other) => Err(Error::InvalidEnv {
            name,
            value: other.to_string(),
            message: "expected 1 or 0".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_vars(|name| map.get(name).cloned())
    }

    #[test]
    fn parses_disabled_pairs() {
        assert_eq!(DisabledPairs::parse("all").unwrap(), DisabledPairs::All);
        let pairs = DisabledPairs::parse("0->1, 2<->3").unwrap();
        assert!(pairs.contains(0, 1));
        assert!(!pairs.contains(1, 0));
        assert!(pairs.contains(2, 3) && pairs.contains(3, 2));
        assert!(DisabledPairs::parse("0-1").is_err());
        assert!(DisabledPairs::parse("a->1").is_err());
        assert!(DisabledPairs::parse("0->1,").is_err());
        assert!(!DisabledPairs::All.contains(2, 2));
    }

    #[test]
    fn pairs_that_cannot_mean_anything_are_refused() {
        for bad in [",,,", "1->1", "2<->2", "0->1,,2->3"] {
            let err = DisabledPairs::parse(bad).unwrap_err();
            assert!(err.contains('`'), "{bad}: {err}");
        }
        let far = DisabledPairs::parse("0->99").unwrap();
        let err = far.check_devices(4).unwrap_err();
        assert!(err.contains("0->99") && err.contains("cuda:99"), "{err}");
        assert!(far.check_devices(100).is_ok());
        assert!(DisabledPairs::All.check_devices(0).is_ok());
        let err = config(&[(ENV_DISABLE, ",,,")]).unwrap_err().to_string();
        assert!(err.contains(ENV_DISABLE) && err.contains(",,,"), "{err}");
    }

    #[test]
    fn reads_every_variable() {
        let c = config(&[
            (ENV_DISABLE, "1->0"),
            (ENV_REPROBE, "1"),
            (ENV_CACHE_DIR, "/tmp/x"),
            (ENV_PROBE_TIMEOUT_MS, "250"),
        ])
        .unwrap();
        assert!(c.disabled.contains(1, 0));
        assert!(c.reprobe);
        assert_eq!(c.cache, CacheSetting::Dir("/tmp/x".into()));
        assert_eq!(c.probe.deadline, Duration::from_millis(250));
        assert_eq!(
            config(&[(ENV_NO_CACHE, "1")]).unwrap().cache,
            CacheSetting::Off
        );
    }

    #[test]
    fn bad_values_name_the_variable() {
        let err = config(&[(ENV_PROBE_TIMEOUT_MS, "soon")]).unwrap_err();
        assert!(err.to_string().contains(ENV_PROBE_TIMEOUT_MS), "{err}");
        assert!(config(&[(ENV_DISABLE, "0=>1")]).is_err());
        assert!(config(&[(ENV_REPROBE, "maybe")]).is_err());
    }
}
