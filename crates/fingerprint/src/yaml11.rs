//! `yaml.load` as PyYAML 3.1x does it on Python 2.7: YAML 1.1 implicit typing
//! and PyYAML's constructors, on top of `saphyr-parser`.
//!
//! Why `saphyr-parser`: it is the maintained successor of yaml-rust (same
//! authors as yaml-rust2, which now tracks it), it is a pure event parser with
//! no schema of its own, and its events carry exactly what PyYAML's resolver
//! needs and serde-based crates throw away: the scalar style (plain vs quoted
//! vs block), the explicit tag, anchor/alias ids and source positions.
//!
//! Invariants:
//! - Input is bytes: a UTF-16 BOM selects UTF-16, anything else must be UTF-8
//!   (a UTF-8 BOM is skipped); characters PyYAML 3.x refuses (`#x0`, other
//!   controls, astral code points, surrogates) are errors, as in the original.
//! - Only *plain* scalars without a tag, or with the non-specific tag `!` (a
//!   PyYAML quirk), go through the implicit resolver; quoted and block scalars
//!   are strings.
//! - The resolver is PyYAML's regexps, transcribed: bool is exactly
//!   `yes|Yes|YES|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF`
//!   (not `y`/`n`), ints include `0b`, `0x`, octal `0755` and base 60 `1:20`,
//!   floats need a dot (`1.0e+3` is a float, `1e3` a string) or are
//!   `.inf`/`.nan`, `~`/`null`/empty are null, `2016-09-06` is a timestamp.
//!   Like Python's `$`, a match may be followed by one final newline.
//! - Merge keys `<<` (a mapping or a list of mappings) are flattened like
//!   `SafeConstructor.flatten_mapping`: merged pairs first, earlier mappings in
//!   a list winning, the mapping's own keys overriding.
//! - Aliases expand to copies. An alias to an enclosing collection (a value
//!   that contains itself) loads as in PyYAML: where the copy would meet the
//!   collection again it holds [`Value::Circular`], on which json.dumps fails
//!   as Python's does ("Circular reference detected"), so a cycle in a part
//!   that is never hashed costs nothing; only a tuple directly inside itself
//!   fails at load, as PyYAML's eager tuple constructor does. Redefining an anchor name is an error, as in PyYAML's
//!   composer (saphyr allows it, so the names are read back from the source).
//!   More than one document is an error; an empty stream is `None`.
//!
//! - Escapes naming UTF-16 surrogates (`"\ud83d"`, `"\ud83d\ude00"`) give
//!   one code point each, as on a wide build (see [`SURROGATE_MARK`]).
//!
//! - NEL (U+0085) is a line break, as in PyYAML's reader (see
//!   [`nel_as_line_feed`]); a quoted scalar's continuation lines need no
//!   indentation ([`compose_as_pyyaml`]); a block scalar whose last line ends
//!   the file without a break, blanks only or not, adds no final break
//!   ([`unbreak_last_line_at_eof`]);
//!   every `.nan` is one object, so `.nan` keys are one key ([`PYYAML_NAN`]);
//!   a plain scalar in a flow collection holding `:` or `?` is refused
//!   ([`pyyaml_flow_plain_error`]); an implicit key whose `:` is more than
//!   1024 characters after its start is refused in flow context too
//!   ([`simple_key_too_long`]); a tab outside quoted scalars, block scalar
//!   content and comments is refused ([`pyyaml_tab`]): PyYAML skips only
//!   spaces between tokens,
//!   but a quoted scalar's continuation line may start with tabs, and a
//!   comment may follow a quoted scalar or a flow collection without a
//!   blank ([`compose_as_pyyaml`]).
//!
//! Known gaps (documented, not reproduced): PyYAML treats LS/PS as line
//! breaks (kept in the value), saphyr (YAML 1.2) as ordinary characters: a
//! mapping key holding one is refused as PyYAML refuses it
//! ([`is_implicit_key`]), but a plain scalar or comment broken by one is not
//! reproduced; a tab after a `#` that is not a comment (`a: b#\tc`) is
//! refused by PyYAML, accepted here (any `#` is taken as a comment there,
//! erring toward loading);
//! looking a DEA key up *through* a
//! cycle (`settings: &s {editable: *s, ...}`) finds the placeholder, not the
//! mapping, and fails; saphyr may accept other documents PyYAML's scanner
//! refuses (tests/fixtures/fingerprints-generated/known-differences.txt
//! lists any the generated corpus finds); `!!python/object*`
//! and `!!python/name` tags are refused; where both fail, messages differ.

use super::pyvalue::{BigInt, Dict, PyStr, Value, PYYAML_NAN};
use saphyr_parser::{Event, Parser, ScalarStyle, Span};
use std::collections::{HashMap, HashSet};
use std::rc::Rc;

/// A YAML problem at a 1-based line and column of the decoded text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    pub line: usize,
    pub col: usize,
    pub message: String,
}

/// Deepest nesting accepted; CPython's recursion limit stops the original
/// well before this matters for real files.
const MAX_DEPTH: usize = 512;
/// Most nodes that alias expansion may construct (guards against alias bombs).
const MAX_NODES: usize = 5_000_000;

const TAG_PREFIX: &str = "tag:yaml.org,2002:";

/// Load a single-document YAML stream from bytes, as `yaml.load(open(path))`.
pub fn load(bytes: &[u8]) -> Result<Value, YamlError> {
    let text = decode(bytes)?;
    check_printable(&text)?;
    let text = nel_as_line_feed(&text);
    let text = mark_surrogate_escapes(&text);
    let (root, anchors) = compose_as_pyyaml(&text)?;
    match root {
        None => Ok(Value::None),
        Some(node) => Constructor {
            anchors,
            ..Constructor::default()
        }
        .construct(&node, 0),
    }
}

