//! The commit object: one per published artifact version, the atomic
//! "pointer" of the remote (store-layout.md, "Remote"). Written with a
//! single PUT after every pack it locates chunks in was uploaded, under a
//! new key; never modified.
//!
//! ```text
//! key    := "commits/" time_ns:020 "-" host "-" nonce:016x ".commit"
//! object := "DCRC" version:u8 (= 1) host:str time_ns:i64 nonce:u64
//!           name:str ns:str n:u32 record{n} m:u32 location{m} blake3[32]
//! record := len:u32 payload       a manifest record's payload (manifest/codec.rs)
//! location := chunk_id[32] pack:u128 offset:u64 stored_len:u32 raw_len:u32 codec:u8
//! str    := len:u32 utf8
//! ```
//! The records state the artifact `ns`/`name` whole (a `PutArtifact` with
//! `replace`, then one `ConvertFile` per file in the gzip form, as a
//! checkpoint states it), or, with no record, its removal. The locations
//! are those of every chunk it names that has one: an artifact's newest
//! commit alone says where all of it is (the remote's gc computes the live
//! packs from the newest commits). The trailing BLAKE3 covers every
//! byte before it: a damaged or cut object is refused, never applied.
//!
//! Keys sort by the writer's clock, then host and nonce: every host
//! applies commits in key order and lets a name's version with the greater
//! key win, so that two hosts writing one name at once end with the same
//! version, whole, whatever order they see the commits in.

use crate::id::ChunkId;
use crate::manifest::{Change, Record};
use crate::pack::{Codec, Location, PackName};

const MAGIC: &[u8; 4] = b"DCRC";
const VERSION: u8 = 1;
/// Where commit objects live in a remote.
pub const PREFIX: &str = "commits/";

/// One published version of an artifact (or its removal).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Commit {
    /// The publishing host (`[0-9a-z-]`, see [`host_id`]).
    pub host: String,
    /// The publisher's clock when it published, and a random tiebreak.
    pub time_ns: i64,
    pub nonce: u64,
    pub ns: String,
    pub name: String,
    /// The changes that state the artifact whole; empty: it was removed.
    pub changes: Vec<Change>,
    /// Where the chunks this version stored first are.
    pub chunks: Vec<(ChunkId, Location)>,
}

impl Commit {
    /// Its key in the remote.
    pub fn key(&self) -> String {
        commit_key(self.time_ns, &self.host, self.nonce)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + 61 * self.chunks.len());
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        put_str(&mut out, &self.host);
        out.extend_from_slice(&self.time_ns.to_le_bytes());
        out.extend_from_slice(&self.nonce.to_le_bytes());
        put_str(&mut out, &self.name);
        put_str(&mut out, &self.ns);
        out.extend_from_slice(&(self.changes.len() as u32).to_le_bytes());
        for c in &self.changes {
            let payload = Record {
                seq: 0,
                time_ns: self.time_ns,
                nonce: self.nonce,
                change: c.clone(),
            }
            .encode();
            out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            out.extend_from_slice(&payload);
        }
        out.extend_from_slice(&(self.chunks.len() as u32).to_le_bytes());
        for (id, l) in &self.chunks {
            out.extend_from_slice(id.as_bytes());
            out.extend_from_slice(&l.pack.0.to_le_bytes());
            out.extend_from_slice(&l.offset.to_le_bytes());
            out.extend_from_slice(&l.stored_len.to_le_bytes());
            out.extend_from_slice(&l.raw_len.to_le_bytes());
            out.push(l.codec as u8);
        }
        let sum = blake3::hash(&out);
        out.extend_from_slice(sum.as_bytes());
        out
    }

    /// Decode a commit object; an error says what is wrong with it.
    pub fn decode(bytes: &[u8]) -> Result<Commit, String> {
        if bytes.len() < MAGIC.len() + 1 + 32 || &bytes[..4] != MAGIC {
            return Err("not a deploycache commit object".into());
        }
        let (body, sum) = bytes.split_at(bytes.len() - 32);
        if blake3::hash(body).as_bytes() != sum {
            return Err("its checksum does not match: damaged or cut short".into());
        }
        let mut d = Dec(&body[4..]);
        let version = d.u8()?;
        if version != VERSION {
            return Err(format!(
                "commit version {version}, this deploycache reads version {VERSION}: upgrade deploycache"
            ));
        }
        let host = d.str()?;
        let time_ns = d.u64()? as i64;
        let nonce = d.u64()?;
        let name = d.str()?;
        let ns = d.str()?;
        let n = d.u32()?;
        let mut changes = Vec::with_capacity(n.min(1024) as usize);
        for _ in 0..n {
            let len = d.u32()? as usize;
            let record = Record::decode(d.take(len)?)?;
            changes.push(record.change);
        }
        let m = d.u32()?;
        let mut chunks = Vec::with_capacity(m.min(1 << 16) as usize);
        for _ in 0..m {
            let id = ChunkId::from_slice(d.take(32)?).expect("32 bytes");
            let pack = PackName(u128::from_le_bytes(d.take(16)?.try_into().expect("16")));
            let offset = d.u64()?;
            let stored_len = d.u32()?;
            let raw_len = d.u32()?;
            let codec = d.u8()?;
            let codec = Codec::from_u8(codec).ok_or(format!("unknown codec {codec}"))?;
            chunks.push((
                id,
                Location {
                    pack,
                    offset,
                    stored_len,
                    raw_len,
                    codec,
                },
            ));
        }
        if !d.0.is_empty() {
            return Err(format!("{} bytes after its end", d.0.len()));
        }
        Ok(Commit {
            host,
            time_ns,
            nonce,
            ns,
            name,
            changes,
            chunks,
        })
    }
}

