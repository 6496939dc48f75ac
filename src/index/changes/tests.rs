//! Removing an artifact takes back exactly the references its files held.

use rusqlite::params;

use super::*;

#[test]
fn removing_an_artifact_takes_back_each_reference_its_files_hold() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index.sqlite");
    let mut ix = Index::open(&path).unwrap();
    ix.init_format().unwrap();
    let c = &ix.conn;
    c.execute(
        "INSERT INTO packs(id, name) VALUES(1, ?1)",
        [PackName::random().to_string()],
    )
    .unwrap();
    let [x, y, z] = [b"x", b"y", b"z"].map(|d| ChunkId::of(d));
    // x twice in one file; y in two files of `a`; z in `a` and in `b`.
    for (id, refs) in [(x, 2), (y, 2), (z, 2)] {
        c.execute(
            "INSERT INTO chunks(id, pack, offset, stored_len, raw_len, codec, refs)
             VALUES(?1, 1, 0, 1, 1, 0, ?2)",
            params![&id.as_bytes()[..], refs],
        )
        .unwrap();
    }
    for (aid, name) in [(1, "a"), (2, "b")] {
        c.execute(
            "INSERT INTO artifacts(id, namespace, name, created, last_access) VALUES(?1, '', ?2, 0, 0)",
            params![aid, name],
        )
        .unwrap();
    }
    let files: [(i64, i64, &[ChunkId]); 3] = [(1, 1, &[x, x, y]), (2, 1, &[y, z]), (3, 2, &[z])];
    for (fid, aid, chunks) in files {
        c.execute(
            "INSERT INTO files(id, artifact, name, size, mode, mtime_ns, hash, committed)
             VALUES(?1, ?2, ?3, 0, 0, 0, x'00', 0)",
            params![fid, aid, format!("f{fid}")],
        )
        .unwrap();
        for (seq, id) in chunks.iter().enumerate() {
            c.execute(
                "INSERT INTO file_chunks(file, seq, chunk, offset) VALUES(?1, ?2, ?3, 0)",
                params![fid, seq as i64, &id.as_bytes()[..]],
            )
            .unwrap();
        }
    }
    let tx = ix.conn.transaction().unwrap();
    let change = Change::RemoveArtifact {
        ns: String::new(),
        name: "a".into(),
    };
    apply_change(&tx, &path, &change, None).unwrap();
    tx.commit().unwrap();
    let refs = |id: ChunkId| -> i64 {
        ix.conn
            .query_row(
                "SELECT refs FROM chunks WHERE id = ?1",
                [&id.as_bytes()[..]],
                |r| r.get(0),
            )
            .unwrap()
    };
    assert_eq!((refs(x), refs(y), refs(z)), (0, 0, 1));
    let count = |sql: &str| -> i64 { ix.conn.query_row(sql, [], |r| r.get(0)).unwrap() };
    assert_eq!(count("SELECT count(*) FROM artifacts"), 1);
    assert_eq!(count("SELECT sum(id) * count(*) FROM files"), 3);
    assert_eq!(count("SELECT count(*) FROM file_chunks"), 1);
    assert_eq!(count("SELECT file FROM file_chunks"), 3);
}
