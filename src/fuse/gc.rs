//! The mount's own gc (`mount --gc-max-size … --gc-older-than …`): a
//! background thread that keeps the store within a policy while the mount
//! serves. It runs gc at start, every `interval`, and soon after commits
//! through the mount that may have grown the store past `--gc-max-size`.
//!
//! The trigger is cheap: a commit adds the file's size to a counter (one
//! atomic add, never an index read); once the store's size at the last run
//! plus what was committed since passes the max size, the thread wakes. It
//! waits [`SETTLE`] first, so a burst of commits (a deploy copying its
//! cache in) makes one gc, and triggered runs are at least [`MIN_GAP`]
//! apart, so a store that cannot get under the limit (keep-last holds it)
//! is not planned again on every write.
//!
//! The thread opens its own [`Store`] handle rather than sharing the
//! mount's: its gc is then, as far as the store's locks go, exactly a
//! `deploycache gc` run by another process (`gc.lock` is a `flock`, which
//! is per open file), the case gc's locking is designed and tested for;
//! and the view's requests never wait on a gc holding the view's handle.
//! A FUSE request waits on gc only where it would wait on a `deploycache
//! gc` process: for the index transaction or lock gc holds at that moment.
//!
//! Each run logs one line; an error is logged and the next run tries again.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{lock, log_line};
use crate::store::gc::{self, GcOutcome, Policy};
use crate::store::{OpenOptions, Store};

/// How long a triggered run waits for more commits first.
pub const SETTLE: Duration = Duration::from_secs(5);
/// The least time between two runs started by the trigger.
pub const MIN_GAP: Duration = Duration::from_secs(30);
/// The interval between runs when none is given.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10 * 60);

/// The policy the mount keeps the store to, and how often it checks.
#[derive(Clone, Debug)]
pub struct GcConfig {
    pub policy: Policy,
    pub interval: Duration,
    /// The policy as the log's first gc line says it (`--gc-max-size 2.00 GiB, …`).
    pub about: String,
    /// A run's log line from its outcome (the binary words it as `gc` does).
    pub summary: fn(&GcOutcome) -> String,
}

/// What the view tells the gc thread: bytes committed since the last run.
#[derive(Default)]
pub struct GcTrigger {
    /// File bytes committed through the mount since the last run (an upper
    /// bound of what the store grew by: dedupe and compression only shrink it).
    committed: AtomicU64,
    /// Set when the store may be over the max size, or to stop the thread.
    state: Mutex<Wake>,
    wake: Condvar,
    /// The store's size at the last run, and the max size (u64::MAX: none).
    size: AtomicU64,
    max: AtomicU64,
}

#[derive(Default)]
struct Wake {
    over: bool,
    stop: bool,
}

impl GcTrigger {
    fn new(max: Option<u64>) -> GcTrigger {
        let t = GcTrigger::default();
        t.max.store(max.unwrap_or(u64::MAX), Ordering::Relaxed);
        t
    }

    /// A file of `bytes` was committed through the mount.
    pub fn committed(&self, bytes: u64) {
        let since = self.committed.fetch_add(bytes, Ordering::Relaxed) + bytes;
        let max = self.max.load(Ordering::Relaxed);
        if max != u64::MAX && self.size.load(Ordering::Relaxed).saturating_add(since) > max {
            let mut w = lock(&self.state);
            if !w.over {
                w.over = true;
                self.wake.notify_one();
            }
        }
    }

    /// After a run: the store's size now; nothing committed since.
    fn ran(&self, size: u64) {
        self.size.store(size, Ordering::Relaxed);
        self.committed.store(0, Ordering::Relaxed);
    }

    fn stop(&self) {
        lock(&self.state).stop = true;
        self.wake.notify_all();
    }

