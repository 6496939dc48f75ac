//! `deploycache init`: create an empty store.

use std::process::ExitCode;

use crate::cli::Cli;

pub fn run(cli: &Cli) -> anyhow::Result<ExitCode> {
    let s = super::open(cli, true)?;
    println!("store ready at {}", s.root().display());
    Ok(ExitCode::SUCCESS)
}
