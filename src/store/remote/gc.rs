//! gc of a remote, run by the one host that owns it (store-layout.md, "gc
//! of a remote"): sweep what marks made a grace period ago still show
//! dead, evict artifacts least recently used across hosts (down to
//! `--max-size`), then mark what is dead now. Nothing is deleted but what
//! a mark named a grace period earlier (by the storage's clock) and a
//! listing of every commit made since still shows dead.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;

use super::rescue::pack_of_key;
use crate::error::{Error, Result};
use crate::id::ChunkId;
use crate::pack::PackName;
use crate::remote::commit::{self, Commit};
use crate::remote::gc::{self as remote_gc, ArtifactRef, GcConfig, Lease, Mark, Uses};
use crate::remote::packs::pack_key;
use crate::remote::Bucket;
use crate::store::Store;

/// What to do.
#[derive(Clone, Debug, Default)]
pub struct RemoteGcOptions {
    /// Evict least recently used artifacts while the live chunks' bytes
    /// are over this.
    pub max_size: Option<u64>,
    /// Say what would be done; delete, mark and evict nothing.
    pub dry_run: bool,
}

/// What a run found and did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RemoteGc {
    pub dry_run: bool,
    pub grace_secs: u64,
    /// Packs in the remote and their bytes, after this run's sweep.
    pub packs: u64,
    pub pack_bytes: u64,
    /// Live artifacts (after eviction) and the bytes of their chunks,
    /// each chunk once.
    pub artifacts: u64,
    pub live_bytes: u64,
    /// Bytes of packs that also hold live chunks: not reclaimable until
    /// every chunk in the pack is dead (packs are not rewritten).
    pub dead_bytes_kept: u64,
    /// Artifacts evicted (`ns/name`), least recently used first.
    pub evicted: Vec<String>,
    /// Artifacts over the limit kept because a host has them open.
    pub kept_leased: Vec<String>,
    /// Marks acted on, packs and commits they deleted.
    pub marks_swept: u64,
    pub packs_deleted: u64,
    pub bytes_deleted: u64,
    pub commits_deleted: u64,
    /// Named by a mark but live again (a commit made since names them).
    pub packs_revived: u64,
    /// The mark this run wrote, and what it names.
    pub mark: Option<String>,
    pub packs_marked: u64,
    pub bytes_marked: u64,
    pub commits_marked: u64,
    /// Marks not yet due, with the seconds until they are.
    pub pending: Vec<(String, u64)>,
}

/// One commit as gc needs it.
struct Seen {
    key: String,
    artifact: ArtifactRef,
    removal: bool,
    packs: HashSet<PackName>,
    chunks: Vec<(ChunkId, u32)>,
}

impl Store {
    /// Make this host the owner of the remote's gc, with `grace` (the
    /// current one when None); returns the configuration written.
    pub fn take_gc_ownership(&self, grace: Option<std::time::Duration>) -> Result<GcConfig> {
        let bucket = &*self.link()?.bucket;
        let grace = match grace {
            Some(g) => g,
            None => remote_gc::grace(bucket)?,
        };
        if grace.as_secs() == 0 {
            return Err(Error::Usage(
                "the grace period must be at least a second".into(),
            ));
        }
        // A shorter grace holds for gc only once the longer one has passed
        // (writers with older views check against it).
        let now = super::now_ns();
        let previous = remote_gc::config(bucket)?.and_then(|old| {
            let longest = old.grace_at(now).as_secs();
            (longest > grace.as_secs()).then_some((longest, now))
        });
        let c = GcConfig {
            owner: commit::host_id(),
            grace_secs: grace.as_secs(),
            previous,
        };
        remote_gc::write(bucket, remote_gc::CONFIG_KEY, &c)?;
        Ok(c)
    }

    /// The remote's gc configuration, if a host owns it.
    pub fn gc_config(&self) -> Result<Option<GcConfig>> {
        remote_gc::config(&*self.link()?.bucket)
    }

