//! The index's rows of a remote (store-layout.md, "Remote"): which packs
//! are in it, which commits were applied, each artifact's published
//! version; what a commit object states of an artifact, and applying one.

use std::collections::HashSet;

use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};

use super::changes::{apply_change, insert_chunk_rows};
use super::{Index, Sql};
use crate::error::Result;
use crate::id::ChunkId;
use crate::manifest::Change;
use crate::pack::{Codec, Location, PackName};

/// An artifact whose rows differ from its published version.
#[derive(Clone, Debug)]
pub struct Unpublished {
    pub ns: String,
    pub name: String,
    /// None: removed here since it was published.
    pub state: Option<[u8; 32]>,
    /// The changes that state it whole (empty when removed).
    pub changes: Vec<Change>,
    /// Every chunk it names that has a row, with its location.
    pub chunks: Vec<(ChunkId, Location)>,
}

/// What applying one commit did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// The artifact is now the commit's version (or removed).
    Applied,
    /// The artifact's version here has a greater key: left as it is.
    Older,
    /// Applied already.
    Known,
}

impl Index {
    /// Packs known to be in the remote.
    pub fn remote_packs(&self) -> Result<HashSet<PackName>> {
        let names: Vec<String> = self.rows("SELECT name FROM remote_packs", [], |r| r.get(0))?;
        Ok(names.iter().filter_map(|n| PackName::parse(n)).collect())
    }

    /// `p` is in the remote now.
    pub fn add_remote_pack(&self, p: PackName) -> Result<()> {
        self.conn
            .execute(
                "INSERT OR IGNORE INTO remote_packs(name) VALUES(?1)",
                [p.to_string()],
            )
            .sql(&self.path)?;
        Ok(())
    }

    /// The marked packs are now those of `marked` (what the remote's marks
    /// name) and `gone` (found missing) that this host has rows in; one no
    /// longer marked stays while it has rows (its mark was swept: the pack
    /// is gone). A pull that changes nothing writes nothing. Returns the
    /// marked packs holding rows of unreferenced chunks, with their ids:
    /// those rows are to be forgotten.
    pub fn set_marked(
        &mut self,
        marked: &HashSet<PackName>,
        gone: &HashSet<PackName>,
    ) -> Result<Vec<(i64, PackName)>> {
        let p = self.path.clone();
        // Nothing marked, nothing was: no write transaction (a mount pulls
        // every 10 s).
        let any: bool = self
            .conn
            .query_row("SELECT EXISTS (SELECT 1 FROM remote_marked)", [], |r| {
                r.get(0)
            })
            .sql(&p)?;
        if !any && marked.is_empty() && gone.is_empty() {
            return Ok(Vec::new());
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .sql(&p)?;
        tx.execute(
            "DELETE FROM remote_marked WHERE name NOT IN (SELECT name FROM packs)",
            [],
        )
        .sql(&p)?;
        {
            let mut add = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO remote_marked(name)
                     SELECT ?1 WHERE EXISTS (SELECT 1 FROM packs WHERE name = ?1)",
                )
                .sql(&p)?;
            for n in marked.iter().chain(gone) {
                add.execute([n.to_string()]).sql(&p)?;
            }
        }
        let rows: Vec<(i64, String)> = {
            let mut st = tx
                .prepare_cached(
                    "SELECT p.id, p.name FROM packs p JOIN remote_marked m ON m.name = p.name
                      WHERE EXISTS (SELECT 1 FROM chunks c WHERE c.pack = p.id AND c.refs <= 0)",
                )
                .sql(&p)?;
            let r = st
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .sql(&p)?
                .collect::<rusqlite::Result<_>>()
                .sql(&p)?;
            r
        };
        tx.commit().sql(&p)?;
        Ok(rows
            .into_iter()
            .filter_map(|(id, n)| Some((id, PackName::parse(&n)?)))
            .collect())
    }

    /// Packs known to be in the remote that this host has rows in.
    pub fn remote_packs_with_rows(&self) -> Result<HashSet<PackName>> {
        let names: Vec<String> = self.rows(
            "SELECT r.name FROM remote_packs r JOIN packs p ON p.name = r.name",
            [],
            |r| r.get(0),
        )?;
        Ok(names.iter().filter_map(|n| PackName::parse(n)).collect())
    }

    /// `p` is no longer in the remote (a sweep deleted it).
    pub fn remove_remote_pack(&self, p: PackName) -> Result<()> {
        self.conn
            .execute("DELETE FROM remote_packs WHERE name = ?1", [p.to_string()])
            .sql(&self.path)?;
        Ok(())
    }

