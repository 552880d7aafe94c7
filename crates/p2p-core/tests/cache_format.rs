//! Every verdict the probe can produce survives the cache file unchanged.

use std::path::Path;

use p2p_core::cache::{CachedVerdict, Fingerprint, VerdictCache};
use p2p_core::{PeerVerdict, Reason, SimDriver};
use proptest::prelude::*;

/// Any finite figure (JSON has no infinity or NaN; the probe never makes one).
fn figure() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>().prop_filter("finite", |x| x.is_finite()),
        0.0..1000.0f64,
        Just(0.0),
        Just(f64::MAX),
        Just(f64::MIN_POSITIVE),
    ]
}

/// Every reason, with any details.
fn reason() -> impl Strategy<Value = Reason> {
    prop_oneof![
        Just(Reason::Verified),
        Just(Reason::NotClaimed),
        ".*".prop_map(|detail| Reason::EnableFailed { detail }),
        (any::<u64>(), any::<u8>(), any::<u8>()).prop_map(|(offset, expected, found)| {
            Reason::Corrupt {
                offset,
                expected,
                found,
            }
        }),
        any::<u64>().prop_map(|after_ms| Reason::Timeout { after_ms }),
        (figure(), figure()).prop_map(|(peer_gbps, staged_gbps)| Reason::SlowerThanStaging {
            peer_gbps,
            staged_gbps
        }),
        Just(Reason::DisabledByPolicy),
    ]
}

fn entry() -> impl Strategy<Value = CachedVerdict> {
    (
        (0usize..64, 0usize..64, any::<bool>(), reason()),
        (
            proptest::option::of(figure()),
            any::<u64>(),
            any::<bool>(),
            // Times well in the future, so that no entry has expired.
            (1u64 << 50)..(1u64 << 60),
            proptest::option::of((1u64 << 50)..(1u64 << 60)),
        ),
    )
        .prop_map(
            |(
                (from, to, claimed, reason),
                (peer_gbps, probe_micros, thorough, at_ms, expires_ms),
            )| {
                CachedVerdict {
                    thorough,
                    verdict: PeerVerdict {
                        from,
                        to,
                        claimed,
                        reason,
                        peer_gbps,
                        probe_micros,
                    },
                    at_ms,
                    expires_ms,
                }
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn every_verdict_round_trips_through_the_file(entry in entry()) {
        let dir = tempfile::tempdir().unwrap();
        let sim = SimDriver::from_toml_str("[[gpu]]\n", Path::new("t.toml")).unwrap();
        let cache = VerdictCache::new(dir.path(), Fingerprint::of(&sim));
        cache.merge(std::slice::from_ref(&entry)).unwrap();
        prop_assert_eq!(cache.load(), vec![entry]);
    }
}

#[test]
fn one_unreadable_entry_costs_only_its_pair() {
    let dir = tempfile::tempdir().unwrap();
    let sim = SimDriver::from_toml_str("[[gpu]]\n", Path::new("t.toml")).unwrap();
    let cache = VerdictCache::new(dir.path(), Fingerprint::of(&sim));
    let now = p2p_core::cache::now_ms();
    let good = |from| {
        CachedVerdict::new(
            false,
            PeerVerdict {
                from,
                to: 0,
                claimed: true,
                reason: Reason::Verified,
                peer_gbps: None,
                probe_micros: 1,
            },
            now,
        )
    };
    cache.merge(&[good(1), good(2)]).unwrap();
    let text = std::fs::read_to_string(cache.path()).unwrap();
    let mut doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    doc["verdicts"][0]["verdict"]["reason"] = "no-such-reason".into();
    std::fs::write(cache.path(), doc.to_string()).unwrap();
    assert_eq!(cache.load(), vec![good(2)]);
}
