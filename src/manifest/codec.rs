//! The payload of a manifest record ("DCMF", store-layout.md "Manifest
//! records"): a version byte, the record's order fields, then the change,
//! little-endian and length-prefixed. Decoding refuses, never misreads: a
//! cut, an unknown kind or a newer version is an error saying which.

use super::{Change, FileManifest, PendingRow, Record};
use crate::id::{ChunkId, FileHash};

/// Version of the payload encoding below; a reader refuses a newer one.
const PAYLOAD_VERSION: u8 = 1;

impl Record {
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Enc(Vec::with_capacity(256));
        e.u8(PAYLOAD_VERSION);
        e.u64(self.seq);
        e.i64(self.time_ns);
        e.u64(self.nonce);
        match &self.change {
            Change::PutArtifact {
                ns,
                name,
                created,
                last_access,
                replace,
                files,
            } => {
                e.u8(1);
                e.str(ns);
                e.str(name);
                e.i64(*created);
                e.i64(*last_access);
                e.u8(*replace as u8);
                e.u32(files.len() as u32);
                for f in files {
                    e.file(f);
                }
            }
            Change::PutFile {
                ns,
                artifact,
                file,
                pending,
            } => {
                e.u8(2);
                e.str(ns);
                e.str(artifact);
                e.file(file);
                match pending {
                    Some(row) => {
                        e.u8(1);
                        e.pending(row);
                    }
                    None => e.u8(0),
                }
            }
            Change::BeginPending { row } => {
                e.u8(10);
                e.pending(row);
            }
            Change::MovePending {
                row,
                to_artifact,
                to_name,
            } => {
                e.u8(11);
                e.pending(row);
                e.str(to_artifact);
                e.str(to_name);
            }
            Change::EndPending { row, lost } => {
                e.u8(12);
                e.pending(row);
                match lost {
                    Some(why) => {
                        e.u8(1);
                        e.str(why);
                    }
                    None => e.u8(0),
                }
            }
            Change::RemoveArtifact { ns, name } => {
                e.u8(3);
                e.str(ns);
                e.str(name);
            }
            Change::RemoveFile { ns, artifact, file } => {
                e.u8(4);
                e.str(ns);
                e.str(artifact);
                e.str(file);
            }
            Change::RenameFile { ns, from, to } => {
                e.u8(5);
                e.str(ns);
                e.str(&from.0);
                e.str(&from.1);
                e.str(&to.0);
                e.str(&to.1);
            }
            Change::RenameArtifact { ns, from, to } => {
                e.u8(6);
                e.str(ns);
                e.str(from);
                e.str(to);
            }
            Change::SetFileMeta {
                ns,
                artifact,
                file,
                mode,
                mtime_ns,
            } => {
                e.u8(7);
                e.str(ns);
                e.str(artifact);
                e.str(file);
                e.opt(mode.map(|m| m as u64));
                e.opt(mtime_ns.map(|t| t as u64));
            }
            Change::RemoveQuarantined { ns, artifact } => {
                e.u8(8);
                e.str(ns);
                match artifact {
                    Some(a) => {
                        e.u8(1);
                        e.str(a);
                    }
                    None => e.u8(0),
                }
            }
            Change::Void => e.u8(9),
            Change::Checkpoint { puts } => {
                e.u8(13);
                e.u32(puts.len() as u32);
                for n in puts {
                    e.u64(*n);
                }
            }
            Change::ConvertFile {
                ns,
                artifact,
                file,
                hash,
                content,
                side,
            } => {
                e.u8(14);
                e.str(ns);
                e.str(artifact);
                e.str(file);
                e.0.extend_from_slice(hash.as_bytes());
                e.chunks(content);
                e.chunks(side);
            }
        }
        e.0
    }

    /// Decode a payload; the error says what is wrong with it.
    pub fn decode(bytes: &[u8]) -> std::result::Result<Record, String> {
        let mut d = Dec(bytes);
        let version = d.u8()?;
        if version != PAYLOAD_VERSION {
            return Err(format!(
                "manifest payload version {version}, this deploycache reads {PAYLOAD_VERSION}"
            ));
        }
        let (seq, time_ns, nonce) = (d.u64()?, d.i64()?, d.u64()?);
        let change = match d.u8()? {
            1 => {
                let (ns, name) = (d.str()?, d.str()?);
                let (created, last_access) = (d.i64()?, d.i64()?);
                let replace = d.u8()? != 0;
                let n = d.u32()?;
                let files = (0..n).map(|_| d.file()).collect::<Result<_, _>>()?;
                Change::PutArtifact {
                    ns,
                    name,
                    created,
                    last_access,
                    replace,
                    files,
                }
            }
            2 => Change::PutFile {
                ns: d.str()?,
                artifact: d.str()?,
                file: d.file()?,
                pending: match d.u8()? {
                    0 => None,
                    _ => Some(d.pending()?),
                },
            },
            10 => Change::BeginPending { row: d.pending()? },
            11 => Change::MovePending {
                row: d.pending()?,
                to_artifact: d.str()?,
                to_name: d.str()?,
            },
            12 => Change::EndPending {
                row: d.pending()?,
                lost: match d.u8()? {
                    0 => None,
                    _ => Some(d.str()?),
                },
            },
            3 => Change::RemoveArtifact {
                ns: d.str()?,
                name: d.str()?,
            },
            4 => Change::RemoveFile {
                ns: d.str()?,
                artifact: d.str()?,
                file: d.str()?,
            },
            5 => Change::RenameFile {
                ns: d.str()?,
                from: (d.str()?, d.str()?),
                to: (d.str()?, d.str()?),
            },
            6 => Change::RenameArtifact {
                ns: d.str()?,
                from: d.str()?,
                to: d.str()?,
            },
            7 => Change::SetFileMeta {
                ns: d.str()?,
                artifact: d.str()?,
                file: d.str()?,
                mode: d.opt()?.map(|m| m as u32),
                mtime_ns: d.opt()?.map(|t| t as i64),
            },
            8 => {
                let ns = d.str()?;
                let artifact = match d.u8()? {
                    0 => None,
                    _ => Some(d.str()?),
                };
                Change::RemoveQuarantined { ns, artifact }
            }
            9 => Change::Void,
            13 => {
                let n = d.u32()? as usize;
                if n > d.0.len() / 8 {
                    return Err("checkpoint longer than the payload".into());
                }
                let puts = (0..n).map(|_| d.u64()).collect::<Result<_, _>>()?;
                Change::Checkpoint { puts }
            }
            14 => Change::ConvertFile {
                ns: d.str()?,
                artifact: d.str()?,
                file: d.str()?,
                hash: FileHash::from_slice(d.take(32)?).expect("32 bytes"),
                content: d.chunks()?,
                side: d.chunks()?,
            },
            k => return Err(format!("unknown change kind {k}")),
        };
        if !d.0.is_empty() {
            return Err(format!("{} bytes after the change", d.0.len()));
        }
        Ok(Record {
            seq,
            time_ns,
            nonce,
            change,
        })
    }
}

