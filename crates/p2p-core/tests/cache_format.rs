//! Every verdict the probe can produce survives the cache file unchanged.

use p2p_core::cache::{now_ms, CachedVerdict, Fingerprint, VerdictCache, TRANSIENT_TTL};
use p2p_core::sim::Topology;
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

/// The simulated machine of the cache files: 64 GPUs, so that every pair
/// of the strategies below is a pair of its devices.
fn machine() -> SimDriver {
    SimDriver::new(Topology::with_gpus(64))
}

/// Entries a writer of ours can produce: two distinct devices of the
/// machine, found in the last day, transient ones expiring [`TRANSIENT_TTL`]
/// after they were found, and never a policy verdict (those are not cached).
fn entry() -> impl Strategy<Value = CachedVerdict> {
    let now = now_ms();
    let day = 86_400_000u64;
    (
        (0usize..64, 1usize..64, any::<bool>(), reason()),
        (
            proptest::option::of(figure()),
            any::<u64>(),
            any::<bool>(),
            // Found within the last day; until much later, where an expiry is set.
            (now - day)..=now,
            proptest::option::of((now + day)..(now + 1000 * day)),
        ),
    )
        .prop_filter(
            "policy verdicts are never cached",
            |((_, _, _, reason), _)| *reason != Reason::DisabledByPolicy,
        )
        .prop_map(
            move |(
                (from, step, claimed, reason),
                (peer_gbps, probe_micros, thorough, at_ms, expires_ms),
            )| {
                let expires_ms = if reason.is_transient() {
                    Some(at_ms + TRANSIENT_TTL.as_millis() as u64).filter(|&at| at > now)
                } else {
                    expires_ms
                };
                CachedVerdict {
                    thorough,
                    verdict: PeerVerdict {
                        from,
                        to: (from + step) % 64,
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
        .prop_filter("not expired", move |entry| {
            !entry.expired(now)
                && (entry.expires_ms.is_some() || !entry.verdict.reason.is_transient())
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn every_verdict_round_trips_through_the_file(entry in entry()) {
        let dir = tempfile::tempdir().unwrap();
        let cache = VerdictCache::new(dir.path(), Fingerprint::of(&machine()));
        cache.merge(std::slice::from_ref(&entry)).unwrap();
        prop_assert_eq!(cache.load(), vec![entry]);
    }

    /// Every reason, policy included, survives JSON (no key written twice).
    #[test]
    fn every_reason_round_trips_through_json(reason in reason(), gbps in proptest::option::of(figure())) {
        let verdict = PeerVerdict { from: 0, to: 1, claimed: true, reason, peer_gbps: gbps, probe_micros: 3 };
        let text = serde_json::to_string(&verdict).unwrap();
        prop_assert_eq!(serde_json::from_str::<PeerVerdict>(&text).unwrap(), verdict);
    }
}

#[test]
fn one_unreadable_entry_costs_only_its_pair() {
    let dir = tempfile::tempdir().unwrap();
    let cache = VerdictCache::new(dir.path(), Fingerprint::of(&machine()));
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
