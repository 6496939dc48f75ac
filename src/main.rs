//! The `deploycache` command: parses arguments, calls the library, prints,
//! and picks the exit code. Exit codes: 0 success; 1 error (one line on
//! stderr); 2 usage error; 3 `verify` found problems.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, FromArgMatches};
use deploycache::store::{OpenOptions, Store};

mod cli;
mod gc_cmd;
mod mount_helper;
use cli::{Cli, Command};

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

fn main() -> ExitCode {
    let args = match mount_helper::call(std::env::args_os().collect()) {
        Ok(mount_helper::Call::Run(args)) => args,
        Ok(mount_helper::Call::Fake) => return ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("deploycache: {e}");
            return ExitCode::from(2);
        }
    };
    let matches = Cli::command().version(version()).get_matches_from(args);
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            if is_broken_pipe(&e) {
                return ExitCode::SUCCESS;
            }
            eprintln!("deploycache: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// `--version`: the release, the commit it was built from (build.rs) and
/// the store format it reads and writes, the three things a bug report needs.
fn version() -> &'static str {
    static VERSION: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    VERSION.get_or_init(|| {
        format!(
            "{} (commit {}, store format {})",
            env!("CARGO_PKG_VERSION"),
            env!("DEPLOYCACHE_COMMIT"),
            deploycache::index::FORMAT_VERSION
        )
    })
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || matches!(c.downcast_ref::<deploycache::Error>(), Some(deploycache::Error::Io { error, .. }) if error.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn open(cli: &Cli, create: bool) -> anyhow::Result<Store> {
    let root = cli.store.clone().unwrap_or_else(default_store);
    Ok(Store::open(
        &root,
        OpenOptions {
            create,
            namespace: cli.namespace.clone(),
            compression: cli.compression,
        },
    )?)
}

fn tty() -> bool {
    std::io::stderr().is_terminal()
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Command::Init => {
            let s = open(&cli, true)?;
            println!("store ready at {}", s.root().display());
        }
        Command::Put {
            name,
            paths,
            no_files_cache,
        } => {
            let s = open(&cli, true)?;
            sweep_orphan_packs(&s)?;
            let r = s.put(name, paths, tty().then_some("put"), !*no_files_cache)?;
            println!(
                "{name}: {}, {} stored, {} new",
                count(r.files as u64, "file"),
                human(r.logical_bytes),
                human(r.new_unique_bytes)
            );
        }
        Command::Import { dir } => {
            let s = open(&cli, true)?;
            sweep_orphan_packs(&s)?;
            let r = deploycache::import::import(&s, dir, tty())?;
            for (entry, why) in &r.skipped {
                eprintln!("deploycache: skipped {}: {why}", dir.join(entry).display());
            }
            report_cut_short(&r);
            println!(
                "imported {} ({}), {} already present, {} skipped",
                count(r.imported.len() as u64, "artifact"),
                human(r.logical_bytes),
                r.already_present.len(),
                r.skipped.len()
            );
        }
        Command::Export { name, dest } => {
            let s = open(&cli, false)?;
            let files = s.export(name, dest, tty())?;
            println!(
                "{}: {} written to {}",
                shown(name),
                count(files.len() as u64, "file"),
                dest.display()
            );
            let missing = s.missing_files(name)?;
            if !missing.is_empty() {
                let missing: Vec<String> = missing.iter().map(|m| shown(m)).collect();
                eprintln!(
                    "deploycache: warning: {} is incomplete: {} cut short and not written whole since \
                     (see `deploycache ls --quarantine`); only its whole files were exported",
                    shown(name),
                    missing.join(", ")
                );
            }
        }
        Command::Cat { name, files } => {
            let s = open(&cli, false)?;
            let readers = files
                .iter()
                .map(|f| s.open_file(name, f))
                .collect::<Result<Vec<_>, _>>()?;
            // Chunks are large: write them straight to fd 1, not through
            // stdout's line buffer (which scans binary data for newlines).
            use std::os::fd::AsFd;
            let stdout = std::io::stdout();
            let fd = stdout
                .as_fd()
                .try_clone_to_owned()
                .context("duplicating stdout")?;
            let mut out = std::fs::File::from(fd);
            for r in &readers {
                s.copy_to(r, &mut out, &deploycache::progress::Progress::hidden())?;
            }
            out.flush().context("writing to stdout")?;
            s.touch(name)?;
        }
        Command::Ls {
            quarantine: true,
            json,
            ..
        } => {
            let s = open(&cli, false)?;
            let list = s.list_quarantine()?;
            print_list(
                *json,
                &list,
                |q| {
                    serde_json::json!({
                        "artifact": q.artifact, "file": q.file.meta.name, "size": q.file.meta.size,
                        "reason": q.reason, "quarantined": rfc3339(q.at),
                    })
                },
                format!(
                    "{:<20}  {:<42} {:<36} {:>14}  REASON",
                    "QUARANTINED", "ARTIFACT", "FILE", "SIZE"
                ),
                |q| {
                    format!(
                        "{:<20}  {} {} {:>14}  {}",
                        rfc3339(q.at),
                        pad(&shown(&q.artifact), 42),
                        pad(&shown(&q.file.meta.name), 36),
                        q.file.meta.size,
                        shown(&q.reason)
                    )
                },
            )?;
        }
        Command::Ls {
            name: None, json, ..
        } => {
            let s = open(&cli, false)?;
            let list = s.list()?;
            print_list(
                *json,
                &list,
                |a| {
                    serde_json::json!({
                        "name": a.name, "files": a.files, "logical_bytes": a.logical_bytes,
                        "unique_bytes": a.unique_bytes, "shared_bytes": a.shared_bytes,
                        "unique_stored_bytes": a.unique_stored_bytes,
                        "shared_stored_bytes": a.shared_stored_bytes, "created": rfc3339(a.created),
                        "last_access": rfc3339(a.last_access), "missing": a.missing,
                    })
                },
                format!(
                    "{:<42} {:>5} {:>11} {:>11} {:>11}  LAST ACCESS",
                    "NAME", "FILES", "SIZE", "UNIQUE", "SHARED"
                ),
                |a| {
                    let mut row = format!(
                        "{} {:>5} {:>11} {:>11} {:>11}  {}",
                        pad(&shown(&a.name), 42),
                        a.files,
                        human(a.logical_bytes),
                        human(a.unique_bytes),
                        human(a.shared_bytes),
                        rfc3339(a.last_access)
                    );
                    if !a.missing.is_empty() {
                        let missing: Vec<String> = a.missing.iter().map(|m| shown(m)).collect();
                        row += &format!("  incomplete: {} cut short", missing.join(", "));
                    }
                    row
                },
            )?;
        }
        Command::Ls {
            name: Some(name),
            json,
            ..
        } => {
            let s = open(&cli, false)?;
            let files = s.list_files(name)?;
            print_list(
                *json,
                &files,
                |f| {
                    serde_json::json!({
                        "name": f.meta.name, "size": f.meta.size, "mode": format!("{:04o}", f.meta.mode),
                        "mtime": rfc3339_ns(f.meta.mtime_ns), "digest": f.hash.to_string(),
                    })
                },
                format!("{:<44} {:>14} {:>5}  MTIME", "FILE", "SIZE", "MODE"),
                |f| {
                    format!(
                        "{} {:>14} {:>05o}  {}",
                        pad(&shown(&f.meta.name), 44),
                        f.meta.size,
                        f.meta.mode,
                        rfc3339_ns(f.meta.mtime_ns)
                    )
                },
            )?;
        }
        Command::Rm { name, quarantine } => {
            let s = open(&cli, false)?;
            if *quarantine {
                let d = s.remove_quarantined(name.as_deref())?;
                println!(
                    "dropped {} quarantined files ({}); their unshared chunks are now reclaimable (see `deploycache stats`)",
                    d.files,
                    human(d.bytes)
                );
                for a in &d.incomplete {
                    let a = shown(a);
                    println!(
                        "removed {a}: a file of it was cut short and never written whole, so its next run fills it again"
                    );
                }
            } else {
                let name = name
                    .as_deref()
                    .context("rm: name the artifact to drop, or pass --quarantine")?;
                s.remove(name)?;
                let name = shown(name);
                println!(
                    "removed {name}; its unshared chunks are now reclaimable (see `deploycache stats`)"
                );
            }
        }
        Command::Gc {
            policy,
            dry_run,
            json,
        } => gc_cmd::run(&open(&cli, false)?, policy, *dry_run, *json)?,
        Command::Stats { json, by, policy } => {
            let s = open(&cli, false)?;
            let st = s.stats()?;
            let by_ns = by.is_some();
            let policy = gc_cmd::has_policy(policy).then(|| gc_cmd::policy(policy, s.namespace()));
            let (space, plan) = s.space_report(&st, by_ns, policy.as_ref())?;
            let t = &st.totals;
            let ratio = |a: u64, b: u64| if b == 0 { 1.0 } else { a as f64 / b as f64 };
            if *json {
                let mut v = serde_json::json!({
                    "artifacts": t.artifacts, "files": t.files, "chunks": t.chunks,
                    "logical_bytes": t.logical_bytes, "unique_bytes": t.unique_bytes,
                    "compressed_bytes": t.compressed_bytes, "stored_bytes": st.pack_bytes,
                    "index_bytes": st.index_bytes, "pack_files": st.pack_files,
                    "unreferenced_chunks": t.unreferenced_chunks, "unreferenced_bytes": t.unreferenced_bytes,
                    "quarantined_files": t.quarantined_files, "quarantined_bytes": t.quarantined_bytes,
                    "dedupe_ratio": ratio(t.logical_bytes, t.unique_bytes),
                    "total_ratio": ratio(t.logical_bytes, st.pack_bytes),
                });
                gc_cmd::stats_json(&mut v, &space, by_ns, plan.as_ref());
                print_json(&v)?;
            } else {
                let mut out = std::io::stdout().lock();
                writeln!(out, "store            {}", s.root().display())?;
                writeln!(out, "artifacts        {}", t.artifacts)?;
                writeln!(out, "files            {}", t.files)?;
                writeln!(out, "chunks           {}", t.chunks)?;
                writeln!(
                    out,
                    "logical size     {:>11}  (sum of file sizes)",
                    human(t.logical_bytes)
                )?;
                writeln!(
                    out,
                    "unique data      {:>11}  (distinct chunks, uncompressed)",
                    human(t.unique_bytes)
                )?;
                writeln!(
                    out,
                    "stored on disk   {:>11}  ({}, incl. headers and unreclaimed space)",
                    human(st.pack_bytes),
                    count(st.pack_files, "pack file")
                )?;
                writeln!(out, "index            {:>11}", human(st.index_bytes))?;
                writeln!(
                    out,
                    "reclaimable      {:>11}  ({}, to be freed by gc)",
                    human(t.unreferenced_bytes),
                    count(t.unreferenced_chunks, "unreferenced chunk")
                )?;
                if t.quarantined_files > 0 {
                    writeln!(
                        out,
                        "quarantined      {:>11}  ({}, see `ls --quarantine`; drop with `rm --quarantine`)",
                        human(t.quarantined_bytes),
                        count(t.quarantined_files, "cut-short file")
                    )?;
                }
                writeln!(
                    out,
                    "dedupe ratio     {:>10.2}x  (logical / unique)",
                    ratio(t.logical_bytes, t.unique_bytes)
                )?;
                writeln!(
                    out,
                    "total ratio      {:>10.2}x  (logical / stored)",
                    ratio(t.logical_bytes, st.pack_bytes)
                )?;
                gc_cmd::stats_text(&mut out, &space, by_ns, plan.as_ref())?;
            }
        }
        Command::Verify {
            full,
            json,
            rebuild_index,
        } => {
            let rebuilt = if *rebuild_index {
                let root = cli.store.clone().unwrap_or_else(default_store);
                let r = deploycache::store::rebuild_index(&root)?;
                if !*json {
                    print_rebuilt(&r);
                }
                Some(r)
            } else {
                None
            };
            let rebuild_problems = rebuilt
                .as_ref()
                .is_some_and(|r| !r.report.problems.is_empty());
            // An index that cannot be opened or read is a problem verify
            // found (exit 3), not a failure to run it (exit 1).
            let r = match open(&cli, false).and_then(|s| {
                let r = deploycache::verify::verify(&s, *full, tty())?;
                warn_exposure(&s.exposure()?);
                Ok(r)
            }) {
                Ok(r) => r,
                Err(e) if is_index_problem(&e) => {
                    if *json {
                        print_json(&serde_json::json!({ "problems": [format!("{e:#}")] }))?;
                    } else {
                        println!("problem: {e:#}");
                    }
                    return Ok(ExitCode::from(3));
                }
                Err(e) => return Err(e),
            };
            if *json {
                match &rebuilt {
                    Some(b) => print_json(&serde_json::json!({ "rebuild": b, "verify": r }))?,
                    None => print_json(&r)?,
                }
            } else {
                for n in &r.notes {
                    println!("note: {n}");
                }
                for p in &r.problems {
                    println!("problem: {p}");
                }
                if r.unindexed_packs > 0 {
                    let hold = if r.unindexed_packs == 1 {
                        "holds"
                    } else {
                        "hold"
                    };
                    println!(
                        "note: {} ({}) {hold} no indexed chunks (left by interrupted writes); gc reclaims them",
                        count(r.unindexed_packs as u64, "pack file"),
                        human(r.unindexed_pack_bytes)
                    );
                }
                let what = if *full {
                    format!(
                        ", {} ({}) re-read and re-hashed",
                        count(r.chunks_checked, "chunk"),
                        human(r.bytes_checked)
                    )
                } else {
                    String::new()
                };
                println!(
                    "{} in {}{what}",
                    count(r.problems.len() as u64, "problem"),
                    count(r.packs as u64, "pack")
                );
            }
            if !r.problems.is_empty() || rebuild_problems {
                return Ok(ExitCode::from(3));
            }
        }
        Command::Mount {
            mountpoint,
            daemon,
            read_only,
            allow_other,
            threads,
            adopt,
            log,
            complete_when,
        } => {
            let root = cli.store.clone().unwrap_or_else(default_store);
            // A mount left dead by a killed daemon is cleared first, so that
            // restarting the mount (by hand or by systemd) just works.
            deploycache::fuse::prepare_mountpoint(mountpoint)?;
            if *adopt {
                let s = open(&cli, true)?;
                sweep_orphan_packs(&s)?;
                adopt_plain_cache(&s, mountpoint)?;
            } else if let Some(n) = hidden_entries(mountpoint) {
                eprintln!(
                    "deploycache: warning: {} is not empty: the mount will hide the {n} {} \
                     in it; to serve a plain cache there, mount with --adopt",
                    mountpoint.display(),
                    if n == 1 { "entry" } else { "entries" }
                );
            }
            let cfg = deploycache::fuse::MountConfig {
                read_only: *read_only,
                allow_other: *allow_other,
                threads: *threads,
                complete_when: complete_when.clone(),
            };
            if *daemon {
                // Create or check the store here, so its errors (a foreign
                // directory, another host) come from this command, and the
                // default log file has a directory to live in.
                drop(open(&cli, true)?);
                let log = log.clone().unwrap_or_else(|| root.join("mount.log"));
                spawn_daemon(
                    &root,
                    &cli.namespace,
                    cli.compression,
                    mountpoint,
                    &cfg,
                    &log,
                )?;
                println!(
                    "mounted {} at {} (log: {})",
                    root.display(),
                    mountpoint.display(),
                    log.display()
                );
            } else {
                let s = open(&cli, true)?;
                sweep_orphan_packs(&s)?;
                deploycache::fuse::mount(s, mountpoint, &cfg)?;
            }
        }
        Command::Umount { mountpoint, lazy } => {
            deploycache::fuse::umount(mountpoint, *lazy)?;
        }
        Command::Fingerprint {
            iso_root,
            dea,
            output,
            json,
            sorted,
        } => {
            let code = cmd_fingerprint(iso_root, dea, output, *json, *sorted);
            if code != 0 {
                return Ok(ExitCode::from(code as u8));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// How many entries a mount over `dir` would hide (None when none, or when
/// `dir` cannot be read: mounting reports that).
fn hidden_entries(dir: &std::path::Path) -> Option<usize> {
    let n = std::fs::read_dir(dir).ok()?.count();
    (n > 0).then_some(n)
}

/// `mount --adopt`: import the plain cache under the mountpoint, and keep
/// empty artifact directories (cache misses in progress) as empty artifacts.
fn adopt_plain_cache(s: &Store, dir: &std::path::Path) -> anyhow::Result<()> {
    let r = deploycache::import::import(s, dir, tty())
        .with_context(|| format!("adopting the plain cache in {}", dir.display()))?;
    for (entry, why) in &r.skipped {
        let p = dir.join(entry);
        if p.is_dir()
            && std::fs::read_dir(&p)
                .map(|mut d| d.next().is_none())
                .unwrap_or(false)
        {
            match s.create_empty_artifact(entry) {
                Ok(()) | Err(deploycache::Error::ArtifactExists(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        eprintln!(
            "deploycache: not adopted: {} ({why}); it stays in the directory underneath the mount",
            p.display()
        );
    }
    report_cut_short(&r);
    eprintln!(
        "adopted {} ({}), {} already present",
        count(r.imported.len() as u64, "artifact"),
        human(r.logical_bytes),
        r.already_present.len()
    );
    Ok(())
}

/// One line per file an import found cut short and kept aside.
fn report_cut_short(r: &deploycache::import::ImportReport) {
    for (artifact, file, why) in &r.cut_short {
        eprintln!(
            "deploycache: {artifact}/{file} is cut short ({why}): kept aside (see `ls --quarantine`); \
             {artifact} stays incomplete, so the next run fills it again"
        );
    }
}

/// `mount --daemon`: run this binary's foreground mount in the background
/// with its output to `log`, and return once the mount serves.
fn spawn_daemon(
    root: &std::path::Path,
    ns: &str,
    compression: deploycache::pack::Compression,
    mountpoint: &std::path::Path,
    cfg: &deploycache::fuse::MountConfig,
    log: &std::path::Path,
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
    for p in &cfg.complete_when {
        cmd.arg("--complete-when").arg(p);
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
fn last_line_since(path: &std::path::Path, start: u64) -> Option<String> {
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

/// Sweep the pack files killed writers left (see
/// [`Store::sweep_orphan_packs`]), saying what it freed.
fn sweep_orphan_packs(s: &Store) -> anyhow::Result<()> {
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

/// `verify`'s warnings about a store other users can read. Warnings, not
/// problems: the store's data is sound (exit 0), but anyone who can read a
/// pack can read every stored key.
fn warn_exposure(e: &deploycache::perms::Exposure) {
    if let Some(first) = e.tightened.first() {
        eprintln!(
            "deploycache: warning: {} of the store (e.g. {}) could be read or opened by other users; \
             made owner-only (0700/0600) now",
            count(e.tightened.len() as u64, "entry"),
            first.display()
        );
    }
    for p in &e.exposed {
        eprintln!(
            "deploycache: warning: {} can be read or opened by other users and is not yours to change: \
             have its owner run `chmod go-rwx` on it",
            p.display()
        );
    }
}

/// A name as `ls`, `rm` and `export` print it: control characters escaped
/// as in Rust string literals (`\n`, `\u{1b}`), and backslashes doubled so
/// that the escape stays unambiguous. A name is any UTF-8 without `/` or
/// NUL, and printed raw, an escape sequence in it would drive the terminal.
fn shown(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if c.is_control() || c == '\\' {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    out
}

/// `s` left-aligned in a column `width` terminal cells wide (padding counted
/// in display width: a CJK character takes two cells, a combining accent none).
fn pad(s: &str, width: usize) -> String {
    let w = unicode_width::UnicodeWidthStr::width(s);
    format!("{s}{}", " ".repeat(width.saturating_sub(w)))
}

/// A list as JSON (one object per item), or as a table with a header line.
fn print_list<T>(
    json: bool,
    items: &[T],
    to_json: impl Fn(&T) -> serde_json::Value,
    header: String,
    row: impl Fn(&T) -> String,
) -> anyhow::Result<()> {
    if json {
        return print_json(&items.iter().map(to_json).collect::<Vec<_>>());
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "{header}")?;
    for item in items {
        writeln!(out, "{}", row(item))?;
    }
    Ok(())
}

/// Whether an error says the index itself is missing, empty or unreadable.
fn is_index_problem(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<deploycache::Error>()
            .is_some_and(deploycache::Error::is_index_problem)
    })
}

/// What `verify --rebuild-index` rebuilt, before the verify of the result.
fn print_rebuilt(r: &deploycache::store::Rebuilt) {
    for u in &r.unusable {
        println!("note: not used: {u}");
    }
    for p in &r.report.problems {
        println!("problem: {p}");
    }
    println!(
        "rebuilt the index: {} in {} from {} ({} superseded or void) and {} in {}",
        count(r.report.artifacts, "artifact"),
        count(r.report.namespaces, "namespace"),
        count(r.report.changes_replayed, "change"),
        r.report.changes_superseded,
        count(r.report.chunks, "chunk"),
        count(r.packs, "pack")
    );
    if let Some(old) = &r.old_index {
        println!("the index before the rebuild is kept as {}", old.display());
    }
}

fn print_json<T: serde::Serialize + ?Sized>(v: &T) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, v)?;
    writeln!(out)?;
    Ok(())
}

/// "1 file", "2 files": a count with its noun.
fn count(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

fn human(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.2} {}", UNITS[u])
    }
}

fn rfc3339(secs: i64) -> String {
    rfc3339_ns(secs.saturating_mul(1_000_000_000))
}

fn rfc3339_ns(ns: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(ns as i128)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ns.to_string())
}

/// `deploycache fingerprint`: compute, write the file, print; returns the exit code.
fn cmd_fingerprint(
    iso_root: &std::path::Path,
    dea: &std::path::Path,
    output: &std::path::Path,
    json: bool,
    sorted: bool,
) -> i32 {
    use deploycache::fingerprint::{self, WalkOrder};
    use std::io::Write;
    let order = if sorted {
        WalkOrder::Sorted
    } else {
        WalkOrder::Os
    };
    let fps = match fingerprint::compute(iso_root, dea, order).into_result() {
        Ok(fps) => fps,
        Err(errors) => {
            let msgs: Vec<String> = errors
                .iter()
                .map(|(name, e)| format!("{name}: {e}"))
                .collect();
            eprintln!(
                "deploycache: fingerprint failed, nothing written: {}",
                msgs.join("; ")
            );
            return 1;
        }
    };
    if let Err(e) = fingerprint::write_fingerprints_file(output, &fps) {
        eprintln!("deploycache: {e}");
        return 1;
    }
    let text = if json {
        let obj = serde_json::json!({
            "mirrors": fps.mirrors.to_string(),
            "bootstraps": fps.bootstraps.to_string(),
            "targetimages": fps.targetimages.to_string(),
            "bootstraps_key": fps.bootstraps_key().to_string(),
            "targetimages_key": fps.targetimages_key().to_string(),
        });
        format!("{obj}\n")
    } else {
        format!(
            "bootstraps_key: {}\ntargetimages_key: {}\n",
            fps.bootstraps_key(),
            fps.targetimages_key()
        )
    };
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            eprintln!("deploycache: cannot write to stdout: {e}");
            1
        }
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_take_the_noun_in_the_right_number() {
        assert_eq!(count(0, "file"), "0 files");
        assert_eq!(count(1, "file"), "1 file");
        assert_eq!(count(2, "pack file"), "2 pack files");
    }

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
