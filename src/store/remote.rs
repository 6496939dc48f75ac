//! A store attached to a remote (store-layout.md, "Remote"): the local
//! store is this host's cache of the bucket. `publish` makes this host's
//! changes visible to every host (packs uploaded, then one commit object
//! per artifact version); `pull` applies the commits other hosts made.
//!
//! The attachment is the file `STORE/remote` (the remote's URL): given
//! once with `--remote`, it holds for every later command on the store;
//! another URL for the same store is refused, as mixing two remotes' packs
//! in one index would lose track of which holds what.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{Store, StoreCore};
use rescue::View;

mod activity;
mod gc;
mod rescue;

use crate::error::{Error, IoContext, Result};
use crate::index::RemoteApplied;
use crate::pack::PackName;
use crate::remote::commit::{self, Commit};
use crate::remote::packs::pack_key;
use crate::remote::{Bucket, RemoteUrl};
pub use gc::{RemoteGc, RemoteGcOptions};

/// The file naming a store's remote.
const REMOTE_FILE: &str = "remote";
/// The remote's format object, and what it says.
const REMOTE_FORMAT_KEY: &str = "FORMAT";
const REMOTE_FORMAT: &str = "deploycache-remote 1\n";
/// A host whose clock is further than this from the storage's is refused:
/// commit keys order versions by the publisher's clock.
pub const MAX_SKEW: Duration = Duration::from_secs(60);

/// A store's remote: where it is and its objects.
pub struct RemoteLink {
    pub url: RemoteUrl,
    pub bucket: Arc<dyn Bucket>,
    /// A digest of the uses this process last wrote (`uses/<host>.uses`).
    uses_written: std::sync::Mutex<Option<[u8; 32]>>,
    /// The lease this process wrote and has not deleted: the artifacts it
    /// named, and when.
    leased: std::sync::Mutex<Option<(Vec<String>, std::time::Instant)>>,
}

/// What [`Store::publish`] did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Published {
    /// Packs uploaded, and their bytes: chunks the remote did not hold.
    pub packs_uploaded: u64,
    pub bytes_uploaded: u64,
    /// Commit objects written (artifact versions and removals), their bytes.
    pub commits: u64,
    pub commit_bytes: u64,
    /// Artifacts left for a later publish, with why.
    pub waiting: Vec<String>,
    /// Bytes of this host's own packs deleted after publishing, to keep
    /// within --cache-size (the remote holds them).
    pub bytes_let_go: u64,
    /// Chunks copied out of packs the remote's gc marked, so that a commit
    /// never names a pack a sweep may delete.
    pub chunks_rescued: u64,
    /// Views of the remote taken again because one grew older than half
    /// the grace period before its commit.
    pub views_renewed: u64,
    /// Artifacts that cannot be published: bytes they name are gone.
    pub lost: Vec<String>,
}

/// What [`Store::pull`] did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Pulled {
    /// Commits in the remote, and those new to this host.
    pub commits_listed: u64,
    pub applied: u64,
    /// New commits whose artifact already had a newer version here.
    pub older: u64,
    /// Commits that could not be applied, one line each.
    pub problems: Vec<String>,
    /// Rows of unreferenced chunks in packs the remote's gc marked,
    /// forgotten: nothing deduplicates against them.
    pub rows_forgotten: u64,
}

