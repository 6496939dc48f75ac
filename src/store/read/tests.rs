//! The reader in-process (no root, no mount): `read_at` at any offset and
//! length, sequential and concurrent, and `copy_to`, equal the bytes put;
//! a damaged chunk is reported, never served.

use std::path::Path;
use std::sync::Arc;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use crate::error::Error;
use crate::index::Recipe;
use crate::progress::Progress;
use crate::store::{OpenOptions, Store};

/// Deterministic noise (incompressible: stored raw).
fn noise(len: usize, seed: u64) -> Vec<u8> {
    use rand::{RngCore, SeedableRng};
    let mut v = vec![0u8; len];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut v);
    v
}

/// A file of raw chunks (noise), compressed ones (text), a run of one
/// repeated chunk (zeros) and a block repeated later (deduplicated within
/// the file): every way a chunk list can lie in the packs.
fn mixed_content() -> Vec<u8> {
    let block = noise(700_000, 1);
    let mut data = block.clone();
    let words = [&b"package "[..], b"version ", b"amd64\n", b"Depends: "];
    let picks = noise(150_000, 2);
    for p in picks {
        data.extend_from_slice(words[p as usize % words.len()]);
    }
    data.extend(std::iter::repeat_n(0u8, 1_500_000));
    data.extend_from_slice(&noise(300_000, 3));
    data.extend_from_slice(&block);
    data.extend_from_slice(&noise(12_345, 4));
    data
}

fn store_with(dir: &Path, name: &str, data: &[u8]) -> Store {
    let src = dir.join(name);
    std::fs::write(&src, data).unwrap();
    let store = Store::open(
        &dir.join("store"),
        OpenOptions {
            create: true,
            ..Default::default()
        },
    )
    .unwrap();
    store.put("a", &[src], None, false).unwrap();
    store
}

#[test]
fn read_at_any_offset_and_length_equals_the_bytes() {
    let t = tempfile::TempDir::new().unwrap();
    let data = mixed_content();
    let store = store_with(t.path(), "f", &data);
    let r = store.open_file("a", "f").unwrap();
    assert_eq!(r.size(), data.len() as u64);
    let Recipe::Chunks(list) = r.recipe() else {
        panic!("stored as-is")
    };
    assert!(list.len() > 20, "{} chunks", list.len());
    let size = data.len() as u64;
    let mut runner = TestRunner::new(Config {
        cases: 300,
        ..Config::default()
    });
    runner
        .run(&(0..size + 100, 0usize..600_000), |(offset, len)| {
            let mut buf = vec![0xAAu8; len];
            let n = r.read_at(offset, &mut buf).unwrap();
            let start = offset.min(size) as usize;
            let want = &data[start..(start + len).min(data.len())];
            prop_assert_eq!(n, want.len());
            prop_assert!(buf[..n] == *want, "bytes at {} (+{}) differ", offset, len);
            Ok(())
        })
        .unwrap();
}

#[test]
fn sequential_and_concurrent_reads_and_copy_to_equal_the_bytes() {
    let t = tempfile::TempDir::new().unwrap();
    let data = mixed_content();
    let store = store_with(t.path(), "f", &data);
    // Sequential, in the kernel's request sizes (the prefetch window and
    // the one-chunk cache at work), on a fresh reader each.
    for step in [4096usize, 131_072, 1 << 20] {
        let r = store.open_file("a", "f").unwrap();
        let mut got = Vec::with_capacity(data.len());
        let mut buf = vec![0u8; step];
        loop {
            let n = r.read_at(got.len() as u64, &mut buf).unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        assert!(got == data, "sequential reads of {step} bytes differ");
    }
    // Four threads on one reader, as FUSE threads share a handle.
    let r = Arc::new(store.open_file("a", "f").unwrap());
    std::thread::scope(|s| {
        for k in 0..4u64 {
            let (r, data) = (r.clone(), &data);
            s.spawn(move || {
                let picks = noise(400, 10 + k);
                for p in picks.chunks(4) {
                    let at = u32::from_le_bytes(p.try_into().unwrap()) as usize % data.len();
                    let mut buf = vec![0u8; 70_000];
                    let n = r.read_at(at as u64, &mut buf).unwrap();
                    assert!(buf[..n] == data[at..at + n], "thread {k} at {at}");
                    assert_eq!(n, (data.len() - at).min(buf.len()));
                }
            });
        }
    });
    let mut out = Vec::new();
    r.copy_to(&mut out, &Progress::hidden()).unwrap();
    assert!(out == data, "copy_to differs");
}

#[test]
fn an_empty_file_reads_as_empty() {
    let t = tempfile::TempDir::new().unwrap();
    let store = store_with(t.path(), "e", b"");
    let r = store.open_file("a", "e").unwrap();
    let mut buf = [7u8; 16];
    assert_eq!(r.read_at(0, &mut buf).unwrap(), 0);
    let mut out = Vec::new();
    r.copy_to(&mut out, &Progress::hidden()).unwrap();
    assert!(out.is_empty());
}

#[test]
fn a_damaged_chunk_is_reported_by_read_at_never_served() {
    let t = tempfile::TempDir::new().unwrap();
    // Noise: stored raw, so the byte flipped below is a byte of the file.
    let data = noise(400_000, 9);
    let store = store_with(t.path(), "f", &data);
    let r = store.open_file("a", "f").unwrap();
    let Recipe::Chunks(list) = r.recipe().clone() else {
        panic!("stored as-is")
    };
    let victim = list.spans()[1];
    let pack = victim.loc.pack.path(&t.path().join("store/packs"));
    drop(r);
    drop(store);
    let mut bytes = std::fs::read(&pack).unwrap();
    bytes[victim.loc.offset as usize + 10] ^= 0xFF;
    std::fs::write(&pack, bytes).unwrap();
    let store = Store::open(&t.path().join("store"), OpenOptions::default()).unwrap();
    let r = store.open_file("a", "f").unwrap();
    // A read of chunk 0 alone still works; one that touches chunk 1 fails
    // naming it, whole (in place) or in part (through the cache).
    let mut buf = vec![0u8; list.span(0).end as usize];
    assert_eq!(r.read_at(0, &mut buf).unwrap(), buf.len());
    assert!(buf == data[..buf.len()]);
    for (at, len) in [
        (victim.offset, victim.loc.raw_len as usize),
        (victim.offset + 5, 20),
    ] {
        let mut buf = vec![0u8; len];
        match r.read_at(at, &mut buf) {
            Err(Error::CorruptChunk { chunk, offset, .. }) => {
                assert_eq!((chunk, offset), (victim.id, victim.offset));
            }
            other => panic!("read at {at} gave {other:?}"),
        }
    }
    let mut out = Vec::new();
    assert!(matches!(
        r.copy_to(&mut out, &Progress::hidden()),
        Err(Error::CorruptChunk { .. })
    ));
}