    /// Keys of the published versions of artifacts that use a chunk whose
    /// row is in a marked (or vanished) pack.
    pub fn published_keys_using_marked(&self) -> Result<Vec<String>> {
        self.rows(
            "WITH stuck AS (SELECT c.id FROM chunks c JOIN packs p ON p.id = c.pack
                              JOIN remote_marked m ON m.name = p.name WHERE c.refs > 0),
                  users AS (SELECT f.artifact FROM file_chunks fc JOIN files f ON f.id = fc.file
                              WHERE fc.chunk IN (SELECT id FROM stuck)
                            UNION SELECT f.artifact FROM file_streams fs JOIN files f ON f.id = fs.file
                              WHERE fs.chunk IN (SELECT id FROM stuck))
             SELECT DISTINCT rp.key FROM users u JOIN artifacts a ON a.id = u.artifact
               JOIN remote_published rp ON rp.namespace = a.namespace AND rp.name = a.name
              WHERE rp.state IS NOT NULL ORDER BY rp.key",
            [],
            |r| r.get(0),
        )
    }

    /// Rows in a marked (or vanished) pack of chunks in `chunks` take the
    /// location given there, when that is not in one too.
    pub fn repoint_out_of_marked(&mut self, chunks: &[(ChunkId, Location)]) -> Result<()> {
        let p = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .sql(&p)?;
        repoint_rows(&tx, chunks, false).sql(&p)?;
        tx.commit().sql(&p)?;
        Ok(())
    }

    /// When each artifact was last used here (seconds since the epoch).
    pub fn artifact_uses(&self) -> Result<Vec<(String, String, i64)>> {
        self.rows(
            "SELECT namespace, name, last_access FROM artifacts ORDER BY namespace, name",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
    }

    /// The id of pack `p`'s row, if it has one.
    pub fn pack_id(&self, p: PackName) -> Result<Option<i64>> {
        self.conn
            .query_row(
                "SELECT id FROM packs WHERE name = ?1",
                [p.to_string()],
                |r| r.get(0),
            )
            .optional()
            .sql(&self.path)
    }

    /// Keys of the commits applied.
    pub fn applied_commits(&self) -> Result<HashSet<String>> {
        let keys: Vec<String> = self.rows("SELECT key FROM remote_commits", [], |r| r.get(0))?;
        Ok(keys.into_iter().collect())
    }

    /// Artifacts of namespace `ns` (all when None) whose rows differ from
    /// their published version, with what a commit of each states. An
    /// artifact with a file still being written is left for later.
    pub fn unpublished(&self) -> Result<Vec<Unpublished>> {
        let c = &self.conn;
        let p = &self.path;
        let arts: Vec<(i64, String, String, i64, i64)> = self.rows(
            "SELECT id, namespace, name, created, last_access FROM artifacts ORDER BY id",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )?;
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        for (aid, ns, name, created, last_access) in arts {
            seen.insert((ns.clone(), name.clone()));
            let Some(state) = artifact_state(c, aid).sql(p)? else {
                continue; // a file is being written
            };
            let published: Option<Option<Vec<u8>>> = c
                .query_row(
                    "SELECT state FROM remote_published WHERE namespace = ?1 AND name = ?2",
                    params![ns, name],
                    |r| r.get(0),
                )
                .optional()
                .sql(p)?;
            if published.flatten().as_deref() == Some(&state[..]) {
                continue;
            }
            let files = super::migrate::artifact_manifests(c, aid, true).sql(p)?;
            let mut changes = vec![Change::PutArtifact {
                ns: ns.clone(),
                name: name.clone(),
                created,
                last_access,
                replace: true,
                files,
            }];
            changes.extend(super::gzip::artifact_converts(c, &ns, &name, aid).sql(p)?);
            out.push(Unpublished {
                chunks: artifact_chunks(c, aid).sql(p)?,
                ns,
                name,
                state: Some(state),
                changes,
            });
        }
        let removed: Vec<(String, String)> = self.rows(
            "SELECT namespace, name FROM remote_published WHERE state IS NOT NULL",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        for (ns, name) in removed {
            if !seen.contains(&(ns.clone(), name.clone())) {
                out.push(Unpublished {
                    ns,
                    name,
                    state: None,
                    changes: Vec::new(),
                    chunks: Vec::new(),
                });
            }
        }
        Ok(out)
    }

    /// The artifact `ns`/`name` is published as commit `key`, in the state
    /// `state` (None: removed). Unless a commit with a greater key was
    /// applied meanwhile: then false, and nothing changes.
    pub fn set_published(
        &mut self,
        ns: &str,
        name: &str,
        key: &str,
        state: Option<[u8; 32]>,
    ) -> Result<bool> {
        let p = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .sql(&p)?;
        let newer = published_key(&tx, ns, name)
            .sql(&p)?
            .is_some_and(|k| *k > *key);
        if !newer {
            set_published(&tx, ns, name, key, state.as_ref().map(|s| &s[..])).sql(&p)?;
            tx.execute(
                "INSERT OR IGNORE INTO remote_commits(key) VALUES(?1)",
                [key],
            )
            .sql(&p)?;
        }
        tx.commit().sql(&p)?;
        Ok(!newer)
    }

    /// Apply commit `key` of artifact `ns`/`name`: `changes` (empty: a
    /// removal), with `chunks` located in the remote. Chunks the changes
    /// name that neither have a row nor are located here cannot be read:
    /// the commit is refused (an error), nothing changes.
    pub fn apply_commit(
        &mut self,
        key: &str,
        ns: &str,
        name: &str,
        changes: &[Change],
        chunks: &[(ChunkId, Location)],
    ) -> Result<Applied> {
        let p = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .sql(&p)?;
        let known: bool = tx
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM remote_commits WHERE key = ?1)",
                [key],
                |r| r.get(0),
            )
            .sql(&p)?;
        if known {
            return Ok(Applied::Known);
        }
        tx.execute("INSERT INTO remote_commits(key) VALUES(?1)", [key])
            .sql(&p)?;
        if published_key(&tx, ns, name)
            .sql(&p)?
            .is_some_and(|k| *k > *key)
        {
            tx.commit().sql(&p)?;
            return Ok(Applied::Older);
        }
        insert_chunk_rows(&tx, chunks).sql(&p)?;
        repoint_rows(&tx, chunks, true).sql(&p)?;
        {
            let mut remote = tx
                .prepare_cached("INSERT OR IGNORE INTO remote_packs(name) VALUES(?1)")
                .sql(&p)?;
            for pack in chunks.iter().map(|(_, l)| l.pack).collect::<HashSet<_>>() {
                remote.execute([pack.to_string()]).sql(&p)?;
            }
        }
        let state = if changes.is_empty() {
            let change = Change::RemoveArtifact {
                ns: ns.to_owned(),
                name: name.to_owned(),
            };
            if super::artifact_id(&tx, ns, name).sql(&p)?.is_some() {
                apply_change(&tx, &p, &change, None)?;
            }
            None
        } else {
            // A gzip-form file is named by its gz chunks, which no pack
            // need hold (no hot copy): rows for the replay, dropped after,
            // as a rebuild does. Any other chunk nothing locates refuses
            // the commit.
            let missing = missing_chunks(&tx, changes).sql(&p)?;
            super::rebuild::insert_gone(&tx, &missing).sql(&p)?;
            for c in changes {
                apply_change(&tx, &p, c, None)?;
            }
            let problems = super::rebuild::drop_gone(&tx, &p)?;
            if !problems.is_empty() {
                return Err(crate::Error::Index {
                    path: p,
                    message: format!("remote commit {key}: {}", problems.join("; ")),
                });
            }
            let aid = super::artifact_id(&tx, ns, name)
                .sql(&p)?
                .expect("a put was just applied");
            artifact_state(&tx, aid).sql(&p)?
        };
        set_published(&tx, ns, name, key, state.as_ref().map(|s| &s[..])).sql(&p)?;
        tx.commit().sql(&p)?;
        Ok(Applied::Applied)
    }
}

