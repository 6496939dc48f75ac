//! Store-side support for the FUSE view: opening a file by its index row,
//! chunk geometry for per-handle caches, and reading back a staged (not yet
//! committed) file, which the view needs when a writer stops writing
//! sequentially and its bytes must move to a spill file.
//!
//! Kept apart from `store.rs` so the write pipeline there can change
//! without touching the view's needs.

use std::collections::HashMap;
use std::io::{self, Write};

use super::{FileReader, StagedFile, Store};
use crate::error::{Error, Result};
use crate::pack;

impl Store {
    /// Open a file by its index row id (visible or not). `artifact` only
    /// names the file in error messages. Fails with `NoFile` once the row is gone.
    pub fn open_file_id(&self, artifact: &str, file_id: i64) -> Result<FileReader> {
        let row = self
            .index()
            .file_by_id(file_id)?
            .ok_or_else(|| Error::NoFile {
                artifact: artifact.to_owned(),
                file: format!("#{file_id}"),
            })?;
        self.reader_for(artifact, row)
    }

    /// Names of the namespace's artifacts, sorted: the view's root listing
    /// (cheaper than [`Store::list`], which sums sizes).
    pub fn artifact_names(&self) -> Result<Vec<String>> {
        self.index().artifact_names(&self.ns)
    }

    /// Write a staged file's bytes to `out`, every chunk checked. Chunks
    /// this writer stored are found through the staged file, the others
    /// through the index.
    pub fn copy_staged_to(&self, staged: &StagedFile, out: &mut dyn Write) -> Result<()> {
        let mine: HashMap<_, _> = staged.new_chunks.iter().copied().collect();
        for (id, _) in &staged.chunks {
            let loc = match mine.get(id) {
                Some(l) => *l,
                None => self.index().chunk_location(id)?.ok_or_else(|| {
                    Error::io(
                        self.root.join("packs"),
                        io::Error::other(format!("chunk {id} of a staged file is not indexed")),
                    )
                })?,
            };
            let payload = self.packs.read_payload(&loc)?;
            let data = pack::decode(id, &loc, payload).map_err(|why| Error::CorruptPackRecord {
                chunk: *id,
                pack: loc.pack.to_string(),
                why,
            })?;
            out.write_all(&data)
                .map_err(|e| Error::io("<spill file>", e))?;
        }
        Ok(())
    }
}

impl FileReader {
    /// Offset of chunk `i`'s first byte in the file, and its length.
    pub fn chunk_span(&self, i: usize) -> (u64, u64) {
        let start = self.spans[i].offset;
        let end = self
            .spans
            .get(i + 1)
            .map(|s| s.offset)
            .unwrap_or(self.size());
        (start, end - start)
    }

    /// The index row of the content this reader reads.
    pub fn file_id(&self) -> i64 {
        self.row.id
    }
}

impl Store {
    /// Create an empty artifact (a cache miss in progress); fails if it exists.
    pub fn create_empty_artifact(&self, name: &str) -> Result<()> {
        crate::name::check_artifact(name)?;
        self.index().create_artifact(&self.ns, name)
    }
}
