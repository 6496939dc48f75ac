//! `deploycache import DIR`: adopt a plain cache directory.

use std::path::Path;
use std::process::ExitCode;

use crate::cli::Cli;
use crate::output::{count, human};

pub fn run(cli: &Cli, dir: &Path) -> anyhow::Result<ExitCode> {
    let s = super::open_to_read(cli, true)?;
    super::sweep_orphan_packs(&s)?;
    let r = deploycache::import::import(&s, dir, super::tty())?;
    for (entry, why) in &r.skipped {
        eprintln!("deploycache: skipped {}: {why}", dir.join(entry).display());
    }
    super::report_cut_short(&r);
    println!(
        "imported {} ({}), {} already present, {} skipped",
        count(r.imported.len() as u64, "artifact"),
        human(r.logical_bytes),
        r.already_present.len(),
        r.skipped.len()
    );
    super::publish_if_remote(&s)?;
    Ok(ExitCode::SUCCESS)
}
