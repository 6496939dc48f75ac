//! gc's evictions in batches: many `rm`s in one transaction, each with its
//! own manifest record (and seq), all made durable by one fsync, so that
//! evicting hundreds of artifacts costs a few WAL and pack fsyncs, not one
//! pair per artifact.
//!
//! A crash after the records' fsync and before the commit leaves records
//! whose seqs later commits take again. A later commit supersedes one of
//! them per seq it takes, so records further up the batch would be
//! replayed by a rebuild after changes that committed later (an artifact
//! put again meanwhile would lose its new version). The caller therefore
//! marks a batch in progress (`gc.batch`, see `store::gc`) and, finding
//! the mark later, voids the seqs such a batch may have used
//! ([`Index::void_next`]).

use std::time::{Duration, Instant};

use rusqlite::{Connection, TransactionBehavior};

use super::changes::{apply_change, journal_seq, set_journal_seq, void_seqs};
use super::usage::unchanged;
use super::{Index, Sql};
use crate::error::Result;
use crate::manifest::{Change, Record};
use crate::pack::PackName;

/// An artifact gc evicts, as planned: its row and last use.
#[derive(Clone, Debug)]
pub struct Evict {
    pub ns: String,
    pub name: String,
    pub id: i64,
    pub last_access: i64,
}

impl Index {
    /// Evict a batch from the front of `batch` in one transaction: each
    /// artifact only if it is still the row planned for, not used since
    /// and with no file being written (as [`Index::evict_artifact`]).
    /// The batch ends once the transaction has run for `budget` (one
    /// artifact at least), so that a writer waiting for the index waits
    /// about that long whatever the artifacts hold. Returns, per artifact
    /// of the batch, whether it was evicted: the rest of `batch` is left
    /// for the next call.
    pub fn evict_batch(&mut self, batch: &[Evict], budget: Duration) -> Result<Vec<bool>> {
        self.with_journal("record changes", |conn, path, journal| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .sql(path)?;
            let first = journal_seq(&tx).sql(path)?;
            let mut seq = first;
            let mut done = Vec::with_capacity(batch.len());
            let mut packs: Vec<PackName> = Vec::new();
            let started = Instant::now();
            for e in batch {
                if !done.is_empty() && started.elapsed() >= budget {
                    break;
                }
                let check =
                    |c: &Connection| unchanged(c, &e.ns, &e.name, e.id, Some(e.last_access));
                if !check(&tx).sql(path)? {
                    done.push(false);
                    continue;
                }
                let change = Change::RemoveArtifact {
                    ns: e.ns.clone(),
                    name: e.name.clone(),
                };
                apply_change(&tx, path, &change, None)?;
                seq += 1;
                let pack = journal.write(&Record::new(seq, change).encode())?;
                if !packs.contains(&pack) {
                    packs.push(pack);
                }
                done.push(true);
            }
            if seq == first {
                return Ok(done); // nothing to commit: rolled back
            }
            journal.sync()?;
            for p in packs {
                set_journal_seq(&tx, seq, p).sql(path)?;
            }
            if let Err(e) = tx.commit() {
                void_seqs(journal, first + 1..=seq);
                return Err(e).sql(path);
            }
            Ok(done)
        })
    }

    /// Settings for gc's bulk work on this connection: a page cache of
    /// `cache_kib` KiB, so that a batch touching a page of every index
    /// keeps it dirty in memory and writes it to the WAL once, at commit
    /// (SQLite's default 2 MB spilled and re-read them), and statement
    /// journals in memory: a statement deleting thousands of rows keeps
    /// the pages it changes in a statement journal, and with temp files
    /// these went to `/var/tmp` one page per `pwrite` (BENCHMARKS.md, "gc
    /// at scale"). Returns the previous cache setting, for
    /// [`Index::restore_cache`].
    pub fn bulk_settings(&mut self, cache_kib: u64) -> Result<i64> {
        let old: i64 = self
            .conn
            .query_row("PRAGMA cache_size", [], |r| r.get(0))
            .sql(&self.path)?;
        self.conn
            .execute_batch(&format!(
                "PRAGMA cache_size = -{cache_kib}; PRAGMA temp_store = MEMORY"
            ))
            .sql(&self.path)?;
        Ok(old)
    }

    /// Give back the page cache [`Index::bulk_settings`] took.
    pub fn restore_cache(&mut self, old: i64) {
        let _ = self
            .conn
            .execute_batch(&format!("PRAGMA cache_size = {old}"));
    }

    /// Void the next `n` seqs: write a void record for each seq after the
    /// last committed one, while holding the index's write lock (so no
    /// commit takes one of them meanwhile). A record a
    /// crashed batch left at one of those seqs is superseded (the void is
    /// written later), and the next commit at each seq supersedes its void.
    pub fn void_next(&mut self, n: u64) -> Result<()> {
        if self.journal.is_none() {
            return Ok(());
        }
        self.with_journal("record changes", |conn, path, journal| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .sql(path)?;
            let last = journal_seq(&tx).sql(path)?;
            let mut packs: Vec<PackName> = Vec::new();
            for s in last + 1..=last + n {
                let p = journal.write(&Record::new(s, Change::Void).encode())?;
                if !packs.contains(&p) {
                    packs.push(p);
                }
            }
            journal.sync()?;
            // The seq stays; the packs of the voids get their rows, so
            // that no sweep takes them for a crashed writer's leftovers.
            for p in packs {
                set_journal_seq(&tx, last, p).sql(path)?;
            }
            tx.commit().sql(path)?;
            Ok(())
        })
    }
}