/// The remote a store at `root` opened with `given` uses: the one given
/// (recorded when the store had none), else the one recorded, else none.
pub(super) fn resolve(root: &Path, given: Option<&RemoteUrl>) -> Result<Option<RemoteLink>> {
    let file = root.join(REMOTE_FILE);
    let recorded = match fs::read_to_string(&file) {
        Ok(s) => Some(RemoteUrl::parse(s.trim()).map_err(|e| {
            Error::Usage(format!(
                "{}: {e}; fix or remove the file (the store's remote)",
                file.display()
            ))
        })?),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(Error::io(&file, e)),
    };
    let url = match (given, recorded) {
        (Some(g), Some(r)) if *g != r => {
            return Err(Error::Usage(format!(
            "store {} caches remote {r}, not {g}: use a store directory of its own for each remote",
            root.display()
        )))
        }
        (Some(g), None) => {
            let tmp = root.join(".remote.tmp");
            let mut f = crate::perms::create_file(&tmp)?;
            io::Write::write_all(&mut f, format!("{g}\n").as_bytes()).at(&tmp)?;
            f.sync_all().at(&tmp)?;
            fs::rename(&tmp, &file).at(&file)?;
            g.clone()
        }
        (_, Some(r)) => r,
        (None, None) => return Ok(None),
    };
    let bucket = url.open()?;
    Ok(Some(RemoteLink {
        url,
        bucket,
        uses_written: Default::default(),
        leased: Default::default(),
    }))
}

impl Store {
    /// The store's remote, or an error saying how to attach one.
    fn link(&self) -> Result<&RemoteLink> {
        self.remote.as_ref().ok_or_else(|| {
            Error::Usage(format!(
                "store {} has no remote: give --remote s3://BUCKET[/PREFIX] or file:///PATH (or $DEPLOYCACHE_REMOTE)",
                self.root().display()
            ))
        })
    }

    /// Tell the remote's gc what this host uses: its uses, and a lease on
    /// the artifacts it has open.
    pub fn publish_activity(&self) -> Result<()> {
        self.publish_uses()?;
        self.renew_lease()
    }

    /// The URL of the store's remote, if it has one.
    pub fn remote_url(&self) -> Option<&RemoteUrl> {
        self.remote.as_ref().map(|r| &r.url)
    }

