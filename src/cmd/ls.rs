//! `deploycache ls [NAME] [--quarantine] [--json]`: the namespace's
//! artifacts, one artifact's files, or the files kept aside.

use std::process::ExitCode;

use crate::cli::Cli;
use crate::output::{human, pad, print_list, rfc3339, rfc3339_ns, shown};

/// What `ls` lists.
pub enum What<'a> {
    Artifacts,
    Files(&'a str),
    Quarantine,
}

pub fn run(cli: &Cli, what: What, json: bool) -> anyhow::Result<ExitCode> {
    let s = super::open_to_read(cli, false)?;
    match what {
        What::Quarantine => {
            let list = s.list_quarantine()?;
            print_list(
                json,
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
        What::Artifacts => {
            let list = s.list()?;
            print_list(
                json,
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
        What::Files(name) => {
            let files = s.list_files(name)?;
            print_list(
                json,
                &files,
                |f| {
                    serde_json::json!({
                        "name": f.meta.name, "size": f.meta.size, "mode": format!("{:04o}", f.meta.mode),
                        "mtime": rfc3339_ns(f.meta.mtime_ns), "digest": f.hash.to_string(),
                        "stored": f.form.as_str(),
                    })
                },
                format!(
                    "{:<44} {:>14} {:>5}  {:<30}  STORED",
                    "FILE", "SIZE", "MODE", "MTIME"
                ),
                |f| {
                    format!(
                        "{} {:>14} {:>05o}  {:<30}  {}",
                        pad(&shown(&f.meta.name), 44),
                        f.meta.size,
                        f.meta.mode,
                        rfc3339_ns(f.meta.mtime_ns),
                        f.form.as_str()
                    )
                },
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