/// Rows of `chunks` in a pack the remote's gc marked (or found gone) take
/// the location given for them, unless that is in one too; with
/// `unreferenced`, so do rows no artifact here references in a published
/// pack: the newest word on where a chunk is that nothing here relies on
/// (a publisher may have rescued it out of a pack this host never saw
/// marked, having not pulled while the mark stood). A referenced row in a
/// live pack stays (its pack is live as long as the artifact using it), and
/// so does a row in a pack of this host's not yet published (its bytes are
/// only here).
fn repoint_rows(
    tx: &Transaction<'_>,
    chunks: &[(ChunkId, Location)],
    unreferenced: bool,
) -> rusqlite::Result<()> {
    const MARKED: &str = "SELECT p.id FROM packs p JOIN remote_marked m ON m.name = p.name";
    let mut movable = tx.prepare_cached(&format!(
        "SELECT EXISTS (SELECT 1 FROM chunks c JOIN packs p ON p.id = c.pack
          WHERE c.id = ?1 AND p.name != ?2 AND ?2 NOT IN (SELECT name FROM remote_marked)
            AND (c.pack IN ({MARKED})
                 OR (?3 AND c.refs <= 0 AND p.name IN (SELECT name FROM remote_packs))))"
    ))?;
    let mut pack = tx.prepare_cached("INSERT OR IGNORE INTO packs(name) VALUES(?1)")?;
    let mut remote = tx.prepare_cached("INSERT OR IGNORE INTO remote_packs(name) VALUES(?1)")?;
    let mut set = tx.prepare_cached(
        "UPDATE chunks SET pack = (SELECT id FROM packs WHERE name = ?2), offset = ?3,
                stored_len = ?4, raw_len = ?5, codec = ?6
          WHERE id = ?1",
    )?;
    for (id, loc) in chunks {
        let name = loc.pack.to_string();
        if !movable.query_row(params![&id.as_bytes()[..], name, unreferenced], |r| {
            r.get::<_, bool>(0)
        })? {
            continue;
        }
        pack.execute([&name])?;
        remote.execute([&name])?;
        set.execute(params![
            &id.as_bytes()[..],
            name,
            loc.offset as i64,
            loc.stored_len,
            loc.raw_len,
            loc.codec as u8
        ])?;
    }
    Ok(())
}