    /// Publish this host's changes: for each artifact whose rows differ
    /// from its published version, upload the packs holding its chunks that
    /// the remote lacks, then write its commit object (one PUT: the version
    /// is visible to every host from then on, whole). Removals are commits
    /// with no records.
    pub fn publish(&self) -> Result<Published> {
        let link = self.link()?;
        let bucket = &*link.bucket;
        let mut out = Published::default();
        self.publish_uses()?;
        if self.index().unpublished()?.is_empty() {
            return Ok(out);
        }
        check_format(bucket)?;
        check_clock(bucket)?;
        // The packs this process appends to are sealed first: a pack is
        // uploaded once, whole, and never appended to after.
        self.core.retire_idle_lanes();
        let mut remote_packs = self.index().remote_packs()?;
        let unpublished = self.index().unpublished()?;
        let host = commit::host_id();
        // What the remote's gc marked, and which packs exist: a commit
        // names no pack a sweep may delete (store-layout.md, "gc of a
        // remote").
        pause("viewing");
        let mut view = View::take(bucket)?;
        'artifacts: for mut u in unpublished {
            let c = loop {
                if !view.fresh() {
                    view = View::take(bucket)?;
                }
                let doomed: Vec<_> = u
                    .chunks
                    .iter()
                    .filter(|(_, l)| remote_packs.contains(&l.pack) && !view.safe(l.pack))
                    .cloned()
                    .collect();
                if !doomed.is_empty() {
                    let gone: HashSet<PackName> = doomed
                        .iter()
                        .map(|(_, l)| l.pack)
                        .filter(|p| !view.existing.contains(p))
                        .collect();
                    if !gone.is_empty() {
                        self.note_marked(&view.marked, &gone)?;
                    }
                    let moved = match self.rescue(&u.name, &doomed) {
                        Ok(m) => m,
                        Err(e) => {
                            out.lost.push(e.to_string());
                            continue 'artifacts;
                        }
                    };
                    out.chunks_rescued += moved.len() as u64;
                    for (id, l) in &mut u.chunks {
                        if let Some(to) = moved.get(id) {
                            *l = *to;
                        }
                    }
                }
                let mut missing: Vec<PackName> = u
                    .chunks
                    .iter()
                    .map(|(_, l)| l.pack)
                    .filter(|p| !remote_packs.contains(p))
                    .collect();
                missing.sort();
                missing.dedup();
                for p in &missing {
                    if self.core.packs.writer_holds(*p)? {
                        out.waiting.push(format!(
                            "{}: its pack {p} is still being written (a mount or put); published once it is sealed",
                            u.name
                        ));
                        continue 'artifacts;
                    }
                }
                for p in missing {
                    out.bytes_uploaded += upload_pack(&self.core, bucket, p)?;
                    out.packs_uploaded += 1;
                    self.index().add_remote_pack(p)?;
                    remote_packs.insert(p);
                    // Uploaded after the view was taken: younger than any
                    // mark can name.
                    view.existing.insert(p);
                }
                pause("uploaded");
                // Checked against a view older than half the grace period:
                // a sweep may be near; look again.
                if view.fresh() {
                    break Commit {
                        host: host.clone(),
                        time_ns: now_ns(),
                        nonce: rand::random(),
                        ns: u.ns.clone(),
                        name: u.name.clone(),
                        changes: u.changes.clone(),
                        chunks: u.chunks.clone(),
                    };
                }
                out.views_renewed += 1;
            };
            let bytes = c.encode();
            bucket.put(&c.key(), &bytes)?;
            pause("committed");
            if !view.fresh() {
                // The PUT itself took past half the grace period: what it
                // names may have been marked meanwhile. Say so; the next
                // publish checks this version again (it is left
                // unpublished here).
                out.waiting.push(format!(
                    "{}: its commit took longer than half the remote's grace period ({} s); checked again at the next publish",
                    u.name,
                    view.grace.as_secs() / 2
                ));
                continue;
            }
            out.commits += 1;
            out.commit_bytes += bytes.len() as u64;
            self.index()
                .set_published(&u.ns, &u.name, &c.key(), u.state)?;
        }
        // What this host wrote is in the remote now: its own copies count
        // toward --cache-size like the blocks it fetched.
        out.bytes_let_go = self.core.packs.trim_published(&remote_packs)?;
        Ok(out)
    }

    /// Apply the commits other hosts published since the last pull, in key
    /// order: each artifact ends at its version with the greatest key.
    pub fn pull(&self) -> Result<Pulled> {
        let link = self.link()?;
        let bucket = &*link.bucket;
        // Marks before commits: every commit a mark was made against is
        // in the listing after it, so this host's view of what is live is
        // never older than a mark it honours.
        let mut problems = Vec::new();
        let marked = rescue::marked_packs_or_say(bucket, &mut problems)?;
        // Packs known here before this pull that the remote no longer
        // holds: swept by a mark this host never saw (it did not pull
        // while the mark stood). Listed before the commits, so a pack a
        // new commit names is not taken for gone.
        let known = self.index().remote_packs_with_rows()?;
        let existing: HashSet<PackName> = bucket
            .list("packs/")?
            .iter()
            .filter_map(|o| rescue::pack_of_key(&o.key))
            .collect();
        let gone: HashSet<PackName> = known.difference(&existing).copied().collect();
        let listed = bucket.list(commit::PREFIX)?;
        let applied = self.index().applied_commits()?;
        let mut out = Pulled {
            commits_listed: listed.len() as u64,
            problems,
            ..Pulled::default()
        };
        let new: Vec<String> = listed
            .into_iter()
            .map(|o| o.key)
            .filter(|k| !applied.contains(k) && k.ends_with(".commit"))
            .collect();
        crate::remote::get_each(bucket, &new, |key, got| {
            let c = match got {
                Ok(b) => Commit::decode(&b).map_err(|why| format!("{}: {why}", bucket.url(key))),
                // Gone between the listing and the read: the remote's gc.
                Err(e) if e.errno() == libc::ENOENT => return Ok(()),
                Err(e) => return Err(e),
            };
            let c = match c {
                Ok(c) => c,
                Err(p) => {
                    out.problems.push(format!("commit not applied: {p}"));
                    return Ok(());
                }
            };
            match self
                .index()
                .apply_commit(key, &c.ns, &c.name, &c.changes, &c.chunks)
            {
                Ok(RemoteApplied::Applied) => out.applied += 1,
                Ok(RemoteApplied::Older) => out.older += 1,
                Ok(RemoteApplied::Known) => {}
                Err(e) => out.problems.push(format!("commit not applied: {e}")),
            }
            Ok(())
        })?;
        out.rows_forgotten = self.note_marked(&marked, &gone)?;
        Ok(out)
    }
}

