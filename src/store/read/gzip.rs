//! Reading a gzip-form file that has no hot copy (store-layout.md, "Gzip
//! files (format 4)"): its bytes are rebuilt from its content and side
//! data, streaming, cut at the lengths of its gzip chunks, and each piece
//! is checked against that chunk's id (BLAKE3) before any byte of it is
//! served. A piece that does not match is a corrupt-chunk error naming the
//! file and offset: damaged side data or content gives an error, never
//! wrong bytes.
//!
//! A rebuild starts at the beginning of the file whatever offset is asked
//! for: the deflate predictor's state cannot be saved midway, so a reader
//! of a cold file that wants offset X pays for the bytes before X. The
//! mount shares one rebuild per open file (`fuse/handles`), and reads that
//! store the pieces promote the file to hot (`store/promote`).

use std::io::{self, Read};

use super::reader::FileReader;
use crate::error::{Error, Result};
use crate::id::ChunkId;
use crate::index::{ChunkList, GzChunks, Recipe};

/// The bytes of a chunk list, read and checked chunk by chunk, as a
/// [`Read`] (a rebuild's content input).
pub(crate) struct ListRead<'a> {
    reader: &'a FileReader,
    list: &'a ChunkList,
    next: usize,
    buf: Vec<u8>,
    at: usize,
}

impl<'a> ListRead<'a> {
    pub(crate) fn new(reader: &'a FileReader, list: &'a ChunkList) -> ListRead<'a> {
        ListRead {
            reader,
            list,
            next: 0,
            buf: Vec::new(),
            at: 0,
        }
    }
}

