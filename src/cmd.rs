//! One function per command, each in a file of its own named for it: it
//! opens the store, calls the library, prints (through [`crate::output`])
//! and returns the exit code. What the commands share lives here: where
//! the store is, opening it, and the messages more than one command prints.
//!
//! Adding a command: a variant in `cli.rs`, a file here with its `run`, and
//! one arm in `main.rs`'s dispatch.

use std::path::PathBuf;

use deploycache::store::{OpenOptions, Store};

use crate::cli::Cli;
use crate::output::{count, human};

pub mod cat;
pub mod convert;
pub mod export;
pub mod fingerprint;
pub mod gc;
pub mod import;
pub mod init;
pub mod ls;
pub mod mount;
pub mod put;
pub mod remote;
pub mod rm;
pub mod stats;
pub mod umount;
pub mod verify;

/// Exit code: `verify` found problems (main.rs documents every code).
pub const PROBLEMS_FOUND: u8 = 3;

/// The store directory when `--store` and `$DEPLOYCACHE_STORE` name none:
/// /var/lib/deploycache for root, else $XDG_DATA_HOME/deploycache
/// (~/.local/share/deploycache).
fn default_store() -> PathBuf {
    if std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
    {
        return PathBuf::from("/var/lib/deploycache");
    }
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("deploycache");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".local/share/deploycache")
}

/// The store directory the command line names (or the default).
pub fn store_root(cli: &Cli) -> PathBuf {
    cli.store.clone().unwrap_or_else(default_store)
}

/// Open the store with the command line's namespace and compression;
/// `create` creates it when missing.
pub fn open(cli: &Cli, create: bool) -> anyhow::Result<Store> {
    let remote = cli
        .remote
        .as_deref()
        .map(deploycache::remote::RemoteUrl::parse)
        .transpose()?;
    let cache_size = cli
        .cache_size
        .as_deref()
        .map(|s| {
            deploycache::store::gc::parse_size(s)
                .map_err(|e| anyhow::anyhow!("--cache-size {s:?}: {e}"))
        })
        .transpose()?;
    let root = store_root(cli);
    rebuild_if_index_lost(&root, cli.remote.is_some())?;
    if cli.remote.is_none() && !root.join("remote").is_file() {
        if let Some(fs) = deploycache::store::network_filesystem(&root) {
            eprintln!(
                "deploycache: warning: store {} is on {fs}: its SQLite index is not safe on a network filesystem (WAL needs one host's shared memory) and two hosts cannot share it; keep the store on a local disk and share the cache through --remote file://<dir on {fs}> or s3:// (README: \"Many jumphosts, one cache\")",
                root.display()
            );
        }
    }
    Ok(Store::open(
        &root,
        OpenOptions {
            create,
            namespace: cli.namespace.clone(),
            compression: cli.compression,
            remote,
            cache_size,
        },
    )?)
}

/// A store caching a remote whose index is gone (deleted, or a new disk)
/// gets it back at once: from its own packs and the remote's commits (the
/// next pull then applies every artifact of the remote). A store without a
/// remote is left to `verify --rebuild-index`, as the error says.
fn rebuild_if_index_lost(root: &std::path::Path, remote_given: bool) -> anyhow::Result<()> {
    let attached = remote_given || root.join("remote").is_file();
    if !attached || !root.join("FORMAT").is_file() || root.join("index.sqlite").exists() {
        return Ok(());
    }
    let r = deploycache::store::rebuild_index(root)?;
    eprintln!(
        "deploycache: {}: the index was missing; rebuilt it from {} and the remote ({} chunks located there); the remote's artifacts come back with the pull",
        root.display(),
        count(r.packs, "pack"),
        r.remote_chunks
    );
    Ok(())
}

/// Open the store for a command that reads artifacts: with a remote,
/// what other hosts published is pulled first (problems said on stderr).
/// A store given a remote is created when missing: it is this host's
/// cache of the remote, filled from it.
pub fn open_to_read(cli: &Cli, create: bool) -> anyhow::Result<Store> {
    let s = open(cli, create || cli.remote.is_some())?;
    if s.remote_url().is_some() {
        let pulled = s.pull()?;
        remote::say_problems(&pulled.problems);
    }
    Ok(s)
}

/// After a command read an artifact: with a remote, tell the remote's gc
/// of the use (a failure is a warning: the read is done).
pub fn tell_remote_of_use(s: &Store) {
    if s.remote_url().is_some() {
        if let Err(e) = s.publish_uses() {
            eprintln!("deploycache: warning: this host's uses were not written to the remote: {e}");
        }
    }
}

/// After a command changed artifacts: with a remote, publish the change.
pub fn publish_if_remote(s: &Store) -> anyhow::Result<()> {
    if let Some(url) = s.remote_url() {
        let p = s.publish()?;
        if p.commits > 0 {
            eprintln!(
                "deploycache: published {} to {url}: uploaded {} ({} bytes), commits {} bytes",
                count(p.commits, "artifact version"),
                count(p.packs_uploaded, "pack"),
                p.bytes_uploaded,
                p.commit_bytes
            );
        }
        for w in &p.waiting {
            eprintln!("deploycache: not published yet: {w}");
        }
        if let Some(first) = p.lost.first() {
            for l in &p.lost[1..] {
                eprintln!("deploycache: not published: {l}");
            }
            anyhow::bail!("not published: {first}");
        }
    }
    Ok(())
}

/// Whether progress bars may be drawn (on stderr).
pub fn tty() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal()
}

/// Sweep the pack files killed writers left (see
/// [`Store::sweep_orphan_packs`]), saying what it freed.
pub fn sweep_orphan_packs(s: &Store) -> anyhow::Result<()> {
    if let Some(swept) = s.sweep_orphan_packs()? {
        if swept.packs > 0 {
            eprintln!(
                "deploycache: deleted {} ({}) left by interrupted writes",
                count(swept.packs, "unindexed pack file"),
                human(swept.bytes)
            );
        }
    }
    Ok(())
}

/// One line per file an import found cut short and kept aside.
pub fn report_cut_short(r: &deploycache::import::ImportReport) {
    for (artifact, file, why) in &r.cut_short {
        eprintln!(
            "deploycache: {artifact}/{file} is cut short ({why}): kept aside (see `ls --quarantine`); \
             {artifact} stays incomplete, so the next run fills it again"
        );
    }
}
