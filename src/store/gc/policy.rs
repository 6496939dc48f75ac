//! What gc keeps the store to: the limits a user gives, and parsing them.

use std::time::Duration;

/// When quarantined files go when no `--older-than` is given: a cut-short
/// transfer kept aside a day is past anyone's look at why it failed.
pub const QUARANTINE_TTL: Duration = Duration::from_secs(24 * 3600);

/// Which artifacts gc may evict.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Those of one namespace ("" is the default one).
    Namespace(String),
    /// Those of every namespace.
    AllNamespaces,
}

impl Scope {
    pub fn holds(&self, ns: &str) -> bool {
        match self {
            Scope::Namespace(n) => n == ns,
            Scope::AllNamespaces => true,
        }
    }
}

/// The limits gc keeps the store to. An artifact goes, least recently used
/// first, when any given limit says so, unless `keep_last` holds it or a
/// file of it is being written through a mount.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Policy {
    /// Evict until the store's bytes on disk (packs + index), once what
    /// the evictions free is reclaimed, are at or under this.
    pub max_size: Option<u64>,
    /// Evict what has not been used for this long (seconds).
    pub older_than: Option<u64>,
    /// The N most recently used artifacts of each namespace always stay.
    pub keep_last: Option<usize>,
    pub scope: Scope,
}

impl Policy {
    /// No limit: gc evicts nothing (it still expires quarantined files).
    pub fn none(scope: Scope) -> Policy {
        Policy {
            max_size: None,
            older_than: None,
            keep_last: None,
            scope,
        }
    }

    /// Whether any limit that evicts artifacts is given.
    pub fn evicts(&self) -> bool {
        self.max_size.is_some() || self.older_than.is_some()
    }

    /// Quarantined files kept aside longer than this go.
    pub fn quarantine_ttl(&self) -> u64 {
        self.older_than.unwrap_or(QUARANTINE_TTL.as_secs())
    }
}

/// A size in bytes: a number (`1000000`), or with a unit (`500G`, `1.5TiB`,
/// `20 MB`). K, M, G, T (with or without `B`) are powers of 1024, as `df -h`
/// and `du -h` show them; `KiB`… are too.
pub fn parse_size(s: &str) -> Result<u64, String> {
    parse_size::Config::new()
        .with_binary()
        .parse_size(s.trim())
        .map_err(|e| format!("{s:?} is not a size ({e}): give bytes, or a number with a unit such as 500G or 1.5TiB"))
}

/// A duration with a unit: `12h`, `7d`, `90min`, `1d 12h`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| {
        format!("{s:?} is not a duration ({e}): give a number with a unit such as 12h or 7d")
    })
}

/// A duration as `--older-than` takes it (`7days 12h`).
pub fn show_duration(secs: u64) -> String {
    humantime::format_duration(Duration::from_secs(secs)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_binary_units_with_or_without_b() {
        assert_eq!(parse_size("1000"), Ok(1000));
        assert_eq!(parse_size("500G"), Ok(500 << 30));
        assert_eq!(parse_size("500GB"), Ok(500 << 30));
        assert_eq!(parse_size("1.5TiB"), Ok(3 << 39));
        assert_eq!(parse_size(" 2 MiB "), Ok(2 << 20));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("-1G").is_err());
    }

    #[test]
    fn durations_take_units() {
        assert_eq!(parse_duration("12h"), Ok(Duration::from_secs(12 * 3600)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86400)));
        assert_eq!(parse_duration("1d 12h"), Ok(Duration::from_secs(36 * 3600)));
        assert!(parse_duration("7").is_err());
        assert!(parse_duration("soon").is_err());
    }
}
