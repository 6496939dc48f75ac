//! The mount's background converter (store-layout.md, "Gzip files (format
//! 4)"): a thread that converts the namespace's gzip files to the gzip form
//! (`Store::convert`) at idle priority, CPU (nice 19) and disk (the idle
//! I/O class), so that it takes only what the mount's requests leave. It
//! runs at start, soon after each commit through the mount, and every
//! [`INTERVAL`]; `mount --no-convert` (`-o noconvert`) leaves it out.
//!
//! It shares the view's [`Store`] handle (unlike the mount's gc): one
//! process keeps one bounded cache of open packs, and reading every file's
//! first bytes to find the gzip ones must not double what a mount holds
//! open. The analysis (the costly part) runs on this thread, at idle
//! priority; the content's chunks are hashed and compressed by the store's
//! chunk workers like any write. A file stays readable throughout: it
//! switches form in one transaction, after its gzip form was checked. A
//! stop (unmount) abandons the file in progress at its next read.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{lock, log_line};
use crate::store::{Converted, Store};

/// Between passes when nothing is committed through the mount (files
/// stored by `put` or another mount are found then).
pub const INTERVAL: Duration = Duration::from_secs(10 * 60);
/// A commit wakes the converter after this long, so that a burst of
/// commits (a deploy copying its cache in) makes one pass.
const SETTLE: Duration = Duration::from_secs(2);

/// What the view tells the converter: a file was committed.
#[derive(Default)]
pub struct ConvertTrigger {
    state: Mutex<Wake>,
    wake: Condvar,
}

#[derive(Default)]
struct Wake {
    committed: bool,
    stop: bool,
}

impl ConvertTrigger {
    /// A file was committed through the mount: it may be a gzip file.
    pub fn committed(&self) {
        lock(&self.state).committed = true;
        self.wake.notify_all();
    }

    fn stop(&self) {
        lock(&self.state).stop = true;
        self.wake.notify_all();
    }

    fn stopped(&self) -> bool {
        lock(&self.state).stop
    }

    /// Wait until a commit (then [`SETTLE`]), `deadline`, or a stop
    /// (returns true).
    fn wait(&self, deadline: Instant) -> bool {
        let mut w = lock(&self.state);
        loop {
            if w.stop {
                return true;
            }
            if w.committed {
                w.committed = false;
                let settled = Instant::now() + SETTLE;
                while !w.stop && Instant::now() < settled {
                    w = self
                        .wake
                        .wait_timeout(w, settled - Instant::now())
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
                return w.stop;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            w = self
                .wake
                .wait_timeout(w, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

/// The running converter; [`ConvertThread::stop`] ends it.
pub struct ConvertThread {
    trigger: Arc<ConvertTrigger>,
    handle: JoinHandle<()>,
}

impl ConvertThread {
    /// Start converting the gzip files of `store`'s namespace.
    pub fn start(store: Arc<Store>) -> std::io::Result<ConvertThread> {
        let trigger = Arc::new(ConvertTrigger::default());
        let t = trigger.clone();
        let handle = std::thread::Builder::new()
            .name("deploycache-convert".into())
            .spawn(move || run(&store, &t))?;
        Ok(ConvertThread { trigger, handle })
    }

    pub fn trigger(&self) -> Arc<ConvertTrigger> {
        self.trigger.clone()
    }

    /// Stop it, after the file in progress (if any).
    pub fn stop(self) {
        self.trigger.stop();
        let _ = self.handle.join();
    }
}

fn run(store: &Store, trigger: &ConvertTrigger) {
    idle_priority();
    loop {
        let started = Instant::now();
        if let Err(e) = pass(store, trigger) {
            if trigger.stopped() {
                return;
            }
            log_line(&format!(
                "convert: failed: {e}; the mount goes on serving, and tries again later"
            ));
        }
        if trigger.wait(started + INTERVAL) {
            return;
        }
    }
}

/// Convert every candidate once; each conversion logs one line.
fn pass(s: &Store, trigger: &ConvertTrigger) -> crate::error::Result<()> {
    for (artifact, row) in s.convert_candidates()? {
        if trigger.stopped() {
            return Ok(());
        }
        let name = row.meta.name.clone();
        let started = Instant::now();
        match s.convert_file_until(&artifact, row, &|| trigger.stopped())? {
            Converted::Converted {
                size,
                content_bytes,
                side_bytes,
            } => log_line(&format!(
                "convert: {artifact}/{name}: {size} bytes of gzip as {content_bytes} of content + {side_bytes} of side data in {:.1} s",
                started.elapsed().as_secs_f64()
            )),
            Converted::Kept { why } => {
                log_line(&format!("convert: {artifact}/{name}: kept as it is: {why}"))
            }
            Converted::NotGzip | Converted::Changed | Converted::Already => {}
        }
    }
    Ok(())
}

/// Lower this thread's CPU and disk priority to idle: nice 19, and the
/// idle I/O scheduling class (served only when no other I/O waits).
/// Best effort: a failure leaves the thread at normal priority.
#[allow(unsafe_code)]
fn idle_priority() {
    // SAFETY: gettid, setpriority and ioprio_set take integers only and
    // change this thread's scheduling; no memory is passed.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid);
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 19);
        // IOPRIO_WHO_PROCESS = 1 (a thread id); IOPRIO_CLASS_IDLE = 3,
        // shifted by IOPRIO_CLASS_SHIFT = 13 (linux/ioprio.h).
        libc::syscall(libc::SYS_ioprio_set, 1, tid, 3 << 13);
    }
}
