//! The packs of a store attached to a remote: this host's own pack files
//! first (`packs/`, what it wrote), then the remote's, read by byte range
//! through a local block cache (`remote-cache/`) bounded by `--cache-size`.
//!
//! A remote pack is sealed, so its bytes never change: a block fetched once
//! is good for as long as the pack exists. Blocks are [`BLOCK`] bytes of a
//! pack at a multiple of [`BLOCK`] (the last one shorter): one ranged GET
//! brings every chunk in it, so a sequential read of a file (whose chunks a
//! writer appended one after another) costs one request per 4 MiB, and
//! nearby reads coalesce. Each block is a file written to a temporary name
//! and renamed, so concurrent processes of the host share the cache and a
//! crash leaves no half block. The chunk bytes are checked (BLAKE3 against
//! the chunk id) by the store's read path as for local packs: a damaged
//! block reads as a corrupt chunk, never as wrong bytes.
//!
//! Everything that changes packs (creating, deleting, cutting) acts on this
//! host's own packs only: the bucket is changed by publishing and by the
//! remote's gc, never through a [`PackStore`].

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use super::Bucket;
use crate::error::{Error, IoContext, Result};
use crate::pack::{LocalPackStore, PackHandle, PackInfo, PackName, PackSink, PackStore};
use crate::perms;

/// Bytes of a pack one cache block (and one GET) holds.
pub const BLOCK: u64 = 4 << 20;

/// Where a remote pack lives in the bucket.
pub fn pack_key(p: PackName) -> String {
    format!("packs/{p}.pack")
}

/// This host's packs, then the remote's through the block cache.
pub struct RemotePacks {
    local: LocalPackStore,
    remote: Arc<RemoteSide>,
    /// Packs found not to be this host's files: read from the remote
    /// without trying to open a local file first (a pack never becomes a
    /// local file again: new ones get new names). Bounded by the packs
    /// the index names.
    not_local: Mutex<std::collections::HashSet<PackName>>,
}

/// The remote's packs, through the block cache: shared with the handles
/// [`PackStore::open`] gives out.
struct RemoteSide {
    bucket: Arc<dyn Bucket>,
    cache: BlockCache,
    /// Sizes of remote packs, asked once each (they never change).
    sizes: Mutex<HashMap<PackName, u64>>,
    /// Blocks being fetched (by a reader or ahead of one), and the signal
    /// that one arrived: a reader waits for a fetch under way rather than
    /// asking for the same bytes again.
    fetching: Mutex<std::collections::HashSet<BlockId>>,
    fetched: std::sync::Condvar,
}

/// Blocks fetched ahead of a sequential reader at most (16 MiB): what keeps
/// the link busy while the reader checks and copies the block before.
const AHEAD_BLOCKS: u64 = 4;

impl RemotePacks {
    pub fn new(
        local: LocalPackStore,
        bucket: Arc<dyn Bucket>,
        cache_dir: PathBuf,
        cache_size: u64,
    ) -> RemotePacks {
        RemotePacks {
            local,
            remote: Arc::new(RemoteSide {
                bucket,
                cache: BlockCache::new(cache_dir, cache_size),
                sizes: Mutex::new(HashMap::new()),
                fetching: Mutex::new(Default::default()),
                fetched: std::sync::Condvar::new(),
            }),
            not_local: Mutex::new(Default::default()),
        }
    }

    /// Whether this host holds pack `p` as a file of its own.
    fn is_local(&self, p: PackName) -> bool {
        if lock(&self.not_local).contains(&p) {
            return false;
        }
        let local = self.local.size(p).is_ok();
        if !local {
            lock(&self.not_local).insert(p);
        }
        local
    }

    /// What the block cache holds: blocks and bytes.
    pub fn cached(&self) -> (u64, u64) {
        self.remote.cache.usage()
    }
}

impl RemoteSide {
    fn size(&self, p: PackName) -> Result<u64> {
        if let Some(s) = lock(&self.sizes).get(&p) {
            return Ok(*s);
        }
        let key = pack_key(p);
        let size = match self.bucket.head(&key)? {
            Some(info) => info.size,
            None => {
                return Err(Error::Errno {
                    errno: libc::ENOENT,
                    what: self.bucket.url(&key).into(),
                })
            }
        };
        lock(&self.sizes).insert(p, size);
        Ok(size)
    }

