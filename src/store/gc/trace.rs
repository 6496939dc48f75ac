//! `DEPLOYCACHE_GC_TRACE=1`: gc writes how long each of its phases took to
//! stderr (`gc trace: <phase> <seconds> s`), for finding where a slow run
//! spends its time without a profiler. Off, it costs one cached check of
//! the environment per phase.

use std::sync::OnceLock;
use std::time::Instant;

fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("DEPLOYCACHE_GC_TRACE").is_some_and(|v| v != "0"))
}

/// Run `f`, and log how long it took as phase `name` when tracing.
pub(crate) fn time<T>(name: &str, f: impl FnOnce() -> T) -> T {
    if !enabled() {
        return f();
    }
    let t = Instant::now();
    let out = f();
    eprintln!("gc trace: {name} {:.3} s", t.elapsed().as_secs_f64());
    out
}