struct Enc(Vec<u8>);

impl Enc {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn str(&mut self, s: &str) {
        self.u32(s.len() as u32);
        self.0.extend_from_slice(s.as_bytes());
    }
    fn opt(&mut self, v: Option<u64>) {
        match v {
            Some(v) => {
                self.u8(1);
                self.u64(v);
            }
            None => self.u8(0),
        }
    }
    fn pending(&mut self, row: &PendingRow) {
        self.str(&row.ns);
        self.str(&row.artifact);
        self.str(&row.name);
        self.str(&row.reason);
        self.i64(row.committed);
    }
    fn file(&mut self, f: &FileManifest) {
        self.str(&f.name);
        self.u64(f.size);
        self.u32(f.mode);
        self.i64(f.mtime_ns);
        self.i64(f.committed);
        self.0.extend_from_slice(f.hash.as_bytes());
        match &f.quarantine {
            Some(why) => {
                self.u8(1);
                self.str(why);
            }
            None => self.u8(0),
        }
        self.chunks(&f.chunks);
    }
    fn chunks(&mut self, chunks: &[(ChunkId, u32)]) {
        self.u32(chunks.len() as u32);
        for (id, len) in chunks {
            self.0.extend_from_slice(id.as_bytes());
            self.u32(*len);
        }
    }
}

struct Dec<'a>(&'a [u8]);

