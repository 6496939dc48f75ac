//! Legacy OPNFV Fuel deploy-cache fingerprints (issue 4), bit for bit.
//!
//! The Python 2.7 `deploy_cache.py` keyed caches by three SHA-1 fingerprints:
//!
//! - **mirrors**: walk the ISO root like `os.walk` (module `walk`); for each file
//!   named exactly `Release` whose directory path (which starts with the root
//!   *as given*) does not contain `binary`, collect `line[1:33]` of every line
//!   starting with a space after the `MD5Sum:` line, up to the first line that
//!   does not start with a space. Lines are bytes ending at `\n` (a CR stays),
//!   and the slice is 32 bytes, newline included when the line is short.
//!   Fingerprint: `sha1(json.dumps(list, sort_keys=True))`.
//! - **bootstraps**: `sha1(json.dumps(yaml.load(<root>/opnfv/fuel_bootstrap_cli.yaml)))`.
//! - **targetimages**: from the DEA file, `{'packages':
//!   settings.editable.provision.packages, 'repos': settings.editable.repo_setup.repos}`.
//! - **keys**: `sha1(mirrors_hex + kind_hex)` for bootstraps and targetimages.
//!
//! `yaml.load` is PyYAML 3.x with YAML 1.1 typing (module `yaml11`); `json.dumps`
//! is Python 2.7's (module `pyjson`); the output file is what `yaml.safe_dump`
//! writes (module `pyyaml_dump`). The three fingerprints are independent: each is a
//! `Result`, and where the original raised, this module returns an error that
//! names the file and the key or line. The fingerprints file is only written
//! when all three succeed, atomically (temporary file, then rename).

mod pyjson;
mod pyvalue;
mod pyyaml_dump;
mod walk;
mod yaml11;

pub use walk::WalkOrder;

use pyvalue::{Dict, Value};
use sha1::{Digest, Sha1};
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Where the bootstrap config lives, relative to the ISO root.
pub const BOOTSTRAP_CONFIG: &str = "opnfv/fuel_bootstrap_cli.yaml";

/// A SHA-1 fingerprint; displays as 40 lower-case hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 20]);

impl Fingerprint {
    /// SHA-1 of `text`'s bytes.
    pub(crate) fn of(text: &[u8]) -> Self {
        Fingerprint(Sha1::digest(text).into())
    }

    /// The composite cache key `sha1(self_hex + other_hex)`.
    pub(crate) fn combine(&self, kind: &Fingerprint) -> Fingerprint {
        Fingerprint::of(format!("{self}{kind}").as_bytes())
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

impl std::str::FromStr for Fingerprint {
    type Err = hex::FromHexError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 20];
        hex::decode_to_slice(s, &mut out)?;
        Ok(Fingerprint(out))
    }
}

/// Everything that makes the original fail, with the file and the key or line.
#[derive(Debug, thiserror::Error)]
pub enum FingerprintError {
    #[error("cannot read {}: {source} (the original fails here too; check the path and permissions)", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: not a regular file; a file named Release must be readable", path.display())]
    NotAFile { path: PathBuf },
    #[error("{}: MD5Sum entry on line {line} is not valid UTF-8 ({reason}); json.dumps fails on it in the original, fix or remove the Release file", path.display())]
    Md5Encoding {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("{}:{line}:{col}: invalid YAML: {message}", path.display())]
    Yaml {
        path: PathBuf,
        line: usize,
        col: usize,
        message: String,
    },
    #[error("{}: missing key {key} (KeyError in the original); add it to the file", path.display())]
    MissingKey { path: PathBuf, key: String },
    #[error("{}: {key} is a {found}, not a mapping; cannot look up '{child}' in it", path.display())]
    NotAMapping {
        path: PathBuf,
        key: String,
        found: &'static str,
        child: String,
    },
    #[error("{}: {location}: {reason}; json.dumps fails here in the original (quote the value to make it a string)", path.display())]
    Json {
        path: PathBuf,
        location: String,
        reason: String,
    },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The three fingerprints, when none failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprints {
    pub mirrors: Fingerprint,
    pub bootstraps: Fingerprint,
    pub targetimages: Fingerprint,
}

impl Fingerprints {
    /// `sha1(mirrors_hex + bootstraps_hex)`.
    pub fn bootstraps_key(&self) -> Fingerprint {
        self.mirrors.combine(&self.bootstraps)
    }

