//! Fingerprint vectors from tests/fixtures/fingerprints (copied from the
//! shared set made by the Python reference; see its README).
//!
//! Every case directory is run twice: through the library API and through the
//! built binary (`fingerprint --sorted --json`). Expected values were computed
//! by the Python reference; nothing here derives them from this crate.

use deploycache::fingerprint::{self, Fingerprint, WalkOrder};
use serde_json::Value as Json;
use std::path::{Path, PathBuf};
use std::process::Command;

fn vectors_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fingerprints");
    assert!(
        dir.is_dir(),
        "fingerprint vectors not found at {}: they are part of the repository (a partial checkout?)",
        dir.display()
    );
    dir
}

struct Case {
    name: String,
    dir: PathBuf,
    expected: Json,
}

impl Case {
    fn root(&self) -> PathBuf {
        self.dir
            .join(self.expected["inputs"]["root"].as_str().unwrap())
    }
    fn dea(&self) -> PathBuf {
        self.dir
            .join(self.expected["inputs"]["dea"].as_str().unwrap())
    }
    fn want(&self, field: &str) -> Option<&str> {
        self.expected[field].as_str()
    }
    fn is_error(&self) -> bool {
        self.expected["error"].as_bool().unwrap()
    }
}

fn cases() -> Vec<Case> {
    let dir = vectors_dir();
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let expected_path = path.join("expected.json");
        if !expected_path.is_file() {
            continue;
        }
        let expected: Json =
            serde_json::from_str(&std::fs::read_to_string(&expected_path).unwrap()).unwrap();
        assert_eq!(expected["walk"], "sorted", "{}", path.display());
        out.push(Case {
            name: path.file_name().unwrap().to_string_lossy().into_owned(),
            dir: path,
            expected,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    assert!(
        out.len() >= 26,
        "expected at least 26 vector cases under {}, found {}",
        dir.display(),
        out.len()
    );
    out
}

fn hex(r: &Result<Fingerprint, fingerprint::FingerprintError>) -> Option<String> {
    r.as_ref().ok().map(ToString::to_string)
}

#[test]
fn every_vector_through_the_library() {
    let mut failures = Vec::new();
    for case in cases() {
        let report = fingerprint::compute(&case.root(), &case.dea(), WalkOrder::Sorted);
        let got = [
            ("mirrors", hex(&report.mirrors)),
            ("bootstraps", hex(&report.bootstraps)),
            ("targetimages", hex(&report.targetimages)),
            (
                "composite_bootstraps",
                report.bootstraps_key().map(|f| f.to_string()),
            ),
            (
                "composite_targetimages",
                report.targetimages_key().map(|f| f.to_string()),
            ),
        ];
        for (field, value) in &got {
            if value.as_deref() != case.want(field) {
                failures.push(format!(
                    "{}: {field}: got {value:?}, want {:?}",
                    case.name,
                    case.want(field)
                ));
            }
        }
        // The hashed text, for a readable diff when a digest differs.
        let texts = [
            (
                "mirrors",
                fingerprint::mirrors_json(&case.root(), WalkOrder::Sorted).ok(),
            ),
            (
                "bootstraps",
                fingerprint::bootstraps_json(&case.root()).ok(),
            ),
            (
                "targetimages",
                fingerprint::targetimages_json(&case.dea()).ok(),
            ),
        ];
        for (field, text) in texts {
            let want = case.expected["hashed"][field].as_str();
            if text.as_deref() != want {
                failures.push(format!(
                    "{}: hashed {field}: got {text:?}, want {want:?}",
                    case.name
                ));
            }
        }
        match (report.into_result(), case.is_error()) {
            (Ok(fps), false) => {
                let want = case.want("fingerprints_yaml").unwrap();
                if fps.to_yaml() != want {
                    failures.push(format!(
                        "{}: yaml {:?} != {want:?}",
                        case.name,
                        fps.to_yaml()
                    ));
                }
            }
            (Err(errors), true) => {
                for (name, e) in errors {
                    let msg = e.to_string();
                    if msg.contains('\n') || !case.expected["errors"][name].is_string() {
                        failures.push(format!("{}: unexpected {name} error: {msg}", case.name));
                    }
                }
            }
            (Ok(_), true) => failures.push(format!("{}: succeeded, original raises", case.name)),
            (Err(e), false) => failures.push(format!("{}: failed: {e:?}", case.name)),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_vector_through_the_binary() {
    let tmp = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for case in cases() {
        let out = tmp.path().join(format!("{}.yaml", case.name));
        let run = Command::new(env!("CARGO_BIN_EXE_deploycache"))
            .arg("fingerprint")
            .arg("--iso-root")
            .arg(case.root())
            .arg("--dea")
            .arg(case.dea())
            .arg("--output")
            .arg(&out)
            .args(["--sorted", "--json"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&run.stderr);
        if case.is_error() {
            if run.status.code() != Some(1) {
                failures.push(format!(
                    "{}: exit {:?}, want 1",
                    case.name,
                    run.status.code()
                ));
            }
            if out.exists() {
                failures.push(format!(
                    "{}: wrote {} despite the error",
                    case.name,
                    out.display()
                ));
            }
            let lines: Vec<&str> = stderr.lines().collect();
            if lines.len() != 1 || !lines[0].starts_with("deploycache: ") {
                failures.push(format!(
                    "{}: stderr is not one error line: {stderr:?}",
                    case.name
                ));
            }
            continue;
        }
        if !run.status.success() {
            failures.push(format!(
                "{}: exit {:?}: {stderr}",
                case.name,
                run.status.code()
            ));
            continue;
        }
        let got: Json = match serde_json::from_slice(&run.stdout) {
            Ok(j) => j,
            Err(e) => {
                failures.push(format!("{}: stdout is not JSON ({e})", case.name));
                continue;
            }
        };
        for (field, want_field) in [
            ("mirrors", "mirrors"),
            ("bootstraps", "bootstraps"),
            ("targetimages", "targetimages"),
            ("bootstraps_key", "composite_bootstraps"),
            ("targetimages_key", "composite_targetimages"),
        ] {
            if got[field].as_str() != case.want(want_field) {
                failures.push(format!(
                    "{}: {field}: got {}, want {:?}",
                    case.name,
                    got[field],
                    case.want(want_field)
                ));
            }
        }
        let written = std::fs::read(&out).unwrap_or_default();
        let want = case.want("fingerprints_yaml").unwrap().as_bytes();
        if written != want {
            failures.push(format!(
                "{}: {} holds {:?}, want {:?}",
                case.name,
                out.display(),
                String::from_utf8_lossy(&written),
                String::from_utf8_lossy(want)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn plain_output_prints_both_keys() {
    let case = cases().into_iter().find(|c| !c.is_error()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_deploycache"))
        .arg("fingerprint")
        .arg("--iso-root")
        .arg(case.root())
        .arg("--dea")
        .arg(case.dea())
        .arg("--sorted")
        .current_dir(tmp.path())
        .output()
        .unwrap();
    assert!(run.status.success());
    let stdout = String::from_utf8(run.stdout).unwrap();
    assert_eq!(
        stdout,
        format!(
            "bootstraps_key: {}\ntargetimages_key: {}\n",
            case.want("composite_bootstraps").unwrap(),
            case.want("composite_targetimages").unwrap()
        )
    );
    // Default output file in the working directory, byte for byte.
    let written =
        std::fs::read_to_string(tmp.path().join("deploy_cache_fingerprints.yaml")).unwrap();
    assert_eq!(written, case.want("fingerprints_yaml").unwrap());
}

/// Build a small ISO tree whose sorted and OS orders may differ.
fn make_iso(root: &Path, dirs: &[&str]) {
    for (i, d) in dirs.iter().enumerate() {
        let dir = root.join(d);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("Release"), format!("MD5Sum:\n {i:032x} 1 f\n")).unwrap();
    }
    std::fs::create_dir_all(root.join("opnfv")).unwrap();
    std::fs::write(root.join("opnfv/fuel_bootstrap_cli.yaml"), "a: 1\n").unwrap();
}

#[test]
fn sorted_walk_differs_from_full_path_order() {
    // Independent of the vectors: a/Release, a/b/Release, a-b/Release in that
    // order (full-path sorting would put a-b first).
    let tmp = tempfile::tempdir().unwrap();
    let iso = tmp.path().join("iso");
    make_iso(&iso, &["a-b", "a/b", "a", "B"]);
    let got = fingerprint::mirrors_json(&iso, WalkOrder::Sorted).unwrap();
    let ids = |i: u32| format!("\"{i:032x}\"");
    assert_eq!(
        got,
        format!("[{}, {}, {}, {}]", ids(3), ids(2), ids(1), ids(0))
    );
}

#[test]
fn os_walk_order_holds_the_same_entries() {
    let tmp = tempfile::tempdir().unwrap();
    let iso = tmp.path().join("iso");
    let dirs: Vec<String> = (0..30)
        .map(|i| format!("d{}/x{}", (i * 7) % 30, i))
        .collect();
    let refs: Vec<&str> = dirs.iter().map(String::as_str).collect();
    make_iso(&iso, &refs);
    let mut os: Vec<String> = fingerprint::mirrors_json(&iso, WalkOrder::Os)
        .unwrap()
        .split(", ")
        .map(|s| s.trim_matches(['[', ']']).to_owned())
        .collect();
    let mut sorted: Vec<String> = fingerprint::mirrors_json(&iso, WalkOrder::Sorted)
        .unwrap()
        .split(", ")
        .map(|s| s.trim_matches(['[', ']']).to_owned())
        .collect();
    os.sort();
    sorted.sort();
    assert_eq!(os, sorted);
}

#[test]
fn missing_dea_is_one_line_exit_1_and_no_file() {
    let tmp = tempfile::tempdir().unwrap();
    let iso = tmp.path().join("iso");
    make_iso(&iso, &["dists"]);
    let out = tmp.path().join("fp.yaml");
    let run = Command::new(env!("CARGO_BIN_EXE_deploycache"))
        .arg("fingerprint")
        .arg("--iso-root")
        .arg(&iso)
        .arg("--dea")
        .arg(tmp.path().join("missing-dea.yaml"))
        .arg("--output")
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(1));
    let stderr = String::from_utf8(run.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("deploycache: "), "{stderr}");
    assert!(stderr.contains("missing-dea.yaml"), "{stderr}");
    assert!(run.stdout.is_empty());
    assert!(!out.exists());
}

#[test]
fn invalid_yaml_names_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let iso = tmp.path().join("iso");
    make_iso(&iso, &["dists"]);
    std::fs::write(
        iso.join("opnfv/fuel_bootstrap_cli.yaml"),
        "a: 1\nb: [unclosed\n",
    )
    .unwrap();
    let e = fingerprint::bootstraps_json(&iso).unwrap_err().to_string();
    assert!(e.contains("fuel_bootstrap_cli.yaml:"), "{e}");
    assert!(!e.contains('\n'), "{e}");
}

/// Why one generated case's outcome differs from the legacy tool's, or `None`.
fn generated_case_mismatch(iso: &Path, yaml: &Path, want: &Json) -> Option<String> {
    std::fs::copy(yaml, iso.join(fingerprint::BOOTSTRAP_CONFIG)).unwrap();
    let report = fingerprint::compute(iso, yaml, WalkOrder::Sorted);
    let mut problems = Vec::new();
    for (field, got, text) in [
        (
            "bootstraps",
            &report.bootstraps,
            fingerprint::bootstraps_json(iso),
        ),
        (
            "targetimages",
            &report.targetimages,
            fingerprint::targetimages_json(yaml),
        ),
    ] {
        let want_hex = want[field].as_str();
        match (got, want_hex) {
            (Ok(fp), Some(w)) if fp.to_string() == w => {
                let text = text.unwrap();
                if Some(text.as_str()) != want["hashed"][field].as_str() {
                    problems.push(format!("{field}: same digest, other text {text:?}"));
                }
            }
            (Err(_), None) => {}
            (Ok(fp), Some(_)) => problems.push(format!(
                "{field}: got {fp} hashing {:?}, want hashing {}",
                text.unwrap_or_default(),
                want["hashed"][field]
            )),
            (Ok(fp), None) => problems.push(format!(
                "{field}: got {fp}, want an error ({})",
                want["errors"][field]
            )),
            (Err(e), Some(w)) => problems.push(format!(
                "{field}: got error ({e}), want {w} hashing {}",
                want["hashed"][field]
            )),
        }
    }
    let got_yaml = report.into_result().ok().map(|f| f.to_yaml());
    if got_yaml.as_deref() != want["fingerprints_yaml"].as_str() {
        problems.push(format!(
            "fingerprints file {got_yaml:?}, want {}",
            want["fingerprints_yaml"]
        ));
    }
    (!problems.is_empty()).then(|| problems.join("; "))
}

/// The generated corpus (tests/fixtures/fingerprints-generated, made by
/// scripts/fingerprint-corpus/regenerate.sh under real Python 2.7 + PyYAML):
/// each YAML file is both the bootstrap config and the DEA of an ISO without
/// Release files, and every fingerprint, hashed text, failure and the bytes of
/// the fingerprints file must be the legacy tool's. The cases listed in
/// known-differences.txt are the known gaps; each must still differ, so the
/// list shrinks as they are fixed.
#[test]
fn every_generated_case_matches_the_legacy_tool() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fingerprints-generated");
    let expected: Json =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let known: std::collections::BTreeSet<String> =
        std::fs::read_to_string(dir.join("known-differences.txt"))
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(|l| l.split_whitespace().next().unwrap().to_owned())
            .collect();
    let cases = expected["cases"].as_object().unwrap();
    assert!(cases.len() >= 500, "only {} generated cases", cases.len());
    let tmp = tempfile::tempdir().unwrap();
    let iso = tmp.path().join("iso");
    std::fs::create_dir_all(iso.join("opnfv")).unwrap();
    let mut failures = Vec::new();
    for (name, want) in cases {
        let yaml = dir.join("cases").join(format!("{name}.yaml"));
        match (
            generated_case_mismatch(&iso, &yaml, want),
            known.contains(name),
        ) {
            (Some(why), false) => failures.push(format!("{name}: {why}")),
            (None, true) => failures.push(format!(
                "{name}: matches the legacy tool now; remove it from known-differences.txt"
            )),
            _ => {}
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} generated cases disagree with the legacy tool:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
