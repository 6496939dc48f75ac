//! Conversion of gzip files to the gzip form (store-layout.md, "Gzip files
//! (format 4)"): a committed as-is file whose bytes start with a gzip
//! header is read, analysed streaming (its inflated content goes through
//! the ordinary chunker, so it dedupes against raw images and other
//! versions; the side data is stored as chunks too), checked by rebuilding
//! it from the *stored* chunks against its own chunk ids, and only then
//! switched to the gzip form in one recorded change (kind 14), if the file
//! row is still the one read. Anything else abandons the work: the file
//! stays as-is and readable, and the chunks stored for it have no
//! reference (gc reclaims them). A digest that does not convert is
//! remembered (`gzip_tried`) and not tried again.
//!
//! This module is also the store's one seam to the gzip codec
//! (`crate::gzip`): [`analyze_stream`] and [`rebuild_stream`]. The codec
//! decides what converts (`gzip::analyze_with`: a member that does not
//! rebuild, side data that is not small, keep the file as it is).

use std::collections::HashMap;
use std::io::{self, Read, Write};

use super::read::FileReader;
use super::{StagedFile, Store};
use crate::error::{Error, Result};
use crate::id::ChunkId;
use crate::index::{ChunkSpan, FileMeta, FileRow, Form, Recipe};
use crate::pack::Location;

/// The codec a `gzip_tried` verdict came from: a file one codec kept as it
/// is is tried again by another (`Index::gzip_candidates`). Bump it when
/// the codec learns to rebuild more (a preflate upgrade).
const CODEC: &str = "preflate-rs 0.7";

/// The first bytes of a gzip member: magic and the deflate method.
const GZIP_MAGIC: [u8; 3] = [0x1f, 0x8b, 0x08];

/// What a conversion of one file came to.
#[derive(Clone, Debug, serde::Serialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum Converted {
    /// Now in the gzip form (its hot copy kept).
    Converted {
        size: u64,
        content_bytes: u64,
        side_bytes: u64,
    },
    /// Not a gzip file (remembered).
    NotGzip,
    /// A gzip file whose bytes its content and side data do not rebuild
    /// (remembered, with why).
    Kept { why: String },
    /// The file changed (replaced, removed, converted by another process)
    /// while it was being converted: nothing done.
    Changed,
    /// Converted already.
    Already,
}

/// One file's result of [`Store::convert`].
#[derive(Clone, Debug, serde::Serialize)]
pub struct ConvertedFile {
    pub artifact: String,
    pub file: String,
    #[serde(flatten)]
    pub result: Converted,
}

impl Store {
    /// Convert the visible as-is files of `names` (every artifact of the
    /// namespace: None) that conversion has not tried yet, one by one.
    pub fn convert(&self, names: Option<&[String]>) -> Result<Vec<ConvertedFile>> {
        let candidates = self.index().gzip_candidates(&self.ns, names, CODEC)?;
        let mut out = Vec::with_capacity(candidates.len());
        for (artifact, row) in candidates {
            let file = row.meta.name.clone();
            let result = self.convert_file(&artifact, row)?;
            out.push(ConvertedFile {
                artifact,
                file,
                result,
            });
        }
        Ok(out)
    }

    /// The namespace's files that conversion has not tried yet: (artifact,
    /// file row), oldest first.
    pub fn convert_candidates(&self) -> Result<Vec<(String, FileRow)>> {
        self.index().gzip_candidates(&self.ns, None, CODEC)
    }

    /// Convert one file (row `row` of `artifact`); see the module doc.
    pub fn convert_file(&self, artifact: &str, row: FileRow) -> Result<Converted> {
        self.convert_file_until(artifact, row, &|| false)
    }

