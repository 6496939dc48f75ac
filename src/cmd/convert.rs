//! `deploycache convert [NAME...|--all] [--json]`: store gzip files in the
//! gzip form (store-layout.md, "Gzip files (format 4)").

use std::io::Write;
use std::process::ExitCode;

use deploycache::store::Converted;

use crate::cli::Cli;
use crate::output::{human, print_json, shown};

pub fn run(cli: &Cli, names: &[String], all: bool, json: bool) -> anyhow::Result<ExitCode> {
    let s = super::open(cli, false)?;
    for n in names {
        // An unknown name is an error, not a silent nothing.
        s.list_files(n)?;
    }
    let done = s.convert((!all).then_some(names))?;
    if json {
        print_json(&done)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = std::io::stdout().lock();
    for f in &done {
        let what = match &f.result {
            Converted::Converted {
                size,
                content_bytes,
                side_bytes,
            } => format!(
                "converted: {} of gzip as {} of content + {} of side data",
                human(*size),
                human(*content_bytes),
                human(*side_bytes)
            ),
            Converted::NotGzip => continue,
            Converted::Kept { why } => format!("kept as it is: {why}"),
            Converted::Changed => "changed meanwhile: not converted".into(),
            Converted::Already => continue,
        };
        writeln!(out, "{}/{}: {what}", shown(&f.artifact), shown(&f.file))?;
    }
    Ok(ExitCode::SUCCESS)
}