    /// One gc run of the remote: sweep, evict, mark.
    pub fn remote_gc(&self, opts: &RemoteGcOptions) -> Result<RemoteGc> {
        let link = self.link()?;
        let bucket = &*link.bucket;
        let host = commit::host_id();
        // Any host may look (a dry run changes nothing); only the owner acts.
        let config = match remote_gc::config(bucket)? {
            Some(c) if c.owner == host || opts.dry_run => c,
            Some(c) => {
                return Err(Error::Usage(format!(
                    "the gc of {} is owned by host {:?} (this is {host:?}): run gc there, or make this host the owner with `deploycache remote gc-owner --take`",
                    link.url, c.owner
                )))
            }
            None if opts.dry_run => GcConfig {
                owner: String::new(),
                grace_secs: remote_gc::DEFAULT_GRACE.as_secs(),
                previous: None,
            },
            None => {
                return Err(Error::Usage(format!(
                    "no host owns the gc of {}: make one (just one) the owner with `deploycache remote gc-owner --take`",
                    link.url
                )))
            }
        };
        let mut out = RemoteGc {
            dry_run: opts.dry_run,
            ..RemoteGc::default()
        };
        // This host's own changes first: gc judges what every host sees.
        self.pull()?;
        if !opts.dry_run {
            self.publish()?;
        }
        // The storage's time, taken before the listings below: a mark is
        // due when this is a grace period past the mark's own time, and
        // every commit written before then is in the listing.
        let now = super::storage_clock(bucket)?;
        let grace = config.grace_at(now);
        let grace_ns = grace.as_nanos() as i64;
        out.grace_secs = grace.as_secs();
        let marks = read_marks(bucket)?;
        let leased = read_leases(bucket, now)?;
        let mut commits = read_commits(bucket)?;
        pause("listed");

        // Sweep.
        let latest = latest_versions(&commits);
        let live = live_packs(&commits, &latest, &leased);
        let mut packs = bucket.list("packs/")?;
        let sizes: HashMap<PackName, u64> = packs
            .iter()
            .filter_map(|o| Some((pack_of_key(&o.key)?, o.size)))
            .collect();
        let deletable: HashSet<&str> = deletable_commits(&commits, &latest, &leased, now, grace_ns)
            .into_iter()
            .collect();
        let mut pending_packs = HashSet::new();
        let mut pending_commits = HashSet::new();
        let mut deleted_commits = HashSet::new();
        let mut deleted_packs = HashSet::new();
        for (key, modified, mark) in &marks {
            let due_at = modified + grace_ns;
            if due_at > now {
                out.pending
                    .push((key.clone(), ((due_at - now) / 1_000_000_000) as u64 + 1));
                pending_packs.extend(mark.packs.iter().filter_map(|p| PackName::parse(p)));
                pending_commits.extend(mark.commits.iter().cloned());
                continue;
            }
            let mut doomed = Vec::new();
            for p in mark.packs.iter().filter_map(|p| PackName::parse(p)) {
                if live.contains(&p) {
                    out.packs_revived += 1;
                    continue;
                }
                let Some(size) = sizes.get(&p) else {
                    continue; // gone already (an earlier, cut-short sweep)
                };
                doomed.push(pack_key(p));
                deleted_packs.insert(p);
                out.packs_deleted += 1;
                out.bytes_deleted += size;
            }
            for k in &mark.commits {
                if deletable.contains(k.as_str()) {
                    doomed.push(k.clone());
                    deleted_commits.insert(k.clone());
                    out.commits_deleted += 1;
                }
            }
            if !opts.dry_run {
                delete_each(bucket, &doomed)?;
            }
            pause("swept");
            if !opts.dry_run {
                bucket.delete(key)?;
            }
            out.marks_swept += 1;
        }
        commits.retain(|c| !deleted_commits.contains(&c.key));
        packs.retain(|o| pack_of_key(&o.key).is_none_or(|p| !deleted_packs.contains(&p)));

        // Evict.
        if let Some(max) = opts.max_size {
            let evict = self.plan_eviction(bucket, &commits, &latest, &leased, max, &mut out)?;
            out.evicted = evict.iter().map(shown).collect();
            if !opts.dry_run {
                // Removal commits, as any host's; written several at once.
                let removals: Vec<Commit> = evict
                    .iter()
                    .map(|a| Commit {
                        host: host.clone(),
                        time_ns: super::now_ns(),
                        nonce: rand::random(),
                        ns: a.ns.clone(),
                        name: a.name.clone(),
                        changes: Vec::new(),
                        chunks: Vec::new(),
                    })
                    .collect();
                crate::store::par_map(&removals, IO_THREADS, |c| bucket.put(&c.key(), &c.encode()))
                    .into_iter()
                    .collect::<Result<Vec<()>>>()?;
            }
            if !evict.is_empty() && !opts.dry_run {
                // Its own removals, as every host applies them.
                self.pull()?;
                commits = read_commits(bucket)?;
            } else if !evict.is_empty() {
                let gone: HashSet<&ArtifactRef> = evict.iter().collect();
                commits.retain(|c| !gone.contains(&c.artifact));
            }
        }

        // Mark.
        let latest = latest_versions(&commits);
        let live = live_packs(&commits, &latest, &leased);
        let (artifacts, live_bytes) = live_size(&commits, &latest);
        out.artifacts = artifacts;
        out.live_bytes = live_bytes;
        out.packs = packs.len() as u64;
        out.pack_bytes = packs.iter().map(|o| o.size).sum();
        let mut mark = Mark {
            host: host.clone(),
            ..Mark::default()
        };
        for o in &packs {
            let Some(p) = pack_of_key(&o.key) else {
                continue;
            };
            if live.contains(&p) {
                continue;
            }
            // A pack younger than the grace period may be a publisher's
            // whose commit is still to come.
            if pending_packs.contains(&p) || o.modified_ns + grace_ns > now {
                continue;
            }
            mark.packs.push(p.to_string());
            out.bytes_marked += o.size;
        }
        out.dead_bytes_kept = packs
            .iter()
            .filter(|o| pack_of_key(&o.key).is_some_and(|p| live.contains(&p)))
            .map(|o| o.size)
            .sum::<u64>()
            .saturating_sub(live_bytes);
        for k in deletable_commits(&commits, &latest, &leased, now, grace_ns) {
            if !pending_commits.contains(k) {
                mark.commits.push(k.to_owned());
            }
        }
        out.packs_marked = mark.packs.len() as u64;
        out.commits_marked = mark.commits.len() as u64;
        if !mark.packs.is_empty() || !mark.commits.is_empty() {
            let key = remote_gc::mark_key(super::now_ns(), &host, rand::random());
            if !opts.dry_run {
                remote_gc::write(bucket, &key, &mark)?;
            }
            out.pending.push((key.clone(), out.grace_secs));
            out.mark = Some(key);
            pause("marked");
        }
        Ok(out)
    }

