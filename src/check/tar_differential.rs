//! The tar check against the `tar` crate: on archives the crate builds
//! (regular files, GNU long names and link names, pax headers carrying
//! names and sizes, directories, symlinks, hard links), then cut short,
//! damaged, padded or followed by garbage, the check's verdict and the
//! members it walked must agree with what the crate reads.
//!
//! The crate is a different reader with its own end rule: it stops at the
//! first zero block (or at the end of the data) and does not require the
//! data of the last member to be whole. So the model of "complete" built on
//! it is: the crate reads every member, each member's data whole, and the
//! two zero blocks the format ends with sit right where it stopped.

use std::io::Read;

use proptest::prelude::*;
use proptest::sample::Index;

use super::TarCheck;

/// One member of a generated archive.
#[derive(Clone, Debug)]
enum Member {
    /// A regular file; a name over 100 bytes takes a GNU long-name header.
    File {
        name_len: usize,
        size: usize,
    },
    /// A regular file whose size (and name) only a pax header carries: its
    /// ustar size field says 0, as for members of 8 GiB and more.
    PaxFile {
        name_len: usize,
        size: usize,
    },
    Dir {
        name_len: usize,
    },
    /// A symlink; a target over 100 bytes takes a GNU long-link header.
    Symlink {
        name_len: usize,
        target_len: usize,
    },
    HardLink {
        name_len: usize,
    },
}

fn member() -> impl Strategy<Value = Member> {
    let name_len = prop_oneof![3 => 1usize..40, 1 => 90usize..300];
    let size = prop_oneof![3 => 0usize..1500, 1 => 1500usize..70_000];
    prop_oneof![
        4 => (name_len.clone(), size.clone()).prop_map(|(name_len, size)| Member::File { name_len, size }),
        2 => (name_len.clone(), size).prop_map(|(name_len, size)| Member::PaxFile { name_len, size }),
        1 => name_len.clone().prop_map(|name_len| Member::Dir { name_len }),
        1 => (name_len.clone(), 1usize..200)
            .prop_map(|(name_len, target_len)| Member::Symlink { name_len, target_len }),
        1 => name_len.prop_map(|name_len| Member::HardLink { name_len }),
    ]
}

/// A name of about `len` bytes, unique to member `i`.
fn name(i: usize, len: usize) -> String {
    let mut n = format!("m{i}/");
    n.extend((0..len).map(|j| (b'a' + (j % 26) as u8) as char));
    n
}

fn content(i: usize, size: usize) -> Vec<u8> {
    (0..size).map(|j| (j * 31 + i * 7) as u8).collect()
}

/// The members' headers and data as the `tar` crate writes them, without
/// the end-of-archive blocks.
fn build(members: &[Member]) -> Vec<u8> {
    use tar::{EntryType, Header};
    let mut b = tar::Builder::new(Vec::new());
    for (i, m) in members.iter().enumerate() {
        let mut h = Header::new_gnu();
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        match *m {
            Member::File { name_len, size } => {
                h.set_size(size as u64);
                b.append_data(&mut h, name(i, name_len), &content(i, size)[..])
                    .unwrap();
            }
            Member::PaxFile { name_len, size } => {
                let path = name(i, name_len);
                let records: Vec<u8> = [("path", path.clone()), ("size", size.to_string())]
                    .iter()
                    .flat_map(|(k, v)| pax_record(k, v))
                    .collect();
                let mut x = Header::new_ustar();
                x.set_path(format!("PaxHeaders/{i}")).unwrap();
                x.set_entry_type(EntryType::XHeader);
                x.set_size(records.len() as u64);
                x.set_cksum();
                b.append(&x, &records[..]).unwrap();
                let mut h = Header::new_ustar();
                h.set_path(format!("pax{i}")).unwrap();
                h.set_mode(0o644);
                h.set_size(0);
                h.set_cksum();
                // `append` writes the data as given, whatever the header says.
                b.append(&h, &content(i, size)[..]).unwrap();
            }
            Member::Dir { name_len } => {
                h.set_entry_type(EntryType::Directory);
                h.set_size(0);
                b.append_data(&mut h, name(i, name_len), &[][..]).unwrap();
            }
            Member::Symlink {
                name_len,
                target_len,
            } => {
                h.set_entry_type(EntryType::Symlink);
                h.set_size(0);
                b.append_link(&mut h, name(i, name_len), name(i + 1, target_len))
                    .unwrap();
            }
            Member::HardLink { name_len } => {
                h.set_entry_type(EntryType::Link);
                h.set_size(0);
                b.append_link(&mut h, name(i, name_len), "m0/a").unwrap();
            }
        }
    }
    // Without `into_inner`, which would add the end blocks.
    b.get_ref().clone()
}

