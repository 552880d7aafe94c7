//! Hostile cache files: truncated, huge, binary, absurd values in valid
//! JSON, another format or machine, entries from the future, special files
//! and folders. Each costs at most a probe, never a panic, a hang, or a
//! verdict the machine does not earn; and the next write leaves a good file.

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use p2p_core::cache::{now_ms, CachedVerdict, Fingerprint, VerdictCache, CACHE_FORMAT};
use p2p_core::sim::{Fault, Topology};
use p2p_core::{Config, PeerTable, PeerVerdict, Reason, SimDriver};
use serde_json::{json, Value};
use support::{tiny_config, within_20s};

/// 0 <-> 1 healthy, 1 -> 2 delivers zeros, 2 -> 1 and the pairs with 0 and
/// 2 not claimed.
fn topology() -> Topology {
    Topology::with_gpus(3)
        .named("hostile cache")
        .with_pair(0, 1)
        .with_fault(1, 2, Fault::Zeros)
}

/// What a clean probe of each ordered pair finds.
fn expected(from: usize, to: usize) -> &'static str {
    match (from, to) {
        (0, 1) | (1, 0) => "verified",
        (1, 2) => "corrupt",
        _ => "not-claimed",
    }
}

fn machine() -> Arc<SimDriver> {
    Arc::new(SimDriver::new(topology()))
}

fn config(dir: &Path) -> Config {
    tiny_config(Some(dir))
}

fn cache_of(dir: &Path) -> VerdictCache {
    VerdictCache::new(dir, Fingerprint::of(machine().as_ref()))
}

fn cache_path(dir: &Path) -> PathBuf {
    cache_of(dir).path().to_path_buf()
}

/// A table on a fresh machine over `dir`: every pair's verdict as a clean
/// probe finds it, and the simulator clean. Returns the verdicts.
fn every_verdict_is_earned(dir: &Path) -> Vec<PeerVerdict> {
    let dir = dir.to_path_buf();
    within_20s(move || {
        let sim = machine();
        let table = PeerTable::new(sim.clone(), config(&dir));
        let verdicts = table.probe_all().expect("probing works whatever the file");
        for v in &verdicts {
            assert_eq!(v.reason.name(), expected(v.from, v.to), "{v:?}");
        }
        for d in 0..3 {
            assert!(
                table.verdict(d, d).unwrap().is_verified(),
                "cuda:{d} itself"
            );
        }
        drop(table);
        if let Err(problems) = sim.check_clean() {
            panic!("{problems}");
        }
        verdicts
    })
}

/// The file a clean run writes, as text.
fn good_file(dir: &Path) -> String {
    every_verdict_is_earned(dir);
    std::fs::read_to_string(cache_path(dir)).unwrap()
}

/// The cache holds one earned entry per pair again.
fn file_is_good_again(dir: &Path) {
    let entries = cache_of(dir).load();
    assert_eq!(entries.len(), 6, "{entries:?}");
    for e in entries {
        assert_eq!(
            e.verdict.reason.name(),
            expected(e.verdict.from, e.verdict.to)
        );
    }
}

#[test]
fn truncations_of_a_good_file_load_only_good_entries() {
    let dir = tempfile::tempdir().unwrap();
    let text = good_file(dir.path());
    let path = cache_path(dir.path());
    let cache = cache_of(dir.path());
    let good = cache.load();
    // Every fifth cut, and every cut of the last line (cheap enough for CI).
    let cuts = (0..text.len())
        .step_by(5)
        .chain(text.len().saturating_sub(200)..text.len());
    for len in cuts {
        std::fs::write(&path, &text.as_bytes()[..len]).unwrap();
        for entry in cache.load() {
            assert!(good.contains(&entry), "cut at {len}: {entry:?}");
        }
    }
    std::fs::write(&path, &text.as_bytes()[..text.len() / 2]).unwrap();
    every_verdict_is_earned(dir.path());
    file_is_good_again(dir.path());
}

