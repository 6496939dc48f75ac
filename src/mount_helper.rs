//! mount(8)'s helper calling convention, so that `/etc/fstab` can mount the
//! cache as it mounts sshfs: the package links `/usr/sbin/mount.fuse.deploycache`
//! to the binary, and `mount -t fuse.deploycache STORE DIR -o OPTIONS` (or an
//! fstab line of type `fuse.deploycache`) runs
//! `mount.fuse.deploycache STORE DIR [-sfnv] [-o OPTIONS]`.
//! Such a call is turned into the equivalent `deploycache mount --daemon`
//! command line, so the helper mounts exactly as the command does and returns
//! once the mount serves (mount(8) waits for its helper).

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Every `-o` option the helper takes, for messages.
pub const OPTIONS: &str = "ro, rw, allow_other, namespace=NS, compression=zstd|fast|none, \
                           threads=N, adopt, log=FILE, complete_when=PATTERN (repeatable), \
                           gc_max_size=SIZE, gc_older_than=DURATION, gc_keep_last=N, \
                           gc_interval=DURATION, noconvert";

/// Options mount(8) and systemd act on themselves (or that every deploycache
/// mount has anyway) and pass on to the helper: accepted and ignored.
const IGNORED: [&str; 9] = [
    "defaults", "auto", "noauto", "_netdev", "nofail", "nosuid", "nodev", "async", "relatime",
];

/// What the process was asked to do.
#[derive(Debug, PartialEq)]
pub enum Call {
    /// A command line for the ordinary parser (the process's own, or the
    /// `deploycache mount` line a helper call stands for).
    Run(Vec<OsString>),
    /// `mount -f`: pretend to mount; do nothing.
    Fake,
}

/// The command line to run for `argv`: itself, unless the binary was called
/// by a `mount.*` name. Errors are one line naming what is wrong.
pub fn call(argv: Vec<OsString>) -> Result<Call, String> {
    let called_as = argv
        .first()
        .and_then(|a| Path::new(a).file_name())
        .unwrap_or_default();
    if !called_as.as_bytes().starts_with(b"mount.") {
        return Ok(Call::Run(argv));
    }
    let helper = called_as.to_string_lossy().into_owned();
    let mut positional = Vec::new();
    let mut options = Vec::new();
    let (mut fake, mut sloppy) = (false, false);
    let mut args = argv.into_iter().skip(1);
    while let Some(arg) = args.next() {
        let bytes = arg.as_bytes();
        if bytes == b"-o" {
            let value = args
                .next()
                .ok_or_else(|| format!("{helper}: -o needs a list of options"))?;
            options.push(value);
        } else if let Some(value) = bytes.strip_prefix(b"-o") {
            options.push(OsStr::from_bytes(value).to_owned());
        } else if bytes == b"-t" {
            // The type, fuse.deploycache: mount(8) chose this helper by it.
            args.next();
        } else if bytes == b"-N" {
            return Err(format!(
                "{helper}: mounting in another mount namespace (-N) is not supported; \
                 run mount inside that namespace instead"
            ));
        } else if bytes.len() > 1 && bytes[0] == b'-' {
            for flag in &bytes[1..] {
                match flag {
                    b'f' => fake = true,
                    b's' => sloppy = true,
                    // -n (no mtab) and -v (verbose) need nothing from a FUSE helper.
                    b'n' | b'v' => {}
                    _ => {
                        return Err(format!(
                        "{helper}: unknown flag -{}; mount(8) passes -s, -f, -n, -v, -o OPTIONS",
                        *flag as char
                    ))
                    }
                }
            }
        } else {
            positional.push(arg);
        }
    }
    let [store, mountpoint]: [OsString; 2] = positional.try_into().map_err(|p: Vec<_>| {
        format!(
            "{helper}: expected STORE MOUNTPOINT [-o OPTIONS], as mount(8) passes them, got {} \
             arguments (mount -t fuse.deploycache STORE MOUNTPOINT -o OPTIONS)",
            p.len()
        )
    })?;
    if fake {
        return Ok(Call::Fake);
    }

    let mut global: Vec<OsString> = vec!["deploycache".into(), arg("--store=", &store)];
    let mut mount: Vec<OsString> = vec!["mount".into(), "--daemon".into()];
    // Options of a mount a program passed on its own, unless a later one overrides them.
    let mut namespace_given = false;
    for list in &options {
        for opt in list
            .as_bytes()
            .split(|&b| b == b',')
            .filter(|o| !o.is_empty())
        {
            let (key, value) = match opt.iter().position(|&b| b == b'=') {
                Some(i) => (&opt[..i], Some(OsStr::from_bytes(&opt[i + 1..]))),
                None => (opt, None),
            };
            match (key, value) {
                (b"ro", None) => mount.push("--read-only".into()),
                (b"noconvert", None) => mount.push("--no-convert".into()),
                (b"rw", None) => {}
                (b"allow_other", None) => mount.push("--allow-other".into()),
                (b"adopt", None) => mount.push("--adopt".into()),
                (b"namespace", Some(v)) => {
                    namespace_given = true;
                    global.push(arg("--namespace=", v));
                }
                (b"compression", Some(v)) => global.push(arg("--compression=", v)),
                (b"threads", Some(v)) => mount.push(arg("--threads=", v)),
                (b"log", Some(v)) => mount.push(arg("--log=", v)),
                (b"complete_when", Some(v)) => mount.push(arg("--complete-when=", v)),
                (b"gc_max_size", Some(v)) => mount.push(arg("--gc-max-size=", v)),
                (b"gc_older_than", Some(v)) => mount.push(arg("--gc-older-than=", v)),
                (b"gc_keep_last", Some(v)) => mount.push(arg("--gc-keep-last=", v)),
                (b"gc_interval", Some(v)) => mount.push(arg("--gc-interval=", v)),
                (k, None) if IGNORED.iter().any(|i| i.as_bytes() == k) => {}
                // Comments and options for other programs (x-systemd.*, x-gvfs-*).
                (k, _) if k.starts_with(b"x-") || k == b"comment" => {}
                _ if sloppy => {}
                _ => {
                    return Err(format!(
                    "{helper}: unknown mount option \"{}\" for {}; deploycache takes: {OPTIONS} \
                         (see man deploycache-mount)",
                    String::from_utf8_lossy(opt),
                    Path::new(&mountpoint).display()
                ))
                }
            }
        }
    }
    // An fstab line names its namespace or means the default one, whatever
    // DEPLOYCACHE_NAMESPACE the caller of mount(8) happens to have set.
    if !namespace_given {
        global.push("--namespace=".into());
    }
    mount.push("--".into());
    mount.push(mountpoint);
    global.extend(mount);
    Ok(Call::Run(global))
}

