//! Issue 17: the S3 server dies mid-upload and comes back. Unlike the
//! tests in `remote`, which share the suite's radosgw, this one starts a
//! Ceph cluster of its own (scripts/radosgw.sh, on ports of its own), since
//! it kills the server: radosgw only, so the OSD keeps what it held. It
//! fails when that cluster does not come up; it never skips.

use std::fs;
use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use deploycache::remote::{Bucket, S3Bucket, S3Config};
use tempfile::TempDir;

use crate::common::*;

const BUCKET: &str = "deploycache-test";
const KEY_ID: &str = "DEPLOYCACHETEST";
const SECRET: &str = "deploycache-test-secret";
/// Bounds that tell "fails" from "hangs", not speed targets (those are
/// BENCHMARKS.md's: a put fails ~2 s after its server is gone, a read
/// through the mount in 2.5-8.5 s, its kernel retrying each read through
/// the S3 client's retries, 3 s each; 28 s once on a loaded machine).
const FAIL_WITHIN: Duration = Duration::from_secs(120);
/// The same once a server stops answering: a request's timeout (60 s; a
/// part failed after 30 s here) and at most 5 s for the abort (the put
/// took 90 s before the abort was capped, 35 s after).
const FROZEN_FAIL_WITHIN: Duration = Duration::from_secs(80);

fn radosgw_sh() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/radosgw.sh")
}

/// A Ceph cluster (mon, memstore OSD, radosgw) of this test's own, stopped
/// when dropped, a failed assertion's unwinding included.
struct Cluster {
    dir: PathBuf,
    port: u16,
    _tmp: TempDir,
}

