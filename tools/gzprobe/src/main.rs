//! gzprobe: measures preflate-rs on gzip files (issue 14, part 1).
//!
//!   gzprobe analyze [--slice-mib N] [--plain-limit-mib N] [--verify] [--scratch DIR] FILE.gz...
//!
//! Prints one JSON object per file (one per line): for each member whether
//! its exact bytes rebuild from content plus side data (every rebuilt byte is
//! compared with the original), content and side-data sizes, analysis and
//! rebuild speed (MB/s of gzip bytes), peak RSS of each phase. A member
//! preflate cannot take (cut short, damaged, not gzip, or preflate panics)
//! is reported, never fatal.

mod gzip;
mod probe;

use std::path::PathBuf;
use std::process::ExitCode;

/// Peak resident set size and CPU time of this process, per phase: on a
/// shared machine wall time measures the neighbours; CPU time what one
/// dedicated core would take.
mod rss {
    /// CPU time this thread has run, in seconds (/proc/thread-self/schedstat, ns).
    pub fn cpu_s() -> f64 {
        std::fs::read_to_string("/proc/thread-self/schedstat")
            .ok()
            .and_then(|s| {
                s.split_whitespace()
                    .next()
                    .and_then(|n| n.parse::<u64>().ok())
            })
            .map_or(0.0, |ns| ns as f64 / 1e9)
    }

    /// Resets the kernel's peak RSS (VmHWM) of this process (Linux >= 4.0).
    pub fn reset_peak() {
        let _ = std::fs::write("/proc/self/clear_refs", "5");
    }

    /// VmHWM in KiB, 0 if unknown.
    pub fn peak_kib() -> u64 {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmHWM:"))
                    .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
            })
            .unwrap_or(0)
    }
}

fn usage() -> ExitCode {
    eprintln!("usage: gzprobe analyze [--slice-mib N] [--plain-limit-mib N] [--verify] [--scratch DIR] FILE.gz...");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() != Some("analyze") {
        return usage();
    }
    let mut s = probe::Settings {
        slice: 8 << 20,
        plain_limit: 128 << 20,
        verify: false,
    };
    let mut scratch = std::env::temp_dir();
    let mut files = Vec::new();
    while let Some(a) = args.next() {
        let mib = |v: Option<String>| v.and_then(|v| v.parse::<usize>().ok()).map(|n| n << 20);
        match a.as_str() {
            "--slice-mib" => match mib(args.next()) {
                Some(n) if n > 0 => s.slice = n,
                _ => return usage(),
            },
            "--plain-limit-mib" => match mib(args.next()) {
                Some(n) if n > 0 => s.plain_limit = n,
                _ => return usage(),
            },
            "--verify" => s.verify = true,
            "--scratch" => match args.next() {
                Some(d) => scratch = PathBuf::from(d),
                None => return usage(),
            },
            _ => files.push(PathBuf::from(a)),
        }
    }
    if files.is_empty() {
        return usage();
    }
    // A preflate panic is caught and reported per member; keep its message
    // off stderr's noise but visible.
    std::panic::set_hook(Box::new(|info| {
        eprintln!("gzprobe: preflate panicked: {info}")
    }));
    let mut failed = false;
    for f in &files {
        match probe::probe_file(f, &scratch, s) {
            Ok(v) => println!("{v}"),
            Err(e) => {
                eprintln!("gzprobe: {}: {e}", f.display());
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
