//! Uses of artifacts, for least-recently-used eviction, recorded cheaply.
//!
//! A use is a lookup or listing of `<sha>/` through a mount (the deploy
//! scripts' hit test: a deploy is about to copy it out), opening a file of
//! it for reading, `cat` and `export`. The view notes each with
//! [`Store::note_use`]; an index write (a WAL commit, fsynced) per `read()`
//! or per lookup would cost more than the read. So the first use of an
//! artifact is written at once, later ones at most once per
//! [`USE_INTERVAL`] per artifact (the newest time, written by the next use
//! after the interval or by any later note), and what is still unwritten
//! when the store is dropped is written then. `last_access` is therefore
//! at most [`USE_INTERVAL`] behind while a process runs, which is well
//! inside what LRU eviction over hours and days needs.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{lock, Store};
use crate::error::Result;

/// At most one `last_access` write per artifact per this long.
pub const USE_INTERVAL: Duration = Duration::from_secs(60);

/// Uses noted and not yet written, by artifact name (one namespace: the store's).
#[derive(Default)]
pub struct Uses {
    seen: Mutex<HashMap<String, Seen>>,
}

struct Seen {
    /// When this artifact's use was last written.
    written: Instant,
    /// The newest use not written yet (Unix seconds).
    unwritten: Option<i64>,
}

pub(crate) fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Uses {
    /// Note a use of `artifact` at `time`; returns the uses to write now.
    fn note(&self, artifact: &str, time: i64, at: Instant) -> Vec<(String, i64)> {
        let mut seen = lock(&self.seen);
        let mut due = Vec::new();
        match seen.get_mut(artifact) {
            Some(s) if at.duration_since(s.written) < USE_INTERVAL => s.unwritten = Some(time),
            Some(s) => {
                s.written = at;
                s.unwritten = None;
                due.push((artifact.to_owned(), time));
            }
            None => {
                seen.insert(
                    artifact.to_owned(),
                    Seen {
                        written: at,
                        unwritten: None,
                    },
                );
                due.push((artifact.to_owned(), time));
            }
        }
        // Others whose interval has passed go with it, so that a use is
        // never held back much longer than the interval while the process
        // keeps noting uses; and an artifact with nothing left to write and
        // its interval over leaves the table (it holds only what rate
        // limiting still needs, not every artifact a long-lived mount saw).
        seen.retain(|name, s| {
            if at.duration_since(s.written) < USE_INTERVAL {
                return true;
            }
            if let Some(t) = s.unwritten.take() {
                s.written = at;
                due.push((name.clone(), t));
                return true;
            }
            false
        });
        due
    }

    /// Every use not written yet.
    fn drain(&self) -> Vec<(String, i64)> {
        let mut seen = lock(&self.seen);
        seen.iter_mut()
            .filter_map(|(name, s)| s.unwritten.take().map(|t| (name.clone(), t)))
            .collect()
    }
}

impl Store {
    /// Note a use of `artifact` (see the module doc): cheap to call on
    /// every lookup or open; writes `last_access` at most once a minute
    /// per artifact (`USE_INTERVAL`).
    pub fn note_use(&self, artifact: &str) -> Result<()> {
        let due = self.uses.note(artifact, now_secs(), Instant::now());
        self.write_uses(due)
    }

    /// Write the uses noted and not written yet (also done on drop).
    pub fn flush_uses(&self) -> Result<()> {
        let due = self.uses.drain();
        self.write_uses(due)
    }

    fn write_uses(&self, due: Vec<(String, i64)>) -> Result<()> {
        if due.is_empty() {
            return Ok(());
        }
        let ix = self.index();
        for (name, t) in due {
            ix.touch_at(&self.ns, &name, t)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_use_is_written_at_once_then_at_most_once_per_interval() {
        let u = Uses::default();
        let t0 = Instant::now();
        assert_eq!(u.note("a", 100, t0), vec![("a".to_owned(), 100)]);
        assert!(u.note("a", 101, t0 + Duration::from_secs(1)).is_empty());
        assert!(u.note("a", 130, t0 + Duration::from_secs(30)).is_empty());
        // Another artifact is written at once; a's pending use waits.
        assert_eq!(
            u.note("b", 131, t0 + Duration::from_secs(31)),
            vec![("b".to_owned(), 131)]
        );
        // Once a's interval has passed, any note writes a's newest use.
        let due = u.note("b", 161, t0 + USE_INTERVAL);
        assert_eq!(due, vec![("a".to_owned(), 130)]);
        assert_eq!(u.drain(), vec![("b".to_owned(), 161)]);
        assert!(u.drain().is_empty());
        // Nothing left to write and the interval over: the table lets go.
        assert!(u.note("c", 300, t0 + 3 * USE_INTERVAL).len() == 1);
        assert_eq!(lock(&u.seen).keys().collect::<Vec<_>>(), vec!["c"]);
    }
}