fn err_at(text: &str, byte_pos: usize, message: String) -> YamlError {
    let before = &text.as_bytes()[..byte_pos.min(text.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |p| p + 1);
    let col = String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count()
        + 1;
    YamlError { line, col, message }
}

fn decode(bytes: &[u8]) -> Result<String, YamlError> {
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
fn check_printable(text: &str) -> Result<(), YamlError> {
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
fn nel_as_line_feed(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains('\u{85}') {
        return std::borrow::Cow::Borrowed(text);
    }
    std::borrow::Cow::Owned(text.replace("\r\u{85}", "\n\n").replace('\u{85}', "\n"))
}

// ---------------------------------------------------------------- surrogates

/// Stands in for the backslash of a `\uD800`..`\uDFFF` (or `\U0000D800`..)
/// escape while saphyr parses: saphyr refuses escapes naming a surrogate,
/// PyYAML on a wide build keeps them as code points. An astral character can
/// never be in the input (PyYAML 3.x refuses them, see [`check_printable`]),
/// and it is one character like the backslash, so marks and columns stay put.
const SURROGATE_MARK: char = '\u{10fffd}';

/// `text` with the backslash of each escape that names a surrogate replaced by
/// [`SURROGATE_MARK`]. Escapes are recognised the way a double-quoted scalar
/// reads them (`\\` pairs first); in other contexts the mark is turned back
/// into a backslash by [`restore_surrogates`].
fn mark_surrogate_escapes(text: &str) -> std::borrow::Cow<'_, str> {
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
fn restore_surrogates(value: String, double_quoted: bool) -> (String, Option<PyStr>) {
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

// ---------------------------------------------------------------- composing

#[derive(Debug)]
struct Node {
    tag: Option<String>,
    line: usize,
    col: usize,
    kind: NodeKind,
}

#[derive(Debug)]
enum NodeKind {
    Scalar {
        value: String,
        plain: bool,
        /// The exact text when it holds surrogates (`value` has U+FFFD there).
        exact: Option<PyStr>,
    },
    Seq(Vec<Rc<Node>>),
    Map(Vec<(Rc<Node>, Rc<Node>)>),
    /// An alias to a collection still being composed (it contains itself):
    /// the anchor id, resolved once the document is composed.
    Recursive(usize),
}

enum Frame {
    Seq {
        node: Node,
        anchor: usize,
        items: Vec<Rc<Node>>,
    },
    Map {
        node: Node,
        anchor: usize,
        pairs: Vec<(Rc<Node>, Rc<Node>)>,
        key: Option<Rc<Node>>,
    },
}

/// The anchor name in node properties starting at `props` (`&name`, possibly
/// after a tag: `!!str &name`).
fn anchor_name_at(props: &str) -> Option<&str> {
    let mut rest = props;
    if rest.starts_with('!') {
        let end = rest.find(|c: char| c.is_whitespace()).unwrap_or(rest.len());
        rest = rest[end..].trim_start();
    }
    let name = rest.strip_prefix('&')?;
    let end = name
        .find(|c: char| c.is_whitespace() || ",[]{}".contains(c))
        .unwrap_or(name.len());
    Some(&name[..end])
}

fn tag_string(tag: Option<&saphyr_parser::Tag>) -> Option<String> {
    tag.map(|t| format!("{}{}", t.handle, t.suffix).replace(SURROGATE_MARK, "\\"))
}

/// saphyr-parser's error for a quoted scalar's continuation line indented
/// less than the block it is in (checked by a test: see
/// `quoted_continuation_lines_need_no_indentation`).
const UNDER_INDENTED_QUOTED: &str = "invalid indentation in quoted scalar";

/// saphyr-parser's error for a tab in the leading blanks of a quoted
/// scalar's continuation line, left of the enclosing block's indentation (its
/// only use in saphyr-parser 0.3; checked by a test: see
/// `a_line_starting_with_a_tab_outside_scalar_text_is_refused_as_pyyaml_refuses_it`).
const TAB_INDENTED_QUOTED: &str = "tab cannot be used as indentation";

/// saphyr-parser's error for a `#` right after a token (YAML 1.2 wants a
/// blank before a comment; PyYAML reads a comment wherever a token may
/// start).
const UNSPACED_COMMENT: &str = "comments must be separated from other tokens by whitespace";

/// `text` with a space before the `#` at the 1-based `line` and `col`, when
/// it follows a quoted scalar or a flow collection (where PyYAML reads a
/// comment), or `None` (after a block scalar's header PyYAML refuses it too).
fn space_comment_at(text: &str, line: usize, col: usize) -> Option<String> {
    let line_start = if line <= 1 {
        0
    } else {
        text.match_indices('\n').nth(line - 2)?.0 + 1
    };
    let (at, c) = text[line_start..].char_indices().nth(col - 1)?;
    let at = line_start + at;
    let after_token = text[..at].ends_with(['\'', '"', ']', '}']);
    (c == '#' && after_token).then(|| format!("{} {}", &text[..at], &text[at..]))
}

/// [`compose`], except that a quoted scalar's continuation lines may be
/// indented less than the enclosing block, and with tabs, as PyYAML's scanner
/// allows (it only refuses a document separator there). Where saphyr refuses
/// such a scalar, its continuation lines are indented to its opening quote's
/// column, or the tab it names becomes a space, and the text is read again:
/// leading blanks of a continuation line are not part of the value in either
/// reader, so the value is unchanged; only columns on those lines move.
fn compose_as_pyyaml(text: &str) -> Result<Composed, YamlError> {
    let mut padded: Option<String> = None;
    // Each round indents one more scalar, which has at least one line break,
    // replaces one tab or spaces one comment.
    for _ in 0..=text.lines().count() + text.matches(['\t', '#']).count() {
        let current = padded.as_deref().unwrap_or(text);
        let next = match compose(current) {
            Err(e) if e.message == UNDER_INDENTED_QUOTED => {
                indent_quoted_continuations(current, e.line, e.col).ok_or(e)
            }
            Err(e) if e.message == TAB_INDENTED_QUOTED => untab_at(current, e.line, e.col).ok_or(e),
            Err(e) if e.message == UNSPACED_COMMENT => {
                space_comment_at(current, e.line, e.col).ok_or(e)
            }
            result => return result,
        };
        padded = Some(next?);
    }
    compose(padded.as_deref().unwrap_or(text))
}

/// `text` with the tab at the 1-based `line` and `col` replaced by a space,
/// or `None` if there is no tab there.
fn untab_at(text: &str, line: usize, col: usize) -> Option<String> {
    let line_start = if line <= 1 {
        0
    } else {
        text.match_indices('\n').nth(line - 2)?.0 + 1
    };
    let (at, c) = text[line_start..].char_indices().nth(col - 1)?;
    (c == '\t').then(|| {
        let at = line_start + at;
        format!("{} {}", &text[..at], &text[at + 1..])
    })
}

/// `text` with the continuation lines of the quoted scalar opening at the
/// 1-based `line` and `col` indented by `col` spaces, or `None` if there is no
/// quoted scalar there or one of its lines starts with a document separator
/// (an error in PyYAML too).
fn indent_quoted_continuations(text: &str, line: usize, col: usize) -> Option<String> {
    let line_start = if line <= 1 {
        0
    } else {
        text.match_indices('\n').nth(line - 2)?.0 + 1
    };
    let open = line_start + text[line_start..].char_indices().nth(col - 1)?.0;
    let quote = text[open..]
        .chars()
        .next()
        .filter(|c| matches!(c, '"' | '\''))?;
    let pad = " ".repeat(col);
    let mut out = String::with_capacity(text.len() + 8 * col);
    out.push_str(&text[..=open]);
    let mut chars = text[open + 1..].char_indices().peekable();
    let mut end = text.len();
    while let Some((i, c)) = chars.next() {
        out.push(c);
        match c {
            '\\' if quote == '"' => {
                // An escaped line break is still a line break.
                if let Some(&(_, next)) = chars.peek() {
                    if next != '\n' && next != '\r' {
                        out.push(next);
                        chars.next();
                    }
                }
            }
            '\'' if quote == '\'' && chars.peek().map(|&(_, n)| n) == Some('\'') => {
                out.push('\'');
                chars.next();
            }
            c if c == quote => {
                end = open + 1 + i + c.len_utf8();
                break;
            }
            '\n' => {
                let rest = &text[open + 1 + i + 1..];
                let separator = (rest.starts_with("---") || rest.starts_with("..."))
                    && rest[3..].chars().next().is_none_or(|c| c.is_whitespace());
                if separator {
                    return None;
                }
                out.push_str(&pad);
            }
            _ => {}
        }
    }
    out.push_str(&text[end..]);
    Some(out)
}

/// A block scalar whose last line ends the file without a line break has no
/// final line break in PyYAML (its clip and keep chomping add the break that
/// was read, none); saphyr adds one when that line is indented at least as
/// deep as the content, even when it holds only blanks. So `a: |`, `  x` at
/// the very end reads `x`, not `x\n`, and `a: |`, `  x`, `  ` reads `x\n`,
/// not `x\n\n`. saphyr's extra break comes before the kept trailing breaks,
/// all of which are `\n`, so dropping the last one is the same. Without
/// content, saphyr's keep chomping (`|+`) counts blanks right after the
/// header as a line (`\n`); PyYAML reads nothing there.
fn unbreak_last_line_at_eof(text: &str, span: &Span, value: &mut String) {
    if text.ends_with(['\n', '\r']) || !value.ends_with('\n') {
        return;
    }
    let reaches_end = span.end.index() >= text.chars().count();
    let mut lines = text.rsplit(['\n', '\r']);
    let last = lines.next().unwrap_or(text);
    let unbreak = match block_scalar_indent(text, value) {
        Some(indent) => spaces(last) >= indent.max(1),
        None => value == "\n" && lines.next().is_some_and(|header| !header.trim().is_empty()),
    };
    if reaches_end && unbreak {
        value.pop();
    }
}

/// The content indentation of a block scalar that ends the text, from its
/// last line holding more than spaces: that line's spaces in the source less
/// those left in the value (an explicit indentation indicator or a more
/// indented line keeps the rest; a folded line that joined others starts at
/// the indentation, as its last source line does). `None` when the value has
/// no such line.
fn block_scalar_indent(text: &str, value: &str) -> Option<usize> {
    let last_with_text = |s: &str, breaks: &[char]| {
        s.rsplit(breaks)
            .find(|l| !l.trim_start_matches(' ').is_empty())
            .map(spaces)
    };
    let in_value = last_with_text(value, &['\n'])?;
    last_with_text(text, &['\n', '\r'])?.checked_sub(in_value)
}

/// Leading spaces of `line` (the only indentation YAML counts).
fn spaces(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

/// Whether the mapping key starting at byte `start` (at its properties) is an
/// implicit ("simple") key, not one after a `?` indicator. PyYAML refuses a
/// simple key spanning lines and counts LS and PS as line breaks, saphyr
/// neither; a key whose text holds one is refused (`compose`). Anything
/// before the key other than blanks and line breaks back to a `?` counts as
/// implicit; a `?` ending a previous plain scalar is read as explicit, which
/// errs toward loading.
fn is_implicit_key(text: &str, start: usize) -> bool {
    !text[..start]
        .trim_end_matches([' ', '\t', '\n', '\r'])
        .ends_with('?')
}

/// The byte offset of the first tab that PyYAML's scanner would meet where a
/// token may start, or `None`. PyYAML skips only spaces between tokens
/// (scanner.py, `scan_to_next_token`; a plain scalar ends at a tab too), so
/// such a tab is an error, while YAML 1.2 and saphyr allow tabs as
/// separation. A tab is text only inside a quoted scalar (`quoted`: byte
/// ranges of the events, from properties to trailing blanks), on a block
/// scalar's content line from its content indentation on (`block_scalars`:
/// the scalar's start and the 1-based column of the block collection it is
/// in, 0 at the top, from which PyYAML's minimum indentation follows), and in
/// a comment.
fn pyyaml_tab(
    text: &str,
    quoted: &[(usize, usize)],
    block_scalars: &[(usize, usize)],
) -> Option<usize> {
    let line_starts: Vec<usize> = std::iter::once(0)
        .chain(text.match_indices(['\n', '\r']).map(|(i, _)| i + 1))
        .filter(|&i| i < text.len())
        .collect();
    let line_at = |start: usize| {
        let rest = &text[start..];
        &rest[..rest.find(['\n', '\r']).unwrap_or(rest.len())]
    };
    // Byte ranges where a tab is scalar text.
    let mut text_ranges: Vec<(usize, usize)> = Vec::new();
    for &(start, end) in quoted {
        // The span may start at properties and end after blanks; the text
        // is from the opening quote to the closing one.
        let Some(open) = text[start..end].find(['"', '\'']).map(|i| start + i) else {
            continue;
        };
        let close = text[open + 1..end]
            .rfind(&text[open..=open])
            .map_or(end, |i| open + 1 + i + 1);
        text_ranges.push((open, close));
    }
    for &(start, parent_col) in block_scalars {
        // saphyr's span starts at the content; the header is the line
        // holding the start before it, or the nearest line above with more
        // than spaces.
        let mut header_line = line_starts.partition_point(|&l| l <= start) - 1;
        if !text[line_starts[header_line]..start].contains(['|', '>']) {
            while header_line > 0 {
                header_line -= 1;
                if !line_at(line_starts[header_line])
                    .trim_start_matches(' ')
                    .is_empty()
                {
                    break;
                }
            }
        }
        let first = header_line + 1;
        let header = line_at(line_starts[header_line]);
        // scan_block_scalar: the minimum is one more than the enclosing
        // indentation (at least 1); a digit adds to it, else the deepest
        // leading run of spaces up to the first line with other text.
        let min_indent = parent_col.max(1);
        // The indicator: a '|' or '>' followed only by chomping and
        // indentation flags up to a blank or the line's end.
        let explicit = header.match_indices(['|', '>']).find_map(|(i, _)| {
            let flags = &header[i + 1..];
            let rest =
                flags.trim_start_matches(|c: char| c == '+' || c == '-' || c.is_ascii_digit());
            if !(rest.is_empty() || rest.starts_with([' ', '\t'])) {
                return None;
            }
            Some(
                flags[..flags.len() - rest.len()]
                    .chars()
                    .find_map(|c| c.to_digit(10)),
            )
        });
        let indent = match explicit.flatten() {
            Some(d) => min_indent + d as usize - 1,
            None => {
                let mut deepest = 0;
                for &l in &line_starts[first..] {
                    let line = line_at(l);
                    deepest = deepest.max(spaces(line));
                    if !line.trim_start_matches(' ').is_empty() {
                        break;
                    }
                }
                min_indent.max(deepest)
            }
        };
        for &l in &line_starts[first..] {
            let line = line_at(l);
            let rest = line.trim_start_matches(' ');
            if spaces(line) < indent {
                if rest.is_empty() {
                    continue;
                }
                break;
            }
            text_ranges.push((l + indent, l + line.len()));
        }
    }
    let is_text = |at: usize| text_ranges.iter().any(|&(s, e)| s <= at && at < e);
    text.match_indices('\t').map(|(at, _)| at).find(|&at| {
        let line_start = text[..at].rfind(['\n', '\r']).map_or(0, |i| i + 1);
        // A '#' before it outside scalar text may start a comment (PyYAML
        // reads one wherever a token may start); erring toward loading, any
        // such '#' counts.
        let after_comment = text[line_start..at]
            .match_indices('#')
            .any(|(i, _)| !is_text(line_start + i));
        !is_text(at) && !after_comment
    })
}

/// PyYAML's scanner forgets a possible simple key once it has read more than
/// this many characters past the key's first one (scanner.py,
/// `stale_possible_simple_keys`); saphyr has no such limit.
const SIMPLE_KEY_MAX_CHARS: usize = 1024;

/// Whether the implicit key starting at byte `start` (at its properties) and
/// ending at byte `end` has its `:` more than [`SIMPLE_KEY_MAX_CHARS`]
/// characters after `start`. PyYAML then drops the key and meets the `:`
/// without one, an error in every context ("could not find expected ':'",
/// "mapping values are not allowed here", "expected ',' or '}', but got
/// ':'"); only spaces can lie between a simple key and its `:` there.
/// saphyr refuses such keys by itself in block context, not in flow context.
fn simple_key_too_long(text: &str, start: usize, end: usize) -> bool {
    let rest = &text[end..];
    // A flow collection's end event may span its closing bracket or not.
    let rest = rest.strip_prefix([']', '}']).unwrap_or(rest);
    let after = rest.trim_start_matches(' ');
    let colon = text.len() - after.len();
    after.starts_with(':') && text[start..colon].chars().count() > SIMPLE_KEY_MAX_CHARS
}

/// Whether the collection whose start event ends at byte `end` opened with
/// `[` or `{`. saphyr's events do not say; a flow start's span ends just
/// after its bracket, a block start's is empty at its first key or `-`,
/// which never follows a bracket (a block collection cannot be inside a
/// flow one, and the caller only asks outside flow context).
fn opens_flow(text: &str, end: usize) -> bool {
    text[..end].ends_with(['[', '{'])
}

/// The source of a plain scalar event, less its properties: saphyr's span
/// starts at the first `&anchor` or `!tag` (whose text may hold `:`).
fn plain_scalar_source(source: &str) -> (usize, &str) {
    let mut rest = source;
    loop {
        let trimmed = rest.trim_start_matches([' ', '\t', '\r', '\n']);
        let property = if let Some(verbatim) = trimmed.strip_prefix("!<") {
            verbatim.find('>').map(|i| 2 + i + 1)
        } else if trimmed.starts_with(['&', '!']) {
            Some(
                trimmed
                    .find([' ', '\t', '\r', '\n'])
                    .unwrap_or(trimmed.len()),
            )
        } else {
            None
        };
        match property {
            Some(len) => rest = &trimmed[len..],
            None => return (source.len() - trimmed.len(), trimmed),
        }
    }
}

/// PyYAML's scanner ends a plain scalar in a flow collection at any of
/// `,:?[]{}` (scanner.py, `scan_plain`); saphyr (YAML 1.2) keeps a `:`
/// followed by a non-space and any `?` inside it. PyYAML then refuses the
/// `:` ("found unexpected ':'") and its parser the `?` (a key indicator
/// after a node), so such a scalar is an error, at the first of them. Returns
/// its byte offset in `scalar` and the message.
fn pyyaml_flow_plain_error(scalar: &str) -> Option<(usize, &'static str)> {
    let mut chars = scalar.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let next = chars.peek().map(|&(_, n)| n);
        match c {
            // After LS or PS, PyYAML ends the scalar at the ':' without
            // complaint (a known gap: saphyr reads them as characters).
            ':' if !matches!(next, Some('\u{2028}' | '\u{2029}')) => {
                return Some((
                    i,
                    "while scanning a plain scalar: found unexpected ':' (PyYAML 3.x refuses \
                     ':' followed by a non-space inside [...] or {...}; quote the scalar)",
                ))
            }
            '?' => {
                return Some((
                    i,
                    "while parsing a flow collection: expected ',' or its end, but got '?' \
                     (PyYAML ends a plain scalar at '?' inside [...] or {...}; quote the scalar)",
                ))
            }
            _ => {}
        }
    }
    None
}

/// The document's root node, and its anchors by saphyr's id (for [`NodeKind::Recursive`]).
type Composed = (Option<Rc<Node>>, HashMap<usize, Rc<Node>>);

fn compose(text: &str) -> Result<Composed, YamlError> {
    let mut parser = Parser::new_from_str(text);
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchors: HashMap<usize, Rc<Node>> = HashMap::new();
    let mut open_anchors: HashSet<usize> = HashSet::new();
    let mut root: Option<Rc<Node>> = None;
    let mut documents = 0usize;
    // Anchor names seen in the document, with where they were first defined.
    let mut anchor_names: HashMap<String, (usize, usize)> = HashMap::new();
    let mut char_offsets: Option<Vec<usize>> = None;
    // The depth of the outermost flow collection open, if any: everything
    // inside it is in PyYAML's flow context.
    let mut flow_from: Option<usize> = None;
    // Where each open collection starts (a char index), parallel to `stack`.
    let mut starts: Vec<usize> = Vec::new();
    // Quoted scalars (start and end char index) and block scalars (start
    // char index and the enclosing block collection's 1-based column, 0 at
    // the top), for [`pyyaml_tab`].
    let mut quoted: Vec<(usize, usize)> = Vec::new();
    let mut block_scalars: Vec<(usize, usize)> = Vec::new();
    let at = |span: &Span, message: String| YamlError {
        line: span.start.line(),
        col: span.start.col() + 1,
        message,
    };
    loop {
        let (event, span) = match parser.next_event() {
            None => break,
            Some(Ok(ev)) => ev,
            Some(Err(e)) => {
                return Err(YamlError {
                    line: e.marker().line(),
                    col: e.marker().col() + 1,
                    message: e.info().to_owned(),
                })
            }
        };
        let entering_flow = matches!(event, Event::SequenceStart(..) | Event::MappingStart(..))
            && flow_from.is_none();
        let flow_plain =
            matches!(event, Event::Scalar(_, ScalarStyle::Plain, ..)) && flow_from.is_some();
        if entering_flow || flow_plain {
            let offsets =
                char_offsets.get_or_insert_with(|| text.char_indices().map(|(i, _)| i).collect());
            let byte = |i: usize| offsets.get(i).copied().unwrap_or(text.len());
            let (start, end) = (byte(span.start.index()), byte(span.end.index()));
            if entering_flow && opens_flow(text, end) {
                flow_from = Some(stack.len());
            }
            if flow_plain {
                let (skipped, scalar) = plain_scalar_source(&text[start..end]);
                if let Some((i, message)) = pyyaml_flow_plain_error(scalar) {
                    return Err(err_at(text, start + skipped + i, message.into()));
                }
            }
        }
        let is_seq_start = matches!(event, Event::SequenceStart(..));
        let defined_anchor = match &event {
            Event::Scalar(_, _, anchor, _)
            | Event::SequenceStart(anchor, _)
            | Event::MappingStart(anchor, _) => *anchor,
            _ => 0,
        };
        // The start of the collection this event closes (a key's start for
        // the simple key limit).
        let collection_start = if matches!(event, Event::SequenceEnd | Event::MappingEnd) {
            starts.pop()
        } else {
            None
        };
        let complete: Option<(Rc<Node>, usize)> = match event {
            Event::StreamStart | Event::Nothing | Event::DocumentEnd => None,
            Event::StreamEnd => break,
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    return Err(at(
                        &span,
                        "expected a single document in the stream, but found another document"
                            .into(),
                    ));
                }
                anchors.clear();
                None
            }
            Event::Alias(id) => {
                if open_anchors.contains(&id) {
                    // PyYAML's composer registers an anchor before its
                    // children, so the graph gets a cycle; whether that fails
                    // is the constructor's and json's business.
                    Some((
                        Rc::new(Node {
                            tag: None,
                            line: span.start.line(),
                            col: span.start.col() + 1,
                            kind: NodeKind::Recursive(id),
                        }),
                        0,
                    ))
                } else {
                    match anchors.get(&id) {
                        Some(node) => Some((Rc::clone(node), 0)),
                        None => return Err(at(&span, "found undefined alias".into())),
                    }
                }
            }
            Event::Scalar(value, style, anchor, tag) => {
                match style {
                    ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted => {
                        quoted.push((span.start.index(), span.end.index()));
                    }
                    ScalarStyle::Literal | ScalarStyle::Folded => {
                        let parent = match stack.last() {
                            Some(Frame::Seq { node, .. } | Frame::Map { node, .. }) => node.col,
                            None => 0,
                        };
                        block_scalars.push((span.start.index(), parent));
                    }
                    ScalarStyle::Plain => {}
                }
                let mut value = value.into_owned();
                if matches!(style, ScalarStyle::Literal | ScalarStyle::Folded) {
                    unbreak_last_line_at_eof(text, &span, &mut value);
                }
                let (value, exact) = restore_surrogates(value, style == ScalarStyle::DoubleQuoted);
                Some((
                    Rc::new(Node {
                        tag: tag_string(tag.as_deref()),
                        line: span.start.line(),
                        col: span.start.col() + 1,
                        kind: NodeKind::Scalar {
                            value,
                            plain: style == ScalarStyle::Plain,
                            exact,
                        },
                    }),
                    anchor,
                ))
            }
            Event::SequenceStart(anchor, tag) | Event::MappingStart(anchor, tag) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(at(
                        &span,
                        format!("collections nested deeper than {MAX_DEPTH} levels"),
                    ));
                }
                if anchor > 0 {
                    open_anchors.insert(anchor);
                }
                starts.push(span.start.index());
                let node = Node {
                    tag: tag_string(tag.as_deref()),
                    line: span.start.line(),
                    col: span.start.col() + 1,
                    kind: NodeKind::Seq(Vec::new()),
                };
                stack.push(if is_seq_start {
                    Frame::Seq {
                        node,
                        anchor,
                        items: Vec::new(),
                    }
                } else {
                    Frame::Map {
                        node,
                        anchor,
                        pairs: Vec::new(),
                        key: None,
                    }
                });
                None
            }
            Event::SequenceEnd | Event::MappingEnd => match stack.pop() {
                Some(Frame::Seq {
                    mut node,
                    anchor,
                    items,
                }) => {
                    node.kind = NodeKind::Seq(items);
                    Some((Rc::new(node), anchor))
                }
                Some(Frame::Map {
                    mut node,
                    anchor,
                    pairs,
                    ..
                }) => {
                    node.kind = NodeKind::Map(pairs);
                    Some((Rc::new(node), anchor))
                }
                None => return Err(at(&span, "unbalanced collection end".into())),
            },
        };
        if defined_anchor > 0 {
            // PyYAML's composer refuses to redefine an anchor within a document.
            let offsets =
                char_offsets.get_or_insert_with(|| text.char_indices().map(|(i, _)| i).collect());
            let byte = offsets
                .get(span.start.index())
                .copied()
                .unwrap_or(text.len());
            if let Some(name) = anchor_name_at(&text[byte..]) {
                let here = (span.start.line(), span.start.col() + 1);
                if let Some(first) = anchor_names.insert(name.to_owned(), here) {
                    return Err(at(
                        &span,
                        format!(
                            "found duplicate anchor {name:?}; first occurrence at line {}, column {}",
                            first.0, first.1
                        ),
                    ));
                }
            }
        }
        if let (Some((node, _)), Some(Frame::Map { key: None, .. })) = (&complete, stack.last()) {
            let offsets =
                char_offsets.get_or_insert_with(|| text.char_indices().map(|(i, _)| i).collect());
            let byte = |i: usize| offsets.get(i).copied().unwrap_or(text.len());
            let (start, end) = (byte(span.start.index()), byte(span.end.index()));
            let key_start = collection_start.map_or(start, byte);
            if is_implicit_key(text, key_start) && simple_key_too_long(text, key_start, end) {
                return Err(err_at(
                    text,
                    key_start,
                    format!(
                        "while scanning a simple key: could not find expected ':' (PyYAML reads \
                         a mapping key only if its ':' is at most {SIMPLE_KEY_MAX_CHARS} \
                         characters after the key's start; write a longer key as an explicit \
                         key, '? key' with ': value' on the next line)"
                    ),
                ));
            }
            if matches!(node.kind, NodeKind::Scalar { .. })
                && is_implicit_key(text, start)
                && text[start..end].contains(['\u{2028}', '\u{2029}'])
            {
                return Err(at(
                    &span,
                    "while scanning a simple key: could not find expected ':' (a mapping key \
                     must be on one line, and PyYAML reads U+2028 and U+2029 as line breaks; \
                     write them as \\L and \\P in a double-quoted key)"
                        .into(),
                ));
            }
        }
        if flow_from == Some(stack.len()) {
            flow_from = None;
        }
        if let Some((node, anchor)) = complete {
            if anchor > 0 {
                open_anchors.remove(&anchor);
                anchors.insert(anchor, Rc::clone(&node));
            }
            match stack.last_mut() {
                Some(Frame::Seq { items, .. }) => items.push(node),
                Some(Frame::Map { pairs, key, .. }) => match key.take() {
                    Some(k) => pairs.push((k, node)),
                    None => *key = Some(node),
                },
                None => root = Some(node),
            }
        }
    }
    // Only a text holding a tab can hold one PyYAML refuses.
    if text.contains('\t') {
        let offsets =
            char_offsets.get_or_insert_with(|| text.char_indices().map(|(i, _)| i).collect());
        let byte = |i: usize| offsets.get(i).copied().unwrap_or(text.len());
        let quoted: Vec<_> = quoted.iter().map(|&(s, e)| (byte(s), byte(e))).collect();
        let block_scalars: Vec<_> = block_scalars.iter().map(|&(s, p)| (byte(s), p)).collect();
        if let Some(at_tab) = pyyaml_tab(text, &quoted, &block_scalars) {
            return Err(err_at(
                text,
                at_tab,
                "while scanning for the next token: found character '\\t' that cannot start \
                 any token (PyYAML 3.x indents with spaces only: replace the tab with spaces)"
                    .into(),
            ));
        }
    }
    Ok((root, anchors))
}

