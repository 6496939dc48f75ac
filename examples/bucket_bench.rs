//! Throughput and latency of a remote bucket (issue 17's figures):
//!
//! ```text
//! eval "$(scripts/radosgw.sh start /tmp/rgw 7480)"; export AWS_ENDPOINT_URL ...
//! cargo run --release --example bucket_bench -- s3://deploycache-test [MiB]
//! ```
//!
//! Uploads one object of MiB (default 256) with `put_file`, reads it back
//! in 4 MiB ranges (one at a time, then 4 at once) and whole, times a small
//! PUT and a listing of 1,000 keys, and deletes what it wrote. Prints one
//! line per figure; `curl --aws-sigv4` of the same ranges is the baseline
//! (scripts/bench.sh runs both).

use std::io::Write;
use std::time::Instant;

use deploycache::remote::{Bucket, RemoteUrl};

const RANGE: u64 = 4 << 20;

fn main() {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .expect("usage: bucket_bench s3://BUCKET[/PREFIX] [MiB]");
    let mib: u64 = args.next().map_or(256, |s| s.parse().expect("MiB"));
    let run = format!("bench-{:08x}", rand::random::<u32>());
    let url = format!("{}/{run}", url.trim_end_matches('/'));
    let bucket = RemoteUrl::parse(&url).unwrap().open().unwrap();
    let b: &dyn Bucket = &*bucket;
    let size = mib << 20;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("object");
    let mut f = std::fs::File::create(&path).unwrap();
    let mut block = vec![0u8; 1 << 20];
    for i in 0..mib {
        block
            .iter_mut()
            .enumerate()
            .for_each(|(j, x)| *x = (i as usize * 31 + j * 7) as u8);
        f.write_all(&block).unwrap();
    }
    drop(f);
    let mb = |bytes: u64, secs: f64| bytes as f64 / secs / 1e6;

    let t = Instant::now();
    b.put_file("big", &path).unwrap();
    let s = t.elapsed().as_secs_f64();
    println!("put_file {mib} MiB: {s:.2} s, {:.0} MB/s", mb(size, s));

    let ranges: Vec<_> = (0..size / RANGE)
        .map(|i| i * RANGE..(i + 1) * RANGE)
        .collect();
    let t = Instant::now();
    for r in &ranges {
        assert_eq!(b.get_range("big", r.clone()).unwrap().len() as u64, RANGE);
    }
    let s = t.elapsed().as_secs_f64();
    println!(
        "get_range 4 MiB x {}, sequential: {s:.2} s, {:.0} MB/s",
        ranges.len(),
        mb(size, s)
    );

    let t = Instant::now();
    std::thread::scope(|scope| {
        for k in 0..4 {
            let ranges = &ranges;
            scope.spawn(move || {
                for r in ranges.iter().skip(k).step_by(4) {
                    assert_eq!(b.get_range("big", r.clone()).unwrap().len() as u64, RANGE);
                }
            });
        }
    });
    let s = t.elapsed().as_secs_f64();
    println!(
        "get_range 4 MiB x {}, 4 threads: {s:.2} s, {:.0} MB/s",
        ranges.len(),
        mb(size, s)
    );

    let t = Instant::now();
    assert_eq!(b.get("big").unwrap().len() as u64, size);
    let s = t.elapsed().as_secs_f64();
    println!("get whole {mib} MiB: {s:.2} s, {:.0} MB/s", mb(size, s));

    let mut lat: Vec<f64> = (0..100)
        .map(|i| {
            let t = Instant::now();
            b.put(&format!("small/{i:04}"), &[7u8; 1024]).unwrap();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    lat.sort_by(|a, b| a.total_cmp(b));
    println!(
        "put 1 KiB x 100: median {:.1} ms, p90 {:.1} ms",
        lat[50], lat[90]
    );

    std::thread::scope(|scope| {
        for k in 0..8 {
            scope.spawn(move || {
                for i in (100..1000).skip(k).step_by(8) {
                    b.put(&format!("small/{i:04}"), &[7u8; 1024]).unwrap();
                }
            });
        }
    });
    let t = Instant::now();
    let listed = b.list("small/").unwrap();
    let s = t.elapsed().as_secs_f64();
    assert_eq!(listed.len(), 1000);
    println!("list 1,000 keys: {:.0} ms", s * 1e3);

    for o in b.list("").unwrap() {
        b.delete(&o.key).unwrap();
    }
    println!("url {}", b.url("big"));
}