/// `--flag=VALUE`: one argument, so a value starting with '-' stays a value.
fn arg(flag: &str, value: &OsStr) -> OsString {
    let mut a = OsString::from(flag);
    a.push(value);
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Call, String> {
        call(args.iter().map(OsString::from).collect())
    }

    fn line(args: &[&str]) -> Call {
        Call::Run(args.iter().map(OsString::from).collect())
    }

    #[test]
    fn an_ordinary_call_is_left_alone() {
        let argv = ["/usr/bin/deploycache", "mount", "-o", "x"];
        assert_eq!(run(&argv), Ok(line(&argv)));
    }

    #[test]
    fn an_fstab_line_becomes_a_daemon_mount() {
        // What mount(8) passes for
        // "/srv/store /mnt fuse.deploycache namespace=master,allow_other,_netdev,nofail,x-systemd.requires=/srv 0 0".
        let got = run(&[
            "/sbin/mount.fuse.deploycache",
            "/srv/store",
            "/mnt",
            "-o",
            "rw,namespace=master,allow_other,_netdev,nofail,x-systemd.requires=/srv",
        ]);
        assert_eq!(
            got,
            Ok(line(&[
                "deploycache",
                "--store=/srv/store",
                "--namespace=master",
                "mount",
                "--daemon",
                "--allow-other",
                "--",
                "/mnt",
            ]))
        );
    }

    #[test]
    fn every_mount_option_has_an_o_form() {
        let got = run(&[
            "mount.fuse.deploycache",
            "-n",
            "-oro,compression=fast,threads=8,adopt,log=/var/log/dc.log,complete_when=env_*.yaml",
            "/srv/store",
            "-v",
            "/mnt",
        ]);
        assert_eq!(
            got,
            Ok(line(&[
                "deploycache",
                "--store=/srv/store",
                "--compression=fast",
                "--namespace=",
                "mount",
                "--daemon",
                "--read-only",
                "--threads=8",
                "--adopt",
                "--log=/var/log/dc.log",
                "--complete-when=env_*.yaml",
                "--",
                "/mnt",
            ]))
        );
    }

    #[test]
    fn noconvert_turns_the_background_conversion_off() {
        let got = run(&[
            "mount.fuse.deploycache",
            "/srv/store",
            "/mnt",
            "-o",
            "noconvert",
        ]);
        assert_eq!(
            got,
            Ok(line(&[
                "deploycache",
                "--store=/srv/store",
                "--namespace=",
                "mount",
                "--daemon",
                "--no-convert",
                "--",
                "/mnt",
            ]))
        );
    }

    #[test]
    fn the_gc_policy_has_o_forms() {
        let got = run(&[
            "mount.fuse.deploycache",
            "/srv/store",
            "/mnt",
            "-o",
            "allow_other,gc_max_size=500G,gc_older_than=7d,gc_keep_last=3,gc_interval=5m",
        ]);
        assert_eq!(
            got,
            Ok(line(&[
                "deploycache",
                "--store=/srv/store",
                "--namespace=",
                "mount",
                "--daemon",
                "--allow-other",
                "--gc-max-size=500G",
                "--gc-older-than=7d",
                "--gc-keep-last=3",
                "--gc-interval=5m",
                "--",
                "/mnt",
            ]))
        );
    }

    #[test]
    fn an_unknown_option_is_named_unless_sloppy() {
        let err = run(&["mount.fuse.deploycache", "/s", "/mnt", "-o", "rw,noexec"]).unwrap_err();
        assert!(err.contains("\"noexec\"") && err.contains("/mnt"), "{err}");
        assert!(err.contains("namespace=NS"), "lists what it takes: {err}");
        assert!(run(&["mount.fuse.deploycache", "-s", "/s", "/mnt", "-o", "noexec"]).is_ok());
    }

    #[test]
    fn a_value_that_looks_like_a_flag_stays_a_value() {
        let Ok(Call::Run(args)) =
            run(&["mount.fuse.deploycache", "/s", "/m", "-o", "namespace=-x"])
        else {
            panic!("not a mount");
        };
        assert!(args.contains(&"--namespace=-x".into()), "{args:?}");
    }

    #[test]
    fn a_fake_mount_does_nothing_and_bad_calls_say_why() {
        assert_eq!(
            run(&["mount.fuse.deploycache", "-f", "/s", "/m"]),
            Ok(Call::Fake)
        );
        let err = run(&["mount.fuse.deploycache", "/s"]).unwrap_err();
        assert!(err.contains("expected STORE MOUNTPOINT"), "{err}");
        let err = run(&["mount.fuse.deploycache", "/s", "/m", "-N", "1"]).unwrap_err();
        assert!(err.contains("-N"), "{err}");
    }
}
