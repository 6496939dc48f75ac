//! `deploycache stats [--json]`: store totals and the dedupe achieved.

use std::io::Write;
use std::process::ExitCode;

use crate::cli::{Cli, GcPolicy, StatsBy};
use crate::output::{count, human, print_json};

pub fn run(
    cli: &Cli,
    json: bool,
    by: Option<&StatsBy>,
    policy: &GcPolicy,
) -> anyhow::Result<ExitCode> {
    let s = super::open(cli, false)?;
    let st = s.stats()?;
    let by_ns = by.is_some();
    let policy = super::gc::has_policy(policy).then(|| super::gc::policy(policy, s.namespace()));
    let (space, plan) = s.space_report(&st, by_ns, policy.as_ref())?;
    let t = &st.totals;
    let ratio = |a: u64, b: u64| if b == 0 { 1.0 } else { a as f64 / b as f64 };
    if json {
        let mut v = serde_json::json!({
            "artifacts": t.artifacts, "files": t.files, "chunks": t.chunks,
            "logical_bytes": t.logical_bytes, "unique_bytes": t.unique_bytes,
            "compressed_bytes": t.compressed_bytes, "stored_bytes": st.pack_bytes,
            "index_bytes": st.index_bytes, "pack_files": st.pack_files,
            "unreferenced_chunks": t.unreferenced_chunks, "unreferenced_bytes": t.unreferenced_bytes,
            "quarantined_files": t.quarantined_files, "quarantined_bytes": t.quarantined_bytes,
            "dedupe_ratio": ratio(t.logical_bytes, t.unique_bytes),
            "total_ratio": ratio(t.logical_bytes, st.pack_bytes),
            "gzip": {
                "files": st.gzip.files, "hot_files": st.gzip.hot_files,
                "gzip_bytes": st.gzip.gzip_bytes, "added_bytes": st.gzip.added_bytes,
                "saved_bytes": st.gzip.saved_bytes(), "hot_bytes": st.gzip.hot_bytes,
            },
        });
        super::gc::stats_json(&mut v, &space, by_ns, plan.as_ref());
        print_json(&v)?;
        return Ok(ExitCode::SUCCESS);
    }
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
    let g = &st.gzip;
    if g.files > 0 {
        let saved = g.saved_bytes();
        writeln!(
            out,
            "gzip form        {:>11}  ({} stored as content + side data: {} of gzip bytes in {} of their own, besides dedupe and compression)",
            if saved < 0 {
                format!("-{}", human(saved.unsigned_abs()))
            } else {
                human(saved as u64)
            },
            count(g.files, "file"),
            human(g.gzip_bytes),
            human(g.added_bytes)
        )?;
        writeln!(
            out,
            "hot copies       {:>11}  ({}; gc drops them first)",
            human(g.hot_bytes),
            count(g.hot_files, "file")
        )?;
    }
    super::gc::stats_text(&mut out, &space, by_ns, plan.as_ref())?;
    Ok(ExitCode::SUCCESS)
}
