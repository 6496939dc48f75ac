//! `deploycache cat NAME FILE...`: write files' bytes to stdout.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;

use crate::cli::Cli;

pub fn run(cli: &Cli, name: &str, files: &[String]) -> anyhow::Result<ExitCode> {
    let s = super::open_to_read(cli, false)?;
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
    super::tell_remote_of_use(&s);
    Ok(ExitCode::SUCCESS)
}
