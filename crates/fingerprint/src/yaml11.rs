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
//!   one code point each, as on a wide build (see [`SURROGATE_MARK`](reader::SURROGATE_MARK)).
//!
//! - NEL (U+0085) is a line break, as in PyYAML's reader (see
//!   [`nel_as_line_feed`]); a quoted scalar's continuation lines need no
//!   indentation ([`compose_as_pyyaml`]); a block scalar whose last line ends
//!   the file without a break, blanks only or not, adds no final break
//!   ([`unbreak_last_line_at_eof`](scanner::unbreak_last_line_at_eof));
//!   every `.nan` is one object, so `.nan` keys are one key ([`PYYAML_NAN`](crate::pyvalue::PYYAML_NAN));
//!   a plain scalar in a flow collection holding `:` or `?` is refused
//!   ([`pyyaml_flow_plain_error`](scanner::pyyaml_flow_plain_error)); an implicit key whose `:` is more than
//!   1024 characters after its start is refused in flow context too
//!   ([`simple_key_too_long`](scanner::simple_key_too_long)); a tab outside quoted scalars, block scalar
//!   content and comments is refused ([`pyyaml_tab`](scanner::pyyaml_tab)): PyYAML skips only
//!   spaces between tokens,
//!   but a quoted scalar's continuation line may start with tabs, and a
//!   comment may follow a quoted scalar or a flow collection without a
//!   blank ([`compose_as_pyyaml`]).
//!
//! Where things are: `reader` (decoding, the printable check, NEL,
//! surrogate escapes); `scanner` (where PyYAML's scanner and saphyr's
//! differ); `compose` (nodes from saphyr's events: anchors, aliases, one
//! document); `resolve` (the implicit tag of a plain scalar); `timestamp`;
//! `scalars` (`int()`, `float()`, base 60, `!!binary`); `construct` (values
//! from nodes: tags, merge keys, cycles).
//!
//! Known gaps (documented, not reproduced): PyYAML treats LS/PS as line
//! breaks (kept in the value), saphyr (YAML 1.2) as ordinary characters: a
//! mapping key holding one is refused as PyYAML refuses it
//! ([`is_implicit_key`](scanner::is_implicit_key)), but a plain scalar or comment broken by one is not
//! reproduced; a tab after a `#` that is not a comment (`a: b#\tc`) is
//! refused by PyYAML, accepted here (any `#` is taken as a comment there,
//! erring toward loading);
//! looking a DEA key up *through* a
//! cycle (`settings: &s {editable: *s, ...}`) finds the placeholder, not the
//! mapping, and fails; saphyr may accept other documents PyYAML's scanner
//! refuses (tests/fixtures/fingerprints-generated/known-differences.txt
//! lists any the generated corpus finds); `!!python/object*`
//! and `!!python/name` tags are refused; where both fail, messages differ.

mod compose;
mod construct;
mod reader;
mod resolve;
mod scalars;
mod scanner;
mod timestamp;

use super::pyvalue::Value;
use construct::Constructor;
use reader::{check_printable, decode, mark_surrogate_escapes, nel_as_line_feed};
use scanner::compose_as_pyyaml;

pub use resolve::resolve_plain;

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
        Some(node) => Constructor::new(anchors).construct(&node, 0),
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

#[cfg(test)]
mod tests;
