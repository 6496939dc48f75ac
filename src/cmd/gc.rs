//! `deploycache gc`, and what `stats` adds for it: the policy from the
//! command line, the plan and the result printed as text or JSON.

use std::io::Write;
use std::process::ExitCode;

use clap::CommandFactory;
use deploycache::store::gc::{
    self, CheckpointReason, GcOutcome, GcPlan, HeldBy, Policy, Reason, Scope,
};
use deploycache::store::{SpaceReport, SpaceUse};

use crate::cli::{Cli, GcPolicy};
use crate::output::{count, human, print_json, rfc3339, shown};

/// The policy the arguments give; a value that does not parse is a usage
/// error (exit 2), as clap's own are.
pub fn policy(args: &GcPolicy, ns: &str) -> Policy {
    let usage = |msg: String| -> ! {
        Cli::command()
            .error(clap::error::ErrorKind::ValueValidation, msg)
            .exit()
    };
    let max_size = args
        .max_size
        .as_deref()
        .map(|s| gc::parse_size(s).unwrap_or_else(|e| usage(format!("--max-size: {e}"))));
    let older_than = args.older_than.as_deref().map(|s| {
        gc::parse_duration(s)
            .unwrap_or_else(|e| usage(format!("--older-than: {e}")))
            .as_secs()
    });
    Policy {
        max_size,
        older_than,
        keep_last: args.keep_last,
        scope: if args.all_namespaces {
            Scope::AllNamespaces
        } else {
            Scope::Namespace(ns.to_owned())
        },
    }
}

