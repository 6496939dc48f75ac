//! A pack file of any bytes: the scan never panics and stops inside the
//! file, and each record it finds reads back (decoded and checked against
//! its id, or refused with a reason) without a panic.
#![no_main]

use deploycache::pack::{self, PackName};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut file = tempfile::NamedTempFile::new().expect("a temporary file");
    std::io::Write::write_all(&mut file, data).expect("writing the pack");
    let path = file.path();
    let (records, stop) = pack::scan(path, PackName(1)).expect("the file is readable");
    if let Some(stop) = &stop {
        assert!(
            stop.at <= data.len() as u64,
            "stopped past the end: {stop:?}"
        );
    }
    for r in &records {
        assert!(r.loc.offset + u64::from(r.loc.stored_len) <= data.len() as u64);
        let _ = pack::check_record(file.as_file(), path, r);
    }
});
