//! `deploycache remote push|pull`: publish this store's artifacts to its
//! remote, or apply what other hosts published.

use std::process::ExitCode;

use crate::cli::{Cli, RemoteCommand};
use crate::output::{count, human, print_json};

pub fn run(cli: &Cli, action: &RemoteCommand) -> anyhow::Result<ExitCode> {
    match action {
        RemoteCommand::Push { json } => {
            // What others (or an interrupted run of this host) published
            // first: a version already there is not published again.
            let s = super::open_to_read(cli, false)?;
            let p = s.publish()?;
            if *json {
                print_json(&p)?;
            } else {
                println!(
                    "published {} to {}: uploaded {} ({})",
                    count(p.commits, "artifact version"),
                    s.remote_url().expect("publish needs a remote"),
                    count(p.packs_uploaded, "pack"),
                    human(p.bytes_uploaded)
                );
                for w in &p.waiting {
                    eprintln!("deploycache: not published yet: {w}");
                }
            }
            if !p.lost.is_empty() {
                for l in &p.lost {
                    eprintln!("deploycache: not published: {l}");
                }
                return Ok(ExitCode::from(super::PROBLEMS_FOUND));
            }
        }
        RemoteCommand::Pull { json } => {
            let s = super::open(cli, cli.remote.is_some())?;
            let p = s.pull()?;
            if *json {
                print_json(&p)?;
            } else {
                println!(
                    "pulled from {}: {} new, {} older than this host's version ({} in the remote)",
                    s.remote_url().expect("pull needs a remote"),
                    count(p.applied, "commit"),
                    p.older,
                    p.commits_listed
                );
                say_problems(&p.problems);
            }
            if !p.problems.is_empty() {
                return Ok(ExitCode::from(super::PROBLEMS_FOUND));
            }
        }
        RemoteCommand::GcOwner { take, grace } => {
            let s = super::open_to_read(cli, false)?;
            let url = s
                .remote_url()
                .expect("a store opened for the remote has one");
            let c = if *take {
                let grace = grace
                    .as_deref()
                    .map(|g| {
                        deploycache::store::gc::parse_duration(g)
                            .map_err(|e| anyhow::anyhow!("--grace: {e}"))
                    })
                    .transpose()?;
                Some(s.take_gc_ownership(grace)?)
            } else {
                s.gc_config()?
            };
            match c {
                Some(c) => println!(
                    "the gc of {url} is owned by host {} (grace period {})",
                    c.owner,
                    deploycache::store::gc::show_duration(c.grace_secs)
                ),
                None => println!(
                    "no host owns the gc of {url}: `deploycache remote gc-owner --take` on one host makes it the owner"
                ),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One line on stderr per commit a pull could not apply.
pub fn say_problems(problems: &[String]) {
    for p in problems {
        eprintln!("deploycache: remote: {p}");
    }
}
