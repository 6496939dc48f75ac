//! Mounting and unmounting: `mount` (serve a store until unmounted or
//! signalled), the checks before it (`prepare_mountpoint`, the mount table),
//! `umount`, and what a starting mount does once (stale pending rows,
//! `--complete-when` patterns, read-ahead).

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use fuser::{Config, MountOption, SessionACL};

use super::convert::ConvertThread;
use super::gc::GcThread;
use super::remote_sync::RemoteSync;
use super::view::current_ids;
use super::{log_line, View};
use crate::error::{Error, Result};
use crate::index::{LOST, PENDING};
use crate::store::Store;

/// The mount's type is `fuse.` + this.
const FS_SUBTYPE: &str = "deploycache";

/// Options of `deploycache mount`.
#[derive(Clone, Debug, Default)]
pub struct MountConfig {
    pub read_only: bool,
    pub allow_other: bool,
    /// Request-handling threads.
    pub threads: usize,
    /// Glob patterns (`opnfv-bootstraps-cache.tar`, `env_*.yaml`): an
    /// artifact lists only once a visible file matches one of them and no
    /// file of it is pending. Empty: every complete artifact lists.
    pub complete_when: Vec<String>,
    /// The policy the mount's own gc keeps the store to (none: no gc).
    pub gc: Option<super::GcConfig>,
    /// Convert gzip files to the gzip form in the background (`fuse::convert`).
    pub convert: bool,
}

/// Serve `store` at `mountpoint` until it is unmounted or the process gets
/// SIGINT, SIGTERM or SIGHUP (which unmount cleanly).
pub fn mount(store: Store, mountpoint: &Path, cfg: &MountConfig) -> Result<()> {
    prepare_mountpoint(mountpoint)?;
    let root = store.root().to_owned();
    let complete_when = complete_when_set(&cfg.complete_when)?;
    if !cfg.read_only {
        relabel_lost(&store)?;
    }
    let ns = store.namespace().to_owned();
    let mut view = View::new(store, cfg.read_only, complete_when);
    // The mount's own gc starts with the mount and runs its first gc at
    // once, beside the mount (not before it serves).
    let gc = match &cfg.gc {
        Some(g) => Some(
            GcThread::start(root.clone(), ns, g.clone(), view.store.clone()).map_err(|e| {
                Error::io(
                    &root,
                    io::Error::new(e.kind(), format!("cannot start gc: {e}")),
                )
            })?,
        ),
        None => None,
    };
    view.gc = gc.as_ref().map(GcThread::trigger);
    let converter = if cfg.convert && !cfg.read_only {
        match ConvertThread::start(view.store.clone()) {
            Ok(t) => Some(t),
            Err(e) => {
                log_line(&format!(
                    "cannot start the gzip converter: {e}; serving without it"
                ));
                None
            }
        }
    } else {
        None
    };
    view.convert = converter.as_ref().map(ConvertThread::trigger);
    let remote = if view.store.remote_url().is_some() {
        Some(
            RemoteSync::start(view.store.clone(), !cfg.read_only)
                .map_err(|e| Error::io(&root, e))?,
        )
    } else {
        None
    };
    let mut config = Config::default();
    // The store is the mount's source and `fuse.deploycache` its type, as
    // sshfs shows `user@host:path` and `fuse.sshfs`: `findmnt -t
    // fuse.deploycache` finds it, and `mount -a` sees an fstab line of that
    // store already mounted. As root fuser calls mount(2) itself with type
    // "fuse" and leaves the subtype to fusermount3, so the subtype goes to
    // the kernel as an option (which fusermount3 would refuse a second
    // time).
    let source = std::fs::canonicalize(&root).unwrap_or_else(|_| root.clone());
    config.mount_options = vec![
        MountOption::FSName(source.to_string_lossy().into_owned()),
        if current_ids().0 == 0 {
            MountOption::CUSTOM(format!("subtype={FS_SUBTYPE}"))
        } else {
            MountOption::Subtype(FS_SUBTYPE.into())
        },
        MountOption::DefaultPermissions,
        MountOption::NoDev,
        MountOption::NoSuid,
        if cfg.read_only {
            MountOption::RO
        } else {
            MountOption::RW
        },
    ];
    config.acl = if cfg.allow_other {
        SessionACL::All
    } else {
        SessionACL::Owner
    };
    config.n_threads = Some(cfg.threads.max(1));
    let session = fuser::Session::new(view, mountpoint, &config).map_err(|e| {
        // A bare ENOENT from here means FUSE itself is missing, not the path.
        let hint = if !Path::new("/dev/fuse").exists() {
            "; /dev/fuse is missing: install fuse3 (apt-get install fuse3) or load the module (modprobe fuse)"
        } else if e.kind() == io::ErrorKind::NotFound {
            "; is fusermount3 installed (apt-get install fuse3)?"
        } else if e.kind() == io::ErrorKind::PermissionDenied && current_ids().0 != 0 {
            "; a user other than root needs read and write access to /dev/fuse \
             (mode 0666, as Debian's fuse3 sets it) and a setuid fusermount3"
        } else {
            ""
        };
        Error::io(
            mountpoint,
            io::Error::new(e.kind(), format!("cannot mount: {e}{hint}")),
        )
    });
    let mut session = match session {
        Ok(s) => s,
        Err(e) => {
            if let Some(t) = gc {
                t.stop();
            }
            if let Some(t) = converter {
                t.stop();
            }
            if let Some(t) = remote {
                t.stop();
            }
            return Err(e);
        }
    };
    let mut unmounter = session.unmount_callable();
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ])
    .map_err(|e| Error::io(mountpoint, e))?;
    let signal_handle = signals.handle();
    let mp = mountpoint.to_owned();
    std::thread::spawn(move || {
        for sig in signals.forever() {
            log_line(&format!("signal {sig}: unmounting {}", mp.display()));
            match unmounter.unmount() {
                Ok(()) => break,
                Err(e) => log_line(&format!(
                    "cannot unmount {} yet ({e}); close the files open there and signal again",
                    mp.display()
                )),
            }
        }
    });
    log_line(&format!(
        "serving store {} at {} ({} threads{})",
        root.display(),
        mountpoint.display(),
        cfg.threads.max(1),
        if cfg.read_only { ", read-only" } else { "" }
    ));
    let mp = mountpoint.to_owned();
    std::thread::spawn(move || raise_read_ahead(&mp));
    let res = session.run().map_err(|e| Error::io(mountpoint, e));
    signal_handle.close();
    if let Some(t) = gc {
        t.stop();
    }
    if let Some(t) = converter {
        t.stop();
    }
    if let Some(t) = remote {
        t.stop();
    }
    log_line(&format!("unmounted {}", mountpoint.display()));
    res
}

