//! Reads through the mount of a gzip-form file without its hot copy
//! (store-layout.md, "Gzip files (format 4)"). A rebuild cannot start
//! midway, so opening such a file starts one rebuild of it, shared by every
//! handle open on it, that runs ahead sequentially on a thread of its own:
//! each piece it checks is kept in a bounded window ([`WINDOW`]) and stored
//! as a chunk, and once the whole file is rebuilt the file is promoted
//! (hot) and every later read is an ordinary chunk read. A read at X waits
//! until the rebuild has passed X; one behind the window waits for the
//! promotion, and if that fails, rebuilds privately (slow, never wrong).
//! The rebuild stops when the last handle on it closes.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};

use super::{errno_err, lock, log_line};
use crate::error::Result;
use crate::id::FileHash;
use crate::store::{FileReader, Store};

/// The rebuilt bytes kept in memory per file being rebuilt: enough for
/// readers a little behind the rebuild (several `cp`s of one image at
/// once) without holding the file.
const WINDOW: u64 = 64 << 20;

/// The shared rebuilds of the mount, by file row and digest.
#[derive(Default)]
pub struct ColdReads {
    running: Mutex<HashMap<(i64, FileHash), Weak<Rebuild>>>,
}

/// One file's shared rebuild.
struct Rebuild {
    reader: Arc<FileReader>,
    state: Mutex<State>,
    moved: Condvar,
    /// Handles open on it; the rebuild stops when none is left.
    handles: AtomicUsize,
}

#[derive(Default)]
struct State {
    /// Checked pieces, each with its file offset: the last [`WINDOW`] bytes.
    window: VecDeque<(u64, Arc<Vec<u8>>)>,
    window_bytes: u64,
    /// Bytes rebuilt and checked so far.
    done: u64,
    /// The rebuild failed (the message), or ended.
    failed: Option<String>,
    finished: bool,
    /// The file promoted: read it as chunks.
    hot: Option<Arc<FileReader>>,
}

/// A handle's hold on a shared rebuild.
pub struct ColdHandle {
    rebuild: Arc<Rebuild>,
}

impl Drop for ColdHandle {
    fn drop(&mut self) {
        self.rebuild.handles.fetch_sub(1, Ordering::AcqRel);
    }
}

impl ColdReads {
    /// A hold on the shared rebuild of cold file `r`, started if none runs.
    pub fn open(&self, store: &Arc<Store>, r: Arc<FileReader>) -> Result<ColdHandle> {
        let key = (r.file_id(), r.row.hash);
        let mut running = lock(&self.running);
        running.retain(|_, w| w.strong_count() > 0);
        if let Some(b) = running.get(&key).and_then(Weak::upgrade) {
            b.handles.fetch_add(1, Ordering::AcqRel);
            return Ok(ColdHandle { rebuild: b });
        }
        let b = Arc::new(Rebuild {
            reader: r,
            state: Mutex::new(State::default()),
            moved: Condvar::new(),
            handles: AtomicUsize::new(1),
        });
        let (store, t) = (store.clone(), b.clone());
        std::thread::Builder::new()
            .name("deploycache-rebuild".into())
            .spawn(move || t.run(&store))
            .map_err(|e| crate::error::Error::io("<rebuild thread>", e))?;
        running.insert(key, Arc::downgrade(&b));
        Ok(ColdHandle { rebuild: b })
    }
}

impl Rebuild {
    fn run(&self, store: &Store) {
        let r = &self.reader;
        let mut promotion = store.start_promotion(r);
        let res = (|| -> Result<bool> {
            let mut pieces = r.rebuild()?;
            loop {
                let at = pieces.offset();
                // Nobody reads it any more: stop, unless it is whole (the
                // last reader read to the end), when it is promoted.
                if self.handles.load(Ordering::Acquire) == 0 && at < r.size() {
                    return Ok(false);
                }
                let Some((_, _, piece)) = pieces.next_piece()? else {
                    return Ok(true);
                };
                promotion.add(store, &piece);
                let mut st = lock(&self.state);
                st.done = at + piece.len() as u64;
                st.window_bytes += piece.len() as u64;
                st.window.push_back((at, Arc::new(piece)));
                while st.window_bytes > WINDOW && st.window.len() > 1 {
                    let (_, p) = st.window.pop_front().expect("not empty");
                    st.window_bytes -= p.len() as u64;
                }
                drop(st);
                self.moved.notify_all();
            }
        })();
        let hot = match res {
            Ok(true) if promotion.finish(store) => {
                match store.open_file_id(&r.artifact, r.file_id()) {
                    Ok(h) if !h.is_cold() && h.row.hash == r.row.hash => Some(Arc::new(h)),
                    _ => None,
                }
            }
            _ => None,
        };
        let mut st = lock(&self.state);
        if let Err(e) = res {
            log_line(&format!(
                "read of {}/{}: its rebuild failed: {e}",
                r.artifact, r.file
            ));
            st.failed = Some(e.to_string());
        }
        st.hot = hot;
        st.finished = true;
        drop(st);
        self.moved.notify_all();
    }
}

impl ColdHandle {
    /// Read up to `buf.len()` bytes at `offset` (see the module doc).
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let b = &self.rebuild;
        let end = b.reader.size().min(offset.saturating_add(buf.len() as u64));
        if offset >= end {
            return Ok(0);
        }
        let mut st = lock(&b.state);
        loop {
            if let Some(hot) = st.hot.clone() {
                drop(st);
                return hot.read_at(offset, buf);
            }
            if let Some(why) = &st.failed {
                return Err(errno_err(
                    libc::EIO,
                    format!("{}/{}: {why}", b.reader.artifact, b.reader.file),
                ));
            }
            let start = st.window.front().map_or(st.done, |(o, _)| *o);
            if offset >= start && end <= st.done {
                let mut at = 0usize;
                for (o, p) in &st.window {
                    let pend = o + p.len() as u64;
                    if pend <= offset || *o >= end {
                        continue;
                    }
                    let from = (offset.max(*o) - o) as usize;
                    let to = (end.min(pend) - o) as usize;
                    buf[at..at + to - from].copy_from_slice(&p[from..to]);
                    at += to - from;
                }
                return Ok(at);
            }
            if st.finished {
                // Behind the window and not promoted (a full disk): a
                // private rebuild, slow but exact.
                drop(st);
                return b.reader.read_at(offset, buf);
            }
            st = b.moved.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }
}
