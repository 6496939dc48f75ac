//! What the FUSE view asks the store besides reading and writing files:
//! lookups and changes of artifacts and files in the store's namespace,
//! opening a file by its index row, and reading back a staged (not yet
//! committed) file, which the view needs when a writer stops writing
//! sequentially and its bytes must move to a spill file.
//!
//! Kept apart from `store.rs` so the write pipeline there can change
//! without touching the view's needs.

use std::collections::HashMap;
use std::io::{self, Write};

use super::{FileReader, StagedFile, Store};
use crate::error::{Error, Result};
use crate::index::FileRow;
use crate::pack;

impl Store {
    // ---- lookups -------------------------------------------------------------

    /// Whether the namespace has artifact `name`.
    pub fn artifact_exists(&self, name: &str) -> Result<bool> {
        self.index().artifact_exists(&self.ns, name)
    }

    /// Names of the namespace's artifacts, sorted: the view's root listing
    /// (cheaper than [`Store::list`], which sums sizes).
    pub fn artifact_names(&self) -> Result<Vec<String>> {
        self.index().artifact_names(&self.ns)
    }

    /// The visible file `file` of `artifact`; fails with `NoArtifact` or
    /// `NoFile`.
    pub fn file(&self, artifact: &str, file: &str) -> Result<FileRow> {
        self.index().file(&self.ns, artifact, file)
    }

    /// The file row with this id (visible or not), if it still exists.
    pub fn file_by_id(&self, file_id: i64) -> Result<Option<FileRow>> {
        self.index().file_by_id(file_id)
    }

    /// Open a file by its index row id (visible or not). `artifact` only
    /// names the file in error messages. Fails with `NoFile` once the row is gone.
    pub fn open_file_id(&self, artifact: &str, file_id: i64) -> Result<FileReader> {
        let row = self.file_by_id(file_id)?.ok_or_else(|| Error::NoFile {
            artifact: artifact.to_owned(),
            file: format!("#{file_id}"),
        })?;
        self.reader_for(artifact, row)
    }

    // ---- changes -------------------------------------------------------------

    /// Create an empty artifact (a cache miss in progress); fails if it exists.
    pub fn create_empty_artifact(&self, name: &str) -> Result<()> {
        crate::name::check_artifact(name)?;
        self.index().create_artifact(&self.ns, name)
    }

    /// Rename an artifact; fails with `ArtifactExists` if `to` exists.
    pub fn rename_artifact(&self, from: &str, to: &str) -> Result<()> {
        self.index().rename_artifact(&self.ns, from, to)
    }

    /// Remove the visible file `file` of `artifact`.
    pub fn remove_file(&self, artifact: &str, file: &str) -> Result<()> {
        self.index().remove_file(&self.ns, artifact, file)
    }

    /// Move a visible file, `(artifact, name)` to `(artifact, name)`,
    /// replacing any file there.
    pub fn rename_file(&self, from: (&str, &str), to: (&str, &str)) -> Result<()> {
        self.index().rename_file(&self.ns, from, to)
    }

    /// Change a visible file's mode and/or mtime (its content stays).
    pub fn set_file_meta(
        &self,
        artifact: &str,
        file: &str,
        mode: Option<u32>,
        mtime_ns: Option<i64>,
    ) -> Result<()> {
        self.index()
            .update_file_meta(&self.ns, artifact, file, mode, mtime_ns)
    }

    // ---- staged files --------------------------------------------------------

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
                        self.core.root.join("packs"),
                        io::Error::other(format!("chunk {id} of a staged file is not indexed")),
                    )
                })?,
            };
            let payload = self.core.packs.read_payload(&loc)?;
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