    /// Wait until `deadline`, a trigger (then `SETTLE` more, not before
    /// `earliest`) or a stop; true when stopped.
    fn wait(&self, deadline: Instant, earliest: Instant) -> bool {
        let mut w = lock(&self.state);
        loop {
            if w.stop {
                return true;
            }
            let now = Instant::now();
            let until = if w.over {
                deadline.min((now + SETTLE).max(earliest))
            } else {
                deadline
            };
            if now >= until {
                w.over = false;
                return false;
            }
            w = self
                .wake
                .wait_timeout(w, until - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
            if w.over && !w.stop {
                // Settle from the moment of the trigger, then run.
                let until = (Instant::now() + SETTLE).max(earliest).min(deadline);
                while !w.stop && Instant::now() < until {
                    let left = until.saturating_duration_since(Instant::now());
                    w = self
                        .wake
                        .wait_timeout(w, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
                if w.stop {
                    return true;
                }
                w.over = false;
                return false;
            }
        }
    }
}

/// The running gc thread; [`GcThread::stop`] ends it.
pub struct GcThread {
    trigger: Arc<GcTrigger>,
    handle: JoinHandle<()>,
}

impl GcThread {
    /// Start gc for the store at `root`, namespace `ns`, with `cfg`.
    /// `mounted` is the mount's own store, whose idle packs each run lets
    /// go of first.
    pub fn start(
        root: PathBuf,
        ns: String,
        cfg: GcConfig,
        mounted: Arc<Store>,
    ) -> std::io::Result<GcThread> {
        let trigger = Arc::new(GcTrigger::new(cfg.policy.max_size));
        let t = trigger.clone();
        let handle = std::thread::Builder::new()
            .name("deploycache-gc".into())
            .spawn(move || run(&root, &ns, &cfg, &t, &mounted))?;
        Ok(GcThread { trigger, handle })
    }

    pub fn trigger(&self) -> Arc<GcTrigger> {
        self.trigger.clone()
    }

    /// Stop it, after the run in progress (if any) ends.
    pub fn stop(self) {
        self.trigger.stop();
        let _ = self.handle.join();
    }
}

fn run(root: &std::path::Path, ns: &str, cfg: &GcConfig, trigger: &GcTrigger, mounted: &Store) {
    log_line(&format!(
        "gc: keeping the store within {}, checked every {}",
        cfg.about,
        gc::show_duration(cfg.interval.as_secs())
    ));
    let mut store: Option<Store> = None;
    loop {
        let started = Instant::now();
        // The mount's lanes hold what was written (and maybe removed)
        // through it: let go of those no write in progress holds.
        mounted.let_go_of_idle_packs();
        match run_once(root, ns, &cfg.policy, &mut store) {
            Ok((o, size)) => {
                trigger.ran(size);
                log_line(&format!(
                    "gc: {} in {:.1} s",
                    (cfg.summary)(&o),
                    started.elapsed().as_secs_f64()
                ));
            }
            Err(e) => {
                // Open anew next time: the error may be the handle's.
                store = None;
                log_line(&format!(
                    "gc: failed: {e}; the mount goes on serving, and gc tries again in {}",
                    gc::show_duration(cfg.interval.as_secs())
                ));
            }
        }
        if trigger.wait(started + cfg.interval, started + MIN_GAP) {
            return;
        }
    }
}

/// One gc: plan and carry it out; the outcome and the store's size after.
fn run_once(
    root: &std::path::Path,
    ns: &str,
    policy: &Policy,
    store: &mut Option<Store>,
) -> crate::error::Result<(GcOutcome, u64)> {
    let s = match store {
        Some(s) => s,
        None => store.insert(Store::open(
            root,
            OpenOptions {
                create: false,
                namespace: ns.to_owned(),
                ..OpenOptions::default()
            },
        )?),
    };
    let plan = s.gc_plan(policy)?;
    let o = s.gc_run(&plan)?;
    let size = o.store_bytes;
    Ok((o, size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_trigger_only_past_the_max_size() {
        let t = GcTrigger::new(Some(1000));
        t.ran(900);
        t.committed(50);
        assert!(!lock(&t.state).over, "950 of 1000: no gc yet");
        t.committed(60);
        assert!(lock(&t.state).over, "1010 of 1000: gc soon");
        let none = GcTrigger::new(None);
        none.committed(u64::MAX / 2);
        assert!(
            !lock(&none.state).over,
            "no max size: commits never trigger"
        );
    }

    #[test]
    fn a_trigger_runs_gc_after_settling_and_stop_ends_the_wait() {
        let t = Arc::new(GcTrigger::new(Some(10)));
        let now = Instant::now();
        // Nothing happens: the wait ends at the deadline.
        assert!(!t.wait(now + Duration::from_millis(50), now));
        assert!(now.elapsed() >= Duration::from_millis(50));
        // A stop ends a long wait at once.
        let t2 = t.clone();
        let stopper = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            t2.stop();
        });
        let start = Instant::now();
        assert!(t.wait(start + Duration::from_secs(60), start));
        assert!(start.elapsed() < Duration::from_secs(5));
        stopper.join().unwrap();
    }
}
