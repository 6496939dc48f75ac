//! Where the index writes its manifest records: the [`Journal`] trait and
//! the store's implementation, [`ManifestLog`], a pack of the process's own.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::id::ChunkId;
use crate::lock::GcGuard;
use crate::pack::{self, EncodedChunk, PackName, PackWriter};

/// Where the index writes its manifest records. The store's
/// implementation is [`ManifestLog`].
pub trait Journal: Send {
    /// Called before the transaction a record will be part of begins: keeps
    /// gc and the orphan sweep from taking a pack written to now for a
    /// crashed writer's leftovers until [`Journal::release`].
    fn hold(&mut self) -> Result<()>;
    /// That transaction has ended (committed or not).
    fn release(&mut self);
    /// Append one record payload; returns the pack it went to. Not durable
    /// until [`Journal::sync`].
    fn write(&mut self, payload: &[u8]) -> Result<PackName>;
    /// Make every record written so far durable.
    fn sync(&mut self) -> Result<()>;
}

/// The pack this process appends its manifest records to: a pack of its
/// own, apart from the chunk lanes, so that a process that only removes or
/// renames needs no chunk pack, and a mount's records of a day lie together.
pub struct ManifestLog {
    root: PathBuf,
    packs_dir: PathBuf,
    writer: Option<PackWriter>,
    /// `gc.lock` shared, from [`Journal::hold`] to [`Journal::release`]:
    /// every index commit happens under it (store-layout.md, "Orphan
    /// packs"), so a sweep never sees this process's manifest pack without
    /// its `packs` row once its writer has let go of the pack.
    gc: Option<GcGuard>,
}

impl ManifestLog {
    /// The manifest log of the store at `root`.
    pub fn new(root: &Path) -> ManifestLog {
        ManifestLog {
            root: root.to_owned(),
            packs_dir: root.join("packs"),
            writer: None,
            gc: None,
        }
    }
}

impl Journal for ManifestLog {
    fn hold(&mut self) -> Result<()> {
        if self.gc.is_none() {
            self.gc = Some(GcGuard::writer(&self.root)?);
        }
        Ok(())
    }

    fn release(&mut self) {
        self.gc = None;
    }

    fn write(&mut self, payload: &[u8]) -> Result<PackName> {
        let raw_len = u32::try_from(payload.len()).map_err(|_| Error::Index {
            path: self.packs_dir.clone(),
            message: format!(
                "a manifest record of {} bytes exceeds the 4 GiB record limit",
                payload.len()
            ),
        })?;
        if self
            .writer
            .as_ref()
            .is_some_and(|w| w.len() >= pack::PACK_TARGET_SIZE)
        {
            // Sealed: every record in it was synced before its commit.
            self.writer = None;
        }
        let writer = match &mut self.writer {
            Some(w) => w,
            None => self.writer.insert(PackWriter::create(&self.packs_dir)?),
        };
        let record = EncodedChunk {
            id: ChunkId::of(payload),
            raw_len,
            compressed: None,
        };
        match writer.append_record(pack::MANIFEST_MAGIC, &record, payload) {
            Ok(_) => Ok(writer.name),
            Err(e) => {
                // Start a new pack next time rather than append after bytes
                // of unknown state.
                self.writer = None;
                Err(e)
            }
        }
    }

    fn sync(&mut self) -> Result<()> {
        let res = match &mut self.writer {
            Some(w) => w.sync(),
            None => Ok(()),
        };
        if res.is_err() {
            self.writer = None;
        }
        res
    }
}