#[test]
fn huge_binary_and_nested_files_are_refused_and_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let path = cache_path(dir.path());
    let mut garbage = Vec::with_capacity(64 << 10);
    let mut state = 0x1234_5678_9abc_def1u64;
    while garbage.len() < 64 << 10 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        garbage.extend_from_slice(&state.to_le_bytes());
    }
    let nested = "[".repeat(200_000);
    let contents: [(&str, Vec<u8>); 5] = [
        ("binary", garbage),
        ("nested", nested.into_bytes()),
        ("null", b"null".to_vec()),
        (
            "wrong shape",
            br#"{"format":2,"fingerprint":1,"verdicts":{}}"#.to_vec(),
        ),
        ("a NUL", b"{\0}".to_vec()),
    ];
    for (what, bytes) in contents {
        std::fs::write(&path, bytes).unwrap();
        assert!(cache_of(dir.path()).load().is_empty(), "{what}");
        every_verdict_is_earned(dir.path());
        file_is_good_again(dir.path());
    }
    // Larger than any cache: refused unread (the file is sparse, so cheap).
    let huge = std::fs::File::create(&path).unwrap();
    huge.set_len(p2p_core::cache::MAX_CACHE_FILE_BYTES + 1)
        .unwrap();
    drop(huge);
    let loaded = within_20s({
        let dir = dir.path().to_path_buf();
        move || cache_of(&dir).load().len()
    });
    assert_eq!(loaded, 0);
    every_verdict_is_earned(dir.path());
    file_is_good_again(dir.path());
    assert!(std::fs::metadata(&path).unwrap().len() < 1 << 20);
}

/// A file of this machine's fingerprint holding `entries` as given.
fn forged(dir: &Path, format: u32, entries: Vec<Value>) {
    let fingerprint = serde_json::to_value(Fingerprint::of(machine().as_ref())).unwrap();
    let doc = json!({ "format": format, "fingerprint": fingerprint, "verdicts": entries });
    std::fs::write(cache_path(dir), serde_json::to_vec(&doc).unwrap()).unwrap();
}

/// An entry for `from -> to` with `reason`, found `at_ms`, as JSON to tamper with.
fn entry(from: usize, to: usize, reason: Reason, at_ms: u64) -> Value {
    let verdict = PeerVerdict {
        from,
        to,
        claimed: true,
        reason,
        peer_gbps: None,
        probe_micros: 5,
    };
    serde_json::to_value(CachedVerdict::new(false, verdict, at_ms)).unwrap()
}

#[test]
fn absurd_values_in_valid_json_cost_at_most_a_probe() {
    let now = now_ms();
    let dir = tempfile::tempdir().unwrap();
    let mut out_of_range = entry(0, 1, Reason::Verified, now);
    out_of_range["verdict"]["from"] = json!(7);
    let mut max_ordinal = entry(0, 1, Reason::Verified, now);
    max_ordinal["verdict"]["to"] = json!(u64::MAX);
    let mut negative = entry(1, 0, Reason::Verified, now);
    negative["verdict"]["from"] = json!(-1);
    let mut fractional = entry(1, 0, Reason::Verified, now);
    fractional["verdict"]["to"] = json!(0.5);
    let mut huge_gbps = entry(0, 1, Reason::Verified, now);
    huge_gbps["verdict"]["peer_gbps"] = json!(1e308);
    let mut negative_time = entry(1, 0, Reason::Verified, now);
    negative_time["at_ms"] = json!(-5);
    let mut unknown_reason = entry(1, 0, Reason::Verified, now);
    unknown_reason["verdict"]["reason"] = json!("works-great");
    let entries = vec![
        out_of_range,
        max_ordinal,
        negative,
        fractional,
        huge_gbps,
        negative_time,
        unknown_reason,
        // The zeros pair forged as verified, twice, and a self pair as broken.
        entry(1, 2, Reason::Verified, now),
        entry(1, 2, Reason::Verified, now),
        entry(0, 0, Reason::Timeout { after_ms: 1 }, now),
        // A pair the driver does not claim, as verified.
        entry(2, 1, Reason::Verified, now),
        json!("not an entry"),
        json!(null),
    ];
    forged(dir.path(), CACHE_FORMAT, entries);
    every_verdict_is_earned(dir.path());
    file_is_good_again(dir.path());

    // Numbers JSON cannot hold make the whole file unreadable: probe again.
    let text = std::fs::read_to_string(cache_path(dir.path())).unwrap();
    let spoiled = text.replacen("\"probe_micros\":", "\"probe_micros\":1e999,\"x\":", 1);
    std::fs::write(cache_path(dir.path()), spoiled).unwrap();
    assert!(cache_of(dir.path()).load().is_empty());
    every_verdict_is_earned(dir.path());
}

#[test]
fn another_format_or_machine_is_ignored_and_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let now = now_ms();
    forged(
        dir.path(),
        CACHE_FORMAT + 1,
        vec![entry(1, 2, Reason::Verified, now)],
    );
    assert!(cache_of(dir.path()).load().is_empty());
    every_verdict_is_earned(dir.path());
    file_is_good_again(dir.path());

    // Another machine's fingerprint under this machine's file name.
    let other = SimDriver::new(topology().named("other"));
    let doc = json!({
        "format": CACHE_FORMAT,
        "fingerprint": serde_json::to_value(Fingerprint::of(&other)).unwrap(),
        "verdicts": [entry(1, 2, Reason::Verified, now)],
    });
    std::fs::write(cache_path(dir.path()), doc.to_string()).unwrap();
    assert!(cache_of(dir.path()).load().is_empty());
    every_verdict_is_earned(dir.path());
    file_is_good_again(dir.path());
}