// ---------------------------------------------------------------- resolving

/// The tag PyYAML's resolver gives a plain scalar (full `tag:yaml.org,2002:…`).
pub fn resolve_plain(value: &str) -> &'static str {
    let v = value.strip_suffix('\n').unwrap_or(value);
    let candidates = [value, v];
    let any = |f: fn(&[u8]) -> bool| candidates.iter().any(|c| f(c.as_bytes()));
    if any(is_bool) {
        "tag:yaml.org,2002:bool"
    } else if any(is_float) {
        "tag:yaml.org,2002:float"
    } else if any(is_int) {
        "tag:yaml.org,2002:int"
    } else if any(|s| s == b"<<") {
        "tag:yaml.org,2002:merge"
    } else if any(|s| matches!(s, b"~" | b"null" | b"Null" | b"NULL" | b"")) {
        "tag:yaml.org,2002:null"
    } else if any(is_timestamp) {
        "tag:yaml.org,2002:timestamp"
    } else if any(|s| s == b"=") {
        "tag:yaml.org,2002:value"
    } else {
        "tag:yaml.org,2002:str"
    }
}

fn is_bool(s: &[u8]) -> bool {
    matches!(
        s,
        b"yes"
            | b"Yes"
            | b"YES"
            | b"no"
            | b"No"
            | b"NO"
            | b"true"
            | b"True"
            | b"TRUE"
            | b"false"
            | b"False"
            | b"FALSE"
            | b"on"
            | b"On"
            | b"ON"
            | b"off"
            | b"Off"
            | b"OFF"
    )
}

/// Consume `pred`-matching bytes from `s[i..]`, returning the new index.
fn span_of(s: &[u8], mut i: usize, pred: impl Fn(u8) -> bool) -> usize {
    while i < s.len() && pred(s[i]) {
        i += 1;
    }
    i
}

