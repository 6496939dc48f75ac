//! The objects of the remote's gc (store-layout.md, "gc of a remote"):
//! which host owns gc and the grace period (`gc/config`), the packs and
//! commits a gc run marked for deletion (`gc/marks/…`), each host's
//! artifact uses (`uses/<host>.uses`) and the artifacts a host has open
//! (`leases/<host>.lease`). All small JSON documents.
//!
//! Only `gc/config`, `uses/<host>.uses` and `leases/<host>.lease` are ever
//! rewritten, each by one writer (the host it names, or the admin taking
//! ownership); a mark is written once and deleted by the sweep that acts
//! on it. No decision depends on a conditional write or on a lock that
//! expires: the protocol's argument is in store-layout.md.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Bucket;
use crate::error::{Error, Result};

/// The gc configuration object.
pub const CONFIG_KEY: &str = "gc/config";
/// Where marks live.
pub const MARKS_PREFIX: &str = "gc/marks/";
/// Where each host's uses live.
pub const USES_PREFIX: &str = "uses/";
/// Where each host's leases live.
pub const LEASES_PREFIX: &str = "leases/";

/// The grace period when `gc/config` does not say: longer than any writer
/// can act on an old view (a writer gives up after half of it).
pub const DEFAULT_GRACE: Duration = Duration::from_secs(24 * 3600);

/// A lease is good for this long after the storage's time of its last
/// write; a mount rewrites it every sync round.
pub const LEASE_TTL: Duration = Duration::from_secs(120);

/// `gc/config`: the one host that runs gc, and the grace period. When the
/// grace was shortened, the one before and when (the writer's clock, ns):
/// writers that took their view before the change check it against the
/// longer one, so gc honours that one until it has passed.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct GcConfig {
    pub owner: String,
    pub grace_secs: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<(u64, i64)>,
}

impl GcConfig {
    /// The grace writers check their views against.
    pub fn grace(&self) -> Duration {
        Duration::from_secs(self.grace_secs)
    }

    /// The grace gc waits at `now_ns`: the previous, longer one until it
    /// has passed since it was shortened.
    pub fn grace_at(&self, now_ns: i64) -> Duration {
        match self.previous {
            Some((secs, since)) if now_ns < since + secs as i64 * 1_000_000_000 => {
                Duration::from_secs(secs.max(self.grace_secs))
            }
            _ => self.grace(),
        }
    }
}

/// A mark: packs no live commit located a chunk in, and commits a newer
/// commit of their artifact superseded, when gc listed the remote. The
/// sweep deletes them once the storage's clock is a grace period past the
/// mark's own time, unless a commit made since names them again.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Mark {
    /// The marking host.
    pub host: String,
    /// Pack names (`PackName`'s hex), not keys.
    pub packs: Vec<String>,
    /// Commit keys.
    pub commits: Vec<String>,
}

/// One artifact of a host's uses or leases.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ArtifactRef {
    pub ns: String,
    pub name: String,
}

/// `uses/<host>.uses`: when the host last used each artifact it used
/// (its clock, seconds since the epoch; ordered for a stable object).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Uses {
    pub host: String,
    pub used: Vec<(ArtifactRef, i64)>,
}

/// `leases/<host>.lease`: the artifacts the host has open; good for
/// `ttl_secs` after the storage's time of the object.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Lease {
    pub host: String,
    pub ttl_secs: u64,
    pub open: Vec<ArtifactRef>,
}

pub fn uses_key(host: &str) -> String {
    format!("{USES_PREFIX}{host}.uses")
}

pub fn lease_key(host: &str) -> String {
    format!("{LEASES_PREFIX}{host}.lease")
}

/// The key of a new mark: the marking host's clock orders nothing (the
/// storage's time of the object does); the nonce keeps keys apart.
pub fn mark_key(time_ns: i64, host: &str, nonce: u64) -> String {
    format!("{MARKS_PREFIX}{time_ns:020}-{host}-{nonce:016x}.mark")
}

/// Read JSON object `key`; None when there is none.
pub fn read<T: for<'de> Deserialize<'de>>(bucket: &dyn Bucket, key: &str) -> Result<Option<T>> {
    match bucket.get(key) {
        Ok(b) => serde_json::from_slice(&b).map(Some).map_err(|e| {
            Error::Usage(format!(
                "{}: not a deploycache gc object ({e}): delete it or write it again",
                bucket.url(key)
            ))
        }),
        Err(e) if e.errno() == libc::ENOENT => Ok(None),
        Err(e) => Err(e),
    }
}

/// Write `value` as JSON object `key`.
pub fn write<T: Serialize>(bucket: &dyn Bucket, key: &str, value: &T) -> Result<()> {
    let body = serde_json::to_vec_pretty(value).expect("gc objects serialize");
    bucket.put(key, &body)
}

/// The configuration, or None when no host was made gc's owner yet.
pub fn config(bucket: &dyn Bucket) -> Result<Option<GcConfig>> {
    read(bucket, CONFIG_KEY)
}

/// The grace period writers honour: the configured one, else the default.
pub fn grace(bucket: &dyn Bucket) -> Result<Duration> {
    Ok(config(bucket)?.map_or(DEFAULT_GRACE, |c| c.grace()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_read_back_and_keys_are_plain() {
        let m = Mark {
            host: "a".into(),
            packs: vec!["00ff".into()],
            commits: vec!["commits/1-a-2.commit".into()],
        };
        let s = serde_json::to_vec(&m).unwrap();
        assert_eq!(serde_json::from_slice::<Mark>(&s).unwrap(), m);
        for k in [
            mark_key(12, "host-1", 0xab),
            uses_key("host-1"),
            lease_key("host-1"),
            CONFIG_KEY.to_owned(),
        ] {
            assert!(super::super::valid_key(&k), "{k}");
        }
        assert!(mark_key(12, "h", 1) < mark_key(13, "h", 0));
    }

    #[test]
    fn a_shortened_grace_holds_for_gc_only_once_the_longer_one_passed() {
        let s = 1_000_000_000i64;
        let c = GcConfig {
            owner: "a".into(),
            grace_secs: 10,
            previous: Some((100, 1_000 * s)),
        };
        assert_eq!(c.grace(), Duration::from_secs(10));
        assert_eq!(c.grace_at(1_050 * s), Duration::from_secs(100));
        assert_eq!(c.grace_at(1_101 * s), Duration::from_secs(10));
        // Written by the version before: no `previous`.
        let old: GcConfig = serde_json::from_str(r#"{"owner":"a","grace_secs":5}"#).unwrap();
        assert_eq!(old.grace_at(0), Duration::from_secs(5));
        assert!(!serde_json::to_string(&old).unwrap().contains("previous"));
    }
}
