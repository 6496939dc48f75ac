//! `deploycache verify [--full] [--rebuild-index] [--json]`: check the
//! index (and with `--full` every pack record); exit 3 names every problem.

use std::process::ExitCode;

use crate::cli::Cli;
use crate::output::{count, human, print_json};

pub fn run(cli: &Cli, full: bool, rebuild_index: bool, json: bool) -> anyhow::Result<ExitCode> {
    let problems = ExitCode::from(super::PROBLEMS_FOUND);
    let rebuilt = if rebuild_index {
        let r = deploycache::store::rebuild_index(&super::store_root(cli))?;
        if !json {
            print_rebuilt(&r);
        }
        Some(r)
    } else {
        None
    };
    let rebuild_problems = rebuilt
        .as_ref()
        .is_some_and(|r| !r.report.problems.is_empty());
    // An index that cannot be opened or read is a problem verify
    // found (exit 3), not a failure to run it (exit 1).
    let r = match super::open(cli, false).and_then(|s| {
        // A store with a remote is checked as of the remote's latest
        // commits: a version another host replaced may name packs its gc
        // deleted since.
        if s.remote_url().is_some() {
            match s.pull() {
                Ok(p) => super::remote::say_problems(&p.problems),
                Err(e) => eprintln!(
                    "deploycache: warning: not pulled from the remote first ({e}): checking this host's view as it is"
                ),
            }
        }
        let r = deploycache::verify::verify(&s, full, super::tty())?;
        warn_exposure(&s.exposure()?);
        Ok(r)
    }) {
        Ok(r) => r,
        Err(e) if is_index_problem(&e) => {
            if json {
                print_json(&serde_json::json!({ "problems": [format!("{e:#}")] }))?;
            } else {
                println!("problem: {e:#}");
            }
            return Ok(problems);
        }
        Err(e) => return Err(e),
    };
    if json {
        match &rebuilt {
            Some(b) => print_json(&serde_json::json!({ "rebuild": b, "verify": r }))?,
            None => print_json(&r)?,
        }
    } else {
        for n in &r.notes {
            println!("note: {n}");
        }
        for p in &r.problems {
            println!("problem: {p}");
        }
        if r.unindexed_packs > 0 {
            let hold = if r.unindexed_packs == 1 {
                "holds"
            } else {
                "hold"
            };
            println!(
                "note: {} ({}) {hold} no indexed chunks (left by interrupted writes); gc reclaims them",
                count(r.unindexed_packs as u64, "pack file"),
                human(r.unindexed_pack_bytes)
            );
        }
        let what = if full {
            format!(
                ", {} ({}) re-read and re-hashed",
                count(r.chunks_checked, "chunk"),
                human(r.bytes_checked)
            )
        } else {
            String::new()
        };
        println!(
            "{} in {}{what}",
            count(r.problems.len() as u64, "problem"),
            count(r.packs as u64, "pack")
        );
    }
    if !r.problems.is_empty() || rebuild_problems {
        return Ok(problems);
    }
    Ok(ExitCode::SUCCESS)
}

/// Whether an error says the index itself is missing, empty or unreadable.
fn is_index_problem(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<deploycache::Error>()
            .is_some_and(deploycache::Error::is_index_problem)
    })
}

/// What `verify --rebuild-index` rebuilt, before the verify of the result.
fn print_rebuilt(r: &deploycache::store::Rebuilt) {
    for u in &r.unusable {
        println!("note: not used: {u}");
    }
    for p in &r.report.problems {
        println!("problem: {p}");
    }
    println!(
        "rebuilt the index: {} in {} from {} ({} superseded or void) and {} in {}",
        count(r.report.artifacts, "artifact"),
        count(r.report.namespaces, "namespace"),
        count(r.report.changes_replayed, "change"),
        r.report.changes_superseded,
        count(r.report.chunks, "chunk"),
        count(r.packs, "pack")
    );
    if r.report.checkpoint_seq > 0 || r.report.changes_dead > 0 {
        println!(
            "replayed from the checkpoint at change #{} ({} left out: older than it, or of a checkpoint that did not commit)",
            r.report.checkpoint_seq,
            count(r.report.changes_dead, "record")
        );
    }
    if let Some(old) = &r.old_index {
        println!("the index before the rebuild is kept as {}", old.display());
    }
}

/// `verify`'s warnings about a store other users can read. Warnings, not
/// problems: the store's data is sound (exit 0), but anyone who can read a
/// pack can read every stored key.
fn warn_exposure(e: &deploycache::perms::Exposure) {
    if let Some(first) = e.tightened.first() {
        eprintln!(
            "deploycache: warning: {} of the store (e.g. {}) could be read or opened by other users; \
             made owner-only (0700/0600) now",
            count(e.tightened.len() as u64, "entry"),
            first.display()
        );
    }
    for p in &e.exposed {
        eprintln!(
            "deploycache: warning: {} can be read or opened by other users and is not yours to change: \
             have its owner run `chmod go-rwx` on it",
            p.display()
        );
    }
}
