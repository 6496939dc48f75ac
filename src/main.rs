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
        /// Root of the unpacked ISO.
        #[arg(long)]
        iso_root: PathBuf,
        /// The DEA file.
        #[arg(long)]
        dea: PathBuf,
        /// Where to write deploy_cache_fingerprints.yaml.
        #[arg(long, default_value = "deploy_cache_fingerprints.yaml")]
        output: PathBuf,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
        /// Walk siblings in raw byte order instead of the OS listing order.
        #[arg(long)]
        sorted: bool,
    },
}

fn main() {
    let cli = Cli::parse();
    match cli.command {
        Command::Fingerprint { .. } => {
            eprintln!("deploycache: fingerprint: not implemented yet");
            std::process::exit(2);
        }
    }
}
