//! Measures how much of a new version is new data, for several FastCDC
//! average chunk sizes (min = avg/4, max = avg*4, as deploycache uses).
//! The numbers behind the chunk size in store-layout.md:
//!
//!     cargo run --release --example chunk_sweep -- OLD_FILE NEW_FILE [OLD NEW]...

use std::collections::HashSet;

use fastcdc::v2020::FastCDC;

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() || !args.len().is_multiple_of(2) {
        eprintln!("usage: chunk_sweep OLD NEW [OLD NEW]...");
        std::process::exit(2);
    }
    println!(
        "| avg chunk | chunks (new) | new bytes not in old | of new file | index rows per GiB |"
    );
    println!("|---|---|---|---|---|");
    for avg in [64 * 1024, 128 * 1024, 256 * 1024, 512 * 1024, 1024 * 1024] {
        let (mut fresh, mut total, mut count) = (0u64, 0u64, 0u64);
        for pair in args.chunks(2) {
            let old = std::fs::read(&pair[0])?;
            let new = std::fs::read(&pair[1])?;
            let seen: HashSet<[u8; 32]> = FastCDC::new(&old, avg / 4, avg, avg * 4)
                .map(|c| *blake3::hash(&old[c.offset..c.offset + c.length]).as_bytes())
                .collect();
            for c in FastCDC::new(&new, avg / 4, avg, avg * 4) {
                let id = *blake3::hash(&new[c.offset..c.offset + c.length]).as_bytes();
                count += 1;
                total += c.length as u64;
                if !seen.contains(&id) {
                    fresh += c.length as u64;
                }
            }
        }
        println!(
            "| {} KiB | {count} | {:.1} MB | {:.1}% | {} |",
            avg / 1024,
            fresh as f64 / 1e6,
            100.0 * fresh as f64 / total as f64,
            (count as f64 * (1u64 << 30) as f64 / total as f64) as u64
        );
    }
    Ok(())
}
