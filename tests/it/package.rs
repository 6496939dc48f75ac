//! The Debian package, as an admin gets it: `cargo deb` builds it
//! (scripts/test.sh does, and names it in DEPLOYCACHE_DEB), the tests unpack
//! it (`dpkg -x`), read its control data (`dpkg-deb -I`), render every man
//! page (`man -l`), then install it for real (`dpkg -i`, as root) and mount
//! a store from an fstab line through mount(8)'s helper.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

use crate::common::*;

const SHA: &str = "0123456789abcdef0123456789abcdef01234567";
const SHA2: &str = "89abcdef0123456789abcdef0123456789abcdef";

/// The package under test: $DEPLOYCACHE_DEB, else what `cargo deb` writes.
fn deb() -> PathBuf {
    let path = std::env::var_os("DEPLOYCACHE_DEB")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join(format!(
                "target/debian/deploycache_{}_amd64.deb",
                env!("CARGO_PKG_VERSION")
            ))
        });
    assert!(
        path.is_file(),
        "no package at {}: build it with `cargo deb` (scripts/test.sh does), or name it in DEPLOYCACHE_DEB",
        path.display()
    );
    path
}

/// Run a tool and require success; returns stdout as text.
fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The package unpacked into a fresh directory tree.
fn unpacked() -> TempDir {
    let root = tempfile::tempdir().unwrap();
    run(Command::new("dpkg").arg("-x").arg(deb()).arg(root.path()));
    root
}

/// The subcommands `deploycache --help` lists (clap's own `help` aside).
fn subcommands() -> Vec<String> {
    let help = String::from_utf8(ok(Command::new(bin()).arg("--help"))).unwrap();
    let list = help
        .split("Commands:\n")
        .nth(1)
        .expect("--help lists the commands");
    let names: Vec<String> = list
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| *n != "help")
        .map(str::to_owned)
        .collect();
    assert!(names.iter().any(|n| n == "mount"), "{help}");
    names
}

/// The long options `deploycache [CMD] --help` lists.
fn long_options(cmd: Option<&str>) -> Vec<String> {
    let help = String::from_utf8(ok(Command::new(bin()).args(cmd).arg("--help"))).unwrap();
    let mut opts: Vec<String> = help
        .split_whitespace()
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .map(|w| {
            w.trim_end_matches([',', '.', ')'])
                .split(['=', '['])
                .next()
                .unwrap()
                .to_owned()
        })
        .collect();
    opts.sort();
    opts.dedup();
    opts
}

#[test]
fn version_names_the_commit_and_the_store_format() {
    let commit = run(Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR")));
    let version = String::from_utf8(ok(Command::new(bin()).arg("--version"))).unwrap();
    assert_eq!(
        version,
        format!(
            "deploycache {} (commit {}, store format {})\n",
            env!("CARGO_PKG_VERSION"),
            commit.trim(),
            deploycache::index::FORMAT_VERSION
        )
    );
}

#[test]
fn package_control_declares_fuse3_and_sets_up_the_store_directory() {
    let deb = deb();
    assert_eq!(
        deb.file_name().unwrap().to_str().unwrap(),
        format!("deploycache_{}_amd64.deb", env!("CARGO_PKG_VERSION"))
    );
    let info = run(Command::new("dpkg-deb").arg("-I").arg(&deb));
    let field = |name: &str| -> String {
        info.lines()
            .find_map(|l| l.trim_start().strip_prefix(&format!("{name}: ")))
            .unwrap_or_else(|| panic!("no {name} field in:\n{info}"))
            .to_owned()
    };
    assert_eq!(field("Package"), "deploycache");
    assert_eq!(field("Version"), env!("CARGO_PKG_VERSION"));
    assert_eq!(field("Architecture"), "amd64");
    let depends = field("Depends");
    assert!(
        depends.split(", ").any(|d| d == "fuse3"),
        "Depends: {depends}"
    );
    assert!(
        depends.contains("libc6"),
        "shared-library dependencies too: {depends}"
    );

    let control = tempfile::tempdir().unwrap();
    run(Command::new("dpkg-deb")
        .arg("-e")
        .arg(&deb)
        .arg(control.path()));
    for script in ["postinst", "postrm"] {
        let shipped = fs::read(control.path().join(script)).unwrap();
        let ours = fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("packaging/debian")
                .join(script),
        )
        .unwrap();
        assert_eq!(shipped, ours, "{script} is packaging/debian/{script}");
        let mode = fs::metadata(control.path().join(script))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o111, 0o111, "{script} is executable");
    }
}

