//! `deploycache fingerprint`: compute the legacy deploy-cache fingerprints,
//! write deploy_cache_fingerprints.yaml, print the keys.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use deploycache::fingerprint::{self, WalkOrder};

/// Compute, write the file, print. Its errors are printed here (every
/// fingerprint that failed, in one line) and give exit code 1.
pub fn run(
    iso_root: &Path,
    dea: &Path,
    output: &Path,
    json: bool,
    sorted: bool,
) -> anyhow::Result<ExitCode> {
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
            return Ok(ExitCode::FAILURE);
        }
    };
    if let Err(e) = fingerprint::write_fingerprints_file(output, &fps) {
        eprintln!("deploycache: {e}");
        return Ok(ExitCode::FAILURE);
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
            Ok(ExitCode::FAILURE)
        }
        _ => Ok(ExitCode::SUCCESS),
    }
}
