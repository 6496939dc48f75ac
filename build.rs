//! Build script: records the git commit for `--version`, and writes a man
//! page per command and the bash, zsh and fish completions from the clap
//! definitions in src/cli.rs, for `cargo deb` to package.
//!
//! The generated files go to `<target>/<profile>/generated/`, not only to
//! OUT_DIR: cargo-deb packages built files from the profile directory
//! (`target/release/…` in `[package.metadata.deb]`), and OUT_DIR's name
//! carries a hash it cannot know.

use std::path::{Path, PathBuf};
use std::process::Command;

use clap::CommandFactory;

// src/cli.rs names the library's `deploycache::pack::Compression`; the
// library is not built yet when this script runs, and the man pages and
// completions need only the argument's text, which a String parses as well.
extern crate self as deploycache;
mod pack {
    pub type Compression = String;
}

#[allow(dead_code)] // Only the definitions are used here, not the fields.
#[path = "src/cli.rs"]
mod cli;

fn main() {
    let manifest_dir = PathBuf::from(env("CARGO_MANIFEST_DIR"));
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src/cli.rs");

    // A build from a source tarball has no .git: it may name its commit here.
    println!("cargo:rerun-if-env-changed=DEPLOYCACHE_COMMIT");
    let commit = std::env::var("DEPLOYCACHE_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| git_commit(&manifest_dir))
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=DEPLOYCACHE_COMMIT={commit}");

    // OUT_DIR is <target>/<profile>/build/<package>-<hash>/out.
    let out_dir = PathBuf::from(env("OUT_DIR"));
    let profile_dir = out_dir
        .ancestors()
        .nth(3)
        .expect("OUT_DIR lies three levels below the profile directory");
    let generated = profile_dir.join("generated");
    let man = generated.join("man");
    let completions = generated.join("completions");
    for dir in [&man, &completions] {
        // Stale pages of a command since renamed must not be packaged.
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    }

    let version = format!("{} (commit {commit})", env("CARGO_PKG_VERSION"));
    // Leaked: clap keeps a &'static str, and this process ends right after.
    let cmd = cli::Cli::command().version(&*version.leak());
    write_man_pages(cmd.clone(), &man);
    for shell in [
        clap_complete::Shell::Bash,
        clap_complete::Shell::Zsh,
        clap_complete::Shell::Fish,
    ] {
        clap_complete::generate_to(shell, &mut cmd.clone(), "deploycache", &completions)
            .unwrap_or_else(|e| panic!("writing the {shell} completion: {e}"));
    }
}

/// A gzipped page per command (Debian policy: man pages are compressed), with
/// no name or time in the gzip header, so a rebuild gives the same bytes.
fn write_man_pages(cmd: clap::Command, dir: &Path) {
    let mut cmd = cmd.disable_help_subcommand(true);
    cmd.build();
    let mut pages = vec![cmd.clone()];
    pages.extend(cmd.get_subcommands().filter(|c| !c.is_hide_set()).cloned());
    for page in pages {
        let man = clap_mangen::Man::new(page);
        let path = dir.join(format!("{}.gz", man.get_filename()));
        let mut roff = Vec::new();
        man.render(&mut roff)
            .unwrap_or_else(|e| panic!("rendering {}: {e}", path.display()));
        let file = std::fs::File::create(&path)
            .unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
        let mut gz = flate2::GzBuilder::new()
            .mtime(0)
            .write(file, flate2::Compression::best());
        std::io::Write::write_all(&mut gz, &roff)
            .and_then(|()| gz.finish().map(drop))
            .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("cargo sets {name} for build scripts"))
}

/// The commit HEAD names (12 hex digits), when this is a git checkout and
/// git is installed; rebuilds when HEAD moves.
fn git_commit(dir: &Path) -> Option<String> {
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git")
            .args(args)
            .current_dir(dir)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let commit = git(&["rev-parse", "--short=12", "HEAD"])?;
    // HEAD itself (a checkout), the branch it names (a commit) and
    // packed-refs (where a branch's ref may live). A worktree's paths lie
    // outside the repository, so ask git where they are.
    let mut watched = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(branch);
    }
    for name in watched {
        if let Some(path) = git(&["rev-parse", "--git-path", &name]) {
            let path = dir.join(path);
            // A path that does not exist would rerun this script on every build.
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
    Some(commit)
}