/// `--complete-when` patterns, compiled; a bad one names itself.
fn complete_when_set(patterns: &[String]) -> Result<Option<globset::GlobSet>> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut set = globset::GlobSetBuilder::new();
    for p in patterns {
        let glob = globset::GlobBuilder::new(p)
            .literal_separator(true)
            .build()
            .map_err(|e| Error::InvalidName {
                kind: "--complete-when pattern",
                name: p.clone(),
                why: glob_why(&e),
            })?;
        set.add(glob);
    }
    set.build().map(Some).map_err(|e| Error::InvalidName {
        kind: "--complete-when pattern",
        name: patterns.join(" "),
        why: glob_why(&e),
    })
}

fn glob_why(e: &globset::Error) -> &'static str {
    match e.kind() {
        globset::ErrorKind::UnclosedClass => "a `[` class is not closed",
        globset::ErrorKind::UnclosedAlternates => "a `{` alternation is not closed",
        globset::ErrorKind::UnopenedAlternates => "a `}` has no `{`",
        globset::ErrorKind::NestedAlternates => "alternations cannot nest",
        globset::ErrorKind::DanglingEscape => "it ends with a lone `\\`",
        _ => "not a valid glob (see glob(7))",
    }
}

/// Pending rows whose daemon is gone (killed, crashed, the machine went
/// down) stand for files lost in flight: say so, so that `ls --quarantine`
/// tells the user. They keep their artifacts incomplete either way.
fn relabel_lost(store: &Store) -> Result<()> {
    for (id, artifact, reason) in store.pending_rows(PENDING)? {
        let pid = reason
            .rsplit_once("(pid ")
            .and_then(|(_, p)| p.trim_end_matches(')').parse::<u32>().ok());
        if pid.is_some_and(daemon_alive) {
            continue;
        }
        log_line(&format!(
            "{artifact}: a file was being written when its mount stopped; the artifact stays incomplete until it is written whole"
        ));
        store.end_pending(
            id,
            Some(&format!(
                "{LOST}: its mount stopped (killed, crashed or disk full) before it was written whole; write it again"
            )),
        )?;
    }
    Ok(())
}

/// A live deploycache process with this pid (not a reused pid).
fn daemon_alive(pid: u32) -> bool {
    // This process is only starting to serve: a row with its pid is an
    // earlier process's that had the same pid.
    pid != std::process::id()
        && std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|c| {
                c.split(|b| *b == 0)
                    .next()
                    .is_some_and(|a| a.ends_with(b"deploycache"))
            })
            .unwrap_or(false)
}

