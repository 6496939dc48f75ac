//! A pack file of any bytes: the scan never panics and stops inside the
//! file, and each record it finds reads back (decoded and checked against
//! its id, or refused with a reason) without a panic.
#![no_main]

use deploycache::pack::{self, LocalPackStore, PackName};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let name = PackName(1);
    let path = name.path(dir.path());
    std::fs::create_dir_all(path.parent().expect("a pack's directory"))
        .expect("making the pack's directory");
    std::fs::write(&path, data).expect("writing the pack");
    let packs = LocalPackStore::new(dir.path());
    let (records, stop) =
        pack::scan(&packs, name, data.len() as u64).expect("the pack is readable");
    if let Some(stop) = &stop {
        assert!(
            stop.at <= data.len() as u64,
            "stopped past the end: {stop:?}"
        );
    }
    for r in &records {
        assert!(r.loc.offset + u64::from(r.loc.stored_len) <= data.len() as u64);
        let _ = pack::check_record(&packs, &r.id, &r.loc);
    }
});