/// `gc`: plan, print the plan, and (unless `dry_run`) carry it out.
pub fn run(cli: &Cli, args: &GcPolicy, dry_run: bool, json: bool) -> anyhow::Result<ExitCode> {
    let s = &super::open(cli, false)?;
    if s.remote_url().is_some() {
        return remote(s, args, dry_run, json);
    }
    let policy = policy(args, s.namespace());
    let hot_for = args.hot_for.as_deref().map_or(gc::HOT_FOR, |d| {
        gc::parse_duration(d).unwrap_or_else(|e| {
            Cli::command()
                .error(
                    clap::error::ErrorKind::ValueValidation,
                    format!("--hot-for: {e}"),
                )
                .exit()
        })
    });
    let plan = s.gc_plan_hot(&policy, hot_for)?;
    let outcome = if dry_run {
        None
    } else {
        Some(s.gc_run(&plan)?)
    };
    if json {
        print_json(&serde_json::json!({
            "dry_run": dry_run, "plan": plan, "result": outcome,
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = std::io::stdout().lock();
    print_plan(&mut out, &plan, dry_run)?;
    if let Some(o) = &outcome {
        print_outcome(&mut out, o)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// An artifact's name as gc prints it: with its namespace, when it has one.
fn full_name(ns: &str, name: &str) -> String {
    if ns.is_empty() {
        shown(name)
    } else {
        format!("{}:{}", shown(ns), shown(name))
    }
}

fn describe(p: &Policy) -> String {
    let mut parts = Vec::new();
    if let Some(m) = p.max_size {
        parts.push(format!("--max-size {}", human(m)));
    }
    if let Some(d) = p.older_than {
        parts.push(format!("--older-than {}", gc::show_duration(d)));
    }
    if let Some(n) = p.keep_last {
        parts.push(format!("--keep-last {n}"));
    }
    parts.push(match &p.scope {
        Scope::AllNamespaces => "all namespaces".to_owned(),
        Scope::Namespace(ns) if ns.is_empty() => "the default namespace".to_owned(),
        Scope::Namespace(ns) => format!("namespace {}", shown(ns)),
    });
    parts.join(", ")
}

fn print_plan(out: &mut impl Write, plan: &GcPlan, dry_run: bool) -> anyhow::Result<()> {
    let head = if dry_run {
        "gc plan (dry run, nothing changed)"
    } else {
        "gc plan"
    };
    writeln!(out, "{head}: {}", describe(&plan.policy))?;
    for e in &plan.expire {
        let whole = if e.whole_artifact {
            ", and the artifact, incomplete without them"
        } else {
            ""
        };
        writeln!(
            out,
            "  expire  {}: {} kept aside since {} or before ({}){whole}; frees {}",
            full_name(&e.namespace, &e.artifact),
            count(e.files, "quarantined file"),
            rfc3339(e.newest),
            human(e.bytes),
            human(e.frees_bytes)
        )?;
    }
    for v in &plan.evict {
        let why = match v.reason {
            Reason::OlderThan => "older than --older-than",
            Reason::MaxSize => "store over --max-size",
        };
        writeln!(
            out,
            "  evict   {}: last used {}, {} ({}), {why}; frees {}",
            full_name(&v.namespace, &v.name),
            rfc3339(v.last_access),
            count(v.files, "file"),
            human(v.logical_bytes),
            human(v.frees_bytes)
        )?;
    }
    for h in &plan.hot {
        let why = match h.reason {
            gc::HotReason::Unused => "not used for --hot-for",
            gc::HotReason::MaxSize => "store over --max-size",
        };
        writeln!(
            out,
            "  drop hot copy {}/{} ({}): last used {}, {why}; frees {}",
            full_name(&h.namespace, &h.artifact),
            shown(&h.file),
            human(h.size),
            rfc3339(h.last_access),
            human(h.frees_bytes)
        )?;
    }
    for h in &plan.held {
        let why = match h.why {
            HeldBy::KeepLast => "held by --keep-last",
            HeldBy::BeingWritten => "a file of it is being written",
        };
        writeln!(out, "  keep    {}: {why}", full_name(&h.namespace, &h.name))?;
    }
    if plan.expire.is_empty() && plan.evict.is_empty() && plan.hot.is_empty() {
        writeln!(out, "  nothing to evict or expire")?;
    }
    writeln!(
        out,
        "store on disk now   {:>11}  (packs + index; {} of it reclaimable already)",
        human(plan.store_bytes),
        human(plan.reclaimable_before)
    )?;
    let w = &plan.reclaim.packs;
    writeln!(
        out,
        "plan frees          {:>11}  ({} whose last reference goes)",
        human(plan.frees_bytes()),
        count(plan.reclaim.chunks, "chunk")
    )?;
    writeln!(
        out,
        "packs               rewrite {}, unlink {} (+ {} left by killed writers): copies {}, returns {} to the filesystem",
        w.rewrite.len(),
        w.unlink.len(),
        w.orphans.len(),
        human(w.copy_bytes),
        human(w.freed_bytes)
    )?;
    let c = &plan.checkpoint;
    let checkpoint = match c.write {
        Some(why) => format!(
            "checkpoint of {} ({}, {})",
            count(c.artifacts, "artifact"),
            human(c.bytes),
            match why {
                CheckpointReason::DeadRecords =>
                    "the records since the last are at least half dead",
                CheckpointReason::MaxSize => "store over --max-size",
            }
        ),
        None => "no checkpoint".to_owned(),
    };
    writeln!(
        out,
        "manifest records    {:>11}  ({} since the last checkpoint); {checkpoint}; rewrite {}, unlink {} packs of records: returns {}",
        human(c.manifest_bytes),
        human(c.since_checkpoint_bytes),
        c.rewrite.len(),
        c.unlink.len(),
        human(c.freed_bytes)
    )?;
    writeln!(
        out,
        "store after gc      {:>11}  (packs + index)",
        human(w.size_after.saturating_sub(c.freed_bytes))
    )?;
    let met = match plan.max_size_met {
        Some(true) => "  (within --max-size)",
        Some(false) => "  (still over --max-size: what stays is held, or outside the namespace)",
        None => "",
    };
    writeln!(
        out,
        "size after reclaim  {:>11}  (live chunks + index){met}",
        human(plan.size_after_reclaim)
    )?;
    Ok(())
}

fn print_outcome(out: &mut impl Write, o: &GcOutcome) -> anyhow::Result<()> {
    let whole = o.expired.iter().filter(|e| e.whole_artifact).count() as u64;
    writeln!(
        out,
        "done: {}evicted {}, expired the quarantined files of {} ({} dropped whole)",
        match o.hot_dropped.len() {
            0 => String::new(),
            1 => "dropped 1 hot copy, ".into(),
            n => format!("dropped {n} hot copies, "),
        },
        count(o.evicted.len() as u64, "artifact"),
        count(o.expired.len() as u64, "artifact"),
        whole
    )?;
    for k in &o.skipped {
        writeln!(
            out,
            "  skipped {}: {}",
            full_name(&k.namespace, &k.name),
            k.why
        )?;
    }
    writeln!(out, "evictions took      {:.2} s", o.evict_seconds)?;
    let p = &o.packs;
    writeln!(
        out,
        "packs               rewrote {}, unlinked {} (+ {} left by killed writers); copied {} in {:.2} s; gc.lock held {:.1} ms",
        p.packs_rewritten,
        p.packs_unlinked,
        p.orphans_unlinked,
        human(p.bytes_copied),
        p.copy_seconds,
        p.lock_seconds * 1000.0
    )?;
    for s in &p.skipped {
        writeln!(out, "  left   {s}")?;
    }
    let c = &o.checkpoint;
    if let Some(w) = &c.written {
        writeln!(
            out,
            "checkpoint          {} ({}) written in {:.2} s: records before #{} are dead",
            count(w.artifacts, "artifact"),
            human(w.bytes),
            c.seconds,
            w.seq
        )?;
    }
    writeln!(
        out,
        "manifest packs      rewrote {}, unlinked {}; copied {}; returned {}",
        c.packs_rewritten,
        c.packs_unlinked,
        human(c.bytes_copied),
        human(c.freed_bytes)
    )?;
    for s in &c.skipped {
        writeln!(out, "  left   {s}")?;
    }
    let why_kept = if c.skipped.is_empty() {
        "in packs less than half dead: kept until more of them is"
    } else {
        // A pack a live writer appends to is left (above); a mount lets go
        // of its packs after 30 s with nothing to write.
        "in packs less than half dead, or left above: a later gc takes them"
    };
    writeln!(
        out,
        "reclaimable now     {:>11}  ({why_kept})",
        human(o.reclaimable_bytes)
    )?;
    writeln!(
        out,
        "store on disk       {:>11}  ({} freed on disk)",
        human(o.store_bytes),
        human(o.freed_on_disk.max(0) as u64)
    )?;
    writeln!(
        out,
        "size after reclaim  {:>11}",
        human(o.size_after_reclaim)
    )?;
    Ok(())
}

/// Whether `stats` was given a limit to show the effect of.
pub fn has_policy(args: &GcPolicy) -> bool {
    args.max_size.is_some() || args.older_than.is_some() || args.keep_last.is_some()
}

/// `stats --json`'s fields beyond the index totals: added to `v`.
pub fn stats_json(v: &mut serde_json::Value, r: &SpaceReport, by_ns: bool, plan: Option<&GcPlan>) {
    let s = &r.store;
    let extra = serde_json::json!({
        "held_bytes": s.held_bytes, "held_stored_bytes": s.held_stored_bytes,
        "artifact_unique_bytes": s.unique_bytes, "artifact_unique_stored_bytes": s.unique_stored_bytes,
        "shared_bytes": s.shared_bytes, "shared_stored_bytes": s.shared_stored_bytes,
        "compression_ratio": s.compression_ratio(),
        "live_pack_bytes": r.live_pack_bytes, "manifest_bytes": r.manifest_bytes,
        "reclaimable_bytes": r.reclaimable_bytes,
    });
    let (Some(obj), serde_json::Value::Object(extra)) = (v.as_object_mut(), extra) else {
        return;
    };
    obj.extend(extra);
    if by_ns {
        let list: Vec<serde_json::Value> = r
            .namespaces
            .iter()
            .map(|n| {
                let mut j = serde_json::to_value(n).unwrap_or_default();
                if let Some(o) = j.as_object_mut() {
                    o.insert("dedupe_ratio".into(), n.dedupe_ratio().into());
                    o.insert("compression_ratio".into(), n.compression_ratio().into());
                }
                j
            })
            .collect();
        obj.insert("by_namespace".into(), list.into());
    }
    if let Some(p) = plan {
        obj.insert("gc".into(), serde_json::to_value(p).unwrap_or_default());
    }
}

/// `stats`' lines beyond the index totals.
pub fn stats_text(
    out: &mut impl Write,
    r: &SpaceReport,
    by_ns: bool,
    plan: Option<&GcPlan>,
) -> anyhow::Result<()> {
    space_lines(out, &r.store, "")?;
    writeln!(
        out,
        "reclaimable pack {:>11}  (pack bytes nothing live needs: gc returns them)",
        human(r.reclaimable_bytes)
    )?;
    if by_ns {
        for n in &r.namespaces {
            let ns = n.namespace.as_deref().unwrap_or_default();
            let label = if ns.is_empty() {
                "(default)".to_owned()
            } else {
                shown(ns)
            };
            writeln!(
                out,
                "namespace {label}: {}, {}, {} logical, {} quarantined",
                count(n.artifacts, "artifact"),
                count(n.files, "file"),
                human(n.logical_bytes),
                human(n.quarantined_bytes)
            )?;
            space_lines(out, n, "  ")?;
        }
    }
    if let Some(p) = plan {
        writeln!(
            out,
            "gc ({}) would evict {} and expire the quarantined files of {}, freeing {}; size after reclaim {}",
            describe(&p.policy),
            count(p.evict.len() as u64, "artifact"),
            count(p.expire.len() as u64, "artifact"),
            human(p.frees_bytes()),
            human(p.size_after_reclaim)
        )?;
    }
    Ok(())
}

fn space_lines(out: &mut impl Write, u: &SpaceUse, indent: &str) -> anyhow::Result<()> {
    let rows = [
        (
            "held",
            u.held_bytes,
            u.held_stored_bytes,
            format!(
                "distinct chunks artifacts hold; compression {:.2}x, dedupe {:.2}x",
                u.compression_ratio(),
                u.dedupe_ratio()
            ),
        ),
        (
            "  only one holds",
            u.unique_bytes,
            u.unique_stored_bytes,
            "each artifact's unique bytes, summed".to_owned(),
        ),
        (
            "  shared",
            u.shared_bytes,
            u.shared_stored_bytes,
            "chunks two or more artifacts hold, once each".to_owned(),
        ),
    ];
    for (label, raw, stored, why) in rows {
        writeln!(
            out,
            "{indent}{label:<17}{:>11}  stored {:>11}  ({why})",
            human(raw),
            human(stored)
        )?;
    }
    Ok(())
}

/// gc of a store with a remote is the remote's gc (issue 17, not built
/// yet): a local eviction would be published as a removal to every host.
pub fn refuse_remote(s: &deploycache::Store) -> anyhow::Result<()> {
    if let Some(url) = s.remote_url() {
        anyhow::bail!(
            "store {} caches remote {url}: its gc is the remote's (`deploycache gc` on the host that owns it), and its local cache is bounded by --cache-size",
            s.root().display()
        );
    }
    Ok(())
}

/// `gc` of a store with a remote: the remote's gc, on the host that owns
/// it (store-layout.md, "gc of a remote"). Only --max-size applies.
fn remote(
    s: &deploycache::Store,
    args: &GcPolicy,
    dry_run: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    if args.older_than.is_some() || args.keep_last.is_some() || args.hot_for.is_some() {
        anyhow::bail!(
            "the gc of a remote takes --max-size only (least recently used across every host); --older-than, --keep-last and --hot-for are for a store without a remote"
        );
    }
    let max_size = args
        .max_size
        .as_deref()
        .map(|m| gc::parse_size(m).map_err(|e| anyhow::anyhow!("--max-size: {e}")))
        .transpose()?;
    let r = s.remote_gc(&deploycache::store::RemoteGcOptions { max_size, dry_run })?;
    if json {
        print_json(&r)?;
        return Ok(ExitCode::SUCCESS);
    }
    let url = s.remote_url().expect("a remote");
    let would = if dry_run { "would " } else { "" };
    println!(
        "remote {url}: {} live ({}), in {} ({})",
        count(r.artifacts, "artifact"),
        human(r.live_bytes),
        count(r.packs, "pack"),
        human(r.pack_bytes)
    );
    for a in &r.evicted {
        println!("{would}evict {a}: least recently used across hosts");
    }
    for a in &r.kept_leased {
        println!("kept {a}: open on a host (its lease)");
    }
    if r.marks_swept > 0 {
        println!(
            "{would}delete {} ({}) and {} marked a grace period ago{}",
            count(r.packs_deleted, "pack"),
            human(r.bytes_deleted),
            count(r.commits_deleted, "superseded commit"),
            if r.packs_revived > 0 {
                format!("; {} live again, kept", count(r.packs_revived, "pack"))
            } else {
                String::new()
            }
        );
    }
    if r.mark.is_some() {
        println!(
            "{would}mark {} ({}) and {} for deletion after the grace period ({})",
            count(r.packs_marked, "dead pack"),
            human(r.bytes_marked),
            count(r.commits_marked, "superseded commit"),
            gc::show_duration(r.grace_secs)
        );
    }
    if r.dead_bytes_kept > 0 {
        println!(
            "{} of dead chunks stay in packs that also hold live ones",
            human(r.dead_bytes_kept)
        );
    }
    Ok(ExitCode::SUCCESS)
}
