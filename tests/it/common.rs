//! Shared helpers: run the binary, make deterministic test data.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rand::{RngCore, SeedableRng};

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_deploycache"))
}

/// A command for the binary with `--store store`, isolated from the caller's environment.
pub fn dc(store: &Path) -> Command {
    let mut c = Command::new(bin());
    c.env_remove("DEPLOYCACHE_STORE")
        .env_remove("DEPLOYCACHE_NAMESPACE")
        .env_remove("DEPLOYCACHE_REMOTE")
        .env_remove("DEPLOYCACHE_CACHE_SIZE")
        .arg("--store")
        .arg(store);
    c
}

/// Run and require success; returns stdout.
pub fn ok(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().expect("spawn deploycache");
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Run and require failure; returns the output.
pub fn fails(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("spawn deploycache");
    assert!(
        !out.status.success(),
        "{cmd:?} succeeded but should have failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    out
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; len];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut v);
    v
}

/// Text-like, compressible bytes.
pub fn text_bytes(len: usize, seed: u64) -> Vec<u8> {
    let words: [&[u8]; 8] = [
        b"package ",
        b"version ",
        b"1.2.3-4ubuntu5 ",
        b"amd64\n",
        b"Depends: ",
        b"libc6 ",
        b"(>= 2.19) ",
        b"Filename: pool/main/",
    ];
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut v = Vec::with_capacity(len + 32);
    while v.len() < len {
        v.extend_from_slice(words[(rng.next_u32() % 8) as usize]);
    }
    v.truncate(len);
    v
}

pub fn json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(bytes)))
}

/// The "name" of each object of an `ls --json` list, in order.
pub fn names(list: &serde_json::Value) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a JSON list: {list}"))
        .iter()
        .map(|a| a["name"].as_str().unwrap().to_owned())
        .collect()
}

pub fn write(path: &Path, data: &[u8]) {
    std::fs::write(path, data).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// Flip one bit in the middle of a store's only chunk pack: inside some
/// chunk's payload (a store with one small artifact has one pack of chunks,
/// beside the pack of its manifest records).
pub fn damage_only_pack(store: &Path, bit: u8) {
    let pack = walkdir::WalkDir::new(store.join("packs"))
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "pack"))
        .find(|e| std::fs::read(e.path()).is_ok_and(|b| b.get(8..12) == Some(b"DCCH")))
        .expect("a pack file of chunks")
        .into_path();
    let mut bytes = std::fs::read(&pack).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= bit;
    std::fs::write(&pack, &bytes).unwrap();
}
