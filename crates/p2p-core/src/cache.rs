//! The on-disk verdict cache, keyed by a fingerprint of the machine.
//!
//! One JSON file per fingerprint (`verdicts-<hash>.json`), so that a simulated
//! machine, a VM and the host never read each other's verdicts. The file also
//! stores the fingerprint itself: a file whose fingerprint or format differs,
//! or that cannot be read or parsed, is ignored with a warning and replaced on
//! the next write; an entry that cannot be parsed is skipped alone.
//!
//! Several processes may share a folder. A writer takes an exclusive lock on
//! `verdicts-<hash>.lock`, reads the file again, merges per pair (the newer
//! entry wins, so a stale `verified` never overwrites a newer verdict),
//! writes a temporary file and renames it over the old one (a reader never
//! sees half a file, and readers need no lock). Temporary files of writers
//! that were killed are removed under the same lock. Transient verdicts
//! (a timeout, an enable failure) carry an expiry and are dropped after it.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::files::read_regular_file;
use crate::{Driver, Error, PeerVerdict, Reason, Result};

/// Bumped whenever the file layout or the meaning of a verdict changes.
/// 2: per-entry times and expiries, the machine state in the fingerprint,
/// `slower-than-staging` no longer writes `peer_gbps` twice.
pub const CACHE_FORMAT: u32 = 2;

/// Files larger than this are refused unread (10^6 pairs fit in about 250 MB).
pub const MAX_CACHE_FILE_BYTES: u64 = 512 << 20;

/// How long a transient verdict (timeout, enable failure) stays in the file.
pub const TRANSIENT_TTL: Duration = Duration::from_secs(3600);

/// How long a writer waits for another process's lock before giving up on
/// this write (a lock holder only reads and writes one file).
const LOCK_PATIENCE: Duration = Duration::from_secs(10);

/// How far ahead of this process's clock an entry's time may be (another
/// process's clock read a moment later) before the entry counts as forged.
const FUTURE_TOLERANCE: Duration = Duration::from_secs(60);

/// Temporary files of other fingerprints older than this are a killed
/// writer's (their writers hold a different lock, so only age tells).
const FOREIGN_TEMP_AGE: Duration = Duration::from_secs(3600);

/// What identifies a machine for the cache: driver version, each GPU's UUID
/// and PCI address in visible order (so a changed `CUDA_VISIBLE_DEVICES` is a
/// different machine), and the machine state the driver reports beyond its
/// devices ([`Driver::machine_state`]: on Linux the boot id and the IOMMU
/// state; on the simulator the topology).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Fingerprint {
    /// As CUDA encodes it (`12080` = 12.8).
    pub driver_version: i32,
    /// `(uuid, pci_bus_id)` per device, in ordinal order.
    pub devices: Vec<(String, String)>,
    /// `(name, value)` pairs of [`Driver::machine_state`].
    pub machine_state: Vec<(String, String)>,
}