    /// `buf.len()` bytes of remote pack `p` at `offset`, block by block.
    fn read(&self, p: PackName, offset: u64, buf: &mut [u8]) -> Result<()> {
        let size = self.size(p)?;
        let end = offset + buf.len() as u64;
        if end > size {
            return Err(Error::Remote {
                url: self.bucket.url(&pack_key(p)),
                message: format!(
                    "pack is shorter than the index says (it ends at {size}, before byte {end} of a read at {offset})"
                ),
                errno: libc::EIO,
            });
        }
        let mut at = offset;
        while at < end {
            let block = at / BLOCK;
            let bytes = self.block(p, block, size)?;
            let from = (at - block * BLOCK) as usize;
            let n = (bytes.len() - from).min((end - at) as usize);
            let into = (at - offset) as usize;
            buf[into..into + n].copy_from_slice(&bytes[from..from + n]);
            at += n as u64;
        }
        Ok(())
    }

    /// Block `block` of remote pack `p` (of `size` bytes): from the cache,
    /// else fetched (or waited for, when a prefetch is fetching it) and kept.
    fn block(&self, p: PackName, block: u64, size: u64) -> Result<Arc<Vec<u8>>> {
        let want = (size - block * BLOCK).min(BLOCK) as usize;
        loop {
            if let Some(b) = self.cache.get(p, block, want) {
                return Ok(b);
            }
            let mut f = lock(&self.fetching);
            if f.insert((p, block)) {
                break;
            }
            // Someone fetches it: wait for that, then look again (a failed
            // prefetch leaves it to this reader).
            while f.contains(&(p, block)) {
                f = self
                    .fetched
                    .wait_timeout(f, std::time::Duration::from_secs(1))
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
        }
        let r = self.fetch(p, block, want);
        lock(&self.fetching).remove(&(p, block));
        self.fetched.notify_all();
        r
    }

    /// GET block `block` of `p` (`want` bytes) and keep it.
    fn fetch(&self, p: PackName, block: u64, want: usize) -> Result<Arc<Vec<u8>>> {
        let key = pack_key(p);
        let bytes = self
            .bucket
            .get_range(&key, block * BLOCK..block * BLOCK + want as u64)?;
        if bytes.len() != want {
            return Err(Error::Remote {
                url: self.bucket.url(&key),
                message: format!("asked for {want} bytes, got {}", bytes.len()),
                errno: libc::EIO,
            });
        }
        Ok(self.cache.put(p, block, bytes))
    }

    /// Start fetching the blocks of `p` that `len` bytes at `offset` fall
    /// in (at most [`AHEAD_BLOCKS`]), each on a thread of its own, unless
    /// cached or under way. Best effort: a failure leaves the block to the
    /// reader, which reports it.
    fn prefetch(self: &Arc<Self>, p: PackName, offset: u64, len: u64) {
        let Ok(size) = self.size(p) else { return };
        let end = (offset + len).min(size);
        if len == 0 || offset >= end {
            return;
        }
        let (first, last) = (offset / BLOCK, (end - 1) / BLOCK);
        for block in first..=last.min(first + AHEAD_BLOCKS - 1) {
            let want = (size - block * BLOCK).min(BLOCK) as usize;
            if self.cache.has(p, block) || !lock(&self.fetching).insert((p, block)) {
                continue;
            }
            let me = self.clone();
            let spawned = std::thread::Builder::new()
                .name("deploycache-fetch".into())
                .spawn(move || {
                    let _ = me.fetch(p, block, want);
                    lock(&me.fetching).remove(&(p, block));
                    me.fetched.notify_all();
                });
            if spawned.is_err() {
                lock(&self.fetching).remove(&(p, block));
            }
        }
    }
}

/// A remote pack open for reading.
struct RemoteHandle {
    side: Arc<RemoteSide>,
    pack: PackName,
}

impl PackHandle for RemoteHandle {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.side.read(self.pack, offset, buf)
    }

    fn prefetch(&self, offset: u64, len: u64) {
        self.side.prefetch(self.pack, offset, len);
    }
}

impl PackStore for RemotePacks {
    fn create(&self) -> Result<Box<dyn PackSink>> {
        self.local.create()
    }

    fn read_at(&self, pack: PackName, offset: u64, buf: &mut [u8]) -> Result<()> {
        if lock(&self.not_local).contains(&pack) {
            return self.remote.read(pack, offset, buf);
        }
        match self.local.read_at(pack, offset, buf) {
            Err(e) if e.errno() == libc::ENOENT => {
                lock(&self.not_local).insert(pack);
                self.remote.read(pack, offset, buf)
            }
            r => r,
        }
    }