    /// `sha1(mirrors_hex + targetimages_hex)`.
    pub fn targetimages_key(&self) -> Fingerprint {
        self.mirrors.combine(&self.targetimages)
    }

    /// The bytes of `deploy_cache_fingerprints.yaml` as `yaml.safe_dump` writes them.
    pub fn to_yaml(&self) -> String {
        let (m, b, t) = (
            self.mirrors.to_string(),
            self.bootstraps.to_string(),
            self.targetimages.to_string(),
        );
        pyyaml_dump::safe_dump_flat(&[("bootstraps", &b), ("mirrors", &m), ("targetimages", &t)])
    }
}

/// Each fingerprint on its own: the original computed them independently.
#[derive(Debug)]
pub struct Report {
    pub mirrors: Result<Fingerprint, FingerprintError>,
    pub bootstraps: Result<Fingerprint, FingerprintError>,
    pub targetimages: Result<Fingerprint, FingerprintError>,
}

impl Report {
    /// All three, or the errors of those that failed (in mirrors, bootstraps,
    /// targetimages order, labelled).
    pub fn into_result(self) -> Result<Fingerprints, Vec<(&'static str, FingerprintError)>> {
        match (self.mirrors, self.bootstraps, self.targetimages) {
            (Ok(mirrors), Ok(bootstraps), Ok(targetimages)) => Ok(Fingerprints {
                mirrors,
                bootstraps,
                targetimages,
            }),
            (m, b, t) => Err([("mirrors", m), ("bootstraps", b), ("targetimages", t)]
                .into_iter()
                .filter_map(|(name, r)| r.err().map(|e| (name, e)))
                .collect()),
        }
    }

    /// The composite key for bootstraps, if both inputs succeeded.
    pub fn bootstraps_key(&self) -> Option<Fingerprint> {
        match (&self.mirrors, &self.bootstraps) {
            (Ok(m), Ok(b)) => Some(m.combine(b)),
            _ => None,
        }
    }

