//! The conformance suite of [`PackStore`]: what the store core relies on
//! from wherever packs live. Every implementation runs all of it (tvix
//! castore's per-backend template): add one `#[test]` calling
//! [`pack_store_conformance`] with a maker for the new implementation.

use std::any::Any;

use deploycache::id::ChunkId;
use deploycache::pack::{
    self, Codec, LocalPackStore, Location, PackName, PackSink, PackStore, RecordHead, RecordKind,
};

use crate::common::{random_bytes, text_bytes};

/// A pack store to test, and whatever must live as long as it does (its
/// temporary directory, a server).
pub struct Subject {
    pub store: Box<dyn PackStore>,
    pub _keep: Box<dyn Any>,
}

/// One conformance check, run on an empty store.
type Check = fn(&dyn PackStore);

/// Run every conformance check, each on a fresh, empty store from `make`.
pub fn pack_store_conformance(make: impl Fn() -> Subject) {
    let checks: [(&str, Check); 12] = [
        ("a new store lists no packs", lists_nothing_when_new),
        ("records read back as appended", records_read_back),
        ("a scan finds every record", scan_finds_every_record),
        ("a missing pack fails with ENOENT", missing_pack_is_enoent),
        ("a read past the end fails, not ENOENT", read_past_end_fails),
        ("list gives every pack with its size", list_gives_sizes),
        (
            "delete is idempotent, reads then ENOENT",
            delete_then_enoent,
        ),
        (
            "an open handle reads on after its pack is deleted",
            open_handle_outlives_delete,
        ),
        ("truncate cuts the tail only", truncate_cuts_tail),
        ("a live writer's pack is not swept", live_pack_is_not_swept),
        ("concurrent readers see the right bytes", concurrent_reads),
        (
            "records copy verbatim into a new pack",
            copy_verbatim_between_packs,
        ),
    ];
    for (what, check) in checks {
        let subject = make();
        eprintln!("pack store conformance: {what}");
        check(&*subject.store);
    }
}

#[test]
fn local_pack_store_conforms() {
    pack_store_conformance(|| {
        let dir = tempfile::tempdir().unwrap();
        Subject {
            store: Box::new(LocalPackStore::new(dir.path().join("packs"))),
            _keep: Box::new(dir),
        }
    });
}

/// A pack file outside the directory its name puts it in (moved there by
/// hand) is still a file under `packs/`: listed, read and deleted where
/// it lies, as when stats, verify and the sweep each walked the directory.
#[test]
fn local_stray_pack_is_listed_read_and_deleted_where_it_lies() {
    let dir = tempfile::tempdir().unwrap();
    let packs_dir = dir.path().join("packs");
    let s = LocalPackStore::new(&packs_dir);
    let (name, chunks) = sealed_pack(&s, 2, 60);
    let stray = PackName(name.0 ^ (0xff << 120));
    let stray_path = name
        .path(&packs_dir)
        .with_file_name(format!("{stray}.pack"));
    std::fs::copy(name.path(&packs_dir), &stray_path).unwrap();
    let size = s.size(name).unwrap();
    let mut listed = vec![
        pack::PackInfo { name, size },
        pack::PackInfo { name: stray, size },
    ];
    listed.sort_by_key(|p| p.name);
    assert_eq!(s.list().unwrap(), listed);
    let (data, loc) = &chunks[1];
    let moved = Location {
        pack: stray,
        ..*loc
    };
    assert_eq!(
        &pack::check_record(&s, &ChunkId::of(data), &moved).unwrap(),
        data
    );
    assert_eq!(s.delete_if_idle(stray).unwrap(), Some(size));
    assert!(!stray_path.exists());
    assert_eq!(s.list().unwrap(), vec![pack::PackInfo { name, size }]);
}

/// A chunk record's head and payload (compressed when `zstd`).
fn chunk(data: &[u8], zstd: bool) -> (RecordHead, Vec<u8>) {
    let (codec, payload) = if zstd {
        (Codec::Zstd, zstd::bulk::compress(data, 1).unwrap())
    } else {
        (Codec::Raw, data.to_vec())
    };
    let head = RecordHead {
        kind: RecordKind::Chunk,
        id: ChunkId::of(data),
        raw_len: data.len() as u32,
        codec,
    };
    (head, payload)
}