impl Fingerprint {
    /// The fingerprint of `driver`'s machine as it is now.
    pub fn of(driver: &dyn Driver) -> Fingerprint {
        Fingerprint {
            driver_version: driver.driver_version(),
            devices: driver
                .devices()
                .iter()
                .map(|d| (d.uuid.clone(), d.pci_bus_id.clone()))
                .collect(),
            machine_state: driver.machine_state(),
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

/// What of a Linux host decides whether peer copy works and is cheap to read:
/// the boot id (a reboot or a changed kernel command line), and the IOMMU
/// state (the IOMMU units present and how many isolation groups there are:
/// ACS and IOMMU settings are what break peer copy on many hosts). Empty on
/// other systems and where the files are missing.
pub fn host_state() -> Vec<(String, String)> {
    let mut state = Vec::new();
    if !cfg!(target_os = "linux") {
        return state;
    }
    if let Ok(id) = read_regular_file(
        Path::new("/proc/sys/kernel/random/boot_id"),
        4096,
        "reading the boot id",
    ) {
        state.push(("boot_id".to_string(), id.trim().to_string()));
    }
    let names = |dir: &str| -> Option<Vec<String>> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .ok()?
            .filter_map(|entry| entry.ok())
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        Some(names)
    };
    let units = names("/sys/class/iommu").unwrap_or_default();
    state.push(("iommu_units".to_string(), units.join(",")));
    let groups = names("/sys/kernel/iommu_groups").map_or(0, |g| g.len());
    state.push(("iommu_groups".to_string(), groups.to_string()));
    state
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// One cached verdict, with the mode that produced it and when.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CachedVerdict {
    /// Produced by a thorough probe (a quick one does not answer a thorough question).
    pub thorough: bool,
    /// The verdict itself.
    pub verdict: PeerVerdict,
    /// When it was found, in ms since the Unix epoch: of two entries for a
    /// pair, the newer wins.
    pub at_ms: u64,
    /// When it stops counting (ms since the Unix epoch), for transient verdicts.
    pub expires_ms: Option<u64>,
}

impl CachedVerdict {
    /// An entry found at `at_ms`; transient reasons get an expiry of [`TRANSIENT_TTL`].
    pub fn new(thorough: bool, verdict: PeerVerdict, at_ms: u64) -> CachedVerdict {
        let expires_ms = verdict
            .reason
            .is_transient()
            .then(|| at_ms.saturating_add(TRANSIENT_TTL.as_millis() as u64));
        CachedVerdict {
            thorough,
            verdict,
            at_ms,
            expires_ms,
        }
    }

    /// An entry that expires after [`TRANSIENT_TTL`] whatever its reason (a
    /// pair downgraded by a failed move: it may recover).
    pub fn transient(thorough: bool, verdict: PeerVerdict, at_ms: u64) -> CachedVerdict {
        CachedVerdict {
            expires_ms: Some(at_ms.saturating_add(TRANSIENT_TTL.as_millis() as u64)),
            ..CachedVerdict::new(thorough, verdict, at_ms)
        }
    }

    /// Whether the entry no longer counts at `now_ms`.
    pub fn expired(&self, now_ms: u64) -> bool {
        self.expires_ms.is_some_and(|at| at <= now_ms)
    }

    fn pair(&self) -> (usize, usize) {
        (self.verdict.from, self.verdict.to)
    }
}

/// The file as written.
#[derive(Debug, Serialize)]
struct CacheFile<'a> {
    format: u32,
    fingerprint: &'a Fingerprint,
    verdicts: &'a [CachedVerdict],
}

/// The file as read: entries are parsed one by one, so one bad entry costs
/// only its own pair.
#[derive(Debug, Deserialize)]
struct CacheFileRead {
    format: u32,
    fingerprint: Fingerprint,
    verdicts: Vec<serde_json::Value>,
}

/// The cache file of one machine.
#[derive(Debug, Clone)]
pub struct VerdictCache {
    path: PathBuf,
    lock_path: PathBuf,
    temp_prefix: String,
    fingerprint: Fingerprint,
}

impl VerdictCache {
    /// The cache for `fingerprint` inside `dir` (nothing is read or created yet).
    pub fn new(dir: &Path, fingerprint: Fingerprint) -> VerdictCache {
        let hash = fingerprint.short_hash();
        VerdictCache {
            path: dir.join(format!("verdicts-{hash}.json")),
            lock_path: dir.join(format!("verdicts-{hash}.lock")),
            temp_prefix: format!(".verdicts-{hash}-"),
            fingerprint,
        }
    }