    fn prefetch(&self, pack: PackName, offset: u64, len: u64) {
        if self.is_local(pack) {
            self.local.prefetch(pack, offset, len);
        } else {
            self.remote.prefetch(pack, offset, len);
        }
    }

    fn open(&self, pack: PackName) -> Result<Arc<dyn PackHandle>> {
        match self.local.open(pack) {
            Err(e) if e.errno() == libc::ENOENT => {
                self.remote.size(pack)?;
                Ok(Arc::new(RemoteHandle {
                    side: self.remote.clone(),
                    pack,
                }))
            }
            r => r,
        }
    }

    fn list(&self) -> Result<Vec<PackInfo>> {
        self.local.list()
    }

    fn size(&self, pack: PackName) -> Result<u64> {
        match self.local.size(pack) {
            Err(e) if e.errno() == libc::ENOENT => self.remote.size(pack),
            r => r,
        }
    }

    fn delete(&self, pack: PackName) -> Result<()> {
        self.local.delete(pack)
    }

    fn truncate(&self, pack: PackName, len: u64) -> Result<()> {
        self.local.truncate(pack, len)
    }

    fn delete_if_idle(&self, pack: PackName) -> Result<Option<u64>> {
        self.local.delete_if_idle(pack)
    }

    fn writer_holds(&self, pack: PackName) -> Result<bool> {
        if self.is_local(pack) {
            self.local.writer_holds(pack)
        } else {
            // Not this host's to rewrite: the remote's gc owns it.
            Ok(true)
        }
    }

    fn describe(&self, pack: PackName) -> String {
        if self.is_local(pack) {
            self.local.describe(pack)
        } else {
            self.remote.bucket.url(&pack_key(pack))
        }
    }

    fn open_count(&self) -> usize {
        self.local.open_count()
    }

    fn trim_published(&self, published: &std::collections::HashSet<PackName>) -> Result<u64> {
        let (_, cached) = self.remote.cache.usage();
        let own = self.local.list()?;
        let mut total = cached + own.iter().map(|p| p.size).sum::<u64>();
        let limit = self.remote.cache.limit;
        if total <= limit {
            return Ok(0);
        }
        let mut candidates: Vec<(std::time::SystemTime, PackInfo)> = own
            .into_iter()
            .filter(|p| published.contains(&p.name))
            .map(|p| {
                let t = fs::metadata(self.local.describe(p.name))
                    .and_then(|m| m.modified())
                    .unwrap_or(SystemTime::UNIX_EPOCH);
                (t, p)
            })
            .collect();
        candidates.sort_by_key(|(t, p)| (*t, p.name));
        let mut freed = 0;
        for (_, p) in candidates {
            if total <= limit / 10 * 9 {
                break;
            }
            // Sealed and in the remote: a reader with it open keeps reading
            // its file; a new read fetches from the remote.
            self.local.delete(p.name)?;
            total -= p.size;
            freed += p.size;
        }
        Ok(freed)
    }

    fn forget_cached(&self, pack: PackName, offset: u64, len: u64) -> bool {
        if self.is_local(pack) {
            return false;
        }
        let (first, last) = (offset / BLOCK, (offset + len.max(1) - 1) / BLOCK);
        for block in first..=last {
            self.remote.cache.forget(pack, block);
        }
        true
    }
}

/// Blocks of remote packs on local disk, `DIR/<2 hex>/<pack>-<block>`,
/// with the most recently fetched kept in memory (a few, for the reads
/// that follow in the same block). Over its size, the least recently used
/// blocks go (by their files' mtime, set when fetched or read again).
struct BlockCache {
    dir: PathBuf,
    limit: u64,
    state: Mutex<CacheState>,
}

#[derive(Default)]
struct CacheState {
    /// Blocks in memory, most recent last (a few).
    hot: Vec<(BlockId, Arc<Vec<u8>>)>,
    /// Bytes on disk, as last counted (None: not counted yet).
    bytes: Option<u64>,
    blocks: u64,
}

/// A block: its pack, and its number in the pack.
type BlockId = (PackName, u64);

/// Blocks kept in memory besides the files.
const HOT_BLOCKS: usize = 8;

impl BlockCache {
    fn new(dir: PathBuf, limit: u64) -> BlockCache {
        BlockCache {
            dir,
            limit,
            state: Mutex::new(CacheState::default()),
        }
    }

    fn path(&self, p: PackName, block: u64) -> PathBuf {
        let name = p.to_string();
        self.dir.join(&name[..2]).join(format!("{name}-{block:06}"))
    }