    /// [`Store::convert_file`], abandoned (an error) at the next read of
    /// the file once `stop` says so (the mount is being unmounted).
    pub fn convert_file_until(
        &self,
        artifact: &str,
        row: FileRow,
        stop: &dyn Fn() -> bool,
    ) -> Result<Converted> {
        if row.form != Form::AsIs {
            return Ok(Converted::Already);
        }
        let reader = self.reader_for(artifact, row.clone())?;
        let mut magic = [0u8; 3];
        let n = reader.read_at(0, &mut magic)?;
        if n < 3 || magic != GZIP_MAGIC {
            self.index().mark_tried(&row.hash, crate::index::NOT_GZIP)?;
            return Ok(Converted::NotGzip);
        }
        let meta = FileMeta {
            size: 0,
            ..row.meta.clone()
        };
        let mut content = self.file_writer()?;
        let side = {
            let mut sink = WriterSink {
                store: self,
                writer: &mut content,
                failed: None,
            };
            let mut src = SeqRead::new(&reader, stop);
            let side = analyze_stream(&mut src, &mut sink);
            // A failure to read the file or store its content is the
            // store's (a damaged chunk, a full disk), not the file's: it is
            // an error, and the file is tried again another time.
            if let Some(e) = src.failed.or(sink.failed) {
                return Err(e);
            }
            match side {
                Ok(Ok(side)) => side,
                Ok(Err(why)) => {
                    self.index()
                        .mark_tried(&row.hash, &format!("{CODEC}: {why}"))?;
                    return Ok(Converted::Kept { why });
                }
                Err(e) => {
                    return Err(Error::io(
                        format!("{artifact}/{}", row.meta.name),
                        io::Error::other(e),
                    ))
                }
            }
        };
        pause("analysed");
        let content = content.finish(self, meta.clone())?;
        let mut side_writer = self.file_writer()?;
        side_writer.write(self, &side)?;
        let side = side_writer.finish(self, meta)?;
        pause("stored");
        // The proof: the stored chunks rebuild the file's own chunks.
        if let Err(e) = self.check_rebuild(artifact, &row, &reader, &content, &side) {
            let why = format!("the stored gzip form does not rebuild it: {e}");
            self.index()
                .mark_tried(&row.hash, &format!("{CODEC}: {why}"))?;
            return Ok(Converted::Kept { why });
        }
        pause("checked");
        let (content_bytes, side_bytes) = (content.meta.size, side.meta.size);
        let new_chunks: Vec<(ChunkId, Location)> = content
            .new_chunks
            .iter()
            .chain(side.new_chunks.iter())
            .copied()
            .collect();
        let res = self.index().convert_file(
            &self.ns,
            artifact,
            &row,
            content.chunks.clone(),
            side.chunks.clone(),
            &new_chunks,
        );
        let made = self.after_commit(&[content, side], res)?;
        pause("committed");
        Ok(if made {
            Converted::Converted {
                size: row.meta.size,
                content_bytes,
                side_bytes,
            }
        } else {
            Converted::Changed
        })
    }

    /// Rebuild `row` from the stored `content` and `side` and check every
    /// piece against its gzip chunk id.
    fn check_rebuild(
        &self,
        artifact: &str,
        row: &FileRow,
        as_is: &FileReader,
        content: &StagedFile,
        side: &StagedFile,
    ) -> Result<()> {
        let Recipe::Chunks(gz) = as_is.recipe() else {
            unreachable!("conversion reads an as-is file")
        };
        let gz = gz.spans().iter().map(|s| (s.id, s.loc.raw_len)).collect();
        let recipe = Recipe::gzip(
            self.stored_spans(content)?,
            self.stored_spans(side)?,
            gz,
            Vec::new(),
        )
        .map_err(|why| Error::Index {
            path: self.core.root.join("index.sqlite"),
            message: why,
        })?;
        let r = FileReader::new(
            self.core.clone(),
            self.workers,
            artifact,
            row.clone(),
            recipe,
        );
        let mut pieces = r.rebuild()?;
        while pieces.next_piece()?.is_some() {}
        Ok(())
    }