    /// The cache file (it may not exist yet).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The cached verdicts that have not expired, one per pair; empty when
    /// there is no usable file (with a warning saying why, unless the file
    /// simply does not exist yet).
    pub fn load(&self) -> Vec<CachedVerdict> {
        let text =
            match read_regular_file(&self.path, MAX_CACHE_FILE_BYTES, "reading verdict cache") {
                Ok(text) => text,
                Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                    return Vec::new()
                }
                Err(err) => {
                    tracing::warn!("{err}; probing again");
                    return Vec::new();
                }
            };
        let file = match serde_json::from_str::<CacheFileRead>(&text) {
            Ok(file) => file,
            Err(err) => {
                tracing::warn!(
                    "verdict cache {} is corrupt ({err}); probing again",
                    self.path.display()
                );
                return Vec::new();
            }
        };
        if file.format != CACHE_FORMAT {
            tracing::warn!(
                "verdict cache {} has format {} (expected {CACHE_FORMAT}); probing again",
                self.path.display(),
                file.format
            );
            return Vec::new();
        }
        if file.fingerprint != self.fingerprint {
            tracing::warn!(
                "verdict cache {} belongs to another machine; probing again",
                self.path.display()
            );
            return Vec::new();
        }
        let total = file.verdicts.len();
        let now = now_ms();
        let devices = self.fingerprint.devices.len();
        let entries: Vec<CachedVerdict> = file
            .verdicts
            .into_iter()
            .filter_map(|value| serde_json::from_value(value).ok())
            .filter_map(|entry| usable(entry, devices, now))
            .collect();
        if entries.len() < total {
            tracing::warn!(
                "verdict cache {}: {} of {total} entries unreadable or impossible; probing those pairs again",
                self.path.display(),
                total - entries.len()
            );
        }
        newest_per_pair(entries, Vec::new(), now)
    }

    /// Merges `ours` into the file under the lock: per pair the newer entry
    /// wins (ours on a tie), expired entries are dropped, and entries of
    /// pairs we know nothing about are kept.
    pub fn merge(&self, ours: &[CachedVerdict]) -> Result<()> {
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
        let lock_file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&self.lock_path)
            .map_err(io("opening the lock file", &self.lock_path))?;
        with_write_lock(lock_file, LOCK_PATIENCE, || self.merge_locked(dir, ours))
            .map_err(io("locking the verdict cache", &self.lock_path))?
    }

    /// [`VerdictCache::merge`] once the lock is held.
    fn merge_locked(&self, dir: &Path, ours: &[CachedVerdict]) -> Result<()> {
        let io = |action: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::Io {
                action,
                path,
                source,
            }
        };
        self.remove_dead_temp_files(dir);
        let merged = newest_per_pair(self.load(), ours.to_vec(), now_ms());
        let json = self.encode(&merged).map_err(|err| Error::Io {
            action: "encoding",
            path: self.path.clone(),
            source: std::io::Error::other(err),
        })?;
        static WRITES: AtomicU64 = AtomicU64::new(0);
        let temp = dir.join(format!(
            "{}{}-{}.tmp",
            self.temp_prefix,
            std::process::id(),
            WRITES.fetch_add(1, Ordering::Relaxed)
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

    /// The file's text: compact, one entry per line (a machine of 1000 GPUs
    /// has a million entries; indentation would double the file).
    fn encode(&self, verdicts: &[CachedVerdict]) -> serde_json::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(200 * verdicts.len() + 1024);
        let head = CacheFile {
            format: CACHE_FORMAT,
            fingerprint: &self.fingerprint,
            verdicts: &[],
        };
        let head = serde_json::to_string(&head)?;
        // `{"format":..,"fingerprint":..,"verdicts":[]}`: open the list again.
        let head = head.strip_suffix("]}").unwrap_or(&head);
        out.extend_from_slice(head.as_bytes());
        for (i, entry) in verdicts.iter().enumerate() {
            out.extend_from_slice(if i == 0 { b"\n" } else { b",\n" });
            serde_json::to_writer(&mut out, entry)?;
        }
        out.extend_from_slice(b"\n]}\n");
        Ok(out)
    }

    /// Removes temporary files that no live writer owns. Called with the lock
    /// held: every writer of this fingerprint holds it while its temporary
    /// file exists, so any such file found now belongs to a killed writer.
    /// Other fingerprints' (and the previous format's) temporary files are
    /// removed once they are old.
    fn remove_dead_temp_files(&self, dir: &Path) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.filter_map(|e| e.ok()) {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if !(name.starts_with(".verdicts-") && name.ends_with(".tmp")) {
                continue;
            }
            let dead = name.starts_with(&self.temp_prefix)
                || entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|modified| modified.elapsed().ok())
                    .is_some_and(|age| age > FOREIGN_TEMP_AGE);
            if dead {
                match std::fs::remove_file(entry.path()) {
                    Ok(()) => tracing::debug!("removed a dead writer's {}", entry.path().display()),
                    Err(err) => {
                        tracing::debug!("could not remove {}: {err}", entry.path().display())
                    }
                }
            }
        }
    }
}