    /// Whether block `block` of `p` is cached (in memory or on disk).
    fn has(&self, p: PackName, block: u64) -> bool {
        lock(&self.state).hot.iter().any(|(k, _)| *k == (p, block)) || self.path(p, block).is_file()
    }

    /// Block `block` of `p` if it is cached whole (`len` bytes).
    fn get(&self, p: PackName, block: u64, len: usize) -> Option<Arc<Vec<u8>>> {
        {
            let mut st = lock(&self.state);
            if let Some(i) = st.hot.iter().position(|(k, _)| *k == (p, block)) {
                let e = st.hot.remove(i);
                let b = e.1.clone();
                st.hot.push(e);
                return Some(b);
            }
        }
        let path = self.path(p, block);
        let f = File::open(&path).ok()?;
        let mut buf = vec![0u8; len];
        f.read_exact_at(&mut buf, 0).ok()?;
        // Used again: the newest for the LRU order.
        let _ = f.set_modified(SystemTime::now());
        let b = Arc::new(buf);
        self.remember(p, block, b.clone());
        Some(b)
    }

    /// Keep `bytes` as block `block` of `p` (best effort: a cache that
    /// cannot write still serves the bytes).
    fn put(&self, p: PackName, block: u64, bytes: Vec<u8>) -> Arc<Vec<u8>> {
        let path = self.path(p, block);
        let n = bytes.len() as u64;
        if write_whole(&path, &bytes).is_ok() {
            let over = {
                let mut st = lock(&self.state);
                st.blocks += 1;
                match &mut st.bytes {
                    Some(b) => {
                        *b += n;
                        *b > self.limit
                    }
                    None => true,
                }
            };
            if over {
                let _ = self.shrink();
            }
        }
        let b = Arc::new(bytes);
        self.remember(p, block, b.clone());
        b
    }

    /// Drop block `block` of `p`, in memory and on disk.
    fn forget(&self, p: PackName, block: u64) {
        lock(&self.state).hot.retain(|(k, _)| *k != (p, block));
        let _ = fs::remove_file(self.path(p, block));
    }

    fn remember(&self, p: PackName, block: u64, b: Arc<Vec<u8>>) {
        let mut st = lock(&self.state);
        st.hot.retain(|(k, _)| *k != (p, block));
        st.hot.push(((p, block), b));
        if st.hot.len() > HOT_BLOCKS {
            st.hot.remove(0);
        }
    }

    /// Count the blocks on disk, and delete the least recently used while
    /// they are over the limit (down to 90 % of it, so that the next few
    /// fetches do not each walk the directory).
    fn shrink(&self) -> io::Result<()> {
        let mut files = Vec::new();
        for e in walkdir::WalkDir::new(&self.dir)
            .min_depth(2)
            .max_depth(2)
            .into_iter()
            .flatten()
        {
            if e.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            if let Ok(m) = e.metadata() {
                if m.is_file() {
                    let t = m.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                    files.push((t, m.len(), e.into_path()));
                }
            }
        }
        let mut total: u64 = files.iter().map(|f| f.1).sum();
        let mut count = files.len() as u64;
        if total > self.limit {
            files.sort();
            let target = self.limit / 10 * 9;
            for (_, len, path) in files {
                if total <= target {
                    break;
                }
                if fs::remove_file(&path).is_ok() {
                    total -= len;
                    count -= 1;
                }
            }
        }
        let mut st = lock(&self.state);
        st.bytes = Some(total);
        st.blocks = count;
        Ok(())
    }

    fn usage(&self) -> (u64, u64) {
        let _ = self.shrink();
        let st = lock(&self.state);
        (st.blocks, st.bytes.unwrap_or(0))
    }
}

/// Write `path` whole: a temporary file beside it, renamed into place.
fn write_whole(path: &Path, bytes: &[u8]) -> Result<()> {
    // Private, as the whole store is: the blocks hold stored bytes.
    let dir = path.parent().expect("a block has a directory");
    if !dir.is_dir() {
        perms::create_dir(dir.parent().expect("the cache directory"))?;
        perms::create_dir(dir)?;
    }
    let tmp = dir.join(format!(".tmp-{:016x}", rand::random::<u64>()));
    let r = perms::create_file(&tmp).and_then(|mut f| {
        f.write_all(bytes).at(&tmp)?;
        fs::rename(&tmp, path).at(path)
    });
    if r.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    r
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
