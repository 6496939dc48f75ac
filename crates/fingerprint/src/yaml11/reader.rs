//! PyYAML 3.x's reader: the bytes decoded (UTF-8, or UTF-16 by its BOM),
//! characters it refuses refused, NEL read as a line break, and escapes
//! naming UTF-16 surrogates kept as code points as on a wide Python 2 build.

use super::{err_at, YamlError};
use crate::pyvalue::PyStr;

pub(super) fn decode(bytes: &[u8]) -> Result<String, YamlError> {
    let utf16 = |be: bool| -> Result<String, YamlError> {
        if !bytes.len().is_multiple_of(2) {
            return Err(YamlError {
                line: 1,
                col: 1,
                message: "UTF-16 stream has an odd number of bytes (truncated data)".into(),
            });
        }
        let units = bytes.chunks_exact(2).map(|c| {
            if be {
                u16::from_be_bytes([c[0], c[1]])
            } else {
                u16::from_le_bytes([c[0], c[1]])
            }
        });
        let mut out = String::new();
        for c in char::decode_utf16(units) {
            match c {
                Ok(c) => out.push(c),
                Err(e) => {
                    return Err(err_at(
                        &out,
                        out.len(),
                        format!(
                            "invalid UTF-16: unpaired surrogate 0x{:04x}",
                            e.unpaired_surrogate()
                        ),
                    ))
                }
            }
        }
        Ok(out)
    };
    if bytes.starts_with(&[0xff, 0xfe]) {
        return utf16(false);
    }
    if bytes.starts_with(&[0xfe, 0xff]) {
        return utf16(true);
    }
    match std::str::from_utf8(bytes) {
        Ok(s) => Ok(s.to_owned()),
        Err(e) => {
            let valid = &bytes[..e.valid_up_to()];
            // The prefix is valid UTF-8 by construction.
            let prefix = String::from_utf8_lossy(valid);
            Err(err_at(
                &prefix,
                prefix.len(),
                format!(
                    "'utf8' codec can't decode byte 0x{:02x} (file is not UTF-8; save it as UTF-8)",
                    bytes[e.valid_up_to()]
                ),
            ))
        }
    }
}

/// PyYAML 3.x `Reader.check_printable`.
pub(super) fn check_printable(text: &str) -> Result<(), YamlError> {
    for (pos, c) in text.char_indices() {
        let ok = matches!(c,
            '\t' | '\n' | '\r' | ' '..='~' | '\u{85}' | '\u{a0}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}');
        if !ok {
            return Err(err_at(
                text,
                pos,
                format!(
                    "unacceptable character #x{:04x}: special characters are not allowed",
                    u32::from(c)
                ),
            ));
        }
    }
    Ok(())
}

/// `text` with each NEL (U+0085) a line feed. PyYAML's reader and scanner
/// treat NEL as a line break everywhere (it ends a plain or quoted scalar's
/// line, a comment and a block scalar's line, counts as a new line for marks
/// and simple keys, and reads back as `\n`), saphyr (YAML 1.2) as an ordinary
/// character; so `a\u{85}b` folds to `a b` in PyYAML. A CR before a NEL is a
/// line break of its own there, so it becomes a line feed too (a CR LF pair
/// would be one break).
pub(super) fn nel_as_line_feed(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains('\u{85}') {
        return std::borrow::Cow::Borrowed(text);
    }
    std::borrow::Cow::Owned(text.replace("\r\u{85}", "\n\n").replace('\u{85}', "\n"))
}

/// Stands in for the backslash of a `\uD800`..`\uDFFF` (or `\U0000D800`..)
/// escape while saphyr parses: saphyr refuses escapes naming a surrogate,
/// PyYAML on a wide build keeps them as code points. An astral character can
/// never be in the input (PyYAML 3.x refuses them, see [`check_printable`]),
/// and it is one character like the backslash, so marks and columns stay put.
pub(super) const SURROGATE_MARK: char = '\u{10fffd}';

/// `text` with the backslash of each escape that names a surrogate replaced by
/// [`SURROGATE_MARK`]. Escapes are recognised the way a double-quoted scalar
/// reads them (`\\` pairs first); in other contexts the mark is turned back
/// into a backslash by [`restore_surrogates`].
pub(super) fn mark_surrogate_escapes(text: &str) -> std::borrow::Cow<'_, str> {
    let bytes = text.as_bytes();
    let mut marks = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            i += 1;
            continue;
        }
        let run = bytes[i..].iter().take_while(|&&b| b == b'\\').count();
        let last = i + run - 1;
        i += run;
        if run % 2 == 1 && surrogate_escape(&text[last + 1..]).is_some() {
            marks.push(last);
        }
    }
    if marks.is_empty() {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 3 * marks.len());
    let mut from = 0;
    for m in marks {
        out.push_str(&text[from..m]);
        out.push(SURROGATE_MARK);
        from = m + 1;
    }
    out.push_str(&text[from..]);
    std::borrow::Cow::Owned(out)
}

/// The surrogate named by `uXXXX` or `UXXXXXXXX` at the start of `rest`, and the escape's length.
fn surrogate_escape(rest: &str) -> Option<(u32, usize)> {
    let digits = match rest.as_bytes().first()? {
        b'u' => 4,
        b'U' => 8,
        _ => return None,
    };
    let hex = rest.get(1..=digits)?;
    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let cp = u32::from_str_radix(hex, 16).ok()?;
    (0xd800..=0xdfff).contains(&cp).then_some((cp, 1 + digits))
}

/// A scalar's value as saphyr read it, back to what PyYAML reads: in a
/// double-quoted scalar each mark + escape is the surrogate it names (then the
/// exact text is returned too, the `String` has U+FFFD in its place); in any
/// other style the mark was a backslash.
pub(super) fn restore_surrogates(value: String, double_quoted: bool) -> (String, Option<PyStr>) {
    if !value.contains(SURROGATE_MARK) {
        return (value, None);
    }
    if !double_quoted {
        return (value.replace(SURROGATE_MARK, "\\"), None);
    }
    let mut exact = PyStr::default();
    let mut rest = value.as_str();
    while let Some(c) = rest.chars().next() {
        rest = &rest[c.len_utf8()..];
        match (c, surrogate_escape(rest)) {
            (SURROGATE_MARK, Some((cp, len))) => {
                exact.push(cp);
                rest = &rest[len..];
            }
            _ => exact.push(u32::from(c)),
        }
    }
    (exact.to_string_lossy(), Some(exact))
}
