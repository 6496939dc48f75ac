//! Walking a pack record by record without the index (verify, index
//! rebuild): each header checked, the walk stopping at the first torn or
//! unrecognised record.

use super::format::{
    decode, Location, PackName, RecordHead, RecordKind, PACK_MAGIC, RECORD_HEADER_LEN,
};
use super::PackStore;
use crate::error::Result;
use crate::id::ChunkId;

/// One record found by scanning a pack.
pub struct ScannedRecord {
    pub kind: RecordKind,
    pub id: ChunkId,
    pub loc: Location,
}

/// Where a scan of a pack stopped before its end, and why.
#[derive(Clone, Debug)]
pub struct ScanStop {
    /// Offset of the first byte not part of a well-formed record.
    pub at: u64,
    pub why: String,
}

/// Walk the records of pack `name` (of `size` bytes) in order, checking
/// each header: record magic, codec, lengths within the pack. Stops at the
/// first torn or unrecognised record and says where; records after it
/// cannot be found without the index. Fails only when the pack cannot be
/// read at all.
pub fn scan(
    packs: &dyn PackStore,
    name: PackName,
    size: u64,
) -> Result<(Vec<ScannedRecord>, Option<ScanStop>)> {
    let mut magic = [0u8; 8];
    if size < magic.len() as u64
        || packs.read_at(name, 0, &mut magic).is_err()
        || &magic != PACK_MAGIC
    {
        let why = "missing pack header (\"DCPACK01\")".to_owned();
        return Ok((Vec::new(), Some(ScanStop { at: 0, why })));
    }
    let mut pos = magic.len() as u64;
    let mut out = Vec::new();
    while pos < size {
        let mut h = [0u8; RECORD_HEADER_LEN];
        let stop = |why: String| Some(ScanStop { at: pos, why });
        if pos + RECORD_HEADER_LEN as u64 > size || packs.read_at(name, pos, &mut h).is_err() {
            return Ok((out, stop(format!("torn record header at {pos}"))));
        }
        let (head, stored_len) = match RecordHead::parse(&h) {
            Ok(h) => h,
            Err(why) => return Ok((out, stop(format!("{why} at {pos}")))),
        };
        let offset = pos + RECORD_HEADER_LEN as u64;
        if offset + stored_len as u64 > size {
            return Ok((out, stop(format!("torn record payload at {pos}"))));
        }
        out.push(ScannedRecord {
            kind: head.kind,
            id: head.id,
            loc: Location {
                pack: name,
                offset,
                stored_len,
                raw_len: head.raw_len,
                codec: head.codec,
            },
        });
        pos = offset + stored_len as u64;
    }
    Ok((out, None))
}

/// Read a record's payload, decode it and check it against its id;
/// returns the decoded bytes, or what is wrong.
pub fn check_record(
    packs: &dyn PackStore,
    id: &ChunkId,
    loc: &Location,
) -> std::result::Result<Vec<u8>, String> {
    let payload = packs.read_payload(loc).map_err(|e| e.to_string())?;
    decode(id, loc, payload)
}
