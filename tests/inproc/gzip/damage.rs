//! Cut-short and damaged gz files keep their bytes; damaged side data and
//! content are errors, never other bytes.

use deploycache::gzip::{
    analyze_with, check_rebuild, rebuild_all, KeepReason, Options, Segment, SideData, Verdict,
};

use super::{flate2_gz, kept, round_trip, sh, split, text};

/// A cut-short member is not rebuilt whole: alone it keeps the file as it
/// is; after a whole member it is cut (its pieces kept) and the rest of the
/// file is a Raw segment, bytes unchanged.
#[test]
fn truncated_gzip_is_kept_or_cut_bytes_unchanged() {
    let whole = sh("gzip -6 -c", &text(3_000_000, 6));
    for cut in [
        5,
        10,
        11,
        100,
        whole.len() / 2,
        whole.len() - 8,
        whole.len() - 1,
    ] {
        let why = kept(&whole[..cut]);
        // A header cut short is no gzip member; after it, the member is.
        if cut < 10 {
            assert_eq!(why, KeepReason::NotGzip);
        } else {
            assert!(
                matches!(why, KeepReason::NothingRebuilds(_)),
                "cut {cut}: {why}"
            );
        }
        let first = flate2_gz(&text(20_000, 7), 6);
        let gz = [&first[..], &whole[..cut]].concat();
        let (side, _) = split(&gz, &format!("a whole member, then one cut at {cut}"));
        assert_eq!(side.whole_members(), 1);
        assert!(matches!(side.segments.last(), Some(Segment::Raw { .. })));
        if cut >= 10 {
            assert!(
                matches!(side.segments[1], Segment::Member { trailer: None, .. }),
                "cut {cut}: {:?}",
                side.segments[1]
            );
        }
    }
    // Cut mid-stream, the pieces before the cut are kept (their content was
    // streamed), so only the rest is Raw.
    let first = flate2_gz(&text(20_000, 7), 6);
    let gz = [&first[..], &whole[..whole.len() / 2]].concat();
    let (side, _) = split(&gz, "half a member");
    let Segment::Member { pieces, .. } = &side.segments[1] else {
        panic!("not a member")
    };
    assert!(!pieces.is_empty(), "pieces before the cut are kept");
}

/// A flipped bit in the deflate stream: the member does not rebuild whole
/// (invalid deflate, or content that fails its trailer's CRC32).
#[test]
fn damaged_gzip_is_kept_or_cut_bytes_unchanged() {
    let whole = sh("gzip -6 -c", &text(2_000_000, 8));
    for at in [20, whole.len() / 3, whole.len() / 2, whole.len() - 12] {
        for bit in [0x01, 0x10, 0x80] {
            let mut bad = whole.clone();
            bad[at] ^= bit;
            let why = kept(&bad);
            assert!(matches!(why, KeepReason::NothingRebuilds(_)), "{why}");
            // After a whole member, the damaged one is cut where it stops
            // rebuilding; or, when preflate predicted the damaged tokens
            // badly before that, the side data is over the bound.
            let first = flate2_gz(&text(20_000, 9), 6);
            let gz = [&first[..], &bad[..]].concat();
            match round_trip(&gz).0 {
                Verdict::Split(side) => assert_eq!(side.whole_members(), 1),
                Verdict::Keep(why) => {
                    assert!(matches!(why, KeepReason::SideTooLarge { .. }), "{why}")
                }
            }
        }
    }
    // A damaged trailer: the member is cut just before it.
    let mut bad = whole.clone();
    let n = bad.len();
    bad[n - 3] ^= 1;
    let first = flate2_gz(&text(20_000, 9), 6);
    let gz = [&first[..], &bad[..]].concat();
    let (side, _) = split(&gz, "damaged trailer");
    assert_eq!(side.segments.last(), Some(&Segment::Raw { len: 8 }));
}

/// A small example with two members and a tail, its side data and content.
fn small_example() -> (Vec<u8>, SideData, Vec<u8>) {
    let gz = [
        &flate2_gz(&text(40_000, 10), 6)[..],
        &sh("gzip -9 -c", &text(30_000, 11))[..],
        b"tail",
    ]
    .concat();
    let (side, content) = split(&gz, "small example");
    (gz, side, content)
}

fn reseal(body: &[u8]) -> Vec<u8> {
    [body, blake3::hash(body).as_bytes()].concat()
}