    /// The spans of a staged file's chunks, located where this writer
    /// stored them or where the index has them.
    fn stored_spans(&self, f: &StagedFile) -> Result<Vec<ChunkSpan>> {
        let mine: HashMap<ChunkId, Location> = f.new_chunks.iter().copied().collect();
        let mut offset = 0u64;
        let mut out = Vec::with_capacity(f.chunks.len());
        for (id, len) in &f.chunks {
            let loc = match mine.get(id) {
                Some(l) => *l,
                None => self
                    .index()
                    .chunk_location(id)?
                    .ok_or_else(|| Error::Index {
                        path: self.core.root.join("index.sqlite"),
                        message: format!("chunk {id} went from the index during a conversion"),
                    })?,
            };
            out.push(ChunkSpan {
                id: *id,
                offset,
                loc,
            });
            offset += u64::from(*len);
        }
        Ok(out)
    }
}

/// A test hook: `DEPLOYCACHE_CONVERT_PAUSE=STEP:MS` sleeps that long after
/// conversion step STEP (analysed, stored, checked, committed), so that a
/// test can kill it there.
fn pause(step: &str) {
    super::pause_at("DEPLOYCACHE_CONVERT_PAUSE", step);
}

/// A file's bytes from the start, through `read_at` (whose prefetch
/// follows a sequential reader).
/// A store error is kept whole for the caller.
pub(crate) struct SeqRead<'a> {
    r: &'a FileReader,
    pos: u64,
    failed: Option<Error>,
    stop: &'a dyn Fn() -> bool,
}

impl<'a> SeqRead<'a> {
    pub(crate) fn new(r: &'a FileReader, stop: &'a dyn Fn() -> bool) -> SeqRead<'a> {
        SeqRead {
            r,
            pos: 0,
            failed: None,
            stop,
        }
    }
}

impl Read for SeqRead<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if (self.stop)() {
            let e = Error::io(
                format!("{}/{}", self.r.artifact, self.r.file),
                io::Error::new(io::ErrorKind::Interrupted, "conversion stopped"),
            );
            self.failed = Some(e);
            return Err(io::Error::other("conversion stopped"));
        }
        match self.r.read_at(self.pos, buf) {
            Ok(n) => {
                self.pos += n as u64;
                Ok(n)
            }
            Err(e) => {
                let msg = e.to_string();
                self.failed = Some(e);
                Err(io::Error::other(msg))
            }
        }
    }
}

/// The content stream of an analysis, into a file writer (chunked like any
/// file). A store error is kept whole for the caller.
struct WriterSink<'a> {
    store: &'a Store,
    writer: &'a mut super::FileWriter,
    failed: Option<Error>,
}

impl Write for WriterSink<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Err(e) = self.writer.write(self.store, buf) {
            let msg = e.to_string();
            self.failed = Some(e);
            return Err(io::Error::other(msg));
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

// ---- the seam to the gzip codec -------------------------------------------

/// Analyse the gzip file `src`: its content stream into `content`, and its
/// side data (encoded) back; `Ok(Err(why))` when it is kept as it is (not
/// gzip, no member rebuilds, side data not small: `gzip::analyze_with`).
/// `Err`: reading the file or writing the content failed.
pub(crate) fn analyze_stream(
    src: &mut dyn Read,
    content: &mut dyn Write,
) -> std::result::Result<std::result::Result<Vec<u8>, String>, crate::gzip::GzipError> {
    match crate::gzip::analyze_with(src, content, &crate::gzip::Options::default())? {
        crate::gzip::Verdict::Split(side) => Ok(Ok(side.encode())),
        crate::gzip::Verdict::Keep(why) => Ok(Err(why.to_string())),
    }
}

/// The bytes that `side` (from [`analyze_stream`]) and the content stream
/// `content` rebuild; `Err(why)` when `side` cannot be decoded.
pub(crate) fn rebuild_stream<'a>(
    side: &[u8],
    content: Box<dyn Read + 'a>,
) -> std::result::Result<Box<dyn Read + 'a>, String> {
    let side = crate::gzip::SideData::decode(side).map_err(|e| e.to_string())?;
    Ok(Box::new(crate::gzip::Rebuild::new(side, content)))
}