/// One pax record: `"<length> <key>=<value>\n"`, the length counting itself.
fn pax_record(key: &str, value: &str) -> Vec<u8> {
    let rest = format!(" {key}={value}\n");
    let mut len = rest.len() + 1;
    while format!("{len}").len() + rest.len() != len {
        len += 1;
    }
    format!("{len}{rest}").into_bytes()
}

/// What the `tar` crate reads: each member's (header offset, data size),
/// with its data whole, and the offset where its walk ended; or why it
/// could not read the archive.
fn tar_crate_reads(data: &[u8]) -> Result<(Vec<(u64, u64)>, u64), String> {
    let mut archive = tar::Archive::new(data);
    let mut members = Vec::new();
    let mut end = 0;
    for entry in archive.entries().map_err(|e| e.to_string())? {
        let mut entry = entry.map_err(|e| e.to_string())?;
        let size = entry.size();
        let (header, file) = (entry.raw_header_position(), entry.raw_file_position());
        let mut got = Vec::new();
        entry.read_to_end(&mut got).map_err(|e| e.to_string())?;
        if got.len() as u64 != size {
            return Err(format!("member at {header} cut short"));
        }
        members.push((header, size));
        end = file + size.div_ceil(512) * 512;
    }
    Ok((members, end))
}

/// The check's verdict and the members it walked past their header:
/// (header offset, data size), extension headers left out.
fn our_reading(data: &[u8], piece: usize) -> (Result<(), String>, Vec<(u64, u64)>) {
    let mut c = TarCheck::default();
    for p in data.chunks(piece) {
        c.update(p);
    }
    let members = c
        .walked
        .iter()
        .filter(|(kind, ..)| !matches!(kind, b'L' | b'K' | b'x' | b'g'))
        .map(|&(_, at, size)| (at, size))
        .collect();
    (c.finish(), members)
}

/// Both readings of `data`, compared.
fn agree(data: &[u8], piece: usize) -> Result<(), TestCaseError> {
    let (ours, walked) = our_reading(data, piece);
    let theirs = tar_crate_reads(data);
    let complete = match &theirs {
        Ok((_, end)) => {
            let end = *end as usize;
            data.get(end..end + 1024)
                .is_some_and(|b| b.iter().all(|&x| x == 0))
        }
        Err(_) => false,
    };
    prop_assert_eq!(
        ours.is_ok(),
        complete,
        "check says {:?}, the tar crate read {:?}",
        ours,
        theirs
    );
    if let (Ok(()), Ok((members, _))) = (&ours, &theirs) {
        prop_assert_eq!(&walked, members);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Whole archives, with 0 to 3 zero blocks at the end and maybe bytes
    /// after them: complete exactly when two zero blocks end the members.
    #[test]
    fn whole_archives_agree_with_the_tar_crate(
        members in proptest::collection::vec(member(), 0..8),
        zero_blocks in 0usize..4,
        trailing in proptest::collection::vec(any::<u8>(), 0..600),
        piece in 1usize..5000,
    ) {
        let mut data = build(&members);
        data.resize(data.len() + zero_blocks * 512, 0);
        data.extend_from_slice(&trailing);
        agree(&data, piece)?;
    }

    /// The same archives cut short anywhere, or with one byte damaged.
    #[test]
    fn cut_or_damaged_archives_agree_with_the_tar_crate(
        members in proptest::collection::vec(member(), 1..6),
        cut in any::<Option<Index>>(),
        damage in any::<Option<(Index, u8)>>(),
        piece in 1usize..5000,
    ) {
        let mut data = build(&members);
        data.resize(data.len() + 1024, 0);
        if let Some((at, mask)) = damage {
            let i = at.index(data.len());
            data[i] ^= mask.max(1);
            // The crate splits pax records at newlines; POSIX, GNU tar and
            // the check go by each record's length, so a newline made inside
            // a record would part them by design, not by a bug.
            prop_assume!(data[i] != b'\n');
        }
        if let Some(cut) = cut {
            data.truncate(cut.index(data.len()));
        }
        agree(&data, piece)?;
    }
}

/// The generator itself: a whole archive of every kind of member reads the
/// same in both, and the crate finds every member (so the model is not
/// vacuous).
#[test]
fn every_kind_of_member_is_read_alike() {
    let members = [
        Member::File {
            name_len: 5,
            size: 1000,
        },
        Member::File {
            name_len: 200,
            size: 3,
        },
        Member::PaxFile {
            name_len: 150,
            size: 70_000,
        },
        Member::Dir { name_len: 120 },
        Member::Symlink {
            name_len: 4,
            target_len: 150,
        },
        Member::HardLink { name_len: 2 },
    ];
    let mut data = build(&members);
    data.resize(data.len() + 1024, 0);
    let (ours, walked) = our_reading(&data, 777);
    assert_eq!(ours, Ok(()));
    let (theirs, _) = tar_crate_reads(&data).unwrap();
    assert_eq!(theirs.len(), members.len());
    assert_eq!(walked, theirs);
    assert_eq!(theirs[2].1, 70_000, "the pax size is the member's");
}