impl Dec<'_> {
    fn take(&mut self, n: usize) -> std::result::Result<&[u8], String> {
        if self.0.len() < n {
            return Err("payload ends inside a field".into());
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u8(&mut self) -> std::result::Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> std::result::Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4")))
    }
    fn u64(&mut self) -> std::result::Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8")))
    }
    fn i64(&mut self) -> std::result::Result<i64, String> {
        Ok(self.u64()? as i64)
    }
    fn str(&mut self) -> std::result::Result<String, String> {
        let n = self.u32()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| "a name is not UTF-8".into())
    }
    fn opt(&mut self) -> std::result::Result<Option<u64>, String> {
        match self.u8()? {
            0 => Ok(None),
            _ => Ok(Some(self.u64()?)),
        }
    }
    fn pending(&mut self) -> std::result::Result<PendingRow, String> {
        Ok(PendingRow {
            ns: self.str()?,
            artifact: self.str()?,
            name: self.str()?,
            reason: self.str()?,
            committed: self.i64()?,
        })
    }
    fn chunks(&mut self) -> std::result::Result<Vec<(ChunkId, u32)>, String> {
        let n = self.u32()? as usize;
        if n > self.0.len() / 36 {
            return Err("chunk list longer than the payload".into());
        }
        let mut chunks = Vec::with_capacity(n);
        for _ in 0..n {
            let id = ChunkId::from_slice(self.take(32)?).expect("32 bytes");
            chunks.push((id, self.u32()?));
        }
        Ok(chunks)
    }
    fn file(&mut self) -> std::result::Result<FileManifest, String> {
        let name = self.str()?;
        let (size, mode, mtime_ns, committed) =
            (self.u64()?, self.u32()?, self.i64()?, self.i64()?);
        let hash = FileHash::from_slice(self.take(32)?).expect("32 bytes");
        let quarantine = match self.u8()? {
            0 => None,
            _ => Some(self.str()?),
        };
        let chunks = self.chunks()?;
        Ok(FileManifest {
            name,
            size,
            mode,
            mtime_ns,
            committed,
            hash,
            quarantine,
            chunks,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::manifest::*;

    fn file(name: &str, quarantine: Option<&str>) -> FileManifest {
        FileManifest {
            name: name.into(),
            size: 70_000,
            mode: 0o600,
            mtime_ns: -5,
            committed: 1_700_000_000,
            hash: FileHash([7; 32]),
            quarantine: quarantine.map(str::to_owned),
            chunks: vec![(ChunkId([1; 32]), 65_536), (ChunkId([2; 32]), 4_464)],
        }
    }

    fn pending() -> PendingRow {
        PendingRow {
            ns: "n".into(),
            artifact: "a".into(),
            name: "big.img.gz".into(),
            reason: "being written".into(),
            committed: 1_700_000_001,
        }
    }

    /// Every kind of change decodes to what was encoded, and a payload cut
    /// anywhere is refused, never misread.
    #[test]
    fn every_change_round_trips_and_a_cut_payload_is_refused() {
        let s = |v: &str| v.to_owned();
        let changes = vec![
            Change::PutArtifact {
                ns: s("master"),
                name: s("0123abc"),
                created: 1,
                last_access: 2,
                replace: true,
                files: vec![file("x.yaml", None), file("big.img.gz", Some("cut short"))],
            },
            Change::PutFile {
                ns: s(""),
                artifact: s("a"),
                file: file("é", None),
                pending: None,
            },
            Change::PutFile {
                ns: s("n"),
                artifact: s("a"),
                file: file("big.img.gz", None),
                pending: Some(pending()),
            },
            Change::BeginPending { row: pending() },
            Change::MovePending {
                row: pending(),
                to_artifact: s("b"),
                to_name: s("c"),
            },
            Change::EndPending {
                row: pending(),
                lost: Some(s("lost: the mount was killed")),
            },
            Change::EndPending {
                row: pending(),
                lost: None,
            },
            Change::RemoveArtifact {
                ns: s(""),
                name: s("a"),
            },
            Change::RemoveFile {
                ns: s(""),
                artifact: s("a"),
                file: s("f"),
            },
            Change::RenameFile {
                ns: s("n"),
                from: (s("a"), s("f")),
                to: (s("b"), s("g")),
            },
            Change::RenameArtifact {
                ns: s(""),
                from: s("a"),
                to: s("b"),
            },
            Change::SetFileMeta {
                ns: s(""),
                artifact: s("a"),
                file: s("f"),
                mode: Some(0o755),
                mtime_ns: None,
            },
            Change::RemoveQuarantined {
                ns: s(""),
                artifact: Some(s("a")),
            },
            Change::RemoveQuarantined {
                ns: s(""),
                artifact: None,
            },
            Change::Void,
            Change::Checkpoint { puts: vec![] },
            Change::Checkpoint {
                puts: vec![1, u64::MAX, 7],
            },
            Change::ConvertFile {
                ns: s("n"),
                artifact: s("a"),
                file: s("big.img.gz"),
                hash: FileHash([9; 32]),
                content: vec![(ChunkId([3; 32]), 65_536), (ChunkId([4; 32]), 100)],
                side: vec![(ChunkId([5; 32]), 872)],
            },
        ];
        for (i, change) in changes.into_iter().enumerate() {
            let r = Record::new(i as u64 + 1, change);
            let bytes = r.encode();
            assert_eq!(Record::decode(&bytes).unwrap(), r);
            for cut in 0..bytes.len() {
                assert!(Record::decode(&bytes[..cut]).is_err(), "{i} cut at {cut}");
            }
        }
    }
}