impl Store {
    /// The remote's gc marked `marked`, and `gone` were found missing:
    /// record them, and forget the rows of unreferenced chunks in them so
    /// that no write deduplicates against a chunk a sweep may delete
    /// (a referenced one, of a version not yet published, is rescued when
    /// it is). Returns the rows forgotten.
    fn note_marked(&self, marked: &HashSet<PackName>, gone: &HashSet<PackName>) -> Result<u64> {
        let packs = self.index().set_marked(marked, gone)?;
        let mut forgotten = 0;
        if !packs.is_empty() {
            let mut held = 0.0;
            // Not now when a writer holds `gc.lock`: the next pull does it.
            let dropped = self.drop_dead_rows(&packs, &mut held, false)?;
            for p in &dropped.dropped {
                // This host's own copy of a pack it has no rows of now.
                self.core.packs.delete_if_idle(*p)?;
                if gone.contains(p) {
                    self.index().remove_remote_pack(*p)?;
                }
            }
            forgotten = dropped.deleted_rows;
        }
        self.re_resolve_marked()?;
        Ok(forgotten)
    }

    /// Chunks this host's published artifacts use that its rows locate in
    /// a marked or vanished pack take the location their artifact's newest
    /// commit gives them. A row keeps the location of the first commit
    /// that named its chunk; another commit may name another copy (two
    /// hosts stored the same new chunk at once, or a publisher rescued it),
    /// and gc keeps the copies the *newest* commits name, so when the
    /// first one's pack is marked, the artifact's own commit says where
    /// its chunk lives on.
    fn re_resolve_marked(&self) -> Result<()> {
        let keys = self.index().published_keys_using_marked()?;
        if keys.is_empty() {
            return Ok(());
        }
        let bucket = &*self.link()?.bucket;
        let mut moves = Vec::new();
        crate::remote::get_each(bucket, &keys, |_, got| {
            match got.map(|b| Commit::decode(&b)) {
                Ok(Ok(c)) => moves.extend(c.chunks),
                // Superseded and deleted since (the next pull applies the
                // newer one), or damaged (said when it was applied).
                Ok(Err(_)) => {}
                Err(e) if e.errno() == libc::ENOENT => {}
                Err(e) => return Err(e),
            }
            Ok(())
        })?;
        self.index().repoint_out_of_marked(&moves)?;
        Ok(())
    }
}

/// Add to `scanned` the chunks the remote's commits locate that no pack of
/// this host holds (a rebuild of a store caching a remote); a commit that
/// cannot be read is one line of `unusable`. Returns how many were added.
pub(super) fn locate_remote_chunks(
    bucket: &dyn Bucket,
    scanned: &mut crate::index::ScannedPacks,
    unusable: &mut Vec<String>,
) -> Result<u64> {
    let mut known: std::collections::HashSet<crate::id::ChunkId> =
        scanned.chunks.iter().map(|(id, _)| *id).collect();
    let mut added = 0;
    let keys: Vec<String> = bucket
        .list(commit::PREFIX)?
        .into_iter()
        .map(|o| o.key)
        .collect();
    crate::remote::get_each(bucket, &keys, |key, got| {
        let c = match got {
            Ok(b) => Commit::decode(&b),
            Err(e) if e.errno() == libc::ENOENT => return Ok(()),
            Err(e) => return Err(e),
        };
        match c {
            Ok(c) => {
                for (id, loc) in c.chunks {
                    if known.insert(id) {
                        scanned.chunks.push((id, loc));
                        added += 1;
                    }
                }
            }
            Err(why) => unusable.push(format!("{}: {why}", bucket.url(key))),
        }
        Ok(())
    })?;
    Ok(added)
}

