//! Not a test: the codec's figures on a large gz file.

use deploycache::gzip::{analyze_with, check_rebuild, Options, Verdict};

/// Not a test: the speed and memory figures of the codec on a large gz
/// file. `DEPLOYCACHE_GZ_BENCH=file.gz cargo test --release --test inproc
/// gzip::measure -- --ignored --nocapture`, under `/usr/bin/time -v`.
#[test]
#[ignore]
fn measure() {
    let Ok(path) = std::env::var("DEPLOYCACHE_GZ_BENCH") else {
        eprintln!("set DEPLOYCACHE_GZ_BENCH to a .gz file");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let content_path = dir.path().join("content");
    let gz_len = std::fs::metadata(&path).unwrap().len();
    let (t, cpu) = (std::time::Instant::now(), thread_cpu());
    let gz = std::io::BufReader::new(std::fs::File::open(&path).unwrap());
    let out = std::io::BufWriter::new(std::fs::File::create(&content_path).unwrap());
    let verdict = analyze_with(gz, out, &Options::default()).unwrap();
    let (analyze_s, analyze_cpu) = (t.elapsed().as_secs_f64(), thread_cpu() - cpu);
    let Verdict::Split(side) = verdict else {
        panic!("kept: {verdict:?}")
    };
    let content_len = side.content_len();
    let side_len = side.encode().len();
    let (t, cpu) = (std::time::Instant::now(), thread_cpu());
    let content = std::io::BufReader::new(std::fs::File::open(&content_path).unwrap());
    let original = std::io::BufReader::new(std::fs::File::open(&path).unwrap());
    check_rebuild(&side, content, original).unwrap();
    let (rebuild_s, rebuild_cpu) = (t.elapsed().as_secs_f64(), thread_cpu() - cpu);
    let mb = gz_len as f64 / 1e6;
    eprintln!(
        "{path}: {gz_len} gz bytes, {content_len} content bytes, side {side_len} bytes; \
         analysis {analyze_s:.1} s wall, {analyze_cpu:.1} s CPU = {:.1} MB/s of gz per CPU second; \
         rebuild+compare {rebuild_s:.1} s wall, {rebuild_cpu:.1} s CPU = {:.1} MB/s of gz per CPU second",
        mb / analyze_cpu,
        mb / rebuild_cpu
    );
}

/// CPU seconds this thread has run (the machine is shared: wall time says
/// little).
fn thread_cpu() -> f64 {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap();
    s.split_whitespace().next().unwrap().parse::<f64>().unwrap() / 1e9
}