impl Cluster {
    /// Start one on the first free port pair from 7780 (radosgw on PORT,
    /// the monitor on PORT - 691, as radosgw.sh puts it). Panics when it
    /// does not come up.
    fn start() -> Cluster {
        let free = |p: u16| TcpListener::bind(("127.0.0.1", p)).is_ok();
        let port = (7780..7880)
            .step_by(3)
            .find(|&p| free(p) && free(p - 691))
            .expect("no free port pair for radosgw between 7780 and 7880");
        let tmp = TempDir::new().unwrap();
        let dir = tmp.path().join("ceph");
        let cluster = Cluster {
            dir,
            port,
            _tmp: tmp,
        };
        let out = Command::new(radosgw_sh())
            .arg("start")
            .arg(&cluster.dir)
            .arg(port.to_string())
            .output()
            .expect("run scripts/radosgw.sh");
        assert!(
            out.status.success(),
            "scripts/radosgw.sh start on port {port} failed: this test needs its own radosgw:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        cluster
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn script(&self, cmd: &str) {
        let out = Command::new(radosgw_sh())
            .arg(cmd)
            .arg(&self.dir)
            .output()
            .expect("run scripts/radosgw.sh");
        assert!(
            out.status.success(),
            "radosgw.sh {cmd} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// SIGKILL radosgw; returns once it is gone.
    fn kill_rgw(&self) {
        self.script("kill-rgw");
    }

    /// Start radosgw again; returns once it answers.
    fn start_rgw(&self) {
        self.script("start-rgw");
    }

    /// Freeze radosgw where it is (SIGSTOP): what it has not answered by
    /// now it never will. The kill that follows lands at this point.
    fn freeze_rgw(&self) {
        let pid = fs::read_to_string(self.dir.join("run/client.rgw.a.pid")).unwrap();
        let st = Command::new("kill")
            .args(["-STOP", pid.trim()])
            .status()
            .unwrap();
        assert!(st.success(), "kill -STOP radosgw {pid}");
    }

    fn log(&self) -> PathBuf {
        self.dir.join("log/client.rgw.a.log")
    }

    /// The client for `prefix` of the bucket.
    fn bucket(&self, prefix: &str) -> S3Bucket {
        let config = S3Config {
            endpoint: Some(self.endpoint()),
            region: Some("us-east-1".into()),
            access_key_id: Some(KEY_ID.into()),
            secret_access_key: Some(SECRET.into()),
            session_token: None,
        };
        S3Bucket::new(BUCKET, prefix, config).unwrap()
    }

    /// The keys of the bucket's multipart uploads begun and not completed
    /// nor aborted (ListMultipartUploads; object_store has no call for it).
    fn unfinished_uploads(&self) -> String {
        let out = Command::new("curl")
            .args([
                "-sS",
                "--fail-with-body",
                "--aws-sigv4",
                "aws:amz:us-east-1:s3",
            ])
            .args(["--user", &format!("{KEY_ID}:{SECRET}")])
            .args(["-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD"])
            .arg(format!("{}/{BUCKET}?uploads=", self.endpoint()))
            .output()
            .unwrap();
        assert!(out.status.success(), "ListMultipartUploads: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(radosgw_sh())
            .arg("stop")
            .arg(&self.dir)
            .status();
    }
}

/// One host: its own store and id, on the cluster's bucket under `prefix`.
struct Host {
    store: PathBuf,
    id: &'static str,
    remote: String,
    endpoint: String,
}

impl Host {
    fn new(t: &Path, id: &'static str, cluster: &Cluster, prefix: &str) -> Host {
        Host {
            store: t.join(format!("store-{id}")),
            id,
            remote: format!("s3://{BUCKET}/{prefix}"),
            endpoint: cluster.endpoint(),
        }
    }

    /// This host's id and this test's radosgw, over whatever server the
    /// suite's environment names.
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("DEPLOYCACHE_HOST_ID", self.id.into()),
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ENDPOINT", String::new()),
            ("AWS_ACCESS_KEY_ID", KEY_ID.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET.into()),
            ("AWS_SESSION_TOKEN", String::new()),
            ("AWS_REGION", "us-east-1".into()),
        ]
    }

    /// The binary as this host.
    fn dc(&self) -> Command {
        let mut c = dc(&self.store);
        c.envs(self.env()).arg("--remote").arg(&self.remote);
        c
    }

    fn names(&self) -> Vec<String> {
        names(&json(&ok(self.dc().args(["ls", "--json"]))))
    }
}

/// A failure while the server is down: one line, naming the remote and
/// the endpoint, saying to check the object store; no panic.
fn assert_server_down_error(what: &str, out: &Output, h: &Host) {
    let err = stderr(out);
    assert!(!err.contains("panicked"), "{what}: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{what}: not one line: {err}");
    let line = lines[0];
    assert!(line.starts_with("deploycache: "), "{what}: {line}");
    assert!(line.contains(&h.remote), "{what}: names no remote: {line}");
    assert!(
        line.contains(&format!("endpoint {}", h.endpoint)),
        "{what}: names no endpoint: {line}"
    );
    assert!(
        line.contains("check that the object store is up"),
        "{what}: {line}"
    );
}

/// `h`'s put of `src` as `name`, its server frozen (SIGSTOP) the moment
/// radosgw has begun the upload of its pack in parts (answered its POST
/// ?uploads), then `cut` done to it. Its output, and how long it ran on
/// from the start of `cut`.
fn put_cut_mid_upload(
    cluster: &Cluster,
    h: &Host,
    name: &str,
    src: &Path,
    cut: impl FnOnce(),
) -> (Output, Duration) {
    let mut put = h
        .dc()
        .args(["put", name])
        .arg(src)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let prefix = h.remote.strip_prefix(&format!("s3://{BUCKET}")).unwrap();
    let upload_begun = [&format!("\"POST /{BUCKET}{prefix}/packs/"), ".pack?uploads"];
    wait_for_log(&cluster.log(), &upload_begun, &mut put);
    cluster.freeze_rgw();
    let t0 = Instant::now();
    cut();
    let out = put.wait_with_output().unwrap();
    (out, t0.elapsed())
}

/// Wait until radosgw's log has a line containing every one of `parts`
/// (the log tells each request's line when it is answered), or `child`
/// ends first (a panic: the moment was missed).
fn wait_for_log(log: &Path, parts: &[&str], child: &mut std::process::Child) {
    let mut file = fs::File::open(log).unwrap();
    // Only what is logged from now on.
    let mut seen = Vec::new();
    file.read_to_end(&mut seen).unwrap();
    seen.clear();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut tail = String::new();
    loop {
        seen.clear();
        file.read_to_end(&mut seen).unwrap();
        tail.push_str(&String::from_utf8_lossy(&seen));
        // Whole lines only; a partial one stays for the next read.
        let cut = tail.rfind('\n').map_or(0, |i| i + 1);
        if tail[..cut]
            .lines()
            .any(|l| parts.iter().all(|p| l.contains(p)))
        {
            return;
        }
        tail.drain(..cut);
        if let Some(st) = child.try_wait().unwrap() {
            panic!("the put ended ({st}) before radosgw logged a line with {parts:?}");
        }
        assert!(
            Instant::now() < deadline,
            "radosgw logged no line with {parts:?} in 120 s"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn a_server_killed_mid_upload_fails_the_put_cleanly_and_a_push_after_its_restart_publishes() {
    let cluster = Cluster::start();
    let t = TempDir::new().unwrap();
    let prefix = format!("kill-{:016x}", rand::random::<u64>());
    let a = Host::new(t.path(), "a", &cluster, &prefix);
    let b = Host::new(t.path(), "b", &cluster, &prefix);
    let image = random_bytes(40 << 20, 17);
    let src = t.path().join("art");
    fs::create_dir_all(&src).unwrap();
    write(&src.join("image.img"), &image);

    // A's put: its one pack (> 16 MiB) goes up in parts. The moment
    // radosgw has begun the multipart upload (answered its POST ?uploads),
    // the server freezes and is killed: its parts and its completion are
    // cut off.
    // Timed from the SIGKILL (kill-rgw's wait for the process to be gone
    // included).
    let (out, took) = put_cut_mid_upload(&cluster, &a, "0123", &src, || cluster.kill_rgw());
    eprintln!(
        "put failed {took:?} after radosgw's SIGKILL: {}",
        stderr(&out)
    );
    assert!(
        !out.status.success(),
        "the put succeeded with its server killed mid-upload"
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_server_down_error("put, server killed mid-upload", &out, &a);
    assert!(
        stderr(&out).contains("/packs/"),
        "the error names no pack: {}",
        stderr(&out)
    );
    assert!(
        took < FAIL_WITHIN,
        "the put took {took:?} to fail on a dead server"
    );
    // A's own store holds the artifact, sound.
    ok(a.dc().args(["verify"]));

    // A reader while the server is down: an error, not an empty cache.
    let down = fails(b.dc().args(["ls", "--json"]));
    assert_server_down_error("B's ls, server down", &down, &b);

    cluster.start_rgw();
    // The upload was cut short: begun, never completed, no pack object,
    // no commit; B sees nothing.
    let remote = cluster.bucket(&prefix);
    let uploads = cluster.unfinished_uploads();
    assert!(
        uploads.contains(&format!("<Key>{prefix}/packs/")),
        "no unfinished upload of A's pack: the kill came too late? {uploads}"
    );
    assert_eq!(remote.list("packs/").unwrap(), vec![]);
    assert_eq!(remote.list("commits/").unwrap(), vec![]);
    assert_eq!(b.names(), Vec::<String>::new());

    // A publishes what the put could not.
    let push = a.dc().args(["remote", "push"]).output().unwrap();
    assert!(push.status.success(), "push after the restart: {push:?}");
    eprintln!(
        "push after the restart: {}",
        String::from_utf8_lossy(&push.stdout) + stderr(&push).as_str()
    );
    assert_eq!(remote.list("packs/").unwrap().len(), 1);
    assert_eq!(remote.list("commits/").unwrap().len(), 1);
    assert_eq!(b.names(), ["0123"]);

    // B knows the artifact, none of its bytes (cold cache). A command
    // while the server is down fails, saying so (its pull, first).
    let cached = || -> u64 {
        walkdir::WalkDir::new(b.store.join("remote-cache"))
            .into_iter()
            .flatten()
            .filter(|e| e.file_type().is_file())
            .map(|e| e.metadata().unwrap().len())
            .sum()
    };
    assert_eq!(cached(), 0);
    cluster.kill_rgw();
    let t0 = Instant::now();
    let cat = fails(b.dc().args(["cat", "0123", "image.img"]));
    eprintln!("B's cat failed in {:?}: {}", t0.elapsed(), stderr(&cat));
    assert!(
        cat.stdout.is_empty(),
        "B's cat wrote bytes it could not read"
    );
    assert_server_down_error("B's cat, server down", &cat, &b);
    assert!(t0.elapsed() < FAIL_WITHIN, "{:?}", t0.elapsed());

    // B's mount, started with the server up, reads its chunks from the
    // remote only when asked (no converter: it reads every file's first
    // bytes at the start): while the server is down that read fails
    // (EIO, no bytes), and the same mount reads them once it is back.
    cluster.start_rgw();
    let mp = t.path().join("mnt-b");
    let env = b.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let m = crate::mount::Mounted::foreground_env(&b.store, &mp, &["--no-convert"], &env);
    let file = mp.join("0123").join("image.img");
    assert_eq!(fs::metadata(&file).unwrap().len(), image.len() as u64);
    assert_eq!(cached(), 0);
    cluster.kill_rgw();
    let t0 = Instant::now();
    let read = fs::read(&file);
    eprintln!(
        "B's read through its mount, server down: {:?} in {:?}",
        read.as_ref().err(),
        t0.elapsed()
    );
    assert_eq!(
        read.map(|b| b.len()).map_err(|e| e.raw_os_error()),
        Err(Some(libc::EIO))
    );
    assert!(t0.elapsed() < FAIL_WITHIN, "{:?}", t0.elapsed());
    cluster.start_rgw();
    assert!(
        fs::read(&file).unwrap() == image,
        "the mount's bytes differ after the restart"
    );
    m.unmount();
    assert!(ok(b.dc().args(["cat", "0123", "image.img"])) == image);
    assert!(ok(a.dc().args(["cat", "0123", "image.img"])) == image);
    ok(a.dc().args(["verify", "--full"]));
    ok(b.dc().args(["verify", "--full"]));

    // A server that stops answering mid-upload (frozen: its connections
    // stay open, nothing comes back) fails the put after the client's
    // timeouts, not after them plus an abort's own 60 s (it took 90 s).
    let image2 = random_bytes(40 << 20, 18);
    write(&src.join("image.img"), &image2);
    let (out, took) = put_cut_mid_upload(&cluster, &a, "4567", &src, || ());
    eprintln!("put failed {took:?} after radosgw froze: {}", stderr(&out));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_server_down_error("put, server frozen mid-upload", &out, &a);
    assert!(
        took < FROZEN_FAIL_WITHIN,
        "the put took {took:?} to fail on a frozen server"
    );
    cluster.kill_rgw();
    cluster.start_rgw();
    assert_eq!(b.names(), ["0123"]);
    ok(a.dc().args(["verify"]));
}
