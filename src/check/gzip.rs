//! Where a gzip check inflates: on a thread of its own while one of a
//! process-wide budget of places is free, else inline on the writer's
//! request. The inflating itself is [`Inflate`]'s.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;

use super::Inflate;

/// Inflating is the costliest step of the write path (several times the
/// chunker's CPU), so it runs on a thread of its own: a write request only
/// copies its bytes into a batch, and the inflate overlaps the transfer.
/// Batches are bounded (`GZ_BATCH` × (`GZ_QUEUE` + 2) bytes in flight
/// per file at most); a full queue makes the writer wait. At most
/// `GZ_THREADS` such threads run at once in a process; the checks of
/// files written beyond that inflate inline, on the writer's request, so
/// memory stays bounded however many files are written at once.
pub enum GzCheck {
    Threaded {
        batch: Vec<u8>,
        tx: mpsc::SyncSender<Vec<u8>>,
        worker: thread::JoinHandle<Result<(), String>>,
    },
    /// No place free (or no thread could be started): inflate inline.
    Inline(Box<Inflate>),
}

const GZ_BATCH: usize = 1 << 20;
const GZ_QUEUE: usize = 4;
const GZ_THREADS: usize = 8;

/// Check threads running in this process.
static GZ_RUNNING: AtomicUsize = AtomicUsize::new(0);

/// Holds one of `GZ_THREADS` places until dropped.
struct Place(&'static AtomicUsize);

impl Place {
    fn take(running: &'static AtomicUsize, max: usize) -> Option<Place> {
        running
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Place(running))
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl GzCheck {
    pub(super) fn new() -> GzCheck {
        GzCheck::within(&GZ_RUNNING, GZ_THREADS)
    }

    /// A check on a thread of its own if one of `max` places is free.
    fn within(running: &'static AtomicUsize, max: usize) -> GzCheck {
        let threaded = Place::take(running, max).and_then(|place| {
            let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(GZ_QUEUE);
            thread::Builder::new()
                .name("gzip-check".into())
                .spawn(move || {
                    let _place = place;
                    let mut inflate = Inflate::new();
                    for batch in rx {
                        inflate.update(&batch);
                    }
                    inflate.finish()
                })
                .ok()
                .map(|worker| GzCheck::Threaded {
                    batch: Vec::with_capacity(GZ_BATCH),
                    tx,
                    worker,
                })
        });
        threaded.unwrap_or_else(|| GzCheck::Inline(Box::new(Inflate::new())))
    }

    pub(super) fn update(&mut self, mut data: &[u8]) {
        match self {
            GzCheck::Inline(inflate) => inflate.update(data),
            GzCheck::Threaded { batch, tx, .. } => {
                while !data.is_empty() {
                    let n = (GZ_BATCH - batch.len()).min(data.len());
                    batch.extend_from_slice(&data[..n]);
                    data = &data[n..];
                    if batch.len() == GZ_BATCH {
                        let full = std::mem::replace(batch, Vec::with_capacity(GZ_BATCH));
                        // A send fails only when the worker is gone (it
                        // never exits early); finish() reports its verdict.
                        let _ = tx.send(full);
                    }
                }
            }
        }
    }

    pub(super) fn finish(self) -> Result<(), String> {
        match self {
            GzCheck::Inline(inflate) => inflate.finish(),
            GzCheck::Threaded { batch, tx, worker } => {
                if !batch.is_empty() {
                    let _ = tx.send(batch);
                }
                drop(tx);
                worker
                    .join()
                    .unwrap_or_else(|_| Err("gzip: the check's thread failed".into()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// Beyond the thread budget, checks inflate inline and give the same
    /// verdicts; a finished check gives its place back.
    #[test]
    fn gzip_checks_beyond_the_thread_budget_run_inline() {
        use flate2::{write::GzEncoder, Compression};
        static RUNNING: AtomicUsize = AtomicUsize::new(0);
        let mut e = GzEncoder::new(Vec::new(), Compression::fast());
        e.write_all(&vec![9u8; 3 << 20]).unwrap();
        let gz = e.finish().unwrap();
        let mut checks: Vec<GzCheck> = (0..3).map(|_| GzCheck::within(&RUNNING, 2)).collect();
        let threaded: Vec<bool> = checks
            .iter()
            .map(|c| matches!(c, GzCheck::Threaded { .. }))
            .collect();
        assert_eq!(threaded, [true, true, false]);
        for c in &mut checks {
            c.update(&gz[..gz.len() - 1]);
        }
        let last = checks.pop().unwrap();
        assert!(last.finish().is_err());
        for c in checks {
            assert!(c.finish().is_err());
        }
        assert_eq!(RUNNING.load(Ordering::Acquire), 0);
        let mut c = GzCheck::within(&RUNNING, 2);
        assert!(matches!(c, GzCheck::Threaded { .. }));
        c.update(&gz);
        assert_eq!(c.finish(), Ok(()));
    }
}
