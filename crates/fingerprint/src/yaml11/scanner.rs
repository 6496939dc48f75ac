//! Where PyYAML's scanner reads a document otherwise than saphyr-parser:
//! the text is adjusted and read again ([`compose_as_pyyaml`]), or a
//! document saphyr accepts is refused as PyYAML refuses it.

use super::compose::{compose, Composed};
use super::YamlError;
use saphyr_parser::Span;

/// saphyr-parser's error for a quoted scalar's continuation line indented
/// less than the block it is in (checked by a test: see
/// `quoted_continuation_lines_need_no_indentation`).
pub(super) const UNDER_INDENTED_QUOTED: &str = "invalid indentation in quoted scalar";

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
pub(super) fn compose_as_pyyaml(text: &str) -> Result<Composed, YamlError> {
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
pub(super) fn unbreak_last_line_at_eof(text: &str, span: &Span, value: &mut String) {
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
pub(super) fn is_implicit_key(text: &str, start: usize) -> bool {
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
pub(super) fn pyyaml_tab(
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
pub(super) const SIMPLE_KEY_MAX_CHARS: usize = 1024;

/// Whether the implicit key starting at byte `start` (at its properties) and
/// ending at byte `end` has its `:` more than [`SIMPLE_KEY_MAX_CHARS`]
/// characters after `start`. PyYAML then drops the key and meets the `:`
/// without one, an error in every context ("could not find expected ':'",
/// "mapping values are not allowed here", "expected ',' or '}', but got
/// ':'"); only spaces can lie between a simple key and its `:` there.
/// saphyr refuses such keys by itself in block context, not in flow context.
pub(super) fn simple_key_too_long(text: &str, start: usize, end: usize) -> bool {
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
pub(super) fn opens_flow(text: &str, end: usize) -> bool {
    text[..end].ends_with(['[', '{'])
}

/// The source of a plain scalar event, less its properties: saphyr's span
/// starts at the first `&anchor` or `!tag` (whose text may hold `:`).
pub(super) fn plain_scalar_source(source: &str) -> (usize, &str) {
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
pub(super) fn pyyaml_flow_plain_error(scalar: &str) -> Option<(usize, &'static str)> {
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