/// The kernel gives a FUSE mount 128 KiB of read-ahead, whatever the
/// INIT reply asks for: sequential reads then arrive as 128 KiB requests,
/// each a round trip. The mount's read-ahead is raised through sysfs (as
/// root), so cold sequential reads arrive as 1 MiB requests (`max_write`
/// caps each) several at a time and the daemon's pack prefetch can run ahead.
const READ_AHEAD_KB: u32 = 4096;

/// Set the mount's read-ahead once it serves; best effort, logged.
fn raise_read_ahead(mountpoint: &Path) {
    use std::os::unix::fs::MetadataExt;
    for _ in 0..200 {
        if is_mounted(mountpoint) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let Ok(meta) = std::fs::metadata(mountpoint) else {
        return;
    };
    let dev = meta.dev();
    let knob = format!(
        "/sys/class/bdi/{}:{}/read_ahead_kb",
        rustix::fs::major(dev),
        rustix::fs::minor(dev)
    );
    match std::fs::write(&knob, READ_AHEAD_KB.to_string()) {
        Ok(()) => log_line(&format!("read-ahead {READ_AHEAD_KB} KiB ({knob})")),
        Err(e) => log_line(&format!(
            "read-ahead left at the kernel's 128 KiB: cannot write {knob}: {e}"
        )),
    }
}

/// True when `path` is a mount point (its device differs from its parent's).
pub fn is_mounted(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let parent = path.join("..");
    match (std::fs::metadata(path), std::fs::metadata(parent)) {
        (Ok(a), Ok(b)) => a.dev() != b.dev(),
        _ => false,
    }
}

/// Make `mountpoint` ready for a new mount. A deploycache mount whose
/// daemon is gone (every access fails with ENOTCONN, as after a `kill -9` or
/// an OOM kill of the daemon) is unmounted, saying so on stderr, so that
/// restarting a mount just works. A live deploycache mount there is an error
/// (mounting again would stack a second view over it), and so is a dead FUSE
/// mount of another program, which is left alone.
pub fn prepare_mountpoint(mountpoint: &Path) -> Result<()> {
    let refuse = |why: String| Err(Error::io(mountpoint, io::Error::other(why)));
    let dead = match std::fs::read_dir(mountpoint) {
        Err(e) if is_dead(&e) => true,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return refuse(format!(
                "cannot mount: no such directory; create it first (mkdir -p {})",
                mountpoint.display()
            ))
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => {
            return refuse("cannot mount: not a directory".into())
        }
        _ if is_mounted(mountpoint) => false,
        _ => return Ok(()),
    };
    let info = "/proc/self/mountinfo";
    let table = std::fs::read_to_string(info).map_err(|e| Error::io(info, e))?;
    let at = absolute(mountpoint);
    // The last entry for the path is the mount on top.
    let ours = table
        .lines()
        .rev()
        .filter_map(MountEntry::parse)
        .find(|m| Some(&m.point) == at.as_ref())
        .is_some_and(|m| m.is_deploycache());
    match (dead, ours) {
        (false, true) => refuse(format!(
            "cannot mount: a deploycache mount is already serving here; \
             `deploycache umount {}` first to mount it anew",
            mountpoint.display()
        )),
        (false, false) => Ok(()),
        (true, false) => refuse(format!(
            "cannot mount: a dead FUSE mount of another program is here \
             (transport endpoint is not connected); remove it with \
             `fusermount3 -u {}` and mount again",
            mountpoint.display()
        )),
        (true, true) => {
            unmount(mountpoint).or_else(|_| unmount_lazily(mountpoint))?;
            log_line(&format!(
                "{} was a deploycache mount whose daemon had exited; unmounted it",
                mountpoint.display()
            ));
            Ok(())
        }
    }
}

/// Whether listing a mount point failed because its FUSE daemon is gone.
/// (Listing, not stat: the kernel may still answer a stat from cached
/// attributes.)
fn is_dead(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::ENOTCONN)
}

/// `path` made absolute without resolving its last component (which may be
/// a dead mount that cannot be looked at).
fn absolute(path: &Path) -> Option<PathBuf> {
    let name = path.file_name()?;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    Some(std::fs::canonicalize(parent).ok()?.join(name))
}

/// One line of `/proc/self/mountinfo` (proc(5)): the fields we need.
#[derive(Debug)]
struct MountEntry {
    point: PathBuf,
    fstype: String,
    source: String,
}