    /// The artifacts to evict, least recently used across hosts first,
    /// until the live bytes are at most `max`; artifacts a good lease
    /// names are kept (listed in `out.kept_leased`).
    fn plan_eviction(
        &self,
        bucket: &dyn Bucket,
        commits: &[Seen],
        latest: &HashMap<ArtifactRef, String>,
        leased: &HashSet<ArtifactRef>,
        max: u64,
        out: &mut RemoteGc,
    ) -> Result<Vec<ArtifactRef>> {
        let (_, mut size) = live_size(commits, latest);
        if size <= max {
            return Ok(Vec::new());
        }
        // Each chunk: its bytes, and how many live artifacts name it.
        let mut holders: HashMap<ChunkId, (u32, u32)> = HashMap::new();
        let live: Vec<&Seen> = commits
            .iter()
            .filter(|c| !c.removal && latest.get(&c.artifact) == Some(&c.key))
            .collect();
        for c in &live {
            for (id, len) in &c.chunks {
                holders.entry(*id).or_insert((*len, 0)).1 += 1;
            }
        }
        let mut last_use: HashMap<&ArtifactRef, i64> = live
            .iter()
            .map(|c| {
                let t = commit::key_time_ns(&c.key).unwrap_or(0) / 1_000_000_000;
                (&c.artifact, t)
            })
            .collect();
        for o in bucket.list(remote_gc::USES_PREFIX)? {
            let Some(u) = remote_gc::read::<Uses>(bucket, &o.key)? else {
                continue;
            };
            for (a, t) in u.used {
                if let Some(l) = last_use.get_mut(&a) {
                    *l = (*l).max(t);
                }
            }
        }
        let mut order: Vec<&Seen> = live;
        order.sort_by_key(|c| (last_use.get(&c.artifact).copied().unwrap_or(0), &c.key));
        let mut evict = Vec::new();
        for c in order {
            if size <= max {
                break;
            }
            if leased.contains(&c.artifact) {
                out.kept_leased.push(shown(&c.artifact));
                continue;
            }
            for (id, _) in &c.chunks {
                if let Some(h) = holders.get_mut(id) {
                    h.1 -= 1;
                    if h.1 == 0 {
                        size = size.saturating_sub(h.0 as u64);
                    }
                }
            }
            evict.push(c.artifact.clone());
        }
        Ok(evict)
    }
}

