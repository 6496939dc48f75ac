//! PyYAML's constructors: values from nodes, with merge keys, aliases
//! (cycles included), tags and the node budget.

use super::compose::{Node, NodeKind};
use super::resolve::resolve_plain;
use super::scalars::{construct_float, construct_int, decode_base64};
use super::timestamp::construct_timestamp;
use super::{YamlError, MAX_DEPTH, MAX_NODES, TAG_PREFIX};
use crate::pyvalue::{Dict, PyStr, Value};
use std::collections::HashMap;
use std::rc::Rc;

/// A mapping pair after merge flattening; `true` when the key was `=` (a string key).
type FlatPair = (Rc<Node>, Rc<Node>, bool);

#[derive(Default)]
pub(super) struct Constructor {
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
    /// A constructor for one composed document, with its anchors.
    pub(super) fn new(anchors: HashMap<usize, Rc<Node>>) -> Self {
        Constructor {
            anchors,
            ..Constructor::default()
        }
    }

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

    pub(super) fn construct(&mut self, node: &Rc<Node>, depth: usize) -> Result<Value, YamlError> {
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