/// The remote's FORMAT object: written by the first publish, checked by
/// every other.
fn check_format(bucket: &dyn Bucket) -> Result<()> {
    match bucket.get(REMOTE_FORMAT_KEY) {
        Ok(b) if b == REMOTE_FORMAT.as_bytes() => Ok(()),
        Ok(b) => Err(Error::Usage(format!(
            "{} says {:?}; this deploycache writes {:?}: upgrade deploycache, or use another remote",
            bucket.url(REMOTE_FORMAT_KEY),
            String::from_utf8_lossy(&b).trim(),
            REMOTE_FORMAT.trim()
        ))),
        Err(e) if e.errno() == libc::ENOENT => bucket.put(REMOTE_FORMAT_KEY, REMOTE_FORMAT.as_bytes()),
        Err(e) => Err(e),
    }
}

/// Refuse to publish from a host whose clock is more than [`MAX_SKEW`]
/// from the storage's: write a small object of this host's and compare
/// the time the storage gives it with ours.
fn check_clock(bucket: &dyn Bucket) -> Result<()> {
    let (before, stamped, after) = probe_clock(bucket)?;
    let Some(stamped) = stamped else {
        return Ok(());
    };
    // The storage stamps somewhere between before and after (S3 has
    // second resolution: allow a second more).
    let skew = if stamped < before - 1_000_000_000 {
        before - 1_000_000_000 - stamped
    } else {
        (stamped - after).max(0)
    };
    if skew as u128 > MAX_SKEW.as_nanos() {
        return Err(Error::Usage(format!(
            "this host's clock is {:.0} s away from the clock of {} (at most {} s is allowed: commit order follows the clocks): fix its time (NTP), then publish again",
            skew as f64 / 1e9,
            bucket.url(&clock_key()),
            MAX_SKEW.as_secs()
        )));
    }
    Ok(())
}

fn clock_key() -> String {
    format!("hosts/{}.clock", commit::host_id())
}

/// Write this host's clock object: this host's clock before and after,
/// and the time the storage gave it (None if it cannot say).
fn probe_clock(bucket: &dyn Bucket) -> Result<(i64, Option<i64>, i64)> {
    let key = clock_key();
    let before = now_ns();
    bucket.put(&key, &before.to_le_bytes())?;
    let after = now_ns();
    Ok((before, bucket.head(&key)?.map(|i| i.modified_ns), after))
}

/// The storage's clock now (ns since the epoch), as it stamps a write:
/// what the remote's gc measures grace periods on.
fn storage_clock(bucket: &dyn Bucket) -> Result<i64> {
    match probe_clock(bucket)? {
        (_, Some(t), _) => Ok(t),
        _ => Err(Error::Usage(format!(
            "{} gives no time for objects written to it: the remote's gc needs it",
            bucket.url(&clock_key())
        ))),
    }
}

/// Upload local pack `p` as it is; returns its bytes.
fn upload_pack(core: &StoreCore, bucket: &dyn Bucket, p: PackName) -> Result<u64> {
    let path = p.path(&core.root.join("packs"));
    if !path.is_file() {
        return Err(Error::io(
            &path,
            io::Error::new(
                io::ErrorKind::NotFound,
                "a pack to publish is not on this host (nor in the remote)",
            ),
        ));
    }
    bucket.put_file(&pack_key(p), &path)
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// A test hook: `DEPLOYCACHE_PUBLISH_PAUSE=STEP:MS` sleeps that long after
/// publish step STEP (`viewing`: changes found to publish, before the
/// remote's marks are looked at; `uploaded`: an artifact's packs, before its commit;
/// `committed`: its commit, before the index records it published), so
/// that a test can kill it there.
fn pause(step: &str) {
    super::pause_at("DEPLOYCACHE_PUBLISH_PAUSE", step);
}