/// Deletions and writes gc makes at once: each is a round trip.
const IO_THREADS: usize = 8;

/// Delete `keys`, several at once (one already gone is not an error).
fn delete_each(bucket: &dyn Bucket, keys: &[String]) -> Result<()> {
    crate::store::par_map(keys, IO_THREADS, |k| bucket.delete(k))
        .into_iter()
        .collect::<Result<Vec<()>>>()?;
    Ok(())
}

/// An artifact as gc reports it: `ns/name`, or its name in the default
/// namespace.
fn shown(a: &ArtifactRef) -> String {
    if a.ns.is_empty() {
        a.name.clone()
    } else {
        format!("{}/{}", a.ns, a.name)
    }
}

/// The artifacts good leases name (a lease is good for its TTL after the
/// storage's time of it).
fn read_leases(bucket: &dyn Bucket, now: i64) -> Result<HashSet<ArtifactRef>> {
    let mut leased = HashSet::new();
    for o in bucket.list(remote_gc::LEASES_PREFIX)? {
        let Some(l) = remote_gc::read::<Lease>(bucket, &o.key)? else {
            continue;
        };
        if o.modified_ns + l.ttl_secs as i64 * 1_000_000_000 > now {
            leased.extend(l.open);
        }
    }
    Ok(leased)
}

/// Every mark: key, the storage's time of it, what it names.
fn read_marks(bucket: &dyn Bucket) -> Result<Vec<(String, i64, Mark)>> {
    let mut out = Vec::new();
    for o in bucket.list(remote_gc::MARKS_PREFIX)? {
        if let Some(m) = remote_gc::read::<Mark>(bucket, &o.key)? {
            out.push((o.key, o.modified_ns, m));
        }
    }
    Ok(out)
}