/// A sealed pack of `n` chunks (alternately raw and zstd); returns its
/// name and each chunk's bytes and location.
fn sealed_pack(s: &dyn PackStore, n: usize, seed: u64) -> (PackName, Vec<(Vec<u8>, Location)>) {
    let mut sink = s.create().unwrap();
    assert!(sink.is_empty(), "a new pack holds no record");
    let mut out = Vec::new();
    for i in 0..n {
        let data = if i % 2 == 0 {
            random_bytes(1000 + 37 * i, seed + i as u64)
        } else {
            text_bytes(5000 + 11 * i, seed + i as u64)
        };
        let (head, payload) = chunk(&data, i % 2 == 1);
        let loc = sink.append(&head, &payload).unwrap();
        assert_eq!(loc.pack, sink.name());
        assert_eq!(loc.stored_len as usize, payload.len());
        assert_eq!(loc.record_range().end, sink.len());
        out.push((data, loc));
    }
    let name = sink.name();
    sink.seal().unwrap();
    (name, out)
}

fn lists_nothing_when_new(s: &dyn PackStore) {
    assert!(s.list().unwrap().is_empty());
}

fn records_read_back(s: &dyn PackStore) {
    let (name, chunks) = sealed_pack(s, 6, 1);
    for (data, loc) in &chunks {
        let got = pack::check_record(s, &ChunkId::of(data), loc).unwrap();
        assert_eq!(&got, data, "chunk at {} of {name}", loc.offset);
    }
    // A record read at an arbitrary offset and length: exactly those bytes.
    let (data, loc) = &chunks[0];
    let mut buf = vec![0u8; 100];
    s.read_at(name, loc.offset + 10, &mut buf).unwrap();
    assert_eq!(&buf[..], &data[10..110]);
    s.prefetch(name, 0, 4096);
    s.prefetch(PackName(1), 0, 4096); // a hint: a missing pack is no error
}

fn scan_finds_every_record(s: &dyn PackStore) {
    let (name, chunks) = sealed_pack(s, 5, 2);
    let size = s.size(name).unwrap();
    let (records, stop) = pack::scan(s, name, size).unwrap();
    assert!(stop.is_none(), "{:?}", stop);
    let found: Vec<Location> = records.iter().map(|r| r.loc).collect();
    let expected: Vec<Location> = chunks.iter().map(|(_, l)| *l).collect();
    assert_eq!(found, expected);
    for (r, (data, _)) in records.iter().zip(&chunks) {
        assert_eq!(r.id, ChunkId::of(data));
        assert_eq!(r.kind, RecordKind::Chunk);
    }
}

fn missing_pack_is_enoent(s: &dyn PackStore) {
    let missing = PackName(0x1234_5678_9abc_def0_1234_5678_9abc_def0);
    let mut buf = [0u8; 16];
    let e = s.read_at(missing, 8, &mut buf).unwrap_err();
    assert_eq!(e.errno(), libc::ENOENT, "{e}");
    assert_eq!(s.size(missing).unwrap_err().errno(), libc::ENOENT);
    assert_eq!(s.delete_if_idle(missing).unwrap(), None);
    assert!(s.describe(missing).contains(&missing.to_string()));
}

fn read_past_end_fails(s: &dyn PackStore) {
    let (name, _) = sealed_pack(s, 2, 3);
    let size = s.size(name).unwrap();
    let mut buf = [0u8; 64];
    let e = s.read_at(name, size - 10, &mut buf).unwrap_err();
    assert_ne!(e.errno(), libc::ENOENT, "{e}");
    assert_ne!(e.errno(), 0, "{e}");
}

fn list_gives_sizes(s: &dyn PackStore) {
    let mut made = Vec::new();
    for seed in 0..3 {
        let (name, chunks) = sealed_pack(s, 2 + seed as usize, 10 + seed);
        let end = chunks.last().unwrap().1.record_range().end;
        made.push(pack::PackInfo { name, size: end });
    }
    // A pack still being written is listed too (the orphan sweep decides
    // whether it is busy).
    let mut open = s.create().unwrap();
    let (head, payload) = chunk(b"being written", false);
    open.append(&head, &payload).unwrap();
    open.sync().unwrap();
    made.push(pack::PackInfo {
        name: open.name(),
        size: open.len(),
    });
    made.sort_by_key(|p| p.name);
    assert_eq!(s.list().unwrap(), made);
    for p in &made {
        assert_eq!(s.size(p.name).unwrap(), p.size);
    }
}

