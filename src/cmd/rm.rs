//! `deploycache rm NAME` / `rm --quarantine [NAME]`: drop an artifact, or
//! the files kept aside.

use std::process::ExitCode;

use anyhow::Context;

use crate::cli::Cli;
use crate::output::{human, shown};

pub fn run(cli: &Cli, name: Option<&str>, quarantine: bool) -> anyhow::Result<ExitCode> {
    let s = super::open_to_read(cli, false)?;
    if quarantine {
        let d = s.remove_quarantined(name)?;
        println!(
            "dropped {} quarantined files ({}); their unshared chunks are now reclaimable (`deploycache gc` returns the space)",
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
        let name = name.context("rm: name the artifact to drop, or pass --quarantine")?;
        s.remove(name)?;
        let name = shown(name);
        println!(
            "removed {name}; its unshared chunks are now reclaimable (`deploycache gc` returns the space)"
        );
    }
    super::publish_if_remote(&s)?;
    Ok(ExitCode::SUCCESS)
}
