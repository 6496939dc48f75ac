//! `deploycache mount MOUNTPOINT`: serve the namespace as a directory, in
//! the foreground or (`--daemon`) as a background copy of this binary.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::CommandFactory;
use deploycache::fuse::{GcConfig, MountConfig};
use deploycache::store::gc::{self, GcOutcome, Policy, Scope};
use deploycache::store::Store;

use crate::cli::{Cli, MountGc};
use crate::output::{count, human};

/// `mount`: `daemon` runs it in the background (its output to `log`),
/// `adopt` first imports the plain cache in `mountpoint`.
pub fn run(
    cli: &Cli,
    mountpoint: &Path,
    daemon: bool,
    adopt: bool,
    log: Option<&Path>,
    cfg: &MountConfig,
) -> anyhow::Result<ExitCode> {
    let root = super::store_root(cli);
    // A mount left dead by a killed daemon is cleared first, so that
    // restarting the mount (by hand or by systemd) just works.
    deploycache::fuse::prepare_mountpoint(mountpoint)?;
    if adopt {
        let s = super::open(cli, true)?;
        super::sweep_orphan_packs(&s)?;
        adopt_plain_cache(&s, mountpoint)?;
    } else if let Some(n) = hidden_entries(mountpoint) {
        eprintln!(
            "deploycache: warning: {} is not empty: the mount will hide the {n} {} \
             in it; to serve a plain cache there, mount with --adopt",
            mountpoint.display(),
            if n == 1 { "entry" } else { "entries" }
        );
    }
    if daemon {
        // Create or check the store here, so its errors (a foreign
        // directory, another host) come from this command, and the
        // default log file has a directory to live in.
        drop(super::open(cli, true)?);
        let log = log.map_or_else(|| root.join("mount.log"), Path::to_owned);
        spawn_daemon(
            &root,
            &cli.namespace,
            cli.compression,
            mountpoint,
            cfg,
            &log,
        )?;
        println!(
            "mounted {} at {} (log: {})",
            root.display(),
            mountpoint.display(),
            log.display()
        );
    } else {
        let s = super::open_to_read(cli, true)?;
        if cfg.gc.is_some() {
            super::gc::refuse_remote(&s)?;
        }
        super::sweep_orphan_packs(&s)?;
        deploycache::fuse::mount(s, mountpoint, cfg)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The mount's gc from `--gc-*` (None: no `--gc-*` limit given); a value
/// that does not parse is a usage error (exit 2), as clap's own are.
pub fn gc_config(args: &MountGc, ns: &str) -> Option<GcConfig> {
    let usage = |msg: String| -> ! {
        Cli::command()
            .error(clap::error::ErrorKind::ValueValidation, msg)
            .exit()
    };
    if args.gc_max_size.is_none() && args.gc_older_than.is_none() && args.gc_keep_last.is_none() {
        if args.gc_interval.is_some() {
            usage(
                "--gc-interval: the mount runs gc only with a limit: add --gc-max-size, \
                 --gc-older-than or --gc-keep-last"
                    .into(),
            );
        }
        return None;
    }
    let max_size = args
        .gc_max_size
        .as_deref()
        .map(|s| gc::parse_size(s).unwrap_or_else(|e| usage(format!("--gc-max-size: {e}"))));
    let older_than = args.gc_older_than.as_deref().map(|s| {
        gc::parse_duration(s)
            .unwrap_or_else(|e| usage(format!("--gc-older-than: {e}")))
            .as_secs()
    });
    let interval = args.gc_interval.as_deref().map_or(
        Ok(deploycache::fuse::DEFAULT_GC_INTERVAL),
        gc::parse_duration,
    );
    let interval = interval.unwrap_or_else(|e| usage(format!("--gc-interval: {e}")));
    if interval.is_zero() {
        usage("--gc-interval: give a duration above zero, such as 10m".into());
    }
    let policy = Policy {
        max_size,
        older_than,
        keep_last: args.gc_keep_last,
        scope: Scope::Namespace(ns.to_owned()),
    };
    Some(GcConfig {
        about: about(&policy),
        policy,
        interval,
        summary,
    })
}

/// The mount's gc policy as its log states it.
fn about(p: &Policy) -> String {
    let mut parts = Vec::new();
    if let Some(m) = p.max_size {
        parts.push(format!("--gc-max-size {}", human(m)));
    }
    if let Some(d) = p.older_than {
        parts.push(format!("--gc-older-than {}", gc::show_duration(d)));
    }
    if let Some(n) = p.keep_last {
        parts.push(format!("--gc-keep-last {n}"));
    }
    parts.join(", ")
}

/// One gc run of the mount, as its log line says it.
fn summary(o: &GcOutcome) -> String {
    let mut line = format!(
        "evicted {} ({} logical, {} of packs made reclaimable)",
        count(o.evicted.len() as u64, "artifact"),
        human(o.evicted.iter().map(|e| e.logical_bytes).sum()),
        human(o.evicted.iter().map(|e| e.frees_bytes).sum()),
    );
    if !o.expired.is_empty() {
        let files = o.expired.iter().map(|e| e.files).sum();
        line += &format!(", expired {}", count(files, "quarantined file"));
    }
    if !o.skipped.is_empty() {
        line += &format!(
            ", left {} used or written since the plan",
            count(o.skipped.len() as u64, "artifact")
        );
    }
    line + &format!(
        "; freed {} on disk, store now {}",
        human(o.freed_on_disk.max(0) as u64),
        human(o.store_bytes)
    )
}

/// How many entries a mount over `dir` would hide (None when none, or when
/// `dir` cannot be read: mounting reports that).
fn hidden_entries(dir: &Path) -> Option<usize> {
    let n = std::fs::read_dir(dir).ok()?.count();
    (n > 0).then_some(n)
}

/// `mount --adopt`: import the plain cache under the mountpoint (see
/// [`deploycache::import::adopt`]), saying what stays underneath.
fn adopt_plain_cache(s: &Store, dir: &Path) -> anyhow::Result<()> {
    let r = deploycache::import::adopt(s, dir, super::tty())
        .with_context(|| format!("adopting the plain cache in {}", dir.display()))?;
    for (entry, why) in &r.not_adopted {
        eprintln!(
            "deploycache: not adopted: {} ({why}); it stays in the directory underneath the mount",
            dir.join(entry).display()
        );
    }
    super::report_cut_short(&r.import);
    eprintln!(
        "adopted {} ({}), {} already present",
        count(r.import.imported.len() as u64, "artifact"),
        human(r.import.logical_bytes),
        r.import.already_present.len()
    );
    Ok(())
}

/// `mount --daemon`: run this binary's foreground mount in the background
/// with its output to `log`, and return once the mount serves.
fn spawn_daemon(
    root: &Path,
    ns: &str,
    compression: deploycache::pack::Compression,
    mountpoint: &Path,
    cfg: &MountConfig,
    log: &Path,
) -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().context("finding the deploycache binary")?;
    // The log names artifacts and files: private like the store.
    let out =
        deploycache::perms::open_file(std::fs::OpenOptions::new().create(true).append(true), log)
            .with_context(|| format!("opening the log file {}", log.display()))?;
    let log_start = out.metadata().map(|m| m.len()).unwrap_or(0);
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("--store")
        .arg(root)
        .arg("--namespace")
        .arg(ns)
        .arg("--compression")
        .arg(compression.to_string())
        .arg("mount")
        .arg(mountpoint)
        .arg("--threads")
        .arg(cfg.threads.to_string());
    if cfg.read_only {
        cmd.arg("--read-only");
    }
    if cfg.allow_other {
        cmd.arg("--allow-other");
    }
    if !cfg.convert {
        cmd.arg("--no-convert");
    }
    for p in &cfg.complete_when {
        cmd.arg("--complete-when").arg(p);
    }
    if let Some(g) = &cfg.gc {
        // Parsed already: passed on exactly, in bytes and seconds.
        if let Some(m) = g.policy.max_size {
            cmd.arg("--gc-max-size").arg(m.to_string());
        }
        if let Some(d) = g.policy.older_than {
            cmd.arg("--gc-older-than").arg(format!("{d}s"));
        }
        if let Some(n) = g.policy.keep_last {
            cmd.arg("--gc-keep-last").arg(n.to_string());
        }
        cmd.arg("--gc-interval")
            .arg(format!("{}s", g.interval.as_secs().max(1)));
    }
    let mut child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .process_group(0)
        .spawn()
        .context("starting the mount daemon")?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if deploycache::fuse::is_mounted(mountpoint) {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            // The daemon's own last words (its error) say why; they went to the log.
            let why = last_line_since(log, log_start)
                .map(|l| format!(": {}", l.trim_start_matches("deploycache: ")))
                .unwrap_or_default();
            anyhow::bail!(
                "the mount daemon exited ({status}) before {} was mounted{why} (log: {})",
                mountpoint.display(),
                log.display()
            );
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            anyhow::bail!(
                "{} was not mounted within 30 s; the daemon was stopped; see {}",
                mountpoint.display(),
                log.display()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The last non-empty line written to `path` after its first `start` bytes.
fn last_line_since(path: &Path, start: u64) -> Option<String> {
    use std::io::{Read, Seek};
    let mut f = std::fs::File::open(path).ok()?;
    f.seek(std::io::SeekFrom::Start(start)).ok()?;
    let mut tail = String::new();
    f.take(64 * 1024).read_to_string(&mut tail).ok()?;
    tail.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn last_line_since_reads_only_what_was_appended() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("mount.log");
        std::fs::write(&log, "old run: serving\n").unwrap();
        let start = std::fs::metadata(&log).unwrap().len();
        assert_eq!(last_line_since(&log, start), None, "nothing new yet");
        let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        f.write_all(b"deploycache: /m: cannot mount: boom\n\n")
            .unwrap();
        assert_eq!(
            last_line_since(&log, start).as_deref(),
            Some("deploycache: /m: cannot mount: boom")
        );
        assert_eq!(last_line_since(&dir.path().join("none"), 0), None);
    }
}
