//! The plan on hand-made snapshots: eviction order, what each eviction
//! frees given those before it, and every limit alone and combined.

use super::*;
use crate::index::{GcArtifact, Holder, Holders};
use crate::pack::RECORD_HEADER_LEN;
use crate::store::gc::policy::{Policy, Scope};

const H: u64 = RECORD_HEADER_LEN as u64;
const NOW: i64 = 1_000_000;
const DAY: i64 = 86_400;

fn art(id: i64, ns: &str, last_access: i64) -> GcArtifact {
    GcArtifact {
        id,
        namespace: ns.to_owned(),
        name: format!("a{id}"),
        created: 0,
        last_access,
        files: 1,
        logical_bytes: 0,
        pending: false,
        quarantined_files: 0,
        quarantined_bytes: 0,
        newest_quarantined: None,
        incomplete: false,
    }
}

fn vis(a: i64) -> Holder {
    Holder {
        artifact: a,
        quarantined: false,
    }
}

/// Artifacts 1..=n, artifact i used i days ago (so n is the least recently
/// used), each holding one chunk of its own of 1000 bytes.
fn snapshot(n: i64) -> Snapshot {
    let mut holders = Holders::default();
    let artifacts = (1..=n)
        .map(|i| {
            holders.push(1000, 1000, &[vis(i)]);
            art(i, "", NOW - i * DAY)
        })
        .collect();
    Snapshot {
        artifacts,
        holders,
        ..Default::default()
    }
}

fn policy() -> Policy {
    Policy::none(Scope::AllNamespaces)
}

fn evicted(p: &GcPlan) -> Vec<&str> {
    p.evict.iter().map(|e| e.name.as_str()).collect()
}

#[test]
fn max_size_evicts_least_recently_used_first_until_under() {
    let s = snapshot(4);
    assert_eq!(s.live_bytes(), 4 * (1000 + H));
    let p = plan(
        &s,
        &Policy {
            max_size: Some(2 * (1000 + H)),
            ..policy()
        },
        NOW,
    );
    assert_eq!(evicted(&p), ["a4", "a3"]);
    assert!(p.evict.iter().all(|e| e.reason == Reason::MaxSize));
    assert!(p.evict.iter().all(|e| e.frees_bytes == 1000 + H));
    assert_eq!(p.size_after_reclaim, 2 * (1000 + H));
    assert_eq!(p.max_size_met, Some(true));
    assert_eq!(
        (p.reclaim.chunks, p.reclaim.bytes),
        (2, 2 * (1000 + H)),
        "{:?}",
        p.reclaim
    );
}

#[test]
fn a_shared_chunk_is_freed_by_the_eviction_of_its_last_holder() {
    let mut s = snapshot(3);
    // A chunk of 500 held by 3 and 2: evicting 3 alone frees its own only.
    s.holders.push(500, 500, &[vis(3), vis(2)]);
    let p = plan(
        &s,
        &Policy {
            older_than: Some(DAY as u64 + 1),
            ..policy()
        },
        NOW,
    );
    assert_eq!(evicted(&p), ["a3", "a2"]);
    assert_eq!(p.evict[0].frees_bytes, 1000 + H);
    assert_eq!(p.evict[1].frees_bytes, 1000 + H + 500 + H);
    assert!(p.evict.iter().all(|e| e.reason == Reason::OlderThan));
    assert_eq!(p.max_size_met, None);
}

#[test]
fn limits_combine_and_keep_last_holds_the_newest_of_each_namespace() {
    let mut s = snapshot(5);
    for a in &mut s.artifacts[3..] {
        a.namespace = "other".into(); // a4, a5
    }
    // Older than 2.5 days: a3, a4, a5; keep-last 1 holds a1 and a4, the
    // newest of each namespace; max-size then takes a2 too.
    let p = plan(
        &s,
        &Policy {
            older_than: Some((5 * DAY / 2) as u64),
            keep_last: Some(1),
            max_size: Some(2 * (1000 + H)),
            ..policy()
        },
        NOW,
    );
    assert_eq!(evicted(&p), ["a5", "a3", "a2"]);
    let reasons: Vec<Reason> = p.evict.iter().map(|e| e.reason).collect();
    assert_eq!(
        reasons,
        [Reason::OlderThan, Reason::OlderThan, Reason::MaxSize]
    );
    let held: Vec<(&str, HeldBy)> = p.held.iter().map(|h| (h.name.as_str(), h.why)).collect();
    // a1 stays for keep-last too, but no limit reached it.
    assert_eq!(held, [("a4", HeldBy::KeepLast)]);
    assert_eq!(p.max_size_met, Some(true));
}

#[test]
fn an_artifact_being_written_is_never_evicted() {
    let mut s = snapshot(3);
    s.artifacts[2].pending = true; // a3, the least recently used
    let p = plan(
        &s,
        &Policy {
            max_size: Some(0),
            older_than: Some(0),
            ..policy()
        },
        NOW,
    );
    assert_eq!(evicted(&p), ["a2", "a1"]);
    assert_eq!(p.held[0].name, "a3");
    assert_eq!(p.held[0].why, HeldBy::BeingWritten);
    assert_eq!(p.max_size_met, Some(false));
    assert_eq!(p.size_after_reclaim, 1000 + H);
}

#[test]
fn the_namespace_scope_leaves_the_others_alone() {
    let mut s = snapshot(3);
    s.artifacts[2].namespace = "other".into(); // a3, the oldest
    let p = plan(
        &s,
        &Policy {
            max_size: Some(0),
            scope: Scope::Namespace(String::new()),
            ..policy()
        },
        NOW,
    );
    assert_eq!(evicted(&p), ["a2", "a1"]);
    assert_eq!(p.max_size_met, Some(false));
}

#[test]
fn quarantined_files_expire_after_a_day_or_older_than() {
    let mut s = snapshot(4);
    // a1: kept aside 2 days ago, artifact whole without it; a2: kept aside
    // 2 days ago, incomplete without it; a3: an hour ago; a4: 2 days ago
    // but a file of it is being written.
    for (i, (age, incomplete, pending)) in [
        (2 * DAY, false, false),
        (2 * DAY, true, false),
        (3600, false, false),
        (2 * DAY, false, true),
    ]
    .into_iter()
    .enumerate()
    {
        let a = &mut s.artifacts[i];
        a.quarantined_files = 1;
        a.quarantined_bytes = 300;
        a.newest_quarantined = Some(NOW - age);
        a.incomplete = incomplete;
        a.pending = pending;
        s.holders.push(
            300,
            300,
            &[Holder {
                artifact: a.id,
                quarantined: true,
            }],
        );
    }
    let p = plan(&s, &policy(), NOW);
    let expired: Vec<(&str, bool, u64)> = p
        .expire
        .iter()
        .map(|e| (e.artifact.as_str(), e.whole_artifact, e.frees_bytes))
        .collect();
    // LRU order: a2 before a1.
    assert_eq!(
        expired,
        [("a2", true, 1000 + H + 300 + H), ("a1", false, 300 + H)]
    );
    assert!(p.evict.is_empty());
    // --older-than 30 min takes a3's too.
    let p = plan(
        &s,
        &Policy {
            older_than: Some(1800),
            keep_last: Some(4),
            ..policy()
        },
        NOW,
    );
    assert_eq!(p.expire.len(), 3);
    assert!(p.evict.is_empty(), "keep-last holds the rest");
}