fn delete_then_enoent(s: &dyn PackStore) {
    let (gone, chunks) = sealed_pack(s, 2, 4);
    let (kept, _) = sealed_pack(s, 1, 5);
    // Read first, so that any cache of open packs holds it.
    let loc = chunks[0].1;
    s.read_payload(&loc).unwrap();
    s.delete(gone).unwrap();
    s.delete(gone).unwrap();
    let e = s.read_payload(&loc).unwrap_err();
    assert_eq!(e.errno(), libc::ENOENT, "{e}");
    let names: Vec<PackName> = s.list().unwrap().iter().map(|p| p.name).collect();
    assert_eq!(names, vec![kept]);
}

/// gc deletes packs while readers read them: a reader that opened a pack
/// before keeps every byte of it; a new open fails with ENOENT.
fn open_handle_outlives_delete(s: &dyn PackStore) {
    let (gone, chunks) = sealed_pack(s, 3, 6);
    let handle = s.open(gone).unwrap();
    s.delete(gone).unwrap();
    for (data, loc) in &chunks {
        let mut buf = vec![0u8; loc.stored_len as usize];
        handle.read_at(loc.offset, &mut buf).unwrap();
        let decoded = pack::decode(&ChunkId::of(data), loc, buf).unwrap();
        assert!(
            &decoded == data,
            "a chunk read through a held handle differs"
        );
    }
    let e = s.open(gone).err().expect("a deleted pack does not open");
    assert_eq!(e.errno(), libc::ENOENT, "{e}");
}

fn truncate_cuts_tail(s: &dyn PackStore) {
    let (name, chunks) = sealed_pack(s, 3, 6);
    let end = chunks[1].1.record_range().end;
    s.truncate(name, end).unwrap();
    assert_eq!(s.size(name).unwrap(), end);
    // Longer than the pack: nothing changes.
    s.truncate(name, end + 1000).unwrap();
    assert_eq!(s.size(name).unwrap(), end);
    for (data, loc) in &chunks[..2] {
        assert_eq!(
            &pack::check_record(s, &ChunkId::of(data), loc).unwrap(),
            data
        );
    }
    let (records, stop) = pack::scan(s, name, end).unwrap();
    assert_eq!(records.len(), 2);
    assert!(stop.is_none());
}

fn live_pack_is_not_swept(s: &dyn PackStore) {
    let mut live = s.create().unwrap();
    let (head, payload) = chunk(&random_bytes(3000, 7), false);
    live.append(&head, &payload).unwrap();
    live.sync().unwrap();
    let name = live.name();
    assert_eq!(s.delete_if_idle(name).unwrap(), None, "its writer lives");
    assert!(s.size(name).is_ok());
    let len = live.len();
    live.seal().unwrap();
    assert_eq!(s.delete_if_idle(name).unwrap(), Some(len));
    assert_eq!(s.size(name).unwrap_err().errno(), libc::ENOENT);
}

fn concurrent_reads(s: &dyn PackStore) {
    let packs: Vec<_> = (0..3).map(|i| sealed_pack(s, 8, 100 * i)).collect();
    std::thread::scope(|sc| {
        for t in 0..6usize {
            let packs = &packs;
            sc.spawn(move || {
                for round in 0..40usize {
                    let (_, chunks) = &packs[(t + round) % packs.len()];
                    let (data, loc) = &chunks[(t * 7 + round) % chunks.len()];
                    let got = pack::check_record(s, &ChunkId::of(data), loc).unwrap();
                    assert_eq!(&got, data);
                }
            });
        }
    });
}

/// gc's move: a record read as stored (head and payload) and appended to
/// another pack reads back the same, compressed or not.
fn copy_verbatim_between_packs(s: &dyn PackStore) {
    let (from, chunks) = sealed_pack(s, 4, 8);
    let size = s.size(from).unwrap();
    let (records, _) = pack::scan(s, from, size).unwrap();
    let mut to: Box<dyn PackSink> = s.create().unwrap();
    let mut moved = Vec::new();
    for r in &records {
        let payload = s.read_payload(&r.loc).unwrap();
        let head = RecordHead {
            kind: r.kind,
            id: r.id,
            raw_len: r.loc.raw_len,
            codec: r.loc.codec,
        };
        moved.push(to.append(&head, &payload).unwrap());
    }
    to.sync().unwrap();
    let to_name = to.name();
    to.seal().unwrap();
    s.delete(from).unwrap();
    let has = |c: Codec| moved.iter().any(|l| l.codec == c);
    assert!(
        has(Codec::Raw) && has(Codec::Zstd),
        "both codecs were moved"
    );
    for ((data, _), loc) in chunks.iter().zip(&moved) {
        assert_eq!(loc.pack, to_name);
        assert_eq!(
            &pack::check_record(s, &ChunkId::of(data), loc).unwrap(),
            data
        );
    }
}