    /// The composite key for targetimages, if both inputs succeeded.
    pub fn targetimages_key(&self) -> Option<Fingerprint> {
        match (&self.mirrors, &self.targetimages) {
            (Ok(m), Ok(t)) => Some(m.combine(t)),
            _ => None,
        }
    }
}

/// Compute all three fingerprints for an unpacked ISO and a DEA file.
pub fn compute(iso_root: &Path, dea: &Path, order: WalkOrder) -> Report {
    Report {
        mirrors: mirrors_json(iso_root, order).map(|j| Fingerprint::of(j.as_bytes())),
        bootstraps: bootstraps_json(iso_root).map(|j| Fingerprint::of(j.as_bytes())),
        targetimages: targetimages_json(dea).map(|j| Fingerprint::of(j.as_bytes())),
    }
}

/// The text the mirrors fingerprint hashes (`json.dumps` of the md5 list).
pub fn mirrors_json(iso_root: &Path, order: WalkOrder) -> Result<String, FingerprintError> {
    let mut md5s: Vec<(Vec<u8>, PathBuf, usize)> = Vec::new();
    walk::walk(iso_root, order, |entry| {
        if memchr_find(&entry.dirpath, b"binary") {
            return Ok(());
        }
        for name in &entry.files {
            if name.as_encoded_bytes() == b"Release" {
                let path = PathBuf::from(walk::os_string(walk::join(
                    &entry.dirpath,
                    name.as_encoded_bytes(),
                )));
                read_release(&path, &mut md5s)?;
            }
        }
        Ok(())
    })?;
    let mut values = Vec::with_capacity(md5s.len());
    for (bytes, path, line) in md5s {
        if let Err(reason) = pyjson::decode_utf8_py27(&bytes) {
            return Err(FingerprintError::Md5Encoding { path, line, reason });
        }
        values.push(Value::Bytes(bytes));
    }
    pyjson::dumps(&Value::List(values)).map_err(|e| FingerprintError::Json {
        path: iso_root.to_path_buf(),
        location: "md5sums".into(),
        reason: e.reason,
    })
}

fn memchr_find(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Append the MD5Sum section of one Release file: `(line[1:33], path, line number)`.
fn read_release(
    path: &Path,
    out: &mut Vec<(Vec<u8>, PathBuf, usize)>,
) -> Result<(), FingerprintError> {
    let meta = std::fs::metadata(path).map_err(|source| FingerprintError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    if !meta.is_file() {
        return Err(FingerprintError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    let data = std::fs::read(path).map_err(|source| FingerprintError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut in_section = false;
    for (i, line) in data.split_inclusive(|&b| b == b'\n').enumerate() {
        if in_section {
            if line.first() != Some(&b' ') {
                break;
            }
            let end = line.len().min(33);
            out.push((line[1..end].to_vec(), path.to_path_buf(), i + 1));
        } else if line.starts_with(b"MD5Sum:") {
            in_section = true;
        }
    }
    Ok(())
}

fn load_yaml(path: &Path) -> Result<Value, FingerprintError> {
    let bytes = std::fs::read(path).map_err(|source| FingerprintError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    yaml11::load(&bytes).map_err(|e| FingerprintError::Yaml {
        path: path.to_path_buf(),
        line: e.line,
        col: e.col,
        message: e.message,
    })
}

fn json_of(path: &Path, value: &Value, prefix: &str) -> Result<String, FingerprintError> {
    pyjson::dumps(value).map_err(|e| FingerprintError::Json {
        path: path.to_path_buf(),
        location: match (prefix.is_empty(), e.path.is_empty()) {
            (true, true) => "document".into(),
            (true, false) => e.path,
            (false, true) => prefix.into(),
            (false, false) if e.path.starts_with('[') => format!("{prefix}{}", e.path),
            (false, false) => format!("{prefix}.{}", e.path),
        },
        reason: e.reason,
    })
}

/// The text the bootstraps fingerprint hashes.
pub fn bootstraps_json(iso_root: &Path) -> Result<String, FingerprintError> {
    let path = PathBuf::from(walk::os_string(walk::join(
        iso_root.as_os_str().as_encoded_bytes(),
        BOOTSTRAP_CONFIG.as_bytes(),
    )));
    let value = load_yaml(&path)?;
    json_of(&path, &value, "")
}

/// `d[k1][k2]...` with Python's failures turned into errors naming the key path.
fn lookup<'v>(path: &Path, root: &'v Value, keys: &[&str]) -> Result<&'v Value, FingerprintError> {
    let mut cur = root;
    for (i, key) in keys.iter().enumerate() {
        let here = keys[..i].join(".");
        let Value::Dict(d) = cur else {
            return Err(FingerprintError::NotAMapping {
                path: path.to_path_buf(),
                key: if here.is_empty() {
                    "the document".into()
                } else {
                    here
                },
                found: cur.type_name(),
                child: (*key).to_owned(),
            });
        };
        cur = d.get_str(key).ok_or_else(|| FingerprintError::MissingKey {
            path: path.to_path_buf(),
            key: keys[..=i].join("."),
        })?;
    }
    Ok(cur)
}

/// The text the targetimages fingerprint hashes.
pub fn targetimages_json(dea: &Path) -> Result<String, FingerprintError> {
    const PACKAGES: [&str; 4] = ["settings", "editable", "provision", "packages"];
    const REPOS: [&str; 4] = ["settings", "editable", "repo_setup", "repos"];
    let d = load_yaml(dea)?;
    let packages = lookup(dea, &d, &PACKAGES)?;
    let repos = lookup(dea, &d, &REPOS)?;
    // Encode each part under its DEA key path so a failure names it; the whole
    // is then encoded once more for the exact bytes.
    json_of(dea, packages, &PACKAGES.join("."))?;
    json_of(dea, repos, &REPOS.join("."))?;
    let mut out = Dict::new();
    out.insert(Value::Str("packages".into()), packages.clone());
    out.insert(Value::Str("repos".into()), repos.clone());
    json_of(dea, &Value::Dict(out), "")
}

/// Write the fingerprints file atomically: a temporary file next to `path`,
/// flushed and synced, then renamed over it. On error nothing is left behind.
pub fn write_fingerprints_file(path: &Path, fps: &Fingerprints) -> Result<(), FingerprintError> {
    let err = |source| FingerprintError::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path.file_name().ok_or_else(|| {
        err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the output path has no file name",
        ))
    })?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp.{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(fps.to_yaml().as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(err(e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn release(dir: &Path, body: &[u8]) {
        fs::create_dir_all(dir).unwrap();
        fs::write(dir.join("Release"), body).unwrap();
    }

    fn md5_list(root: &Path) -> String {
        mirrors_json(root, WalkOrder::Sorted).unwrap()
    }

    #[test]
    fn release_section_bounds_cr_and_short_lines() {
        let tmp = tempfile::tempdir().unwrap();
        let r = tmp.path();
        release(
            r,
            b"Origin: x\n 0123456789abcdef0123456789abcdef ignored-before\nMD5Sum:\n \
              0123456789abcdef0123456789abcdef 12 main/a\r\n short\n \n \
              0123456789abcdef0123456789abcdeX\nSHA1:\n ffffffffffffffffffffffffffffffff\nMD5Sum:\n eeee\n",
        );
        assert_eq!(
            md5_list(r),
            r#"["0123456789abcdef0123456789abcdef", "short\n", "\n", "0123456789abcdef0123456789abcdeX"]"#
        );
    }

    #[test]
    fn release_cr_only_is_one_line_and_crlf_keeps_cr_in_short_slices() {
        let tmp = tempfile::tempdir().unwrap();
        release(&tmp.path().join("a"), b"MD5Sum:\r 0123\r abc\r");
        release(&tmp.path().join("b"), b"MD5Sum:\r\n abc\r\n");
        assert_eq!(md5_list(tmp.path()), r#"["abc\r\n"]"#);
    }

    #[test]
    fn release_without_trailing_newline() {
        let tmp = tempfile::tempdir().unwrap();
        release(tmp.path(), b"MD5Sum:\n abc");
        assert_eq!(md5_list(tmp.path()), r#"["abc"]"#);
    }

    #[test]
    fn only_exact_release_outside_binary_dirs() {
        let tmp = tempfile::tempdir().unwrap();
        let r = tmp.path();
        release(&r.join("main/binary-amd64"), b"MD5Sum:\n skipped\n");
        release(&r.join("xbinaryx/sub"), b"MD5Sum:\n skipped-too\n");
        release(&r.join("Binary"), b"MD5Sum:\n case-sensitive\n");
        fs::write(r.join("Release.gpg"), b"MD5Sum:\n no\n").unwrap();
        fs::write(r.join("release"), b"MD5Sum:\n no\n").unwrap();
        fs::write(r.join("InRelease"), b"MD5Sum:\n no\n").unwrap();
        assert_eq!(md5_list(r), r#"["case-sensitive\n"]"#);
    }

    #[test]
    fn binary_in_the_root_path_skips_everything() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("binary-iso");
        release(&root.join("dists"), b"MD5Sum:\n x\n");
        assert_eq!(md5_list(&root), "[]");
        // The same tree through a path without 'binary' counts.
        let link = tmp.path().join("iso");
        std::os::unix::fs::symlink(&root, &link).unwrap();
        assert_eq!(md5_list(&link), r#"["x\n"]"#);
    }

    #[test]
    fn md5_bytes_are_decoded_as_utf8_or_fail_naming_the_line() {
        let tmp = tempfile::tempdir().unwrap();
        release(tmp.path(), "MD5Sum:\n caf\u{e9} \u{1F600}\n".as_bytes());
        assert_eq!(md5_list(tmp.path()), r#"["caf\u00e9 \ud83d\ude00\n"]"#);
        // 31 ASCII bytes + the first byte of a 2-byte sequence: the slice cuts it.
        let mut body = b"x\nMD5Sum:\n ".to_vec();
        body.extend_from_slice(&[b'a'; 31]);
        body.extend_from_slice("\u{e9}\n".as_bytes());
        release(tmp.path(), &body);
        let err = mirrors_json(tmp.path(), WalkOrder::Sorted).unwrap_err();
        assert!(
            matches!(err, FingerprintError::Md5Encoding { line: 3, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("Release"), "{err}");
    }

    #[test]
    fn missing_root_hashes_the_empty_list() {
        let m = mirrors_json(Path::new("/nonexistent/deploycache"), WalkOrder::Sorted).unwrap();
        assert_eq!(m, "[]");
    }

    #[test]
    fn targetimages_missing_key_and_wrong_type_name_the_key() {
        let tmp = tempfile::tempdir().unwrap();
        let dea = tmp.path().join("dea.yaml");
        fs::write(
            &dea,
            "settings:\n  editable:\n    provision: {packages: x}\n",
        )
        .unwrap();
        let e = targetimages_json(&dea).unwrap_err();
        assert!(
            e.to_string().contains("settings.editable.repo_setup"),
            "{e}"
        );
        fs::write(&dea, "settings:\n  editable: [1]\n").unwrap();
        let e = targetimages_json(&dea).unwrap_err();
        assert!(e.to_string().contains("settings.editable is a list"), "{e}");
        fs::write(&dea, "").unwrap();
        assert!(targetimages_json(&dea).is_err());
        fs::write(
            &dea,
            "settings: {editable: {provision: {packages: p}, repo_setup: {repos: [{d: 2016-09-06}]}}}\n",
        )
        .unwrap();
        let e = targetimages_json(&dea).unwrap_err();
        assert!(
            e.to_string()
                .contains("settings.editable.repo_setup.repos[0].d"),
            "{e}"
        );
        // A date elsewhere in the DEA is never hashed, so it is fine.
        fs::write(
            &dea,
            "when: 2016-09-06\nsettings: {editable: {provision: {packages: p}, repo_setup: {repos: []}}}\n",
        )
        .unwrap();
        assert_eq!(
            targetimages_json(&dea).unwrap(),
            r#"{"packages": "p", "repos": []}"#
        );
    }

    #[test]
    fn composite_key_is_sha1_of_concatenated_hex() {
        let m = Fingerprint::of(b"[]");
        assert_eq!(m.to_string(), "97d170e1550eee4afc0af065b78cda302a97674c");
        let b = Fingerprint::of(b"null");
        let want = Fingerprint::of(format!("{m}{b}").as_bytes());
        assert_eq!(m.combine(&b), want);
        assert_eq!(m.to_string().parse::<Fingerprint>().unwrap(), m);
    }

    #[test]
    fn write_is_atomic_and_leaves_nothing_on_error() {
        let tmp = tempfile::tempdir().unwrap();
        let fps = Fingerprints {
            mirrors: Fingerprint::of(b"a"),
            bootstraps: Fingerprint::of(b"b"),
            targetimages: Fingerprint::of(b"c"),
        };
        let out = tmp.path().join("out.yaml");
        write_fingerprints_file(&out, &fps).unwrap();
        assert_eq!(fs::read_to_string(&out).unwrap(), fps.to_yaml());
        let bad = tmp.path().join("no-such-dir/out.yaml");
        assert!(write_fingerprints_file(&bad, &fps).is_err());
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 1);
    }
}