fn digit_(b: u8) -> bool {
    b.is_ascii_digit() || b == b'_'
}

fn skip_sign(s: &[u8]) -> usize {
    usize::from(matches!(s.first(), Some(b'-' | b'+')))
}

/// `(?::[0-5]?[0-9])+` starting at `i`; returns the end or `None`.
fn base60_tail(s: &[u8], mut i: usize) -> Option<usize> {
    let mut groups = 0;
    while i < s.len() && s[i] == b':' {
        let a = *s.get(i + 1)?;
        if !a.is_ascii_digit() {
            return None;
        }
        match s.get(i + 2) {
            Some(b) if b.is_ascii_digit() && a <= b'5' => i += 3,
            _ => i += 2,
        }
        groups += 1;
    }
    (groups > 0).then_some(i)
}

/// `(?:[eE][-+][0-9]+)?` at `i`.
fn exponent(s: &[u8], i: usize) -> usize {
    if i < s.len() && matches!(s[i], b'e' | b'E') {
        if let Some(b'-' | b'+') = s.get(i + 1) {
            let end = span_of(s, i + 2, |b| b.is_ascii_digit());
            if end > i + 2 {
                return end;
            }
        }
    }
    i
}

fn is_float(s: &[u8]) -> bool {
    let n = s.len();
    let signed = skip_sign(s);
    // [-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?
    if s.get(signed).is_some_and(u8::is_ascii_digit) {
        let i = span_of(s, signed + 1, digit_);
        if s.get(i) == Some(&b'.') {
            let j = span_of(s, i + 1, digit_);
            if exponent(s, j) == n {
                return true;
            }
        }
        // [-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*
        if let Some(j) = base60_tail(s, i) {
            if s.get(j) == Some(&b'.') && span_of(s, j + 1, digit_) == n {
                return true;
            }
        }
    }
    // \.[0-9_]+(?:[eE][-+][0-9]+)?
    if s.first() == Some(&b'.') {
        let j = span_of(s, 1, digit_);
        if j > 1 && exponent(s, j) == n {
            return true;
        }
    }
    // [-+]?\.(?:inf|Inf|INF) | \.(?:nan|NaN|NAN)
    matches!(&s[signed..], b".inf" | b".Inf" | b".INF") || matches!(s, b".nan" | b".NaN" | b".NAN")
}

fn is_int(s: &[u8]) -> bool {
    let n = s.len();
    let r = &s[skip_sign(s)..];
    let all =
        |from: usize, pred: fn(u8) -> bool| r.len() > from && r[from..].iter().all(|&b| pred(b));
    if r.starts_with(b"0b") {
        return all(2, |b| matches!(b, b'0' | b'1' | b'_'));
    }
    if r.starts_with(b"0x") {
        return all(2, |b| b.is_ascii_hexdigit() || b == b'_');
    }
    if r == b"0" {
        return true;
    }
    if r.first() == Some(&b'0') {
        return all(1, |b| matches!(b, b'0'..=b'7' | b'_'));
    }
    if r.first().is_some_and(|b| (b'1'..=b'9').contains(b)) {
        let i = span_of(s, n - r.len() + 1, digit_);
        return i == n || base60_tail(s, i) == Some(n);
    }
    false
}

fn is_timestamp(s: &[u8]) -> bool {
    let d = |i: usize| s.get(i).is_some_and(u8::is_ascii_digit);
    if !(d(0) && d(1) && d(2) && d(3) && s.get(4) == Some(&b'-')) {
        return false;
    }
    // [0-9]{4}-[0-9][0-9]-[0-9][0-9]
    if s.len() == 10 && d(5) && d(6) && s[7] == b'-' && d(8) && d(9) {
        return true;
    }
    parse_timestamp_fields(s, false).is_some()
}

/// Fields of a timestamp. `loose` is the constructor's regexp (which also
/// allows a date with one-digit month/day); otherwise the resolver's second
/// alternative (date and time).
struct Timestamp {
    year: u32,
    month: u32,
    day: u32,
    time: Option<(u32, u32, u32, u32, i64)>, // h, m, s, microseconds, tz offset minutes
}

fn parse_timestamp_fields(s: &[u8], loose: bool) -> Option<Timestamp> {
    let num =
        |a: usize, b: usize| -> Option<u32> { std::str::from_utf8(&s[a..b]).ok()?.parse().ok() };
    let digits_1_2 = |i: usize| -> Option<usize> {
        let j = span_of(s, i, |b| b.is_ascii_digit());
        (j > i && j - i <= 2).then_some(j)
    };
    // `[0-9]{4}-`: checked before slicing, an explicit `!!timestamp` may hold anything.
    if s.len() < 5 || !s[..4].iter().all(u8::is_ascii_digit) || s[4] != b'-' {
        return None;
    }
    let year = num(0, 4)?;
    let i = 5;
    let j = digits_1_2(i)?;
    let month = num(i, j)?;
    if s.get(j) != Some(&b'-') {
        return None;
    }
    let k = digits_1_2(j + 1)?;
    let day = num(j + 1, k)?;
    if k == s.len() {
        return loose.then_some(Timestamp {
            year,
            month,
            day,
            time: None,
        });
    }
    // (?:[Tt]|[ \t]+)
    let mut p = k;
    if matches!(s[p], b'T' | b't') {
        p += 1;
    } else {
        let q = span_of(s, p, |b| b == b' ' || b == b'\t');
        if q == p {
            return None;
        }
        p = q;
    }
    let hq = digits_1_2(p)?;
    let hour = num(p, hq)?;
    let two = |i: usize| -> Option<u32> {
        (s.get(i) == Some(&b':')
            && s.get(i + 1)?.is_ascii_digit()
            && s.get(i + 2)?.is_ascii_digit())
        .then(|| num(i + 1, i + 3))
        .flatten()
    };
    let minute = two(hq)?;
    let second = two(hq + 3)?;
    p = hq + 6;
    let mut micros = 0u32;
    if s.get(p) == Some(&b'.') {
        let q = span_of(s, p + 1, |b| b.is_ascii_digit());
        let mut frac: String = std::str::from_utf8(&s[p + 1..q])
            .ok()?
            .chars()
            .take(6)
            .collect();
        while frac.len() < 6 {
            frac.push('0');
        }
        micros = frac.parse().ok()?;
        p = q;
    }
    let mut tz = 0i64;
    if p < s.len() {
        let q = span_of(s, p, |b| b == b' ' || b == b'\t');
        match s.get(q) {
            Some(b'Z') if q + 1 == s.len() => {}
            Some(&sign @ (b'-' | b'+')) => {
                let hh = digits_1_2(q + 1)?;
                let th = i64::from(num(q + 1, hh)?);
                let mut end = hh;
                let mut tm = 0i64;
                if s.get(hh) == Some(&b':') {
                    if !(s.get(hh + 1)?.is_ascii_digit() && s.get(hh + 2)?.is_ascii_digit()) {
                        return None;
                    }
                    tm = i64::from(num(hh + 1, hh + 3)?);
                    end = hh + 3;
                }
                if end != s.len() {
                    return None;
                }
                tz = (th * 60 + tm) * if sign == b'-' { -1 } else { 1 };
            }
            _ => return None,
        }
    }
    Some(Timestamp {
        year,
        month,
        day,
        time: Some((hour, minute, second, micros, tz)),
    })
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400) => {
            29
        }
        2 => 28,
        _ => 0,
    }
}

/// `construct_yaml_timestamp`: a `datetime.date`/`datetime.datetime` repr, or
/// the ValueError Python raises for an impossible date.
fn construct_timestamp(value: &str) -> Result<String, String> {
    let s = value.strip_suffix('\n').unwrap_or(value).as_bytes();
    let ts =
        parse_timestamp_fields(s, true).ok_or_else(|| format!("{value:?} is not a timestamp"))?;
    if !(1..=9999).contains(&ts.year) {
        return Err(format!("year {} is out of range", ts.year));
    }
    if !(1..=12).contains(&ts.month) {
        return Err("month must be in 1..12".into());
    }
    if ts.day < 1 || ts.day > days_in_month(ts.year, ts.month) {
        return Err("day is out of range for month".into());
    }
    match ts.time {
        None => Ok(format!(
            "datetime.date({}, {}, {})",
            ts.year, ts.month, ts.day
        )),
        Some((h, m, sec, us, _tz)) => {
            if h > 23 {
                return Err("hour must be in 0..23".into());
            }
            if m > 59 {
                return Err("minute must be in 0..59".into());
            }
            if sec > 59 {
                return Err("second must be in 0..59".into());
            }
            Ok(format!(
                "datetime.datetime({}, {}, {}, {h}, {m}, {sec}, {us})",
                ts.year, ts.month, ts.day
            ))
        }
    }
}

// ---------------------------------------------------------------- constructing

