//! The on-disk verdict cache, keyed by a fingerprint of the machine.
//!
//! One JSON file per fingerprint (`verdicts-<hash>.json`), so that a simulated
//! machine, a VM and the host never read each other's verdicts. The file also
//! stores the fingerprint itself: a file whose fingerprint or format differs,
//! or that cannot be read or parsed, is ignored with a warning and replaced on
//! the next write. Writes go to a temporary file that is then renamed over the
//! old one, so a reader never sees half a file.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Driver, Error, PeerVerdict, Result};

/// Bumped whenever the file layout or the meaning of a verdict changes.
pub const CACHE_FORMAT: u32 = 1;

/// What identifies a machine for the cache: driver version, then each GPU's
/// UUID and PCI address in visible order (so a changed `CUDA_VISIBLE_DEVICES`
/// is a different machine).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Fingerprint {
    pub driver_version: i32,
    pub devices: Vec<(String, String)>,
}

impl Fingerprint {
    pub fn of(driver: &dyn Driver) -> Fingerprint {
        Fingerprint {
            driver_version: driver.driver_version(),
            devices: driver
                .devices()
                .iter()
                .map(|d| (d.uuid.clone(), d.pci_bus_id.clone()))
                .collect(),
        }
    }

    /// A short stable hash for the file name. `DefaultHasher::new()` uses
    /// fixed keys, and the fingerprint inside the file guards against collisions.
    fn short_hash(&self) -> String {
        let mut hasher = DefaultHasher::new();
        self.hash(&mut hasher);
        format!("{:016x}", hasher.finish())
    }
}

/// One cached verdict, with the mode that produced it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CachedVerdict {
    /// Produced by a thorough probe (a quick one does not answer a thorough question).
    pub thorough: bool,
    pub verdict: PeerVerdict,
}

#[derive(Debug, Serialize, Deserialize)]
struct CacheFile {
    format: u32,
    fingerprint: Fingerprint,
    verdicts: Vec<CachedVerdict>,
}

/// The cache file of one machine.
#[derive(Debug, Clone)]
pub struct VerdictCache {
    path: PathBuf,
    fingerprint: Fingerprint,
}

impl VerdictCache {
    /// The cache for `fingerprint` inside `dir` (nothing is read or created yet).
    pub fn new(dir: &Path, fingerprint: Fingerprint) -> VerdictCache {
        let path = dir.join(format!("verdicts-{}.json", fingerprint.short_hash()));
        VerdictCache { path, fingerprint }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The cached verdicts; empty when there is no usable file (with a warning
    /// saying why, unless the file simply does not exist yet).
    pub fn load(&self) -> Vec<CachedVerdict> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
            Err(err) => {
                tracing::warn!(
                    "verdict cache {} unreadable ({err}); probing again",
                    self.path.display()
                );
                return Vec::new();
            }
        };
        match serde_json::from_str::<CacheFile>(&text) {
            Ok(file) if file.format != CACHE_FORMAT => {
                tracing::warn!(
                    "verdict cache {} has format {} (expected {CACHE_FORMAT}); probing again",
                    self.path.display(),
                    file.format
                );
                Vec::new()
            }
            Ok(file) if file.fingerprint != self.fingerprint => {
                tracing::warn!(
                    "verdict cache {} belongs to another machine; probing again",
                    self.path.display()
                );
                Vec::new()
            }
            Ok(file) => file.verdicts,
            Err(err) => {
                tracing::warn!(
                    "verdict cache {} is corrupt ({err}); probing again",
                    self.path.display()
                );
                Vec::new()
            }
        }
    }

    /// Replaces the file with `verdicts`, atomically.
    pub fn store(&self, verdicts: &[CachedVerdict]) -> Result<()> {
        let io = |action: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::Io {
                action,
                path,
                source,
            }
        };
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(io("creating cache folder", dir))?;
        let file = CacheFile {
            format: CACHE_FORMAT,
            fingerprint: self.fingerprint.clone(),
            verdicts: verdicts.to_vec(),
        };
        let json = serde_json::to_vec_pretty(&file).map_err(|err| Error::Io {
            action: "encoding",
            path: self.path.clone(),
            source: std::io::Error::other(err),
        })?;
        // Unique per process and thread, so concurrent writers never share a temp file.
        let temp = dir.join(format!(
            ".verdicts-{}-{:?}.tmp",
            std::process::id(),
            std::thread::current().id()
        ));
        let written = std::fs::File::create(&temp)
            .map_err(io("creating", &temp))
            .and_then(|mut out| {
                out.write_all(&json).map_err(io("writing", &temp))?;
                out.sync_all().map_err(io("flushing", &temp))
            });
        if let Err(err) = written {
            let _ = std::fs::remove_file(&temp);
            return Err(err);
        }
        std::fs::rename(&temp, &self.path).map_err(|source| {
            let _ = std::fs::remove_file(&temp);
            Error::Io {
                action: "replacing",
                path: self.path.clone(),
                source,
            }
        })
    }
}