impl MountEntry {
    fn parse(line: &str) -> Option<MountEntry> {
        let fields: Vec<&str> = line.split(' ').collect();
        let sep = fields.iter().position(|f| *f == "-")?;
        Some(MountEntry {
            point: PathBuf::from(
                <std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(unescape_octal(
                    fields.get(4)?,
                )),
            ),
            fstype: (*fields.get(sep + 1)?).to_owned(),
            source: String::from_utf8_lossy(&unescape_octal(fields.get(sep + 2)?)).into_owned(),
        })
    }

    /// Mounted by `deploycache mount`: type "fuse.deploycache" (the store
    /// as its source), or, from a daemon of an earlier version, type
    /// "fuse" with source "deploycache".
    fn is_deploycache(&self) -> bool {
        self.fstype == format!("fuse.{FS_SUBTYPE}")
            || (self.fstype == "fuse" && self.source == FS_SUBTYPE)
    }
}

/// mountinfo writes space, tab, newline and backslash in names as `\NNN`.
fn unescape_octal(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let digits = b.get(i + 1..i + 4);
        match digits {
            Some(d) if b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)) => {
                let v = d.iter().fold(0u32, |v, c| v * 8 + u32::from(c - b'0'));
                out.push(v as u8);
                i += 4;
            }
            _ => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    out
}

/// `fusermount3 -uz`: detach a mount still in use (a shell's working
/// directory inside a dead mount keeps a plain unmount busy).
fn unmount_lazily(path: &Path) -> Result<()> {
    let ok = std::process::Command::new("fusermount3")
        .arg("-uz")
        .arg(path)
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        Ok(())
    } else {
        Err(Error::io(
            path,
            io::Error::other("cannot unmount the dead mount there; run `umount -l` on it"),
        ))
    }
}

/// `deploycache umount`: unmount `path`, with errors that say what to do
/// (nothing mounted there; busy, and how to find out by whom).
pub fn umount(path: &Path, lazy: bool) -> Result<()> {
    let refuse = |why: String| Err(Error::io(path, io::Error::other(why)));
    let dead = std::fs::read_dir(path).is_err_and(|e| is_dead(&e));
    if !dead && !is_mounted(path) {
        return refuse(if path.exists() {
            "cannot unmount: nothing is mounted there".into()
        } else {
            "cannot unmount: no such directory".into()
        });
    }
    if lazy {
        return unmount_lazily(path);
    }
    match unmount(path) {
        Err(e) if e.to_string().contains("busy") => refuse(format!(
            "cannot unmount: busy: a process has a file open or its working directory \
             there (`fuser -vm {0}` lists them); close them, or `deploycache umount --lazy {0}`",
            path.display()
        )),
        res => res,
    }
}

/// Unmount a deploycache mount (`fusermount3 -u`, or umount(8) as root).
pub fn unmount(path: &Path) -> Result<()> {
    // The C locale: `umount` below recognises "busy" in its message.
    let out = std::process::Command::new("fusermount3")
        .env("LC_ALL", "C")
        .arg("-u")
        .arg(path)
        .output();
    match out {
        Ok(o) if o.status.success() => Ok(()),
        other => {
            let why = match other {
                Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_owned(),
                Err(e) => e.to_string(),
            };
            let o = std::process::Command::new("umount").arg(path).output();
            match o {
                Ok(o) if o.status.success() => Ok(()),
                _ => Err(Error::io(
                    path,
                    io::Error::other(format!("cannot unmount: {why}")),
                )),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines_parse_with_escaped_names() {
        let root =
            "43 27 0:39 / /tmp/ex/mnt rw,nosuid,nodev,relatime - fuse deploycache rw,user_id=0";
        let e = MountEntry::parse(root).unwrap();
        assert_eq!(e.point, PathBuf::from("/tmp/ex/mnt"));
        assert!(e.is_deploycache());
        // Optional fields before the separator; a space and a backslash in
        // the mount point; the subtype fusermount3 gives a user's mount.
        let user = r"51 27 0:41 / /srv/deploy\040cache/a\134b rw shared:7 master:1 - fuse.deploycache deploycache rw";
        let e = MountEntry::parse(user).unwrap();
        assert_eq!(e.point, PathBuf::from(r"/srv/deploy cache/a\b"));
        assert!(e.is_deploycache());
        let now = "52 27 0:42 / /iso/c rw - fuse.deploycache /var/lib/deploycache rw";
        assert!(MountEntry::parse(now).unwrap().is_deploycache());
        let sshfs = "60 27 0:45 / /mnt/x rw - fuse.sshfs host:/dir rw";
        assert!(!MountEntry::parse(sshfs).unwrap().is_deploycache());
        assert!(MountEntry::parse("garbage").is_none());
        // A backslash not followed by three octal digits is kept as is.
        assert_eq!(unescape_octal(r"a\9b\12"), br"a\9b\12".to_vec());
    }
}