#[test]
fn package_holds_the_binary_mount_helper_units_and_completions() {
    let root = unpacked();
    let r = root.path();
    let packaged = r.join("usr/bin/deploycache");
    assert_eq!(
        ok(Command::new(&packaged).arg("--version")),
        ok(Command::new(bin()).arg("--version")),
        "the package holds the binary of this tree"
    );
    assert_eq!(
        fs::read_link(r.join("sbin/mount.fuse.deploycache")).unwrap(),
        Path::new("/usr/bin/deploycache"),
        "mount(8) finds its helper for type fuse.deploycache in /sbin"
    );

    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (shipped, ours) in [
        (
            "lib/systemd/system/deploycache-mount@.service",
            "packaging/systemd/deploycache-mount@.service",
        ),
        (
            "lib/systemd/system/deploycache-gc@.service",
            "packaging/systemd/deploycache-gc@.service",
        ),
        (
            "lib/systemd/system/deploycache-gc@.timer",
            "packaging/systemd/deploycache-gc@.timer",
        ),
        (
            "usr/share/doc/deploycache/examples/master.env",
            "packaging/master.env",
        ),
    ] {
        assert_eq!(
            fs::read(r.join(shipped)).unwrap(),
            fs::read(repo.join(ours)).unwrap(),
            "{shipped} is {ours}"
        );
    }
    let unit = fs::read_to_string(r.join("lib/systemd/system/deploycache-mount@.service")).unwrap();
    assert!(
        unit.contains("EnvironmentFile=/etc/deploycache/%i.env"),
        "{unit}"
    );
    assert!(
        unit.contains("ExecStart=/usr/bin/deploycache mount "),
        "{unit}"
    );
    // The gc timer's service reads the same file, and passes each limit
    // set there to `deploycache gc`.
    let gc = fs::read_to_string(r.join("lib/systemd/system/deploycache-gc@.service")).unwrap();
    assert!(
        gc.contains("EnvironmentFile=/etc/deploycache/%i.env") && gc.contains("Type=oneshot"),
        "{gc}"
    );
    for (var, flag) in [
        ("GC_MAX_SIZE", "--max-size"),
        ("GC_OLDER_THAN", "--older-than"),
        ("GC_KEEP_LAST", "--keep-last"),
    ] {
        assert!(
            gc.contains(&format!("$${{{var}:+{flag} \"$${var}\"}}")),
            "{var} becomes {flag}: {gc}"
        );
    }
    let example =
        fs::read_to_string(r.join("usr/share/doc/deploycache/examples/master.env")).unwrap();
    for var in [
        "DEPLOYCACHE_STORE=",
        "DEPLOYCACHE_MOUNTPOINT=",
        "DEPLOYCACHE_MOUNT_OPTIONS=",
    ] {
        assert!(
            example.lines().any(|l| l.starts_with(var)),
            "the example sets {var}: {example}"
        );
    }
    for var in ["#GC_MAX_SIZE=", "#GC_OLDER_THAN=", "#GC_KEEP_LAST="] {
        assert!(
            example.lines().any(|l| l.starts_with(var)),
            "the example documents {var}: {example}"
        );
    }

    // Completions: every command, in the places bash, zsh and fish look.
    let bash = r.join("usr/share/bash-completion/completions/deploycache");
    let complete = run(Command::new("bash").arg("-c").arg(format!(
        "source '{}' && complete -p deploycache",
        bash.display()
    )));
    assert!(complete.trim_end().ends_with(" deploycache"), "{complete}");
    let zsh = fs::read_to_string(r.join("usr/share/zsh/vendor-completions/_deploycache")).unwrap();
    assert!(zsh.starts_with("#compdef deploycache"), "{zsh:.200}");
    let fish =
        fs::read_to_string(r.join("usr/share/fish/vendor_completions.d/deploycache.fish")).unwrap();
    let bash = fs::read_to_string(&bash).unwrap();
    for cmd in subcommands() {
        assert!(
            bash.contains(&format!("deploycache,{cmd})")),
            "bash completes {cmd}"
        );
        assert!(zsh.contains(&format!("'{cmd}:")), "zsh completes {cmd}");
        assert!(
            fish.contains(&format!("-a \"{cmd}\"")),
            "fish completes {cmd}"
        );
    }
}