/// Python's `str.strip()` whitespace for `int()`/`float()` arguments.
fn py_strip(s: &str) -> &str {
    s.trim_matches(|c: char| matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c'))
}

/// Python 2 `int(s, radix)`.
fn py_int(s: &str, radix: u32) -> Option<BigInt> {
    let s = py_strip(s);
    let (neg, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let prefix = match radix {
        16 => Some(["0x", "0X"]),
        8 => Some(["0o", "0O"]),
        2 => Some(["0b", "0B"]),
        _ => None,
    };
    if let Some(prefixes) = prefix {
        for p in prefixes {
            if let Some(r) = rest.strip_prefix(p) {
                rest = r;
                break;
            }
        }
    }
    if rest.is_empty() {
        return None;
    }
    let mut v = BigInt::zero();
    for c in rest.chars() {
        v.mul_add(radix, c.to_digit(radix)?);
    }
    Some(if neg { v.negate() } else { v })
}

/// Python 2 `float(s)`.
fn py_float(s: &str) -> Option<f64> {
    let s = py_strip(s);
    if s.contains('_') {
        return None;
    }
    s.parse().ok()
}

/// `SafeConstructor.construct_yaml_int`.
fn construct_int(raw: &str) -> Result<BigInt, String> {
    let fail = || format!("invalid literal for int(): {raw:?}");
    if !raw.is_ascii() {
        return Err(fail());
    }
    let value: String = raw.chars().filter(|&c| c != '_').collect();
    let first = *value.as_bytes().first().ok_or_else(fail)?;
    let negative = first == b'-';
    let v = if matches!(first, b'+' | b'-') {
        &value[1..]
    } else {
        &value[..]
    };
    let apply = |x: BigInt| if negative { x.negate() } else { x };
    if v == "0" {
        return Ok(BigInt::zero());
    }
    let parsed = if let Some(rest) = v.strip_prefix("0b") {
        py_int(rest, 2)
    } else if let Some(rest) = v.strip_prefix("0x") {
        py_int(rest, 16)
    } else if v.starts_with('0') {
        py_int(v, 8)
    } else if v.contains(':') {
        sexagesimal_int(v)
    } else {
        py_int(v, 10)
    };
    parsed.map(apply).ok_or_else(fail)
}

/// `1:20` = 1*60 + 20, each part parsed by `int()`.
fn sexagesimal_int(v: &str) -> Option<BigInt> {
    let parts: Vec<BigInt> = v.split(':').map(|p| py_int(p, 10)).collect::<Option<_>>()?;
    let small: Option<Vec<u32>> = parts[1..]
        .iter()
        .map(|p| {
            let s = p.to_string();
            s.parse::<u32>().ok().filter(|&x| x < 1_000_000_000)
        })
        .collect();
    match (small, parts[0] >= BigInt::zero()) {
        (Some(small), true) => {
            let mut acc = parts[0].clone();
            for d in small {
                acc.mul_add(60, 0);
                acc.add_magnitude(&BigInt::from_i64(i64::from(d)));
            }
            Some(acc)
        }
        _ => {
            // Negative or huge parts only arise from explicit `!!int`; do it in i128.
            let mut acc: i128 = 0;
            for p in &parts {
                let p: i128 = p.to_string().parse().ok()?;
                acc = acc.checked_mul(60)?.checked_add(p)?;
            }
            let mut out = BigInt::zero();
            for c in acc.unsigned_abs().to_string().chars() {
                out.mul_add(10, c.to_digit(10)?);
            }
            Some(if acc < 0 { out.negate() } else { out })
        }
    }
}

/// `SafeConstructor.construct_yaml_float`.
fn construct_float(raw: &str) -> Result<f64, String> {
    let fail = || format!("invalid literal for float(): {raw:?}");
    let value: String = raw
        .chars()
        .filter(|&c| c != '_')
        .collect::<String>()
        .to_lowercase();
    let first = *value.as_bytes().first().ok_or_else(fail)?;
    let sign = if first == b'-' { -1.0 } else { 1.0 };
    let v = if matches!(first, b'+' | b'-') {
        &value[1..]
    } else {
        &value[..]
    };
    if v == ".inf" {
        return Ok(sign * f64::INFINITY);
    }
    if v == ".nan" {
        return Ok(PYYAML_NAN);
    }
    if v.contains(':') {
        let mut digits: Vec<f64> = v
            .split(':')
            .map(py_float)
            .collect::<Option<_>>()
            .ok_or_else(fail)?;
        digits.reverse();
        let mut base = 1.0f64;
        let mut acc = 0.0f64;
        for d in digits {
            acc += d * base;
            base *= 60.0;
        }
        return Ok(sign * acc);
    }
    py_float(v).map(|f| sign * f).ok_or_else(fail)
}

/// Python 2 `str(value).decode('base64')` (binascii.a2b_base64).
fn decode_base64(value: &str) -> Result<Vec<u8>, String> {
    if !value.is_ascii() {
        return Err("non-ASCII character in base64 data".into());
    }
    let sextet = |b: u8| -> Option<u32> {
        Some(match b {
            b'A'..=b'Z' => u32::from(b - b'A'),
            b'a'..=b'z' => u32::from(b - b'a') + 26,
            b'0'..=b'9' => u32::from(b - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        })
    };
    let bytes = value.as_bytes();
    let mut out = Vec::new();
    let (mut acc, mut bits, mut quad) = (0u32, 0u32, 0u32);
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'=' {
            let next_valid = bytes[i + 1..]
                .iter()
                .find(|&&c| c == b'=' || sextet(c).is_some());
            if quad < 2 || (quad == 2 && next_valid != Some(&b'=')) {
                continue;
            }
            bits = 0;
            quad = 0;
            break;
        }
        let Some(v) = sextet(b) else { continue };
        quad = (quad + 1) % 4;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    if bits != 0 || quad != 0 {
        return Err("Incorrect padding".into());
    }
    Ok(out)
}

/// A mapping pair after merge flattening; `true` when the key was `=` (a string key).
type FlatPair = (Rc<Node>, Rc<Node>, bool);

#[derive(Default)]
struct Constructor {
    nodes: usize,
    /// Targets of [`NodeKind::Recursive`] aliases.
    anchors: HashMap<usize, Rc<Node>>,
    /// The collection nodes being constructed, outermost first, and whether
    /// PyYAML builds each lazily (a generator that yields the empty object
    /// before its items; every collection but `!!python/tuple`).
    path: Vec<(*const Node, bool)>,
}

fn tag(suffix: &str) -> String {
    format!("{TAG_PREFIX}{suffix}")
}

impl Constructor {
    fn error(node: &Node, message: String) -> YamlError {
        YamlError {
            line: node.line,
            col: node.col,
            message,
        }
    }

    /// The node's effective tag, as PyYAML's composer resolves it.
    fn node_tag(node: &Node) -> String {
        match (&node.kind, node.tag.as_deref()) {
            (NodeKind::Scalar { value, plain, .. }, t) => match t {
                None if *plain => resolve_plain(value).to_owned(),
                Some("!") => resolve_plain(value).to_owned(),
                None => tag("str"),
                Some(t) => t.to_owned(),
            },
            (NodeKind::Seq(_), None | Some("!")) => tag("seq"),
            (NodeKind::Map(_), None | Some("!")) => tag("map"),
            (_, Some(t)) => t.to_owned(),
            // Callers resolve aliases first; an unresolved one has no constructor.
            (NodeKind::Recursive(_), None) => String::new(),
        }
    }

    fn scalar(node: &Node) -> Result<&str, YamlError> {
        match &node.kind {
            NodeKind::Scalar { value, .. } => Ok(value),
            NodeKind::Seq(_) => Err(Self::error(
                node,
                "expected a scalar node, but found sequence".into(),
            )),
            NodeKind::Map(_) | NodeKind::Recursive(_) => Err(Self::error(
                node,
                "expected a scalar node, but found mapping".into(),
            )),
        }
    }

    /// A scalar's exact text, surrogates included.
    fn text(node: &Node) -> Result<PyStr, YamlError> {
        match &node.kind {
            NodeKind::Scalar {
                exact: Some(exact), ..
            } => Ok(exact.clone()),
            _ => Self::scalar(node).map(PyStr::from),
        }
    }

    fn sequence(node: &Node) -> Result<&[Rc<Node>], YamlError> {
        match &node.kind {
            NodeKind::Seq(items) => Ok(items),
            _ => Err(Self::error(
                node,
                "expected a sequence node, but found another kind".into(),
            )),
        }
    }

    /// The node an alias to an enclosing collection stands for.
    fn resolve(&self, node: &Rc<Node>) -> Rc<Node> {
        match node.kind {
            NodeKind::Recursive(id) => self
                .anchors
                .get(&id)
                .map_or_else(|| Rc::clone(node), Rc::clone),
            _ => Rc::clone(node),
        }
    }

    fn construct(&mut self, node: &Rc<Node>, depth: usize) -> Result<Value, YamlError> {
        let node = self.resolve(node);
        self.construct_tagged(&node, &Self::node_tag(&node), depth)
    }

    /// A collection node met again inside itself. PyYAML returns the object
    /// it is building, which is fine until json.dumps meets the cycle; only a
    /// chain of tuples (built eagerly) has no object yet and fails at once.
    fn revisit(&self, node: &Node) -> Option<Result<Value, YamlError>> {
        let at = self.path.iter().position(|(p, _)| std::ptr::eq(*p, node))?;
        if self.path[at..].iter().all(|(_, lazy)| !lazy) {
            return Some(Err(Self::error(
                node,
                "while constructing a Python object: found unconstructable recursive node".into(),
            )));
        }
        Some(Ok(Value::Circular {
            type_name: match node.kind {
                NodeKind::Map(_) => "dict",
                _ => "list",
            },
        }))
    }

    fn construct_tagged(
        &mut self,
        node: &Node,
        tag: &str,
        depth: usize,
    ) -> Result<Value, YamlError> {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return Err(Self::error(
                node,
                format!("aliases expand to more than {MAX_NODES} nodes"),
            ));
        }
        if depth > MAX_DEPTH {
            return Err(Self::error(
                node,
                format!("values nested deeper than {MAX_DEPTH} levels"),
            ));
        }
        let name = tag.strip_prefix(TAG_PREFIX).unwrap_or("");
        if matches!(node.kind, NodeKind::Seq(_) | NodeKind::Map(_)) {
            if let Some(value) = self.revisit(node) {
                return value;
            }
            self.path.push((node, name != "python/tuple"));
            let value = self.construct_by_name(node, name, tag, depth);
            self.path.pop();
            return value;
        }
        self.construct_by_name(node, name, tag, depth)
    }

    fn construct_by_name(
        &mut self,
        node: &Node,
        name: &str,
        tag: &str,
        depth: usize,
    ) -> Result<Value, YamlError> {
        let fail = |msg: String| Self::error(node, msg);
        Ok(match name {
            "null" | "python/none" => {
                Self::scalar(node)?;
                Value::None
            }
            "bool" | "python/bool" => {
                let v = Self::scalar(node)?;
                match v.to_lowercase().as_str() {
                    "yes" | "true" | "on" => Value::Bool(true),
                    "no" | "false" | "off" => Value::Bool(false),
                    _ => return Err(fail(format!("{v:?} is not a boolean (KeyError)"))),
                }
            }
            "int" | "python/int" | "python/long" => {
                Value::Int(construct_int(Self::scalar(node)?).map_err(fail)?)
            }
            "float" | "python/float" => {
                Value::Float(construct_float(Self::scalar(node)?).map_err(fail)?)
            }
            "str" | "python/unicode" => Value::Str(Self::text(node)?),
            "python/str" => {
                // `unicode.encode('utf-8')`: Python 2 encodes a lone surrogate too.
                let s = Self::text(node)?;
                if s.is_ascii() {
                    Value::Str(s)
                } else {
                    Value::Bytes(s.as_bytes().to_vec())
                }
            }
            "binary" => Value::Bytes(
                decode_base64(Self::scalar(node)?)
                    .map_err(|e| fail(format!("failed to decode base64 data: {e}")))?,
            ),
            "timestamp" => Value::Unencodable {
                repr: construct_timestamp(Self::scalar(node)?)
                    .map_err(|e| fail(format!("invalid timestamp: {e}")))?,
                hashable: true,
            },
            "python/complex" => Value::Unencodable {
                repr: format!("complex({:?})", Self::scalar(node)?),
                hashable: true,
            },
            "seq" | "python/list" => Value::List(self.construct_items(node, depth)?),
            "python/tuple" => Value::Tuple(self.construct_items(node, depth)?),
            "omap" | "pairs" => {
                let mut out = Vec::new();
                for item in Self::sequence(node)? {
                    match &item.kind {
                        NodeKind::Map(pairs) if pairs.len() == 1 => {
                            let (k, v) = &pairs[0];
                            let k = self.construct(k, depth + 1)?;
                            let v = self.construct(v, depth + 1)?;
                            out.push(Value::Tuple(vec![k, v]));
                        }
                        _ => {
                            return Err(Self::error(
                                item,
                                format!(
                                    "while constructing an ordered map: expected a single mapping item ({tag})"
                                ),
                            ))
                        }
                    }
                }
                Value::List(out)
            }
            "map" | "python/dict" => Value::Dict(self.construct_mapping(node, depth)?),
            "set" => {
                let d = self.construct_mapping(node, depth)?;
                let keys: Vec<String> = d.entries().iter().map(|(k, _)| k.repr()).collect();
                Value::Unencodable {
                    repr: format!("set([{}])", keys.join(", ")),
                    hashable: false,
                }
            }
            _ => {
                return Err(fail(format!(
                    "could not determine a constructor for the tag {tag:?}"
                )))
            }
        })
    }

    fn construct_items(&mut self, node: &Node, depth: usize) -> Result<Vec<Value>, YamlError> {
        Self::sequence(node)?
            .iter()
            .map(|item| self.construct(item, depth + 1))
            .collect()
    }

    /// `SafeConstructor.flatten_mapping`: the pairs a mapping node stands for,
    /// with merge keys expanded and `=` keys retagged as strings.
    ///
    /// `visiting` holds the mappings being flattened: PyYAML deletes a merge
    /// key before it follows it, so a mapping merged into itself (directly or
    /// from a mapping inside it) contributes only its own pairs.
    fn flatten(
        &self,
        node: &Node,
        depth: usize,
        visiting: &mut Vec<*const Node>,
    ) -> Result<Vec<FlatPair>, YamlError> {
        if depth > MAX_DEPTH {
            return Err(Self::error(node, "merge keys nested too deeply".into()));
        }
        let NodeKind::Map(pairs) = &node.kind else {
            return Err(Self::error(
                node,
                "expected a mapping node, but found another kind".into(),
            ));
        };
        let mut merge = Vec::new();
        let mut own = Vec::new();
        let again = visiting.iter().any(|p| std::ptr::eq(*p, node));
        visiting.push(node);
        for (k, v) in pairs {
            let key_tag = Self::node_tag(&self.resolve(k));
            if key_tag == tag("merge") {
                if again {
                    continue;
                }
                let v = self.resolve(v);
                match &v.kind {
                    NodeKind::Map(_) => merge.extend(self.flatten(&v, depth + 1, visiting)?),
                    NodeKind::Seq(items) => {
                        let mut sub = Vec::new();
                        for item in items {
                            let item = self.resolve(item);
                            if !matches!(item.kind, NodeKind::Map(_)) {
                                return Err(Self::error(
                                    &item,
                                    "while constructing a mapping: expected a mapping for merging"
                                        .into(),
                                ));
                            }
                            sub.push(self.flatten(&item, depth + 1, visiting)?);
                        }
                        for pairs in sub.into_iter().rev() {
                            merge.extend(pairs);
                        }
                    }
                    NodeKind::Scalar { .. } | NodeKind::Recursive(_) => {
                        return Err(Self::error(
                            &v,
                            "while constructing a mapping: expected a mapping or list of mappings for merging"
                                .into(),
                        ))
                    }
                }
            } else {
                own.push((Rc::clone(k), Rc::clone(v), key_tag == tag("value")));
            }
        }
        visiting.pop();
        merge.extend(own);
        Ok(merge)
    }

    fn construct_mapping(&mut self, node: &Node, depth: usize) -> Result<Dict, YamlError> {
        let mut dict = Dict::new();
        for (k, v, key_is_str) in self.flatten(node, depth, &mut Vec::new())? {
            let key = if key_is_str {
                self.construct_tagged(&k, &tag("str"), depth + 1)?
            } else {
                self.construct(&k, depth + 1)?
            };
            if !key.is_hashable() {
                return Err(Self::error(
                    &k,
                    format!(
                        "while constructing a mapping: found unacceptable key (unhashable type: '{}')",
                        key.type_name()
                    ),
                ));
            }
            let value = self.construct(&v, depth + 1)?;
            dict.insert(key, value);
        }
        Ok(dict)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_str(s: &str) -> Value {
        load(s.as_bytes()).unwrap_or_else(|e| panic!("{s:?}: {e:?}"))
    }

    fn json(s: &str) -> String {
        super::super::pyjson::dumps(&load_str(s)).unwrap()
    }

    /// `s` as the one item of a block sequence (in a flow sequence, PyYAML
    /// refuses a plain `1:20`).
    fn scalar_json(s: &str) -> String {
        json(&format!("- {s}\n"))
    }

    /// Generated cases g0020, g0068, g0091, g0138, g0160, g0165, g0381, g0400:
    /// a raw NEL folded as a line break in PyYAML, kept as a character by
    /// saphyr. Expected values are PyYAML 3.10's under Python 2.7.
    #[test]
    fn nel_is_a_line_break_as_in_pyyaml() {
        assert_eq!(json("a: x\u{85}  y\n"), r#"{"a": "x y"}"#);
        assert_eq!(json("a: \"q\u{85}  r\"\n"), r#"{"a": "q r"}"#);
        assert_eq!(json("a: x\r\u{85}  y\n"), r#"{"a": "x\ny"}"#);
        assert_eq!(json("a: |\n  x\u{85}  y\n"), r#"{"a": "x\ny\n"}"#);
        assert_eq!(json("a: x # c\u{85}b: 1\n"), r#"{"a": "x", "b": 1}"#);
        // The escape \N is a NEL character, not a line break.
        assert_eq!(json("a: \"q\\Nr\"\n"), r#"{"a": "q\u0085r"}"#);
        // PyYAML: "could not find expected ':'" at line 3, column 1.
        let e = load("a: x\u{85}y\n".as_bytes()).unwrap_err();
        assert_eq!((e.line, e.col), (3, 1), "{e:?}");
    }

    /// PyYAML does not check a quoted scalar's continuation indentation;
    /// saphyr refused these (generated cases with a NEL in a quoted scalar,
    /// e.g. g0002). Expected values are PyYAML 3.10's under Python 2.7.
    #[test]
    fn quoted_continuation_lines_need_no_indentation() {
        assert_eq!(json("a: \"q\nr\"\n"), r#"{"a": "q r"}"#);
        assert_eq!(json("a: 'q\nr'\n"), r#"{"a": "q r"}"#);
        assert_eq!(
            json("x:\n  a: \"q\\\n\n\\\"r\"\n  b: 'it''s\n\n one'\n"),
            r#"{"x": {"a": "q\n\"r", "b": "it's\none"}}"#
        );
        assert_eq!(json("- \"a\n\"\n- 'b\nc'\n"), r#"["a ", "b c"]"#);
        // A document separator inside is an error in both.
        assert!(load(b"a: \"q\n--- r\"\n").is_err());
        // The check is done on saphyr's message: it must still be this one.
        let e = compose("a: \"q\nr\"\n").unwrap_err();
        assert_eq!(e.message, UNDER_INDENTED_QUOTED);
    }

    /// Generated cases g0001, g0010, g0303, g0305, g0400, g0498: a block
    /// scalar ending the file without a line break. Expected values are
    /// PyYAML 3.10's under Python 2.7.
    #[test]
    fn block_scalar_at_end_of_file_without_line_break_has_none() {
        assert_eq!(json("a: |\n  x\n  y"), r#"{"a": "x\ny"}"#);
        assert_eq!(json("a: >+\n  x\n\n  y  "), r#"{"a": "x\ny  "}"#);
        assert_eq!(json("- >\n  a\n  b"), r#"["a b"]"#);
        assert_eq!(json("a: |2\n    x"), r#"{"a": "  x"}"#);
        assert_eq!(json("a: |-\n  x"), r#"{"a": "x"}"#);
        // The last line is no content: the break after x stays.
        assert_eq!(json("a: |\n  x\n# c"), r#"{"a": "x\n"}"#);
        assert_eq!(json("a: |\n  x\nb: y"), r#"{"a": "x\n", "b": "y"}"#);
        assert_eq!(json("a: |\n  x\n"), r#"{"a": "x\n"}"#);
    }

    /// A block scalar followed by a last line of blanks only, without a line
    /// break: saphyr read it as one more line. Expected values are PyYAML
    /// 3.10's under Python 2.7.
    #[test]
    fn block_scalar_then_blanks_at_end_of_file_without_line_break() {
        for (yaml, want) in [
            ("a: |\n  x\n  ", r#"{"a": "x\n"}"#),
            ("a: |\n  x\n   ", r#"{"a": "x\n "}"#),
            ("a: |\n  x\n ", r#"{"a": "x\n"}"#),
            ("a: >\n  x\n  y\n  ", r#"{"a": "x y\n"}"#),
            ("a: |+\n  x\n\n  ", r#"{"a": "x\n\n"}"#),
            ("a: |+\n  x\n\n ", r#"{"a": "x\n\n"}"#),
            ("a: |-\n  x\n   ", r#"{"a": "x\n "}"#),
            ("a: |\n  \n  x\n  ", r#"{"a": "\nx\n"}"#),
            ("a: |1\n  x\n ", r#"{"a": " x\n"}"#),
            ("m:\n  a: |2\n      x\n     ", r#"{"m": {"a": "  x\n "}}"#),
            ("m:\n  a: |2\n      x\n   ", r#"{"m": {"a": "  x\n"}}"#),
            ("- - |\n    x\n    ", r#"[["x\n"]]"#),
            ("a: |\n  x\n  \t", r#"{"a": "x\n\t"}"#),
            ("a: |+ # c\n   ", r#"{"a": ""}"#),
            ("a: |+\n\n  ", r#"{"a": "\n"}"#),
            ("|+\n  \n  ", r#""\n""#),
        ] {
            assert_eq!(json(yaml), want, "{yaml:?}");
        }
    }

    /// Generated case g0498: PyYAML's `.nan` is one object, so two `.nan`
    /// keys are one key; `!!float nan` is a new NaN each time. Expected values
    /// are PyYAML 3.10's under Python 2.7.
    #[test]
    fn nan_keys_are_one_key_as_pyyaml_nan_value_is_one_object() {
        assert_eq!(json("{.nan: a, .NaN: b, c: 1}"), r#"{"NaN": "b", "c": 1}"#);
        assert_eq!(json("{.nan: a, !!float -.nan: b}"), r#"{"NaN": "b"}"#);
        assert_eq!(
            json("{.nan: a, !!float nan: b}"),
            r#"{"NaN": "a", "NaN": "b"}"#
        );
        assert_eq!(
            json("{!!float nan: a, !!float nan: b}"),
            r#"{"NaN": "a", "NaN": "b"}"#
        );
        assert_eq!(json("[.nan, .nan]"), "[NaN, NaN]");
    }

    /// Generated cases g0017, g0058, g0062 and 18 more: PyYAML reads LS and
    /// PS as line breaks, so a key holding one spans lines and is refused
    /// (saphyr read them as characters). Outcomes are PyYAML 3.10's under
    /// Python 2.7.
    #[test]
    fn a_key_holding_ls_or_ps_is_refused_as_pyyaml_refuses_it() {
        for refused in [
            "\"a\u{2028}x\": 1\n",
            "m:\n  &a !!str 'a\u{2029}x': 1\n",
            "{\"a\u{2028}x\": 1}\n",
            "- k: 1\n  a\u{2028}x: 2\n",
        ] {
            let e = load(refused.as_bytes()).unwrap_err();
            assert!(e.message.contains("simple key"), "{refused:?}: {e:?}");
        }
        // Values may hold them; an explicit key may span lines.
        assert_eq!(json("a: \"x\u{2028}y\"\n"), r#"{"a": "x\u2028y"}"#);
        assert_eq!(json("? \"a\u{2028}x\"\n: 1\n"), r#"{"a\u2028x": 1}"#);
    }

    /// PyYAML skips only spaces between tokens, so a line whose first
    /// character after its spaces is a tab is refused unless the tab is text
    /// (a quoted scalar's continuation line, a block scalar's content line
    /// indented to its content indentation); saphyr allowed tabs there, and
    /// refused a quoted scalar's continuation line starting with a tab,
    /// which PyYAML loads. Outcomes are PyYAML 3.10's and 5.4.1's (the
    /// same) under Python 2.7.
    #[test]
    fn a_line_starting_with_a_tab_outside_scalar_text_is_refused_as_pyyaml_refuses_it() {
        for (refused, line, col) in [
            ("a: |\n  x\n\t", 3, 1),
            ("a: |\n  x\n\t\n", 3, 1),
            ("a: |\n  x\n\t\nb: 1\n", 3, 1),
            ("a: |\n  x\n \t", 3, 2),
            ("a: |\n  x\n\n\t", 4, 1),
            ("a: |\n  x\n   \n\t", 4, 1),
            ("a: |\n  x\n\t# c\n", 3, 1),
            ("a: |+\n  x\n\t", 3, 1),
            ("a: >\n  x\n\t", 3, 1),
            ("- |\n  x\n\t", 3, 1),
            ("a:\n  b: |\n  \t\n", 3, 3),
            ("a: |2\n   x\n \t\n", 3, 2),
            ("a: x\n\t", 2, 1),
            ("a: 1\n\t\nb: 2\n", 2, 1),
            ("a: 'x'\n\t", 2, 1),
            ("a: b\n  \tc\n", 2, 3),
            ("a: 1\n  \t# c\n", 2, 3),
            ("[1,\n\t2]\n", 2, 1),
            ("---\n\t\n", 2, 1),
            ("\t", 1, 1),
        ] {
            let e = load(refused.as_bytes())
                .err()
                .unwrap_or_else(|| panic!("{refused:?} loaded"));
            assert!(e.message.contains("'\\t'"), "{refused:?}: {e:?}");
            assert_eq!((e.line, e.col), (line, col), "{refused:?}");
        }
        // saphyr refuses these by itself (elsewhere, with another message).
        assert!(load(b"a: |\n  x\n \t\n  y\n").is_err());
        assert!(load(b"a: b\n\tc\n").is_err());
        for (accepted, expected) in [
            ("a: |\n  x\n  \t", r#"{"a": "x\n\t"}"#),
            ("a: |\n  x\n  \ty\nb: 1\n", r#"{"a": "x\n\ty\n", "b": 1}"#),
            ("a: |\n  \t\n", r#"{"a": "\t\n"}"#),
            ("a: |2\n   x\n  \t\n", r#"{"a": " x\n\t\n"}"#),
            ("a: 1\n# \tc\n", r#"{"a": 1}"#),
            ("a: |\n  \tx\n", r#"{"a": "\tx\n"}"#),
            ("a: \"x\n\ty\"\n", r#"{"a": "x y"}"#),
            ("a: 'x\n\ty'\n", r#"{"a": "x y"}"#),
            ("- \"x\n\t\ty\n\t z\"\n", r#"["x y z"]"#),
            ("a:\n  b: \"x\n\ty\n   \tz\"\n", r#"{"a": {"b": "x y z"}}"#),
            ("a:\n  b: \"x\n\t\n\ty\"\n", r#"{"a": {"b": "x\ny"}}"#),
            ("a: >-\n\n  \tx\n  y\n", r#"{"a": "\n\tx\ny"}"#),
            ("- |1\n  \tx\n", r#"[" \tx\n"]"#),
            ("a: \"x\n  \ty\"\n", r#"{"a": "x y"}"#),
            ("a: 'x\n  \ty'\n", r#"{"a": "x y"}"#),
            ("[\"x\n\ty\"]\n", r#"["x y"]"#),
            ("- 'x\n \t y'\n", r#"["x y"]"#),
        ] {
            assert_eq!(json(accepted), expected, "{accepted:?}");
        }
    }

    /// PyYAML reads a comment right after a quoted scalar or a flow
    /// collection, saphyr wants a blank before it; after a block scalar's
    /// header both refuse it. Outcomes are PyYAML 3.10's and 5.4.1's (the
    /// same) under Python 2.7.
    #[test]
    fn a_comment_right_after_a_quoted_scalar_or_flow_collection_loads_as_in_pyyaml() {
        for (accepted, expected) in [
            ("a: 'x'#c\n", r#"{"a": "x"}"#),
            ("a: \"x\"#c\nb: 1\n", r#"{"a": "x", "b": 1}"#),
            ("[a, 'b'#c\n]\n", r#"["a", "b"]"#),
            ("{a: 1}#c\n", r#"{"a": 1}"#),
            ("- [1]#c\n- 2\n", r#"[[1], 2]"#),
            ("a: &x 'y'#c\nb: *x\n", r#"{"a": "y", "b": "y"}"#),
            ("'k'#c: v\n", r#""k""#),
        ] {
            assert_eq!(json(accepted), expected, "{accepted:?}");
        }
        assert!(load(b"a: |#c\n  x\n").is_err());
    }

    /// The same for a tab after other text on its line: PyYAML refuses it
    /// outside quoted scalars, block scalar content and comments. Outcomes
    /// are PyYAML 3.10's and 5.4.1's (the same) under Python 2.7.
    #[test]
    fn a_tab_between_tokens_is_refused_as_pyyaml_refuses_it() {
        for (refused, col) in [
            ("- 'a'\t\n", 6),
            ("a: b\tc\n", 5),
            ("a: 1\t\n", 5),
            ("[1,\t2]\n", 4),
            ("a: 1 \t# c\n", 6),
            ("{a: 1}\t\n", 7),
            ("a: |\t\n  x\n", 5),
            ("- &x\tb\n", 5),
            ("a: !!str\t\"x\"\n", 9),
        ] {
            let e = load(refused.as_bytes())
                .err()
                .unwrap_or_else(|| panic!("{refused:?} loaded"));
            assert_eq!((e.line, e.col), (1, col), "{refused:?}: {e:?}");
        }
        for (accepted, expected) in [
            ("a: \"x\ty\"\n", r#"{"a": "x\ty"}"#),
            ("a: 1 #\tc\n", r#"{"a": 1}"#),
            ("a: |\n  x\ty\n", r#"{"a": "x\ty\n"}"#),
            ("a: | #\tc\n  x\n", r#"{"a": "x\n"}"#),
        ] {
            assert_eq!(json(accepted), expected, "{accepted:?}");
        }
    }

    /// PyYAML forgets a simple key whose `:` is more than 1024 characters
    /// after its start (properties included), then refuses the `:`; saphyr
    /// has the same limit in block context (YAML 1.2's), none in flow
    /// context, where the cases in braces and brackets failed before the fix.
    /// Outcomes are PyYAML 3.10's and 5.4.1's (the same) under Python 2.7.
    #[test]
    fn a_simple_key_longer_than_pyyaml_1024_characters_is_refused() {
        let k = |n: usize| "k".repeat(n);
        for refused in [
            format!("{}: v\n", k(1025)),
            format!("{} : v\n", k(1024)),
            format!("a: 1\n{}: v\n", k(1025)),
            format!("a:\n  {}: v\n", k(1025)),
            format!("- {}: v\n", k(1025)),
            format!("\"{}\": v\n", k(1023)),
            format!("&a {}: v\n", k(1022)),
            format!("{{{}: v}}\n", k(1025)),
            format!("[{}: v]\n", k(1025)),
            format!("x: {{a: [1], {}: v}}\n", k(1025)),
            format!("!!python/tuple [{}]: v\n", k(1010)),
            format!("{{\"{}\" : v}}\n", k(1022)),
            format!("[&a {}: v]\n", k(1022)),
            format!("{{a: 1, {}: v}}\n", k(1025)),
            format!("{{{} : v}}\n", k(1024)),
            format!("{{!!python/tuple [{}]: v}}\n", k(1008)),
            format!("{{&t !!python/tuple [{}]: v}}\n", k(1005)),
            format!("{{&t !!python/tuple [{}] : v}}\n", k(1004)),
            format!("a: &{0} x\nb: {{*{0} : v}}\n", k(1030)),
        ] {
            assert!(load(refused.as_bytes()).is_err(), "{refused:?}");
        }
        let one = |key: &str| format!("{{\"{key}\": \"v\"}}");
        for (accepted, key) in [
            (format!("{}: v\n", k(1024)), k(1024)),
            (format!("{} : v\n", k(1023)), k(1023)),
            (format!("\"{}\": v\n", k(1022)), k(1022)),
            (format!("&a {}: v\n", k(1021)), k(1021)),
            (format!("{{{}: v}}\n", k(1024)), k(1024)),
            (format!("? {}\n: v\n", k(1025)), k(1025)),
            (format!("{{? {}: v}}\n", k(1025)), k(1025)),
            (format!("{{\"{}\": v}}\n", k(1022)), k(1022)),
            (format!("{{{} : v}}\n", k(1023)), k(1023)),
        ] {
            assert_eq!(json(&accepted), one(&key), "{accepted:?}");
        }
        assert_eq!(
            json(&format!("[&a {}: v]\n", k(1021))),
            format!("[{}]", one(&k(1021)))
        );
        assert_eq!(
            json(&format!("a: &{0} x\nb: {{*{0} : v}}\n", k(1022))),
            r#"{"a": "x", "b": {"x": "v"}}"#
        );
        for tuple_key in [
            format!("!!python/tuple [{}]: v\n", k(1006)),
            format!("{{!!python/tuple [{}]: v}}\n", k(1007)),
            format!("{{&t !!python/tuple [{}]: v}}\n", k(1004)),
        ] {
            assert!(load(tuple_key.as_bytes()).is_ok(), "{tuple_key:?}");
        }
    }

    /// Generated cases g0226, g0379, g0396, g0493, g0547: PyYAML ends a
    /// plain scalar in a flow collection at `:` and `?`, and refuses what
    /// follows; saphyr kept `1:20` and `a?b` as scalars. Outcomes and error
    /// positions are PyYAML 3.10's under Python 2.7 (5.x accepts the `:`).
    #[test]
    fn colon_or_question_mark_in_a_flow_plain_scalar_is_refused_as_pyyaml_refuses_it() {
        for (refused, line, col) in [
            ("[1:20, x]", 1, 3),
            ("{0x1F: [1:20]}", 1, 10),
            ("a: [x::]", 1, 6),
            ("[http://x]", 1, 6),
            ("[-:x]", 1, 3),
            ("[a, b\n  c:d]", 2, 4),
            ("[&a x:y]", 1, 6),
            ("[!!str x:y]", 1, 9),
            ("{a: [b, {c: d}], e: f:g}", 1, 22),
        ] {
            let e = load(refused.as_bytes()).unwrap_err();
            assert!(
                e.message.contains("found unexpected ':'"),
                "{refused:?}: {e:?}"
            );
            assert_eq!((e.line, e.col), (line, col), "{refused:?}: {e:?}");
        }
        for (refused, line, col) in [
            ("[a?b]", 1, 3),
            ("{a?b: c}", 1, 3),
            ("{k: a ?b}", 1, 7),
            ("[a ? b]", 1, 4),
            ("[a\n?b]", 2, 1),
        ] {
            let e = load(refused.as_bytes()).unwrap_err();
            assert!(e.message.contains("got '?'"), "{refused:?}: {e:?}");
            assert_eq!((e.line, e.col), (line, col), "{refused:?}: {e:?}");
        }
        // A ':' before a space, flow indicator or the end is an indicator in
        // both; tags may hold ':'; block context keeps both characters.
        assert_eq!(json("[a:, b]"), r#"[{"a": null}, "b"]"#);
        assert_eq!(json("[a: b]"), r#"[{"a": "b"}]"#);
        assert_eq!(json("{? a: b}"), r#"{"a": "b"}"#);
        assert_eq!(json("[!<tag:yaml.org,2002:str> x]"), r#"["x"]"#);
        assert_eq!(json("[a#b]"), r#"["a#b"]"#);
        assert_eq!(json("k: a:b?\n"), r#"{"k": "a:b?"}"#);
        assert_eq!(
            json("a:\n  - x:y\n  - [p, q]\n  - r:s?\n"),
            r#"{"a": ["x:y", ["p", "q"], "r:s?"]}"#
        );
    }

    #[test]
    fn bools_are_exactly_pyyaml_3_spellings() {
        for t in [
            "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON",
        ] {
            assert_eq!(scalar_json(t), "[true]", "{t}");
        }
        for f in [
            "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF",
        ] {
            assert_eq!(scalar_json(f), "[false]", "{f}");
        }
        for s in ["y", "Y", "n", "N", "yEs", "tRUE", "oN", "nO"] {
            assert_eq!(scalar_json(s), format!("[\"{s}\"]"), "{s} stays a string");
        }
    }

    #[test]
    fn nulls() {
        assert_eq!(
            json("a: ~\nb: null\nc: Null\nd: NULL\ne:\nf: nULL\n"),
            r#"{"a": null, "b": null, "c": null, "d": null, "e": null, "f": "nULL"}"#
        );
        assert_eq!(json(""), "null");
        assert_eq!(json("# only a comment\n"), "null");
        assert_eq!(json("a: !!str\n"), r#"{"a": ""}"#);
    }

    #[test]
    fn ints_octal_hex_binary_base60() {
        assert_eq!(scalar_json("0755"), "[493]");
        assert_eq!(scalar_json("-0755"), "[-493]");
        assert_eq!(scalar_json("0"), "[0]");
        assert_eq!(scalar_json("-0"), "[0]");
        assert_eq!(scalar_json("0x1F"), "[31]");
        assert_eq!(scalar_json("0b101"), "[5]");
        assert_eq!(scalar_json("1_000"), "[1000]");
        assert_eq!(scalar_json("+12"), "[12]");
        assert_eq!(scalar_json("1:20"), "[80]");
        assert_eq!(scalar_json("-1:20:30"), "[-4830]");
        assert_eq!(scalar_json("190:20:30"), "[685230]");
        assert_eq!(scalar_json("0_"), "[0]");
        // Not ints: 8 in an octal, minutes >= 60, leading zero in base 60.
        assert_eq!(scalar_json("0789"), r#"["0789"]"#);
        assert_eq!(scalar_json("1:60"), r#"["1:60"]"#);
        assert_eq!(scalar_json("01:20"), r#"["01:20"]"#);
        assert_eq!(scalar_json("0x"), r#"["0x"]"#);
        assert_eq!(scalar_json("1__"), "[1]");
    }

    #[test]
    fn big_ints_stay_exact() {
        assert_eq!(
            scalar_json("123456789012345678901234567890"),
            "[123456789012345678901234567890]"
        );
        assert_eq!(
            scalar_json("-0x1_0000_0000_0000_0000_0000"),
            "[-1208925819614629174706176]"
        );
        assert_eq!(
            scalar_json("99999999999999999999:59"),
            "[5999999999999999999999]"
        );
    }

    #[test]
    fn floats_need_a_dot_and_signed_exponent() {
        assert_eq!(scalar_json("1.0e+3"), "[1000.0]");
        assert_eq!(scalar_json("1e3"), r#"["1e3"]"#);
        assert_eq!(scalar_json("1.0e3"), r#"["1.0e3"]"#);
        assert_eq!(scalar_json("1.5"), "[1.5]");
        assert_eq!(scalar_json("1."), "[1.0]");
        assert_eq!(scalar_json(".5"), "[0.5]");
        assert_eq!(scalar_json("-.5"), r#"["-.5"]"#);
        assert_eq!(scalar_json("0.00001"), "[1e-05]");
        assert_eq!(scalar_json("10000000000000000.0"), "[1e+16]");
        assert_eq!(scalar_json("1_000.5"), "[1000.5]");
        assert_eq!(scalar_json("-0.0"), "[-0.0]");
        assert_eq!(scalar_json("1:20.5"), "[80.5]");
        assert_eq!(scalar_json("-1:0:30.25"), "[-3630.25]");
        assert_eq!(scalar_json(".inf"), "[Infinity]");
        assert_eq!(scalar_json("-.Inf"), "[-Infinity]");
        assert_eq!(scalar_json("+.INF"), "[Infinity]");
        assert_eq!(scalar_json(".NaN"), "[NaN]");
        assert_eq!(scalar_json("-.nan"), r#"["-.nan"]"#);
        assert_eq!(scalar_json(".Nan"), r#"[".Nan"]"#);
        assert_eq!(scalar_json("inf"), r#"["inf"]"#);
    }

    #[test]
    fn quoted_and_block_scalars_are_never_resolved() {
        assert_eq!(
            json("- 'yes'\n- \"0755\"\n- '1.5'\n- \"~\"\n- ''\n- |\n  12\n- >\n  true\n"),
            r#"["yes", "0755", "1.5", "~", "", "12\n", "true\n"]"#
        );
    }

    #[test]
    fn non_specific_tag_resolves_even_quoted() {
        // PyYAML's parser marks `!` scalars implicit, so "12" becomes an int.
        assert_eq!(json("- ! 12\n- ! '12'\n- ! yes\n"), "[12, 12, true]");
    }

    #[test]
    fn explicit_tags() {
        assert_eq!(
            json("- !!str 12\n- !!int '12'\n- !!float '1e3'\n- !!float 2\n- !!bool 'on'\n- !!null 'x'\n- !!int 0o17\n"),
            r#"["12", 12, 1000.0, 2.0, true, null, 15]"#
        );
        assert!(load(b"- !!bool y\n").is_err(), "bool_values has no 'y'");
        assert!(load(b"- !!int abc\n").is_err());
        assert!(load(b"- !!float x\n").is_err());
        assert!(load(b"- !!str [a]\n").is_err());
        assert!(load(b"- !custom x\n").is_err());
        assert!(load(b"- !!python/object:os.system x\n").is_err());
    }

    #[test]
    fn python_tags_of_the_full_loader() {
        assert_eq!(
            json("- !!python/tuple [1, a]\n- !!python/unicode x\n- !!python/long 5\n- !!python/none ''\n"),
            r#"[[1, "a"], "x", 5, null]"#
        );
    }

    #[test]
    fn binary_is_bytes_decoded_by_json() {
        assert_eq!(json("- !!binary aGVsbG8=\n"), r#"["hello"]"#);
        assert_eq!(json("- !!binary |\n  w6k=\n"), r#"["\u00e9"]"#);
        assert!(load(b"- !!binary aGVsbG8\n").is_err(), "Incorrect padding");
        let v = load(b"- !!binary /w==\n").unwrap();
        assert!(
            super::super::pyjson::dumps(&v).is_err(),
            "0xff is not UTF-8"
        );
    }

    #[test]
    fn omap_pairs_and_set() {
        assert_eq!(json("!!omap [b: 1, a: 2]\n"), r#"[["b", 1], ["a", 2]]"#);
        assert_eq!(json("!!pairs [a: 1, a: 2]\n"), r#"[["a", 1], ["a", 2]]"#);
        let v = load(b"!!set {a, b}\n").unwrap();
        assert!(super::super::pyjson::dumps(&v).is_err());
    }

    #[test]
    fn timestamps_load_but_cannot_be_encoded() {
        for t in [
            "2016-09-06",
            "2001-12-14t21:59:43.10-05:00",
            "2001-12-14 21:59:43.10 -5",
            "2001-12-15T02:59:43.1Z",
            "2002-12-14 21:59:43",
        ] {
            let v = load(format!("- {t}\n").as_bytes()).unwrap();
            let err = super::super::pyjson::dumps(&v).unwrap_err();
            assert!(err.reason.contains("datetime"), "{t}: {err:?}");
        }
        assert_eq!(scalar_json("2016-9-6"), r#"["2016-9-6"]"#);
        assert_eq!(scalar_json("'2016-09-06'"), r#"["2016-09-06"]"#);
        // An impossible date fails in the constructor already.
        assert!(load(b"- 2016-02-30\n").is_err());
        assert!(load(b"- 2016-13-01\n").is_err());
        assert!(load(b"- 2015-02-29\n").is_err());
        assert!(load(b"- 2016-02-29\n").is_ok());
    }

    #[test]
    fn explicit_timestamp_tag_on_a_short_value_is_an_error_not_a_panic() {
        // PyYAML: the regexp does not match, then `None.groupdict()` raises.
        for v in ["x", "0o17", "12", "+123-01-01", "2016"] {
            assert!(
                load(format!("- !!timestamp {v}\n").as_bytes()).is_err(),
                "{v}"
            );
        }
    }

    #[test]
    fn merge_keys_single_and_list() {
        let doc = "base: &b {a: 1, b: 2}\nother: &o {b: 3, c: 4}\n\
                   single: {<<: *b, b: 9}\n\
                   list: {<<: [*b, *o], d: 5}\n\
                   nested: {<<: {<<: *o, e: 6}}\n\
                   quoted: {'<<': *b}\n";
        assert_eq!(
            json(doc),
            r#"{"base": {"a": 1, "b": 2}, "list": {"a": 1, "b": 2, "c": 4, "d": 5}, "nested": {"b": 3, "c": 4, "e": 6}, "other": {"b": 3, "c": 4}, "quoted": {"<<": {"a": 1, "b": 2}}, "single": {"a": 1, "b": 9}}"#
        );
        assert!(load(b"a: {<<: 1}\n").is_err());
        assert!(load(b"a: {<<: [1]}\n").is_err());
    }

    #[test]
    fn anchors_and_aliases_copy_values() {
        assert_eq!(
            json("a: &x [1, {k: v}]\nb: *x\nc: &s text\nd: *s\n"),
            r#"{"a": [1, {"k": "v"}], "b": [1, {"k": "v"}], "c": "text", "d": "text"}"#
        );
        assert!(load(b"a: *nope\n").is_err());
    }

    #[test]
    fn recursive_alias_loads_and_fails_only_when_dumped() {
        let dumps = |s: &str| super::super::pyjson::dumps(&load_str(s));
        for doc in [
            "a: &x [*x]\n",
            "a: &x {k: *x}\n",
            "&r {a: [1, {b: *r}]}\n",
            "a: &x {b: &y [*x, *y]}\n",
            "a: &t !!python/tuple [[*t]]\n",
            "a: &x {m: {<<: *x}}\n",
        ] {
            let err = dumps(doc).unwrap_err();
            assert!(err.reason.contains("Circular reference"), "{doc}: {err:?}");
        }
        // Where the cycle is never dumped, the rest is hashed as usual.
        let v = load_str("keep: &k [1]\nloop: &x {self: *x, k: *k}\n");
        let Value::Dict(d) = &v else { panic!() };
        assert_eq!(
            super::super::pyjson::dumps(d.get_str("keep").unwrap()).unwrap(),
            "[1]"
        );
        // A mapping merged into itself keeps its own pairs (PyYAML deletes the
        // merge key before following it).
        assert_eq!(json("a: &x {k: 1, <<: *x}\n"), r#"{"a": {"k": 1}}"#);
        // A tuple is built eagerly: a tuple directly inside itself fails at once.
        assert!(load(b"a: &t !!python/tuple [*t]\n").is_err());
        // A collection as its own key is unhashable.
        assert!(load(b"&m {*m: 1}\n").is_err());
    }

    #[test]
    fn redefined_anchor_is_an_error_like_pyyaml_composer() {
        let e = load(b"a: &x 1\nb: &x 2\nc: *x\n").unwrap_err();
        assert!(e.message.contains("duplicate anchor \"x\""), "{e:?}");
        assert_eq!((e.line, e.col), (2, 4));
        assert!(load(b"a: !!str &x 1\nb: [&x 2]\n").is_err());
        assert!(load(b"a: &x [1]\nb: &x {k: v}\n").is_err());
        assert!(load("a: &\u{e9}t\u{e9} 1\nb: &y 2\n".as_bytes()).is_ok());
        assert!(load(b"a: &x1 1\nb: &x2 2\nc: [*x1, *x2]\n").is_ok());
    }

    #[test]
    fn equal_keys_keep_first_key_last_value() {
        assert_eq!(json("1: a\n1.0: b\ntrue: c\n"), r#"{"1": "c"}"#);
        assert_eq!(json("a: 1\na: 2\n"), r#"{"a": 2}"#);
    }

    #[test]
    fn value_key_is_a_string_but_value_scalar_fails() {
        assert_eq!(json("=: x\n"), r#"{"=": "x"}"#);
        assert!(load(b"a: =\n").is_err());
    }

    #[test]
    fn unhashable_keys_fail() {
        assert!(load(b"? [a]\n: x\n").is_err());
        assert!(load(b"{[a]: x}\n").is_err());
    }

    #[test]
    fn encodings_and_unprintable_characters() {
        assert_eq!(
            load(b"\xef\xbb\xbfa: 1\n").unwrap(),
            load(b"a: 1\n").unwrap()
        );
        let utf16le: Vec<u8> = [0xff, 0xfe]
            .into_iter()
            .chain("a: \u{e9}\n".encode_utf16().flat_map(u16::to_le_bytes))
            .collect();
        assert_eq!(
            super::super::pyjson::dumps(&load(&utf16le).unwrap()).unwrap(),
            r#"{"a": "\u00e9"}"#
        );
        let utf16be: Vec<u8> = [0xfe, 0xff]
            .into_iter()
            .chain("a: 1\n".encode_utf16().flat_map(u16::to_be_bytes))
            .collect();
        assert_eq!(load(&utf16be).unwrap(), load(b"a: 1\n").unwrap());
        let e = load(b"a: 1\nb: caf\xe9\n").unwrap_err();
        assert_eq!(e.line, 2);
        let e = load(b"a: x\x00y\n").unwrap_err();
        assert!(e.message.contains("#x0000"), "{e:?}");
        assert!(
            load("a: \u{1F600}\n".as_bytes()).is_err(),
            "PyYAML 3.x refuses astral characters"
        );
        assert_eq!(json("a: \"\\U0001F600\"\n"), r#"{"a": "\ud83d\ude00"}"#);
    }

    #[test]
    fn surrogate_escapes_load_as_code_points_like_a_wide_python2() {
        assert_eq!(json(r#"a: "\ud83d""#), r#"{"a": "\ud83d"}"#);
        assert_eq!(
            json(r#"a: "x\uDC00\U0000d800y""#),
            r#"{"a": "x\udc00\ud800y"}"#
        );
        // A pair stays two code points: a different key from U+1F600, sorted
        // by code point (0xd83d < 0xe000 < 0x1f600) though printed alike.
        assert_eq!(
            json(r#"{"\U0001F600": 2, "\ue000": 3, "\ud83d\ude00": 1}"#),
            r#"{"\ud83d\ude00": 1, "\ue000": 3, "\ud83d\ude00": 2}"#
        );
        // Only a double-quoted scalar reads escapes; `\\` pairs come first.
        assert_eq!(
            json(r#"[a\ud83d, '\ud83d', "\\ud83d", "\\\ud83d"]"#),
            r#"["a\\ud83d", "\\ud83d", "\\ud83d", "\\\ud83d"]"#
        );
        assert_eq!(json("a: |-\n  \\ud83d\n"), r#"{"a": "\\ud83d"}"#);
        assert_eq!(json(r#"- !!python/str "\ud83d""#), r#"["\ud83d"]"#);
        assert!(load(br#"- !!int "\ud83d""#).is_err());
    }

    #[test]
    fn crlf_and_single_document() {
        assert_eq!(json("a: 1\r\nb: x\r\n"), r#"{"a": 1, "b": "x"}"#);
        let e = load(b"a: 1\n---\nb: 2\n").unwrap_err();
        assert!(e.message.contains("single document"));
        assert_eq!(e.line, 2);
        assert!(load(b"a: [1\n").is_err());
    }

    #[test]
    fn resolver_trailing_newline_like_python_dollar() {
        assert_eq!(resolve_plain("12\n"), "tag:yaml.org,2002:int");
        assert_eq!(resolve_plain("12\n\n"), "tag:yaml.org,2002:str");
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = "[".repeat(100_000);
        assert!(load(deep.as_bytes()).is_err());
    }
}