/// `entry` if this process could have written it for a machine of
/// `devices` GPUs by `now_ms`, with a transient verdict's expiry no later
/// than [`TRANSIENT_TTL`] after it was found; `None` for what no writer of
/// ours produces (a hand-edited or damaged file): a pair outside the
/// machine or of a device with itself, a policy verdict (policy comes from
/// the operator's settings only), or an entry from the future (a clock set
/// back, or a forgery: as the newest entry it would win every merge).
fn usable(mut entry: CachedVerdict, devices: usize, now_ms: u64) -> Option<CachedVerdict> {
    let (from, to) = entry.pair();
    if from >= devices || to >= devices || from == to {
        return None;
    }
    if matches!(entry.verdict.reason, Reason::DisabledByPolicy) {
        return None;
    }
    if entry.at_ms > now_ms.saturating_add(FUTURE_TOLERANCE.as_millis() as u64) {
        return None;
    }
    if entry.verdict.reason.is_transient() {
        let latest = entry.at_ms.saturating_add(TRANSIENT_TTL.as_millis() as u64);
        entry.expires_ms = Some(entry.expires_ms.map_or(latest, |at| at.min(latest)));
    }
    (!entry.expired(now_ms)).then_some(entry)
}

/// Runs `work` holding the write lock on `file`, trying for the lock until
/// `patience` has passed (a stopped process holding it must not hang us).
fn with_write_lock<R>(
    file: std::fs::File,
    patience: Duration,
    work: impl FnOnce() -> Result<R>,
) -> std::result::Result<Result<R>, std::io::Error> {
    let mut lock = fd_lock::RwLock::new(file);
    let started = Instant::now();
    loop {
        match lock.try_write() {
            Ok(_held) => return Ok(work()),
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {
                if started.elapsed() >= patience {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("another process held it for {patience:?}"),
                    ));
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(err) => return Err(err),
        }
    }
}

/// One entry per pair from `theirs` and `ours`, the newer winning (ours on a
/// tie), expired entries dropped, in pair order.
fn newest_per_pair(
    theirs: Vec<CachedVerdict>,
    ours: Vec<CachedVerdict>,
    now_ms: u64,
) -> Vec<CachedVerdict> {
    let mut by_pair: HashMap<(usize, usize), CachedVerdict> = HashMap::new();
    let mut offer = |entry: CachedVerdict, wins_tie: bool| {
        if entry.expired(now_ms) {
            return;
        }
        match by_pair.get(&entry.pair()) {
            Some(held) if held.at_ms > entry.at_ms || (held.at_ms == entry.at_ms && !wins_tie) => {}
            _ => {
                by_pair.insert(entry.pair(), entry);
            }
        }
    };
    for entry in theirs {
        offer(entry, false);
    }
    for entry in ours {
        offer(entry, true);
    }
    let mut merged: Vec<CachedVerdict> = by_pair.into_values().collect();
    merged.sort_by_key(CachedVerdict::pair);
    merged
}