#[test]
fn every_command_has_a_man_page_that_renders() {
    let root = unpacked();
    let man1 = root.path().join("usr/share/man/man1");
    let mut pages: Vec<String> = fs::read_dir(&man1)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    pages.sort();
    let mut want: Vec<String> = subcommands()
        .iter()
        .map(|c| format!("deploycache-{c}.1.gz"))
        .collect();
    want.push("deploycache.1.gz".to_owned());
    want.sort();
    assert_eq!(pages, want, "a man page per command, compressed");

    for cmd in std::iter::once(None).chain(subcommands().into_iter().map(Some)) {
        let name = cmd
            .as_ref()
            .map_or("deploycache".to_owned(), |c| format!("deploycache-{c}"));
        let page = man1.join(format!("{name}.1.gz"));
        let out = Command::new("man")
            .arg("-l")
            .arg(&page)
            .env("MANWIDTH", "200")
            .env("LC_ALL", "C.UTF-8")
            .output()
            .unwrap_or_else(|e| panic!("cannot run man (install man-db): {e}"));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "man -l {} ({}): {}",
            page.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        // man justifies lines, so words are compared, not spacing.
        let words = text.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            words.contains(&format!("NAME {name} - ")),
            "{name}'s page names it:\n{text}"
        );
        for opt in long_options(cmd.as_deref()) {
            assert!(
                text.contains(&opt),
                "{name}'s page documents {opt}:\n{text}"
            );
        }
    }
    let mount = run(Command::new("man")
        .arg("-l")
        .arg(man1.join("deploycache-mount.1.gz"))
        .env("MANWIDTH", "200"));
    assert!(
        mount
            .contains("mount -t fuse.deploycache STORE MOUNTPOINT -o namespace=master,allow_other"),
        "the mount page shows the mount(8) form:\n{mount}"
    );
}

/// The package installed with `dpkg -i`; purged again on drop when it was
/// not installed before. Mounts under it are unmounted first.
struct Installed {
    was_installed: bool,
    mounts: Vec<PathBuf>,
}

impl Installed {
    fn new() -> Installed {
        assert_eq!(
            uid(),
            0,
            "installing the package needs root (CI runs as root)"
        );
        let status = Command::new("dpkg-query")
            .args(["-W", "-f=${Status}", "deploycache"])
            .output()
            .unwrap();
        let was_installed = String::from_utf8_lossy(&status.stdout).contains(" installed");
        run(Command::new("dpkg").arg("-i").arg(deb()));
        Installed {
            was_installed,
            mounts: Vec::new(),
        }
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        for mp in &self.mounts {
            if deploycache::fuse::is_mounted(mp) {
                let _ = Command::new("umount").arg(mp).output();
            }
        }
        if !self.was_installed {
            let _ = Command::new("dpkg")
                .args(["--purge", "deploycache"])
                .status();
        }
    }
}

fn uid() -> u32 {
    std::os::unix::fs::MetadataExt::uid(&fs::metadata("/proc/self").unwrap())
}

/// The mount options /proc/self/mountinfo shows for `mp` (mount and
/// superblock options), with its type; None when nothing is mounted there.
fn mount_entry(mp: &Path) -> Option<(String, String)> {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mp = mp.to_str().unwrap();
    info.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        let fields: Vec<&str> = left.split(' ').collect();
        (fields.get(4) == Some(&mp)).then(|| {
            let right: Vec<&str> = right.split(' ').collect();
            (
                right[0].to_owned(),
                format!("{},{}", fields[5], right.get(2).unwrap_or(&"")),
            )
        })
    })
}

