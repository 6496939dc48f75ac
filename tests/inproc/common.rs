//! Shared helpers: a store in a temporary directory, deterministic data,
//! and reading a stored file back (the one place that knows the read API).

use std::fs;
use std::path::PathBuf;

use deploycache::progress::Progress;
use deploycache::store::OpenOptions;
use deploycache::{Result, Store};
use rand::{RngCore, SeedableRng};
use tempfile::TempDir;

/// A store (created) in a fresh temporary directory, and a scratch
/// directory beside it for input files.
pub struct Fixture {
    pub dir: TempDir,
}

impl Fixture {
    pub fn new() -> Fixture {
        Fixture {
            dir: tempfile::tempdir().expect("temporary directory"),
        }
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    pub fn open(&self) -> Store {
        Store::open(
            &self.root(),
            OpenOptions {
                create: true,
                ..OpenOptions::default()
            },
        )
        .expect("open store")
    }

    /// Write `data` to an input file named `name`; returns its path.
    pub fn input(&self, name: &str, data: &[u8]) -> PathBuf {
        let dir = self.dir.path().join("in");
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        fs::write(&path, data).unwrap();
        path
    }

    /// `put` of one file as artifact `artifact`.
    pub fn put(&self, store: &Store, artifact: &str, name: &str, data: &[u8]) {
        let path = self.input(name, data);
        store.put(artifact, &[path], None, false).expect("put");
    }

    /// Every pack file of the store, sorted.
    pub fn pack_files(&self) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = walkdir::WalkDir::new(self.root().join("packs"))
            .min_depth(2)
            .max_depth(2)
            .into_iter()
            .map(|e| e.unwrap().into_path())
            .filter(|p| p.extension().is_some_and(|x| x == "pack"))
            .collect();
        out.sort();
        out
    }
}

/// A stored file's bytes, streamed whole (`copy_to`).
pub fn read_all(store: &Store, artifact: &str, file: &str) -> Result<Vec<u8>> {
    let r = store.open_file(artifact, file)?;
    let mut out = Vec::new();
    store.copy_to(&r, &mut out, &Progress::hidden())?;
    Ok(out)
}

/// `len` bytes of a stored file at `offset` (fewer at its end), read by
/// random access (`read_at`).
pub fn read_range(
    store: &Store,
    artifact: &str,
    file: &str,
    offset: u64,
    len: usize,
) -> Result<Vec<u8>> {
    let r = store.open_file(artifact, file)?;
    let mut buf = vec![0u8; len];
    let n = r.read_at(offset, &mut buf)?;
    buf.truncate(n);
    Ok(buf)
}

pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; len];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut v);
    v
}

/// Text-like bytes, which zstd compresses (stored as zstd records).
pub fn text_bytes(len: usize, seed: u64) -> Vec<u8> {
    let words: [&[u8]; 6] = [
        b"package ",
        b"version ",
        b"amd64\n",
        b"Depends: ",
        b"libc6 ",
        b"(>= 2.19) ",
    ];
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        out.extend_from_slice(words[(rng.next_u32() % 6) as usize]);
    }
    out.truncate(len);
    out
}