impl Read for ListRead<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.at == self.buf.len() {
            if self.next == self.list.len() {
                return Ok(0);
            }
            self.buf = self
                .reader
                .read_chunk(self.list, self.next)
                .map_err(io::Error::other)?;
            self.at = 0;
            self.next += 1;
        }
        let n = out.len().min(self.buf.len() - self.at);
        out[..n].copy_from_slice(&self.buf[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// The pieces of a rebuilt file, each the bytes of one of its gzip chunks,
/// checked against that chunk's id.
pub struct Pieces<R> {
    src: R,
    gz: GzChunks,
    next: usize,
    offset: u64,
    artifact: String,
    file: String,
}

impl<R: Read> Pieces<R> {
    pub(crate) fn new(src: R, gz: GzChunks, artifact: &str, file: &str) -> Pieces<R> {
        Pieces {
            src,
            gz,
            next: 0,
            offset: 0,
            artifact: artifact.to_owned(),
            file: file.to_owned(),
        }
    }

    /// The file offset of the next piece.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The next piece: its index, id and bytes (checked); None after the last.
    pub fn next_piece(&mut self) -> Result<Option<(usize, ChunkId, Vec<u8>)>> {
        let Some(&(id, len)) = self.gz.list().get(self.next) else {
            let mut extra = [0u8; 1];
            return match self.src.read(&mut extra) {
                Ok(0) => Ok(None),
                Ok(_) => Err(self.corrupt(
                    id_or_zero(&self.gz),
                    "the rebuild makes more bytes than the file holds".into(),
                )),
                Err(e) => Err(self.failed(e)),
            };
        };
        let mut buf = vec![0u8; len as usize];
        let mut got = 0;
        while got < buf.len() {
            match self.src.read(&mut buf[got..]) {
                Ok(0) => {
                    let why = format!("the rebuild ends {} bytes into this chunk of {len}", got);
                    return Err(self.corrupt(id, why));
                }
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.failed(e)),
            }
        }
        if ChunkId::of(&buf) != id {
            let why = "the bytes rebuilt from its gzip form do not match (its side data or content is damaged)".into();
            return Err(self.corrupt(id, why));
        }
        let i = self.next;
        self.next += 1;
        self.offset += u64::from(len);
        Ok(Some((i, id, buf)))
    }

    fn corrupt(&self, chunk: ChunkId, why: String) -> Error {
        Error::CorruptChunk {
            chunk,
            artifact: self.artifact.clone(),
            file: self.file.clone(),
            offset: self.offset,
            why,
        }
    }

    /// A failure of the rebuild's input (a content chunk that failed its
    /// check comes back as its own error) or of the decoder.
    fn failed(&self, e: io::Error) -> Error {
        match e.downcast::<Error>() {
            Ok(inner) => inner,
            Err(e) => {
                let chunk = self
                    .gz
                    .list()
                    .get(self.next)
                    .map_or(id_or_zero(&self.gz), |c| c.0);
                self.corrupt(chunk, format!("its gzip form cannot be rebuilt: {e}"))
            }
        }
    }
}

fn id_or_zero(gz: &GzChunks) -> ChunkId {
    gz.list().last().map_or(ChunkId([0; 32]), |c| c.0)
}

impl FileReader {
    /// Whether reading this file needs a rebuild (gzip form, no hot copy).
    pub fn is_cold(&self) -> bool {
        matches!(self.recipe(), Recipe::Gzip { hot: None, .. })
    }

    /// Rebuild this gzip-form file from its content and side data: its
    /// checked pieces, in order, from the start.
    pub fn rebuild(&self) -> Result<Pieces<Box<dyn Read + '_>>> {
        let Recipe::Gzip {
            content, side, gz, ..
        } = self.recipe()
        else {
            unreachable!("only a gzip-form file is rebuilt")
        };
        let mut side_bytes = Vec::with_capacity(side.size() as usize);
        ListRead::new(self, side)
            .read_to_end(&mut side_bytes)
            .map_err(|e| match e.downcast::<Error>() {
                Ok(inner) => inner,
                Err(e) => Error::io("<side data>", e),
            })?;
        let content: Box<dyn Read + '_> = Box::new(ListRead::new(self, content));
        let bytes = crate::store::convert::rebuild_stream(&side_bytes, content).map_err(|why| {
            Error::CorruptChunk {
                chunk: side.spans().first().map_or(ChunkId([0; 32]), |s| s.id),
                artifact: self.artifact.clone(),
                file: self.file.clone(),
                offset: 0,
                why: format!("its side data cannot be decoded: {why}"),
            }
        })?;
        Ok(Pieces::new(bytes, gz.clone(), &self.artifact, &self.file))
    }

    /// [`FileReader::read_at`] of a cold file: rebuilt from the start, the
    /// pieces before `offset` dropped once checked.
    pub(super) fn read_cold_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let end = self.size().min(offset.saturating_add(buf.len() as u64));
        if offset >= end {
            return Ok(0);
        }
        let mut pieces = self.rebuild()?;
        let mut at = 0usize;
        loop {
            let start = pieces.offset();
            let Some((_, _, piece)) = pieces.next_piece()? else {
                break;
            };
            let piece_end = start + piece.len() as u64;
            if piece_end <= offset {
                continue;
            }
            let from = offset.max(start) - start;
            let to = end.min(piece_end) - start;
            let n = (to - from) as usize;
            buf[at..at + n].copy_from_slice(&piece[from as usize..to as usize]);
            at += n;
            if piece_end >= end {
                break;
            }
        }
        Ok(at)
    }

    /// [`FileReader::copy_to`] of a cold file, each piece handed to `each`
    /// once checked (and before it is written).
    pub(crate) fn copy_cold_to(
        &self,
        out: &mut dyn io::Write,
        progress: &crate::progress::Progress,
        each: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<()> {
        let mut pieces = self.rebuild()?;
        while let Some((_, _, piece)) = pieces.next_piece()? {
            each(&piece)?;
            out.write_all(&piece)
                .map_err(|e| Error::io("<output>", e))?;
            progress.inc(piece.len() as u64);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes cut into chunks of these lengths, as a gzip chunk list.
    fn gz_of(data: &[u8], lens: &[usize]) -> GzChunks {
        let mut at = 0;
        let list = lens
            .iter()
            .map(|&l| {
                let id = ChunkId::of(&data[at..at + l]);
                at += l;
                (id, l as u32)
            })
            .collect();
        GzChunks::new(list)
    }

    fn all(mut p: Pieces<&[u8]>) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        while let Some((_, _, piece)) = p.next_piece()? {
            out.extend_from_slice(&piece);
        }
        Ok(out)
    }

    #[test]
    fn pieces_are_served_only_when_they_hash_to_their_chunk() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let gz = gz_of(&data, &[4000, 5000, 1000]);
        assert_eq!(
            all(Pieces::new(&data[..], gz.clone(), "a", "f")).unwrap(),
            data
        );
        // One byte wrong in the second piece: the first is served, the
        // second is an error naming where it starts.
        let mut bad = data.clone();
        bad[6000] ^= 1;
        let mut p = Pieces::new(&bad[..], gz.clone(), "a", "f");
        assert_eq!(p.next_piece().unwrap().unwrap().2, data[..4000]);
        match p.next_piece() {
            Err(Error::CorruptChunk { offset, file, .. }) => {
                assert_eq!((offset, file.as_str()), (4000, "f"))
            }
            other => panic!("{other:?}"),
        }
        // Too short and too long are errors too.
        assert!(all(Pieces::new(&data[..9_999], gz.clone(), "a", "f")).is_err());
        let mut long = data.clone();
        long.push(0);
        assert!(all(Pieces::new(&long[..], gz, "a", "f")).is_err());
    }
}
