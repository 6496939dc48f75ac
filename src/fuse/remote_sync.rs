//! A mount of a store with a remote keeps it in step with the other hosts:
//! a background thread pulls what they published and publishes what was
//! written through the mount, every [`INTERVAL`], and once more when the
//! mount ends (store-layout.md, "Remote").
//!
//! It uses the mount's own [`Store`]: publishing retires the lanes the
//! mount's writers append to once no writer holds them (a pack is uploaded
//! sealed, and never appended to after), so a file written through the
//! mount is published within an interval of its close. A file still being
//! written keeps its artifact unpublished until it is committed.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::{lock, log_line};
use crate::store::Store;

/// Between two pulls (and publishes). `DEPLOYCACHE_REMOTE_SYNC_MS`
/// overrides it (tests).
pub const INTERVAL: Duration = Duration::from_secs(10);

fn interval() -> Duration {
    std::env::var("DEPLOYCACHE_REMOTE_SYNC_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(INTERVAL, Duration::from_millis)
}

/// The running thread; [`RemoteSync::stop`] ends it after a last round.
pub struct RemoteSync {
    stop: Arc<(Mutex<bool>, Condvar)>,
    handle: JoinHandle<()>,
}

impl RemoteSync {
    /// Start keeping `store` in step with its remote; `publish`: also
    /// publish (not for a read-only mount).
    pub fn start(store: Arc<Store>, publish: bool) -> std::io::Result<RemoteSync> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let s = stop.clone();
        let handle = std::thread::Builder::new()
            .name("deploycache-remote".into())
            .spawn(move || run(&store, publish, &s))?;
        Ok(RemoteSync { stop, handle })
    }

    /// Stop it, after a last round (what was written is published).
    pub fn stop(self) {
        *lock(&self.stop.0) = true;
        self.stop.1.notify_all();
        let _ = self.handle.join();
    }
}

fn run(store: &Store, publish: bool, stop: &(Mutex<bool>, Condvar)) {
    let every = interval();
    loop {
        let stopping = {
            let g = lock(&stop.0);
            let (g, _) = stop
                .1
                .wait_timeout_while(g, every, |s| !*s)
                .unwrap_or_else(|p| p.into_inner());
            *g
        };
        round(store, publish);
        if stopping {
            return;
        }
    }
}

/// One pull, then one publish; what they did or failed at goes to the log.
fn round(store: &Store, publish: bool) {
    match store.pull() {
        Ok(p) => {
            if p.applied > 0 {
                log_line(&format!(
                    "remote: pulled {} new commit(s) from {}",
                    p.applied,
                    store
                        .remote_url()
                        .map(|u| u.to_string())
                        .unwrap_or_default()
                ));
            }
            for e in p.problems {
                log_line(&format!("remote: {e}"));
            }
        }
        Err(e) => log_line(&format!("remote: pull failed: {e}; trying again later")),
    }
    // The artifacts open here are leased, the uses told: the remote's gc
    // evicts least recently used across hosts, never what a host has open.
    if let Err(e) = store.publish_activity() {
        log_line(&format!(
            "remote: writing this host's uses and lease failed: {e}; trying again later"
        ));
    }
    if !publish {
        return;
    }
    match store.publish() {
        Ok(p) => {
            if p.commits > 0 {
                log_line(&format!(
                    "remote: published {} artifact version(s), {} pack(s) ({} bytes) uploaded",
                    p.commits, p.packs_uploaded, p.bytes_uploaded
                ));
            }
            for l in p.lost {
                log_line(&format!("remote: not published: {l}"));
            }
        }
        Err(e) => log_line(&format!("remote: publish failed: {e}; trying again later")),
    }
}
