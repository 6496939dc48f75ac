//! The store's [`Journal`]: the index's manifest records appended to a
//! pack of the process's own, through the store's [`PackStore`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::id::ChunkId;
use crate::lock::GcGuard;
use crate::manifest::Journal;
use crate::pack::{self, Codec, PackName, PackSink, PackStore, RecordHead, RecordKind};

/// The pack this process appends its manifest records to: a pack of its
/// own, apart from the chunk lanes, so that a process that only removes or
/// renames needs no chunk pack, and a mount's records of a day lie together.
pub(super) struct ManifestLog {
    root: PathBuf,
    packs: Arc<dyn PackStore>,
    writer: Option<Box<dyn PackSink>>,
    /// `gc.lock` shared, from [`Journal::hold`] to [`Journal::release`]:
    /// every index commit happens under it (store-layout.md, "Orphan
    /// packs"), so a sweep never sees this process's manifest pack without
    /// its `packs` row once its writer has let go of the pack.
    gc: Option<GcGuard>,
    /// Whether a record was written since [`Journal::hold`]: the records
    /// of one transaction go to one pack, whatever its size, so a pack
    /// full before the transaction is sealed at its first record, never
    /// in the middle of it (a checkpoint's records are then swept or kept
    /// together, and one `sync` reaches all of them).
    written: bool,
}

impl ManifestLog {
    /// The manifest log of the store at `root`, whose packs are `packs`.
    pub(super) fn new(root: &Path, packs: Arc<dyn PackStore>) -> ManifestLog {
        ManifestLog {
            root: root.to_owned(),
            packs,
            writer: None,
            gc: None,
            written: false,
        }
    }
}

impl Journal for ManifestLog {
    fn hold(&mut self) -> Result<()> {
        if self.gc.is_none() {
            self.gc = Some(GcGuard::writer(&self.root)?);
        }
        self.written = false;
        Ok(())
    }

    fn release(&mut self) {
        self.gc = None;
    }

    fn let_go(&mut self) {
        // Held: a transaction is under way (not from this thread, which
        // holds the index; the guard would be stale otherwise).
        if self.gc.is_none() {
            self.writer = None;
        }
    }

    fn write(&mut self, payload: &[u8]) -> Result<PackName> {
        let raw_len = u32::try_from(payload.len()).map_err(|_| Error::Index {
            path: self.root.join("packs"),
            message: format!(
                "a manifest record of {} bytes exceeds the 4 GiB record limit",
                payload.len()
            ),
        })?;
        if !self.written
            && self
                .writer
                .as_ref()
                .is_some_and(|w| w.len() >= pack::PACK_TARGET_SIZE)
        {
            // Sealed: every record in it was synced before its commit.
            self.writer = None;
        }
        self.written = true;
        let writer = match &mut self.writer {
            Some(w) => w,
            None => self.writer.insert(self.packs.create()?),
        };
        let head = RecordHead {
            kind: RecordKind::Manifest,
            id: ChunkId::of(payload),
            raw_len,
            codec: Codec::Raw,
        };
        match writer.append(&head, payload) {
            Ok(_) => Ok(writer.name()),
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
