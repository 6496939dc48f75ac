//! The `deploycache` command: parses arguments, dispatches to the command's
//! function (`cmd/<command>.rs`), prints the error that ends a command, and
//! picks the exit code. Exit codes: 0 success; 1 error (one line on
//! stderr); 2 usage error; 3 `verify` found problems.

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

mod cli;
mod cmd;
mod mount_helper;
mod output;
use cli::{Cli, Command};

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
    match run(&cli) {
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

/// One arm per command: its arguments, as clap parsed them, to its function.
fn run(cli: &Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Command::Init => cmd::init::run(cli),
        Command::Remote { action } => cmd::remote::run(cli, action),
        Command::Put {
            name,
            paths,
            no_files_cache,
        } => cmd::put::run(cli, name, paths, *no_files_cache),
        Command::Import { dir } => cmd::import::run(cli, dir),
        Command::Export { name, dest } => cmd::export::run(cli, name, dest),
        Command::Cat { name, files } => cmd::cat::run(cli, name, files),
        Command::Convert { names, all, json } => cmd::convert::run(cli, names, *all, *json),
        Command::Ls {
            quarantine: true,
            json,
            ..
        } => cmd::ls::run(cli, cmd::ls::What::Quarantine, *json),
        Command::Ls {
            name: None, json, ..
        } => cmd::ls::run(cli, cmd::ls::What::Artifacts, *json),
        Command::Ls {
            name: Some(name),
            json,
            ..
        } => cmd::ls::run(cli, cmd::ls::What::Files(name), *json),
        Command::Rm { name, quarantine } => cmd::rm::run(cli, name.as_deref(), *quarantine),
        Command::Stats { json, by, policy } => cmd::stats::run(cli, *json, by.as_ref(), policy),
        Command::Gc {
            policy,
            dry_run,
            json,
        } => cmd::gc::run(cli, policy, *dry_run, *json),
        Command::Verify {
            full,
            json,
            rebuild_index,
        } => cmd::verify::run(cli, *full, *rebuild_index, *json),
        Command::Mount {
            mountpoint,
            daemon,
            read_only,
            allow_other,
            threads,
            adopt,
            log,
            complete_when,
            no_convert,
            gc,
        } => {
            let cfg = deploycache::fuse::MountConfig {
                read_only: *read_only,
                allow_other: *allow_other,
                threads: *threads,
                complete_when: complete_when.clone(),
                gc: cmd::mount::gc_config(gc, &cli.namespace),
                convert: !no_convert,
            };
            cmd::mount::run(cli, mountpoint, *daemon, *adopt, log.as_deref(), &cfg)
        }
        Command::Umount { mountpoint, lazy } => cmd::umount::run(mountpoint, *lazy),
        Command::Fingerprint {
            iso_root,
            dea,
            output,
            json,
            sorted,
        } => cmd::fingerprint::run(iso_root, dea, output, *json, *sorted),
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

/// Whether an error is stdout's reader going away (`deploycache cat | head`):
/// that ends the command with success, silently.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || matches!(c.downcast_ref::<deploycache::Error>(), Some(deploycache::Error::Io { error, .. }) if error.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
