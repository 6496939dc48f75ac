//! `yaml.safe_dump(mapping, default_flow_style=False)` for a flat mapping of
//! short ASCII identifiers to short ASCII words (the fingerprints file).
//!
//! Invariants:
//! - Keys are written in sorted order (PyYAML 3.x sorts mapping keys), one
//!   `key: value` line each, `\n` line ends, nothing else (no `---`, no `...`).
//! - A value is written plain unless PyYAML's resolver would read it back as
//!   something other than a string (e.g. an all-digit digest is an int), or it
//!   is empty; then it is single-quoted, as PyYAML's emitter does.
//! - Inputs outside that domain (non-alphanumeric text) are rejected by the
//!   caller's types: digests are `[0-9a-f]{40}`.

use super::yaml11::resolve_plain;

/// Render `{key: value, ...}` as PyYAML's block-style `safe_dump`.
pub fn safe_dump_flat(pairs: &[(&str, &str)]) -> String {
    let mut sorted: Vec<&(&str, &str)> = pairs.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let mut out = String::new();
    for (k, v) in sorted {
        out.push_str(&scalar(k));
        out.push_str(": ");
        out.push_str(&scalar(v));
        out.push('\n');
    }
    out
}

fn scalar(s: &str) -> String {
    debug_assert!(s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
    if s.is_empty() || resolve_plain(s) != "tag:yaml.org,2002:str" {
        format!("'{s}'")
    } else {
        s.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_plain_lines() {
        assert_eq!(
            safe_dump_flat(&[
                ("mirrors", "ab12"),
                ("bootstraps", "cd34"),
                ("targetimages", "0789")
            ]),
            "bootstraps: cd34\nmirrors: ab12\ntargetimages: 0789\n"
        );
    }

    #[test]
    fn digests_that_resolve_as_numbers_are_quoted() {
        let all_digits = "1234567890123456789012345678901234567890";
        let octal = "0123456701234567012345670123456701234567";
        let not_octal = "0123456789012345678901234567890123456789";
        assert_eq!(
            safe_dump_flat(&[("a", all_digits), ("b", octal), ("c", not_octal)]),
            format!("a: '{all_digits}'\nb: '{octal}'\nc: {not_octal}\n")
        );
    }
}