/// Chunks `changes` name that have no row.
fn missing_chunks(
    tx: &Transaction<'_>,
    changes: &[Change],
) -> rusqlite::Result<Vec<(ChunkId, u32)>> {
    let mut has = tx.prepare_cached("SELECT EXISTS (SELECT 1 FROM chunks WHERE id = ?1)")?;
    let mut out = std::collections::HashMap::new();
    for c in changes {
        let lists: Vec<&[(ChunkId, u32)]> = match c {
            Change::PutArtifact { files, .. } => files.iter().map(|f| &f.chunks[..]).collect(),
            Change::ConvertFile { content, side, .. } => vec![content, side],
            _ => continue,
        };
        for (id, len) in lists.into_iter().flatten() {
            if !out.contains_key(id)
                && !has.query_row([&id.as_bytes()[..]], |r| r.get::<_, bool>(0))?
            {
                out.insert(*id, *len);
            }
        }
    }
    Ok(out.into_iter().collect())
}

fn published_key(tx: &Transaction<'_>, ns: &str, name: &str) -> rusqlite::Result<Option<String>> {
    tx.query_row(
        "SELECT key FROM remote_published WHERE namespace = ?1 AND name = ?2",
        params![ns, name],
        |r| r.get(0),
    )
    .optional()
}

fn set_published(
    tx: &Transaction<'_>,
    ns: &str,
    name: &str,
    key: &str,
    state: Option<&[u8]>,
) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT OR REPLACE INTO remote_published(namespace, name, key, state) VALUES(?1, ?2, ?3, ?4)",
        params![ns, name, key, state],
    )?;
    Ok(())
}

/// A digest of artifact `aid`'s rows: its files' ids, names, digests,
/// quarantine and form; None while a file of it is being written.
fn artifact_state(c: &Connection, aid: i64) -> rusqlite::Result<Option<[u8; 32]>> {
    let mut h = blake3::Hasher::new();
    let mut pending = false;
    let mut st = c.prepare_cached(
        "SELECT id, name, hash, coalesce(quarantine, ''), form FROM files WHERE artifact = ?1 ORDER BY id",
    )?;
    let mut rows = st.query([aid])?;
    while let Some(r) = rows.next()? {
        let (id, name, hash, q, form): (i64, String, Vec<u8>, String, i64) =
            (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?);
        pending |= q.starts_with(super::PENDING);
        h.update(&id.to_le_bytes());
        for s in [name.as_bytes(), &hash, q.as_bytes()] {
            h.update(&(s.len() as u64).to_le_bytes());
            h.update(s);
        }
        h.update(&form.to_le_bytes());
    }
    Ok((!pending).then(|| *h.finalize().as_bytes()))
}

/// Every chunk artifact `aid` names that has a row (its files' chunks and
/// streams), with its location, once each.
fn artifact_chunks(c: &Connection, aid: i64) -> rusqlite::Result<Vec<(ChunkId, Location)>> {
    let mut st = c.prepare_cached(
        "SELECT c.id, p.name, c.offset, c.stored_len, c.raw_len, c.codec FROM chunks c
           JOIN packs p ON p.id = c.pack
         WHERE c.id IN (SELECT fc.chunk FROM file_chunks fc JOIN files f ON f.id = fc.file WHERE f.artifact = ?1
                        UNION SELECT fs.chunk FROM file_streams fs JOIN files f ON f.id = fs.file WHERE f.artifact = ?1)",
    )?;
    let rows = st.query_map([aid], |r| {
        let id: Vec<u8> = r.get(0)?;
        let pack: String = r.get(1)?;
        Ok((
            id,
            pack,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get::<_, u8>(5)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, pack, offset, stored_len, raw_len, codec): (Vec<u8>, String, i64, u32, u32, u8) =
            row?;
        let (Some(id), Some(pack), Some(codec)) = (
            ChunkId::from_slice(&id),
            PackName::parse(&pack),
            Codec::from_u8(codec),
        ) else {
            continue;
        };
        out.push((
            id,
            Location {
                pack,
                offset: offset as u64,
                stored_len,
                raw_len,
                codec,
            },
        ));
    }
    Ok(out)
}