/// Every commit, in key order. One that cannot be read or decoded stops
/// the run: gc deletes nothing it cannot prove dead.
fn read_commits(bucket: &dyn Bucket) -> Result<Vec<Seen>> {
    let mut out = Vec::new();
    let keys: Vec<String> = bucket
        .list(commit::PREFIX)?
        .into_iter()
        .map(|o| o.key)
        .filter(|k| k.ends_with(".commit"))
        .collect();
    crate::remote::get_each(bucket, &keys, |key, got| {
        let bytes = match got {
            Ok(b) => b,
            // Deleted since the listing: only a sweep deletes commits,
            // and only superseded ones.
            Err(e) if e.errno() == libc::ENOENT => return Ok(()),
            Err(e) => return Err(e),
        };
        let c = Commit::decode(&bytes).map_err(|why| {
            Error::Usage(format!(
                "{}: {why}; gc deletes nothing while a commit cannot be read: delete that object if it is not one of deploycache's",
                bucket.url(key)
            ))
        })?;
        out.push(Seen {
            key: key.to_owned(),
            artifact: ArtifactRef {
                ns: c.ns,
                name: c.name,
            },
            removal: c.changes.is_empty(),
            packs: c.chunks.iter().map(|(_, l)| l.pack).collect(),
            chunks: c.chunks.iter().map(|(id, l)| (*id, l.stored_len)).collect(),
        });
        Ok(())
    })?;
    out.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(out)
}

/// Each artifact's newest commit (the greatest key: the version every
/// host ends with).
fn latest_versions(commits: &[Seen]) -> HashMap<ArtifactRef, String> {
    let mut out: HashMap<ArtifactRef, String> = HashMap::new();
    for c in commits {
        let e = out.entry(c.artifact.clone()).or_default();
        if c.key > *e {
            e.clone_from(&c.key);
        }
    }
    out
}

/// Commits no host needs any more: one a newer commit of its artifact
/// superseded, and a removal older than the grace period that is all
/// that is left of its artifact (a host that applied the version before
/// it has pulled it since, or holds a version whose packs are gone: an
/// error, never wrong bytes). A leased artifact keeps every commit.
fn deletable_commits<'a>(
    commits: &'a [Seen],
    latest: &HashMap<ArtifactRef, String>,
    leased: &HashSet<ArtifactRef>,
    now: i64,
    grace_ns: i64,
) -> Vec<&'a str> {
    let mut per_artifact: HashMap<&ArtifactRef, usize> = HashMap::new();
    for c in commits {
        *per_artifact.entry(&c.artifact).or_default() += 1;
    }
    commits
        .iter()
        .filter(|c| !leased.contains(&c.artifact))
        .filter(|c| {
            latest.get(&c.artifact) != Some(&c.key)
                || (c.removal
                    && per_artifact[&c.artifact] == 1
                    && commit::key_time_ns(&c.key).is_some_and(|t| t + grace_ns <= now))
        })
        .map(|c| c.key.as_str())
        .collect()
}

/// Packs a live version locates a chunk in: an artifact's newest commit
/// (not a removal), and every version of an artifact a host has open (a
/// reader of the version before keeps reading it).
fn live_packs(
    commits: &[Seen],
    latest: &HashMap<ArtifactRef, String>,
    leased: &HashSet<ArtifactRef>,
) -> HashSet<PackName> {
    commits
        .iter()
        .filter(|c| {
            leased.contains(&c.artifact) || (!c.removal && latest.get(&c.artifact) == Some(&c.key))
        })
        .flat_map(|c| c.packs.iter().copied())
        .collect()
}

/// Live artifacts, and the bytes of their chunks as stored, each once.
fn live_size(commits: &[Seen], latest: &HashMap<ArtifactRef, String>) -> (u64, u64) {
    let mut seen: BTreeMap<ChunkId, u32> = BTreeMap::new();
    let mut n = 0;
    for c in commits
        .iter()
        .filter(|c| !c.removal && latest.get(&c.artifact) == Some(&c.key))
    {
        n += 1;
        for (id, len) in &c.chunks {
            seen.insert(*id, *len);
        }
    }
    (n, seen.values().map(|l| *l as u64).sum())
}

/// A test hook: `DEPLOYCACHE_REMOTE_GC_PAUSE=STEP:MS` sleeps after step
/// STEP (`listed`: commits read, nothing deleted yet; `swept`: a mark's
/// packs and commits deleted, the mark not yet; `marked`: a mark written).
fn pause(step: &str) {
    crate::store::pause_at("DEPLOYCACHE_REMOTE_GC_PAUSE", step);
}
