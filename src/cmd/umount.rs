//! `deploycache umount MOUNTPOINT`: unmount a deploycache mount.

use std::path::Path;
use std::process::ExitCode;

pub fn run(mountpoint: &Path, lazy: bool) -> anyhow::Result<ExitCode> {
    deploycache::fuse::umount(mountpoint, lazy)?;
    Ok(ExitCode::SUCCESS)
}
