//! `deploycache put NAME PATH...`: store files as an artifact.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::cli::Cli;
use crate::output::{count, human};

pub fn run(
    cli: &Cli,
    name: &str,
    paths: &[PathBuf],
    no_files_cache: bool,
) -> anyhow::Result<ExitCode> {
    let s = super::open_to_read(cli, true)?;
    super::sweep_orphan_packs(&s)?;
    let r = s.put(name, paths, super::tty().then_some("put"), !no_files_cache)?;
    println!(
        "{name}: {}, {} stored, {} new",
        count(r.files as u64, "file"),
        human(r.logical_bytes),
        human(r.new_unique_bytes)
    );
    super::publish_if_remote(&s)?;
    Ok(ExitCode::SUCCESS)
}
