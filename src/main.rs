use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// Content-addressed, deduplicating artifact store with a FUSE view.
#[derive(Parser)]
#[command(name = "deploycache", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Compute the legacy deploy-cache fingerprints (mirrors, bootstraps, targetimages).
    Fingerprint {
        /// Root of the unpacked ISO: its Release files make the mirrors fingerprint
        /// (directories whose path, as given, contains "binary" are skipped) and
        /// opnfv/fuel_bootstrap_cli.yaml the bootstraps fingerprint.
        #[arg(long)]
        iso_root: PathBuf,
        /// The DEA file; settings.editable.provision.packages and
        /// settings.editable.repo_setup.repos make the targetimages fingerprint.
        #[arg(long)]
        dea: PathBuf,
        /// Where to write deploy_cache_fingerprints.yaml (only when all three
        /// fingerprints succeed; replaced atomically).
        #[arg(long, default_value = "deploy_cache_fingerprints.yaml")]
        output: PathBuf,
        /// Print mirrors, bootstraps, targetimages, bootstraps_key and
        /// targetimages_key as one JSON object instead of the two keys.
        #[arg(long)]
        json: bool,
        /// Walk siblings in raw byte order instead of the OS listing order, for
        /// results that do not depend on the filesystem (the original used the
        /// OS order).
        #[arg(long)]
        sorted: bool,
    },
}

fn main() {
    let cli = Cli::parse();
    match cli.command {
        Command::Fingerprint {
            iso_root,
            dea,
            output,
            json,
            sorted,
        } => std::process::exit(cmd_fingerprint(&iso_root, &dea, &output, json, sorted)),
    }
}

/// `deploycache fingerprint`: compute, write the file, print; returns the exit code.
fn cmd_fingerprint(
    iso_root: &std::path::Path,
    dea: &std::path::Path,
    output: &std::path::Path,
    json: bool,
    sorted: bool,
) -> i32 {
    use deploycache::fingerprint::{self, WalkOrder};
    use std::io::Write;
    let order = if sorted {
        WalkOrder::Sorted
    } else {
        WalkOrder::Os
    };
    let fps = match fingerprint::compute(iso_root, dea, order).into_result() {
        Ok(fps) => fps,
        Err(errors) => {
            let msgs: Vec<String> = errors
                .iter()
                .map(|(name, e)| format!("{name}: {e}"))
                .collect();
            eprintln!(
                "deploycache: fingerprint failed, nothing written: {}",
                msgs.join("; ")
            );
            return 1;
        }
    };
    if let Err(e) = fingerprint::write_fingerprints_file(output, &fps) {
        eprintln!("deploycache: {e}");
        return 1;
    }
    let text = if json {
        let obj = serde_json::json!({
            "mirrors": fps.mirrors.to_string(),
            "bootstraps": fps.bootstraps.to_string(),
            "targetimages": fps.targetimages.to_string(),
            "bootstraps_key": fps.bootstraps_key().to_string(),
            "targetimages_key": fps.targetimages_key().to_string(),
        });
        format!("{obj}\n")
    } else {
        format!(
            "bootstraps_key: {}\ntargetimages_key: {}\n",
            fps.bootstraps_key(),
            fps.targetimages_key()
        )
    };
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            eprintln!("deploycache: cannot write to stdout: {e}");
            1
        }
        _ => 0,
    }
}
