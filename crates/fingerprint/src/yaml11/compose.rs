//! The node graph of one document, from saphyr-parser's events, with
//! PyYAML's composer's rules (anchors, aliases, one document).

use super::reader::{restore_surrogates, SURROGATE_MARK};
use super::scanner::{
    is_implicit_key, opens_flow, plain_scalar_source, pyyaml_flow_plain_error, pyyaml_tab,
    simple_key_too_long, unbreak_last_line_at_eof, SIMPLE_KEY_MAX_CHARS,
};
use super::{err_at, YamlError, MAX_DEPTH};
use crate::pyvalue::PyStr;
use saphyr_parser::{Event, Parser, ScalarStyle, Span};
use std::collections::{HashMap, HashSet};
use std::rc::Rc;

#[derive(Debug)]
pub(super) struct Node {
    pub(super) tag: Option<String>,
    pub(super) line: usize,
    pub(super) col: usize,
    pub(super) kind: NodeKind,
}

#[derive(Debug)]
pub(super) enum NodeKind {
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
/// The document's root node, and its anchors by saphyr's id (for [`NodeKind::Recursive`]).
pub(super) type Composed = (Option<Rc<Node>>, HashMap<usize, Rc<Node>>);

pub(super) fn compose(text: &str) -> Result<Composed, YamlError> {
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