/// Every bit flip and every truncation of the encoding is an error; so
/// are forged lengths under a valid checksum (and none allocates them).
#[test]
fn damaged_side_data_is_an_error() {
    let (_, side, _) = small_example();
    let enc = side.encode();
    for i in 0..enc.len() {
        for bit in [0x01, 0x80] {
            let mut bad = enc.clone();
            bad[i] ^= bit;
            assert!(SideData::decode(&bad).is_err(), "flip {bit:#x} at {i}");
        }
    }
    for n in 0..enc.len() {
        assert!(SideData::decode(&enc[..n]).is_err(), "cut at {n}");
    }
    assert!(SideData::decode(&[&enc[..], b"x"].concat()).is_err());

    let body = &enc[..enc.len() - 32];
    let Segment::Member { header, .. } = &side.segments[0] else {
        panic!("not a member")
    };
    let hl = header.len();
    // Offsets in the grammar: n segments at 25, the first member's
    // header_len at 30, its piece count at 34+hl, then plain_len, gz_len,
    // gz_crc, corr_len.
    for (at, what) in [
        (25, "segment count"),
        (30, "header length"),
        (34 + hl, "piece count"),
        (38 + hl, "plain length"),
        (42 + hl, "gz length"),
        (50 + hl, "corrections length"),
        (9, "file length"),
        (17, "content length"),
    ] {
        for forged in [u32::MAX, 0x7fff_ffff, 1 << 24] {
            let mut bad = body.to_vec();
            bad[at..at + 4].copy_from_slice(&forged.to_le_bytes());
            let err = SideData::decode(&reseal(&bad));
            assert!(err.is_err(), "forged {what} {forged:#x}");
        }
    }
    let mut v2 = body.to_vec();
    v2[8] = 2;
    let err = SideData::decode(&reseal(&v2)).unwrap_err().to_string();
    assert!(err.contains("version 2"), "{err}");
}

/// Side data that decodes but is wrong (fields changed and re-encoded,
/// as a bug could) never rebuilds to other bytes without an error; nor
/// does damaged content.
#[test]
fn wrong_side_data_or_content_never_rebuilds_other_bytes() {
    let (gz, side, content) = small_example();
    let must_not_differ = |s: &SideData, c: &[u8], what: &str| {
        let Ok(s) = SideData::decode(&s.encode()) else {
            return; // out of the format's bounds: an error
        };
        let mut out = Vec::new();
        if rebuild_all(&s, c, &mut out).is_ok() {
            assert!(out == gz, "{what}: rebuilt other bytes without an error");
        }
    };
    let mut changes = 0;
    for (si, seg) in side.segments.iter().enumerate() {
        let Segment::Member {
            pieces, trailer, ..
        } = seg
        else {
            continue;
        };
        for (pi, p) in pieces.iter().enumerate() {
            let with = |f: &dyn Fn(&mut deploycache::gzip::Piece)| {
                let mut s = side.clone();
                if let Segment::Member { pieces, .. } = &mut s.segments[si] {
                    f(&mut pieces[pi]);
                }
                s
            };
            for i in 0..p.corrections.len() {
                for bit in [0x01, 0x40] {
                    let s = with(&|p| p.corrections[i] ^= bit);
                    must_not_differ(&s, &content, &format!("correction byte {i} of piece {pi}"));
                    changes += 1;
                }
            }
            for d in [1u32, u32::MAX] {
                let s = with(&|p| p.plain_len = p.plain_len.wrapping_add(d));
                must_not_differ(&s, &content, "plain_len");
                let s = with(&|p| p.gz_len = p.gz_len.wrapping_add(d));
                must_not_differ(&s, &content, "gz_len");
            }
            let s = with(&|p| p.gz_crc ^= 1);
            assert!(rebuild_all(&s, &content[..], &mut Vec::new()).is_err());
        }
        for i in 0..8 {
            let mut s = side.clone();
            if let Segment::Member {
                trailer: Some(t), ..
            } = &mut s.segments[si]
            {
                t[i] ^= 1;
            }
            assert!(trailer.is_some());
            let err = rebuild_all(&s, &content[..], &mut Vec::new()).unwrap_err();
            assert!(err.to_string().contains("trailer says"), "{err}");
        }
    }
    assert!(changes > 20, "{changes} corrections changed");

    // Content: a flipped byte inside a member, one missing, one extra.
    let member_content = side.segments[0].content_len() as usize;
    for at in [0, 1, member_content / 2, member_content - 1] {
        let mut c = content.clone();
        c[at] ^= 1;
        assert!(
            rebuild_all(&side, &c[..], &mut Vec::new()).is_err(),
            "at {at}"
        );
    }
    let err = rebuild_all(&side, &content[..content.len() - 1], &mut Vec::new()).unwrap_err();
    assert!(err.to_string().contains("content ends"), "{err}");
    let long = [&content[..], b"x"].concat();
    let err = rebuild_all(&side, &long[..], &mut Vec::new()).unwrap_err();
    assert!(err.to_string().contains("runs past"), "{err}");
    // A check against another original names the first differing byte.
    let mut other = gz.clone();
    other[1000] ^= 1;
    let err = check_rebuild(&side, &content[..], &other[..]).unwrap_err();
    assert!(err.to_string().contains("offset 1000"), "{err}");
}

/// The side-data bound: a tiny allowance and fraction keep a file whose
/// side data is over them as it is.
#[test]
fn side_data_over_the_bound_keeps_the_file() {
    let gz = sh("gzip -6 -c", &text(500_000, 12));
    let strict = Options {
        side_fraction: 1 << 30,
        side_allowance: 10,
        ..Options::default()
    };
    let mut content = Vec::new();
    let v = analyze_with(&gz[..], &mut content, &strict).unwrap();
    assert!(
        matches!(v, Verdict::Keep(KeepReason::SideTooLarge { limit: 10, .. })),
        "{v:?}"
    );
}
