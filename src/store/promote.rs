//! Promotion: a cold gzip-form file read whole (cat, export, the mount's
//! shared rebuild) keeps the pieces its rebuild checked as chunks, and once
//! every piece is stored, becomes hot in one index transaction (its
//! `file_chunks` from its `gzip_chunks`, each referenced), if it is still
//! that cold file. Not a recorded change: a hot copy is a cache, which gc
//! drops first under pressure (store-layout.md, "Gzip files (format 4)").
//! A promotion that fails (a full disk) leaves the file cold and the read
//! unharmed: the bytes were served already.

use std::io::Write;

use super::read::FileReader;
use super::{FileWriter, Store};
use crate::error::Result;
use crate::progress::Progress;

/// The hot copy of one file being stored, piece by piece.
pub struct Promotion {
    writer: Option<FileWriter>,
    file_id: i64,
    hash: crate::id::FileHash,
    meta: crate::index::FileMeta,
}

impl Store {
    /// Stream a whole file to `out`: [`FileReader::copy_to`]; a cold
    /// gzip-form file is rebuilt, and promoted as it goes.
    pub fn copy_to(&self, r: &FileReader, out: &mut dyn Write, progress: &Progress) -> Result<()> {
        if !r.is_cold() {
            return r.copy_to(out, progress);
        }
        let mut hot = self.start_promotion(r);
        r.copy_cold_to(out, progress, &mut |piece| {
            hot.add(self, piece);
            Ok(())
        })?;
        hot.finish(self);
        Ok(())
    }

    /// Start keeping the hot copy of cold file `r`.
    pub fn start_promotion(&self, r: &FileReader) -> Promotion {
        Promotion {
            writer: self.file_writer().ok(),
            file_id: r.file_id(),
            hash: r.row.hash,
            meta: r.row.meta.clone(),
        }
    }
}

impl Promotion {
    /// Store the next checked piece of the file (one chunk). A failure
    /// ends the promotion, not the read.
    pub fn add(&mut self, store: &Store, piece: &[u8]) {
        if let Some(w) = &mut self.writer {
            if w.write_chunk(store, piece.to_vec()).is_err() {
                self.writer = None;
            }
        }
    }

    /// Every piece was added: make the file hot, if it is still that cold
    /// file. Returns whether it did.
    pub fn finish(self, store: &Store) -> bool {
        let Some(w) = self.writer else { return false };
        let Ok(staged) = w.finish(store, self.meta) else {
            return false;
        };
        if staged.hash != self.hash {
            return false; // not every piece came (a read that stopped short)
        }
        let res = store
            .index()
            .promote(self.file_id, &self.hash, staged.new_chunks.iter());
        store
            .after_commit(std::slice::from_ref(&staged), res)
            .unwrap_or(false)
    }
}