/// The key of a commit published at `time_ns` by `host` with `nonce`.
pub fn commit_key(time_ns: i64, host: &str, nonce: u64) -> String {
    format!("{PREFIX}{:020}-{host}-{nonce:016x}.commit", time_ns.max(0))
}

/// The publisher's clock of a commit key (for the order and the skew
/// check), or None when the key is not a commit's.
pub fn key_time_ns(key: &str) -> Option<i64> {
    let rest = key.strip_prefix(PREFIX)?.strip_suffix(".commit")?;
    rest.get(..20)?.parse().ok()
}

/// This host's id in commit keys: `$DEPLOYCACHE_HOST_ID`, else the host
/// name, lowercased, every character outside `[0-9a-z]` a `-`.
pub fn host_id() -> String {
    let raw = std::env::var("DEPLOYCACHE_HOST_ID")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|s| s.trim().to_owned())
                .unwrap_or_else(|_| "host".into())
        });
    let id: String = raw
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(63)
        .collect();
    if id.is_empty() {
        "host".into()
    } else {
        id
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

struct Dec<'a>(&'a [u8]);

impl<'a> Dec<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("cut short".into());
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4")))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8")))
    }
    fn str(&mut self) -> Result<String, String> {
        let n = self.u32()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| "a name is not UTF-8".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::FileHash;
    use crate::manifest::FileManifest;

    fn sample() -> Commit {
        let id = ChunkId::from_slice(&[7u8; 32]).unwrap();
        Commit {
            host: "jump-1".into(),
            time_ns: 1_764_000_000_123_456_789,
            nonce: 0xfeed,
            ns: "master".into(),
            name: "0123".into(),
            changes: vec![Change::PutArtifact {
                ns: "master".into(),
                name: "0123".into(),
                created: 5,
                last_access: 6,
                replace: true,
                files: vec![FileManifest {
                    name: "a.img.gz".into(),
                    size: 10,
                    mode: 0o644,
                    mtime_ns: 9,
                    committed: 8,
                    hash: FileHash::of_chunks([(id, 10u32)]),
                    quarantine: None,
                    chunks: vec![(id, 10)],
                }],
            }],
            chunks: vec![(
                id,
                Location {
                    pack: PackName(0xabc),
                    offset: 40,
                    stored_len: 12,
                    raw_len: 10,
                    codec: Codec::Zstd,
                },
            )],
        }
    }

    #[test]
    fn a_commit_round_trips_and_damage_is_refused() {
        let c = sample();
        let bytes = c.encode();
        assert_eq!(Commit::decode(&bytes).unwrap(), c);
        for i in [0, 5, bytes.len() / 2, bytes.len() - 1] {
            let mut bad = bytes.clone();
            bad[i] ^= 1;
            assert!(Commit::decode(&bad).is_err(), "byte {i} flipped");
        }
        assert!(Commit::decode(&bytes[..bytes.len() - 1]).is_err());
        let removal = Commit {
            changes: vec![],
            chunks: vec![],
            ..c
        };
        assert_eq!(Commit::decode(&removal.encode()).unwrap().changes, vec![]);
    }

    #[test]
    fn keys_sort_by_time_and_give_it_back() {
        let a = commit_key(999, "b", 1);
        let b = commit_key(1_000, "a", 0);
        assert!(a < b, "{a} {b}");
        assert_eq!(key_time_ns(&b), Some(1_000));
        assert!(crate::remote::valid_key(&a));
    }
}
