//! `deploycache export NAME DEST`: write an artifact's files into a directory.

use std::path::Path;
use std::process::ExitCode;

use crate::cli::Cli;
use crate::output::{count, shown};

pub fn run(cli: &Cli, name: &str, dest: &Path) -> anyhow::Result<ExitCode> {
    let s = super::open_to_read(cli, false)?;
    let files = s.export(name, dest, super::tty())?;
    println!(
        "{}: {} written to {}",
        shown(name),
        count(files.len() as u64, "file"),
        dest.display()
    );
    super::tell_remote_of_use(&s);
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
    Ok(ExitCode::SUCCESS)
}
