//! The switch in parts: with no time to spare (a zero budget), each call
//! does one step, and the calls together do what one transaction did.

use std::time::Duration;

use rusqlite::params;

use super::*;
use crate::pack::Codec;

fn new_index() -> (tempfile::TempDir, Index) {
    let dir = tempfile::tempdir().unwrap();
    let mut ix = Index::open(&dir.path().join("index.sqlite")).unwrap();
    ix.init_format().unwrap();
    (dir, ix)
}

/// A `packs` row for a new pack: its id and name.
fn pack(ix: &Index) -> (i64, PackName) {
    let name = PackName::random();
    ix.conn
        .execute("INSERT INTO packs(name) VALUES(?1)", [name.to_string()])
        .unwrap();
    (ix.conn.last_insert_rowid(), name)
}

/// Chunk rows `first..first + n` in pack row `pack`, at offset 100 * i,
/// with `refs` references each.
fn chunks(ix: &Index, pack: i64, first: u32, n: u32, refs: i64) -> Vec<ChunkId> {
    (first..first + n)
        .map(|i| {
            let id = ChunkId::of(&i.to_le_bytes());
            ix.conn
                .execute(
                    "INSERT INTO chunks(id, pack, offset, stored_len, raw_len, codec, refs)
                     VALUES(?1, ?2, ?3, 10, 10, 0, ?4)",
                    params![&id.as_bytes()[..], pack, 100 * i as i64, refs],
                )
                .unwrap();
            id
        })
        .collect()
}

fn count(ix: &Index, sql: &str, p: impl rusqlite::Params) -> i64 {
    ix.conn.query_row(sql, p, |r| r.get(0)).unwrap()
}

#[test]
fn dropping_dead_rows_in_parts_deletes_each_once_and_keeps_a_pack_referenced_since() {
    let (_dir, mut ix) = new_index();
    let (a, a_name) = pack(&ix);
    let (b, b_name) = pack(&ix);
    chunks(&ix, a, 0, 1300, 0);
    chunks(&ix, b, 2000, 600, 0);
    // Referenced since the copy: it, its row and its pack stay.
    let live = chunks(&ix, b, 5000, 1, 1)[0];
    let drop = [(a, a_name), (b, b_name)];
    let (mut left, mut calls) = (&drop[..], 0);
    let mut all = Switched::default();
    while !left.is_empty() {
        let (n, part) = ix.drop_dead(left, Duration::ZERO).unwrap();
        if calls == 0 {
            // One step of the first pack, and nothing finished.
            assert_eq!((n, part.deleted_rows), (0, DEAD_ROWS_PER_STEP as u64));
        }
        calls += 1;
        all.deleted_rows += part.deleted_rows;
        all.dropped.extend(part.dropped);
        all.kept.extend(part.kept);
        left = &left[n..];
    }
    assert!(calls >= 4, "{calls} calls");
    assert_eq!(all.deleted_rows, 1900);
    assert_eq!(all.dropped, vec![a_name]);
    assert_eq!(all.kept, vec![b_name]);
    assert_eq!(count(&ix, "SELECT count(*) FROM packs", []), 1);
    assert_eq!(
        count(&ix, "SELECT count(*) FROM chunks WHERE pack = ?1", [b]),
        1
    );
    assert_eq!(
        count(
            &ix,
            "SELECT refs FROM chunks WHERE id = ?1",
            [&live.as_bytes()[..]]
        ),
        1
    );
}

#[test]
fn repointing_in_parts_moves_each_chunk_and_keeps_rows_of_used_copies_only() {
    let (_dir, mut ix) = new_index();
    let (from, _) = pack(&ix);
    let ids = chunks(&ix, from, 0, 600, 1);
    let (c1, c2, c3) = (PackName::random(), PackName::random(), PackName::random());
    let to = |pack: PackName, i: usize| Location {
        pack,
        offset: 8 + 100 * i as u64,
        stored_len: 10,
        raw_len: 10,
        codec: Codec::Raw,
    };
    let mut moves: Vec<Move> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| Move {
            id: *id,
            from_pack: from,
            from_offset: 100 * i as u64,
            to: to(if i < 300 { c1 } else { c2 }, i),
        })
        .collect();
    // Moved elsewhere since the copy (not where it was copied from): its
    // copy gets no row.
    moves.push(Move {
        id: ids[0],
        from_pack: from,
        from_offset: 1,
        to: to(c3, 0),
    });
    let (mut left, mut calls, mut moved) = (&moves[..], 0, 0);
    let mut used = Vec::new();
    while !left.is_empty() {
        let (n, part) = ix.repoint(left, Duration::ZERO).unwrap();
        assert!(n == 256 || n == left.len(), "{n} moves in a part");
        calls += 1;
        moved += part.moved;
        for c in part.used_copies {
            if !used.contains(&c) {
                used.push(c);
            }
        }
        left = &left[n..];
    }
    assert_eq!((calls, moved), (3, 600));
    used.sort();
    let mut want = vec![c1, c2];
    want.sort();
    assert_eq!(used, want);
    let rows = |p: PackName| {
        count(
            &ix,
            "SELECT count(*) FROM chunks c JOIN packs p ON p.id = c.pack WHERE p.name = ?1",
            [p.to_string()],
        )
    };
    assert_eq!((rows(c1), rows(c2)), (300, 300));
    assert_eq!(
        count(
            &ix,
            "SELECT count(*) FROM packs WHERE name = ?1",
            [c3.to_string()]
        ),
        0
    );
    assert_eq!(
        count(&ix, "SELECT count(*) FROM chunks WHERE pack = ?1", [from]),
        0
    );
}
