//! How the commands print: names made safe for a terminal, table columns,
//! JSON, counts, sizes and times. Every command's output goes through
//! these, so a table or a JSON document looks the same whichever command
//! prints it (and the tests compare it byte for byte).

use std::io::Write;

/// A name as `ls`, `rm` and `export` print it: control characters escaped
/// as in Rust string literals (`\n`, `\u{1b}`), and backslashes doubled so
/// that the escape stays unambiguous. A name is any UTF-8 without `/` or
/// NUL, and printed raw, an escape sequence in it would drive the terminal.
pub fn shown(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if c.is_control() || c == '\\' {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    out
}

/// `s` left-aligned in a column `width` terminal cells wide (padding counted
/// in display width: a CJK character takes two cells, a combining accent none).
pub fn pad(s: &str, width: usize) -> String {
    let w = unicode_width::UnicodeWidthStr::width(s);
    format!("{s}{}", " ".repeat(width.saturating_sub(w)))
}

/// A list as JSON (one object per item), or as a table with a header line.
pub fn print_list<T>(
    json: bool,
    items: &[T],
    to_json: impl Fn(&T) -> serde_json::Value,
    header: String,
    row: impl Fn(&T) -> String,
) -> anyhow::Result<()> {
    if json {
        return print_json(&items.iter().map(to_json).collect::<Vec<_>>());
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "{header}")?;
    for item in items {
        writeln!(out, "{}", row(item))?;
    }
    Ok(())
}

/// `v` as pretty-printed JSON on stdout, with a final newline.
pub fn print_json<T: serde::Serialize + ?Sized>(v: &T) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, v)?;
    writeln!(out)?;
    Ok(())
}

/// "1 file", "2 files": a count with its noun.
pub fn count(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// A byte count in binary units with two decimals ("1.50 MiB"); bytes
/// below 1 KiB exactly ("512 B").
pub fn human(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.2} {}", UNITS[u])
    }
}

/// Unix seconds as RFC 3339 (UTC).
pub fn rfc3339(secs: i64) -> String {
    rfc3339_ns(secs.saturating_mul(1_000_000_000))
}

/// Unix nanoseconds as RFC 3339 (UTC); the bare number when out of range.
pub fn rfc3339_ns(ns: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(ns as i128)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ns.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_take_the_noun_in_the_right_number() {
        assert_eq!(count(0, "file"), "0 files");
        assert_eq!(count(1, "file"), "1 file");
        assert_eq!(count(2, "pack file"), "2 pack files");
    }

    #[test]
    fn names_are_shown_with_control_characters_and_backslashes_escaped() {
        assert_eq!(shown("a\nb\\c\u{1b}[31m"), "a\\nb\\\\c\\u{1b}[31m");
        assert_eq!(shown("k\u{e9}rnel \u{65e5}"), "k\u{e9}rnel \u{65e5}");
    }

    #[test]
    fn columns_are_padded_by_display_width() {
        assert_eq!(pad("ab", 4), "ab  ");
        assert_eq!(pad("\u{65e5}\u{672c}", 6), "\u{65e5}\u{672c}  ");
        assert_eq!(pad("e\u{301}", 3), "e\u{301}  ");
        assert_eq!(pad("toolong", 3), "toolong");
    }

    #[test]
    fn sizes_and_times_print_as_documented() {
        assert_eq!(human(0), "0 B");
        assert_eq!(human(1023), "1023 B");
        assert_eq!(human(1536), "1.50 KiB");
        assert_eq!(human(5 << 30), "5.00 GiB");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339_ns(1_500_000_000_250_000_000),
            "2017-07-14T02:40:00.25Z"
        );
    }
}