#[test]
fn an_entry_from_the_future_does_not_outlive_what_is_found() {
    let dir = tempfile::tempdir().unwrap();
    // A clock that ran ahead (or a forged file) wrote a `verified` for the
    // broken pair, stamped far in the future.
    forged(
        dir.path(),
        CACHE_FORMAT,
        vec![entry(1, 2, Reason::Verified, u64::MAX)],
    );
    every_verdict_is_earned(dir.path());
    let held = cache_of(dir.path())
        .load()
        .into_iter()
        .find(|e| (e.verdict.from, e.verdict.to) == (1, 2))
        .map(|e| e.verdict.reason.name());
    assert_eq!(held, Some("corrupt"), "the probe's finding must replace it");
}

#[test]
fn a_transient_verdict_cannot_be_made_permanent() {
    let dir = tempfile::tempdir().unwrap();
    let old = now_ms().saturating_sub(2 * p2p_core::cache::TRANSIENT_TTL.as_millis() as u64);
    // Timeouts found long ago, one without an expiry and one that claims to
    // last for ever: both are past their time, and the pairs are probed again.
    let mut no_expiry = entry(0, 1, Reason::Timeout { after_ms: 9 }, old);
    no_expiry["expires_ms"] = Value::Null;
    let mut forever = entry(1, 0, Reason::Timeout { after_ms: 9 }, old);
    forever["expires_ms"] = json!(u64::MAX);
    forged(dir.path(), CACHE_FORMAT, vec![no_expiry, forever]);
    assert!(cache_of(dir.path()).load().is_empty());
    every_verdict_is_earned(dir.path());
    file_is_good_again(dir.path());
}

#[test]
fn a_policy_verdict_in_the_file_is_not_policy() {
    let dir = tempfile::tempdir().unwrap();
    // Policy verdicts are never written; one in the file was put there by
    // hand, and the operator's P2P_DISABLE (unset here) is the only policy.
    forged(
        dir.path(),
        CACHE_FORMAT,
        vec![entry(0, 1, Reason::DisabledByPolicy, now_ms())],
    );
    every_verdict_is_earned(dir.path());
    file_is_good_again(dir.path());
}

#[cfg(unix)]
#[test]
fn special_files_and_folders_in_the_cache_place() {
    use std::os::unix::fs::PermissionsExt;

    // /dev/zero behind a symbolic link: refused, and replaced (the link, not /dev/zero).
    let dir = tempfile::tempdir().unwrap();
    let path = cache_path(dir.path());
    std::os::unix::fs::symlink("/dev/zero", &path).unwrap();
    every_verdict_is_earned(dir.path());
    assert!(std::fs::symlink_metadata(&path).unwrap().is_file());
    file_is_good_again(dir.path());

    // A FIFO: never opened for reading (that would block for ever).
    let dir = tempfile::tempdir().unwrap();
    let path = cache_path(dir.path());
    assert!(std::process::Command::new("mkfifo")
        .arg(&path)
        .status()
        .unwrap()
        .success());
    every_verdict_is_earned(dir.path());
    file_is_good_again(dir.path());

    // A folder where the file goes: cannot be replaced; verdicts still work,
    // and no temporary file is left behind.
    let dir = tempfile::tempdir().unwrap();
    let path = cache_path(dir.path());
    std::fs::create_dir(&path).unwrap();
    std::fs::write(path.join("keep"), b"x").unwrap();
    every_verdict_is_earned(dir.path());
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.ends_with(".tmp")), "{names:?}");

    // A file nobody may read (root still may: then it is simply read).
    let dir = tempfile::tempdir().unwrap();
    good_file(dir.path());
    let path = cache_path(dir.path());
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o000)).unwrap();
    every_verdict_is_earned(dir.path());
    file_is_good_again(dir.path());

    // The cache folder is a file; and the lock file is a folder.
    let dir = tempfile::tempdir().unwrap();
    let not_a_folder = dir.path().join("cache");
    std::fs::write(&not_a_folder, b"I am a file").unwrap();
    every_verdict_is_earned(&not_a_folder);
    assert_eq!(std::fs::read(&not_a_folder).unwrap(), b"I am a file");
    let dir = tempfile::tempdir().unwrap();
    let lock = cache_path(dir.path()).with_extension("lock");
    std::fs::create_dir(&lock).unwrap();
    every_verdict_is_earned(dir.path());
    assert!(!cache_path(dir.path()).exists(), "written without its lock");
}