#[test]
fn installed_package_mounts_a_store_from_an_fstab_line() {
    // An empty root store left by an earlier run goes, so that postinst's
    // creation of it is what is checked; a store with data stays.
    let _ = fs::remove_dir("/var/lib/deploycache");
    let fresh_store_dir = !Path::new("/var/lib/deploycache").exists();
    let mut installed = Installed::new();
    if fresh_store_dir {
        let mode = fs::metadata("/var/lib/deploycache")
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o7777,
            0o700,
            "postinst creates root's store for root alone"
        );
    }
    assert!(
        fs::symlink_metadata("/sbin/mount.fuse.deploycache").is_ok(),
        "the helper is installed"
    );
    // The installed unit as systemd reads it, for one instance (a template
    // alone cannot be checked): any complaint (a bad directive, a missing
    // binary) is printed, so nothing may be.
    let units = tempfile::tempdir().unwrap();
    for unit in [
        "deploycache-mount@.service",
        "deploycache-gc@.service",
        "deploycache-gc@.timer",
    ] {
        fs::copy(
            Path::new("/lib/systemd/system").join(unit),
            units.path().join(unit),
        )
        .unwrap();
    }
    let out = Command::new("systemd-analyze")
        .args([
            "verify",
            "--man=no",
            "./deploycache-mount@master.service",
            "./deploycache-gc@master.service",
            "./deploycache-gc@master.timer",
        ])
        .current_dir(units.path())
        .output()
        .expect("systemd-analyze (apt-get install systemd)");
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "systemd-analyze verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let mp = dir.path().join("master");
    fs::create_dir(&mp).unwrap();
    installed.mounts.push(mp.clone());
    let image = random_bytes(3 << 20, 16);
    let other = text_bytes(100_000, 16);
    write(&dir.path().join("image.gz.src"), &image);
    write(&dir.path().join("other"), &other);
    ok(dc(&store)
        .args(["--namespace", "master", "put", SHA])
        .arg(dir.path().join("image.gz.src")));
    ok(dc(&store).args(["put", SHA2]).arg(dir.path().join("other")));

    let fstab = dir.path().join("fstab");
    write(
        &fstab,
        format!(
            "# the README's line, with this test's paths\n{} {} fuse.deploycache \
             namespace=master,allow_other,_netdev,nofail,x-systemd.requires-mounts-for={} 0 0\n",
            store.display(),
            mp.display(),
            dir.path().display()
        )
        .as_bytes(),
    );
    // Exit 0 and no errors; the warnings (it cannot check a FUSE type or
    // source) are those of any FUSE line but sshfs's.
    let verify = Command::new("findmnt")
        .args(["--verify", "--tab-file"])
        .arg(&fstab)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&verify.stderr);
    assert!(
        verify.status.success() && report.contains("0 parse errors, 0 errors"),
        "findmnt --verify: {report}{}",
        String::from_utf8_lossy(&verify.stdout)
    );

    // mount -T: mount(8) reads the line, runs /sbin/mount.fuse.deploycache,
    // which returns once the mount serves.
    run(Command::new("mount").arg("-T").arg(&fstab).arg(&mp));
    let (fstype, options) = mount_entry(&mp).expect("mounted");
    assert_eq!(fstype, "fuse.deploycache");
    // mount -a sees the line mounted already (same type, the store as its
    // source) and leaves it be, as it does for sshfs.
    run(Command::new("mount").arg("-a").arg("-T").arg(&fstab));
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert_eq!(
        mounts
            .lines()
            .filter(|l| l.contains(&format!(" {} ", mp.display())))
            .count(),
        1,
        "{mounts}"
    );
    assert!(options.split(',').any(|o| o == "allow_other"), "{options}");
    assert_eq!(fs::read(mp.join(SHA).join("image.gz.src")).unwrap(), image);
    assert!(
        !mp.join(SHA2).exists(),
        "namespace=master serves master's artifacts only"
    );
    let copied = dir.path().join("copied");
    write(&copied, &other);
    fs::create_dir(mp.join(SHA2)).unwrap();
    run(Command::new("cp")
        .arg(&copied)
        .arg(mp.join(SHA2).join("other")));
    run(Command::new("umount").arg(&mp));
    assert!(mount_entry(&mp).is_none(), "umount unmounts it");
    assert_eq!(
        ok(dc(&store).args(["--namespace", "master", "cat", SHA2, "other"])),
        other,
        "a file written through the fstab mount is stored in namespace master"
    );

    // mount -t with -o: ro refuses writes.
    run(Command::new("mount")
        .args(["-t", "fuse.deploycache"])
        .arg(&store)
        .arg(&mp)
        .args(["-o", "ro,namespace=master"]));
    assert_eq!(fs::read(mp.join(SHA2).join("other")).unwrap(), other);
    let err = fs::write(mp.join(SHA).join("new"), b"x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
    run(Command::new("umount").arg(&mp));

    // An option deploycache does not take: one line naming it, no mount.
    let out = Command::new("mount")
        .args(["-t", "fuse.deploycache"])
        .arg(&store)
        .arg(&mp)
        .args(["-o", "namespace=master,noexec"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "an unknown option mounted: {err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("\"noexec\"") && err.contains("namespace=NS"),
        "{err}"
    );
    assert!(mount_entry(&mp).is_none());
}
