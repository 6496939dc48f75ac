//! `json.dumps(value, sort_keys=True)` exactly as Python 2.7 writes it.
//!
//! Invariants (each pinned by a test below or by a vector):
//! - separators are `", "` and `": "`; empty containers are `[]` and `{}`;
//! - `None`/`True`/`False` are `null`/`true`/`false`; ints print every digit;
//!   floats print as `repr` (shortest round-trip, exponent when the decimal
//!   point position is `<= -4` or `> 16`: `1e-05`, `0.0001`, `1e+16`), NaN and
//!   infinities as bare `NaN`, `Infinity`, `-Infinity`;
//! - text is `ensure_ascii`: `"`, `\\`, `\b\f\n\r\t` get short escapes, every
//!   other code point outside `0x20..=0x7e` is a lower-case `\uXXXX`, astral
//!   code points as a surrogate pair;
//! - byte strings are decoded as UTF-8 the Python 2.7 way (encoded surrogates
//!   are accepted, anything else invalid is an error);
//! - `sort_keys` sorts the original key objects (None < numbers < text, numbers
//!   by value, text by code point), then converts them to strings; any other key
//!   type is an error, as are dates, sets and other unencodable values.
//!
//! Not reproduced: the order of several NaN keys in one mapping (CPython's
//! timsort with a non-total order); they compare as equal here.

use super::pyvalue::{BigInt, Value};
use std::cmp::Ordering;
use std::fmt::Write;

/// Why a value cannot be encoded; `path` names where (`a.b[2]`), empty for the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError {
    pub path: String,
    pub reason: String,
}

impl JsonError {
    fn new(reason: String) -> Self {
        JsonError {
            path: String::new(),
            reason,
        }
    }

    fn within(mut self, segment: &str) -> Self {
        if self.path.is_empty() || self.path.starts_with('[') {
            self.path = format!("{segment}{}", self.path);
        } else {
            self.path = format!("{segment}.{}", self.path);
        }
        self
    }
}

/// `json.dumps(value, sort_keys=True)`.
pub fn dumps(value: &Value) -> Result<String, JsonError> {
    let mut out = String::new();
    encode(value, &mut out)?;
    Ok(out)
}

fn encode(value: &Value, out: &mut String) -> Result<(), JsonError> {
    match value {
        Value::None => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Float(f) => out.push_str(&float_str(*f)),
        Value::Str(s) => escape_into(s.code_points(), out),
        Value::Bytes(b) => {
            let units = decode_utf8_py27(b).map_err(JsonError::new)?;
            escape_into(units.into_iter(), out);
        }
        Value::List(items) | Value::Tuple(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                encode(item, out).map_err(|e| e.within(&format!("[{i}]")))?;
            }
            out.push(']');
        }
        Value::Dict(d) => {
            let mut entries: Vec<&(Value, Value)> = d.entries().iter().collect();
            sort_keys(&mut entries)?;
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                let key = key_units(k)?;
                let label: String = key
                    .iter()
                    .map(|&u| char::from_u32(u).unwrap_or('\u{fffd}'))
                    .collect();
                escape_into(key.into_iter(), out);
                out.push_str(": ");
                encode(v, out).map_err(|e| e.within(&label))?;
            }
            out.push('}');
        }
        Value::Unencodable { repr, .. } => {
            return Err(JsonError::new(format!("{repr} is not JSON serializable")))
        }
        Value::Circular { type_name } => {
            return Err(JsonError::new(format!(
                "Circular reference detected (this {type_name} is an alias to a collection that contains it)"
            )))
        }
    }
    Ok(())
}

/// The key as json writes it (after sorting by the original object), as code points.
fn key_units(key: &Value) -> Result<Vec<u32>, JsonError> {
    let text = match key {
        Value::Str(s) => return Ok(s.code_points().collect()),
        Value::Bytes(b) => return decode_utf8_py27(b).map_err(JsonError::new),
        Value::Float(f) => float_str(*f),
        Value::Bool(true) => "true".into(),
        Value::Bool(false) => "false".into(),
        Value::None => "null".into(),
        Value::Int(i) => i.to_string(),
        other => {
            return Err(JsonError::new(format!(
                "key {} is not a string",
                other.repr()
            )))
        }
    };
    Ok(text.chars().map(u32::from).collect())
}

/// Rank of a key's type in Python 2's mixed-type ordering.
fn key_rank(key: &Value) -> Result<u8, JsonError> {
    match key {
        Value::None => Ok(0),
        Value::Bool(_) | Value::Int(_) | Value::Float(_) => Ok(1),
        Value::Str(_) | Value::Bytes(_) => Ok(2),
        other => Err(JsonError::new(format!(
            "key {} is not a string",
            other.repr()
        ))),
    }
}

fn sort_keys(entries: &mut [&(Value, Value)]) -> Result<(), JsonError> {
    for (k, _) in entries.iter() {
        key_rank(k)?;
    }
    let mut failure: Option<JsonError> = None;
    entries.sort_by(|a, b| match compare_keys(&a.0, &b.0) {
        Ok(o) => o,
        Err(e) => {
            failure.get_or_insert(e);
            Ordering::Equal
        }
    });
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Python 2 `cmp` of two keys already checked by [`key_rank`].
fn compare_keys(a: &Value, b: &Value) -> Result<Ordering, JsonError> {
    let (ra, rb) = (key_rank(a)?, key_rank(b)?);
    if ra != rb {
        return Ok(ra.cmp(&rb));
    }
    Ok(match (a, b) {
        (Value::None, Value::None) => Ordering::Equal,
        // PyStr bytes sort in code point order, surrogates included.
        (Value::Str(x), Value::Str(y)) => x.as_bytes().cmp(y.as_bytes()),
        (Value::Bytes(x), Value::Bytes(y)) => x.cmp(y),
        (Value::Bytes(x), Value::Str(y)) => ascii_bytes(x, a)?.cmp(y.as_bytes()),
        (Value::Str(x), Value::Bytes(y)) => x.as_bytes().cmp(ascii_bytes(y, b)?),
        _ => compare_numbers(a, b),
    })
}

/// Python 2 coerces a byte str to unicode as ASCII when comparing with unicode.
fn ascii_bytes<'a>(bytes: &'a [u8], key: &Value) -> Result<&'a [u8], JsonError> {
    if bytes.is_ascii() {
        Ok(bytes)
    } else {
        Err(JsonError::new(format!(
            "key {} cannot be compared with a unicode key (UnicodeDecodeError)",
            key.repr()
        )))
    }
}

enum Num<'a> {
    Int(std::borrow::Cow<'a, BigInt>),
    Float(f64),
}

fn as_num(v: &Value) -> Num<'_> {
    match v {
        Value::Bool(b) => Num::Int(std::borrow::Cow::Owned(BigInt::from_i64(i64::from(*b)))),
        Value::Int(i) => Num::Int(std::borrow::Cow::Borrowed(i)),
        Value::Float(f) => Num::Float(*f),
        _ => Num::Float(f64::NAN),
    }
}

fn compare_numbers(a: &Value, b: &Value) -> Ordering {
    match (as_num(a), as_num(b)) {
        (Num::Int(x), Num::Int(y)) => x.cmp(&y),
        (Num::Int(x), Num::Float(y)) => x.cmp_float(y),
        (Num::Float(x), Num::Int(y)) => y.cmp_float(x).reverse(),
        (Num::Float(x), Num::Float(y)) => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
    }
}

/// Python 2.7's `json` float rendering (`_floatstr`).
fn float_str(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f == f64::INFINITY {
        "Infinity".into()
    } else if f == f64::NEG_INFINITY {
        "-Infinity".into()
    } else {
        float_repr(f)
    }
}

/// Python 2.7's `repr(float)`: the shortest digits that round-trip (Rust's
/// `{:e}` yields the same digits), laid out by `float_repr_style = 'short'`.
pub fn float_repr(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf".into() } else { "-inf".into() };
    }
    let sci = format!("{f:e}");
    let (sign, sci) = match sci.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", sci.as_str()),
    };
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let decpt = exp + 1;
    let n = digits.len() as i32;
    let body = if decpt <= -4 || decpt > 16 {
        let (first, rest) = digits.split_at(1);
        let e = decpt - 1;
        let esign = if e < 0 { '-' } else { '+' };
        if rest.is_empty() {
            format!("{first}e{esign}{:02}", e.abs())
        } else {
            format!("{first}.{rest}e{esign}{:02}", e.abs())
        }
    } else if decpt <= 0 {
        format!("0.{}{digits}", "0".repeat((-decpt) as usize))
    } else if decpt >= n {
        format!("{digits}{}.0", "0".repeat((decpt - n) as usize))
    } else {
        let (a, b) = digits.split_at(decpt as usize);
        format!("{a}.{b}")
    };
    format!("{sign}{body}")
}

/// Python 2.7's strict UTF-8 decoder, which (unlike Rust's) lets encoded
/// surrogates `ED A0..BF xx` through. Returns code points.
pub fn decode_utf8_py27(bytes: &[u8]) -> Result<Vec<u32>, String> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    let bad = |pos: usize, why: &str| {
        format!(
            "'utf8' codec can't decode byte 0x{:02x} in position {pos}: {why}",
            bytes[pos]
        )
    };
    let cont = |pos: usize| bytes.get(pos).is_some_and(|b| b & 0xc0 == 0x80);
    while i < bytes.len() {
        let b0 = bytes[i];
        let (len, min2, max2) = match b0 {
            0x00..=0x7f => {
                out.push(u32::from(b0));
                i += 1;
                continue;
            }
            0xc2..=0xdf => (2, 0x80, 0xbf),
            0xe0 => (3, 0xa0, 0xbf),
            0xe1..=0xef => (3, 0x80, 0xbf),
            0xf0 => (4, 0x90, 0xbf),
            0xf1..=0xf3 => (4, 0x80, 0xbf),
            0xf4 => (4, 0x80, 0x8f),
            _ => return Err(bad(i, "invalid start byte")),
        };
        if i + len > bytes.len() {
            return Err(bad(i, "unexpected end of data"));
        }
        let b1 = bytes[i + 1];
        if !(min2..=max2).contains(&b1) || !(2..len).all(|k| cont(i + k)) {
            return Err(bad(i, "invalid continuation byte"));
        }
        let mut cp = u32::from(b0) & (0x7f >> len);
        for k in 1..len {
            cp = (cp << 6) | (u32::from(bytes[i + k]) & 0x3f);
        }
        out.push(cp);
        i += len;
    }
    Ok(out)
}

/// `encode_basestring_ascii`: a quoted, ASCII-only JSON string.
fn escape_into(units: impl Iterator<Item = u32>, out: &mut String) {
    out.push('"');
    for u in units {
        match u {
            0x22 => out.push_str("\\\""),
            0x5c => out.push_str("\\\\"),
            0x0a => out.push_str("\\n"),
            0x0d => out.push_str("\\r"),
            0x09 => out.push_str("\\t"),
            0x08 => out.push_str("\\b"),
            0x0c => out.push_str("\\f"),
            0x20..=0x7e => out.push(char::from(u as u8)),
            0x10000.. => {
                let v = u - 0x10000;
                let _ = write!(
                    out,
                    "\\u{:04x}\\u{:04x}",
                    0xd800 + (v >> 10),
                    0xdc00 + (v & 0x3ff)
                );
            }
            _ => {
                let _ = write!(out, "\\u{u:04x}");
            }
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pyvalue::Dict;

    fn s(v: &str) -> Value {
        Value::Str(v.into())
    }

    fn int(v: i64) -> Value {
        Value::Int(BigInt::from_i64(v))
    }

    #[test]
    fn float_repr_matches_python27() {
        // Expected strings are Python 2.7's repr() of the same literals.
        let cases = [
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (1.5e16, "1.5e+16"),
            (1e-5, "1e-05"),
            (0.0001, "0.0001"),
            (0.00012345, "0.00012345"),
            (1.5, "1.5"),
            (2.0, "2.0"),
            (0.1, "0.1"),
            (-0.0, "-0.0"),
            (0.0, "0.0"),
            (1e22, "1e+22"),
            (123456789012345678.0, "1.2345678901234568e+17"),
            (1234567890123456.0, "1234567890123456.0"),
            (1e100, "1e+100"),
            (5e-324, "5e-324"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (-2.5e-7, "-2.5e-07"),
            (1000.0, "1000.0"),
            (80.5, "80.5"),
        ];
        for (f, want) in cases {
            assert_eq!(float_repr(f), want, "repr({f:e})");
        }
    }

    #[test]
    fn non_finite_floats_are_bare_words() {
        let v = Value::List(vec![
            Value::Float(f64::NAN),
            Value::Float(f64::INFINITY),
            Value::Float(f64::NEG_INFINITY),
        ]);
        assert_eq!(dumps(&v).unwrap(), "[NaN, Infinity, -Infinity]");
    }

    #[test]
    fn separators_and_scalars() {
        let mut d = Dict::new();
        d.insert(
            s("b"),
            Value::List(vec![int(1), Value::None, Value::Bool(true)]),
        );
        d.insert(s("a"), Value::Dict(Dict::new()));
        d.insert(s("c"), Value::List(vec![]));
        d.insert(s("d"), Value::Bool(false));
        assert_eq!(
            dumps(&Value::Dict(d)).unwrap(),
            r#"{"a": {}, "b": [1, null, true], "c": [], "d": false}"#
        );
    }

    #[test]
    fn ensure_ascii_escapes_with_surrogate_pairs() {
        let v = s("\"\\\n\r\t\u{8}\u{c}\u{1}\u{7f}é\u{df}中\u{1F600}/");
        assert_eq!(
            dumps(&v).unwrap(),
            r#""\"\\\n\r\t\b\f\u0001\u007f\u00e9\u00df\u4e2d\ud83d\ude00/""#
        );
    }

    #[test]
    fn byte_strings_decode_as_python27_utf8() {
        // Encoded surrogate: Python 2.7 decodes it, json escapes it.
        let v = Value::Bytes(vec![0xed, 0xa0, 0x80]);
        assert_eq!(dumps(&v).unwrap(), r#""\ud800""#);
        let v = Value::Bytes("ü𝄞".as_bytes().to_vec());
        assert_eq!(dumps(&v).unwrap(), r#""\u00fc\ud834\udd1e""#);
        for bad in [
            &[0xff][..],
            &[0xc3],
            &[0xc0, 0x80],
            &[0xe0, 0x80, 0x80],
            &[0xf4, 0x90, 0x80, 0x80],
            &[0x61, 0xe2, 0x82],
        ] {
            let err = dumps(&Value::Bytes(bad.to_vec())).unwrap_err();
            assert!(err.reason.contains("utf8"), "{bad:?}: {err:?}");
        }
    }

    #[test]
    fn big_ints_print_exactly() {
        let mut big = BigInt::zero();
        for c in "99999999999999999999999".chars() {
            big.mul_add(10, c.to_digit(10).unwrap());
        }
        let v = Value::List(vec![Value::Int(big.negate()), int(0), int(-1)]);
        assert_eq!(dumps(&v).unwrap(), "[-99999999999999999999999, 0, -1]");
    }

    #[test]
    fn mixed_key_types_sort_python2_style_then_stringify() {
        let mut d = Dict::new();
        d.insert(s("b"), int(1));
        d.insert(s("B"), int(2));
        d.insert(Value::Float(1.5), int(3));
        d.insert(int(10), int(4));
        d.insert(Value::Bool(true), int(5));
        d.insert(Value::None, int(6));
        d.insert(int(-3), int(7));
        d.insert(s("10"), int(8));
        d.insert(Value::Bytes(b"a".to_vec()), int(9));
        assert_eq!(
            dumps(&Value::Dict(d)).unwrap(),
            r#"{"null": 6, "-3": 7, "true": 5, "1.5": 3, "10": 4, "10": 8, "B": 2, "a": 9, "b": 1}"#
        );
    }

    #[test]
    fn keys_sort_by_code_point() {
        let mut d = Dict::new();
        for k in [
            "b", "a_2", "a2", "a.2", "a-2", "a", "_private", "Zeta", "B", "é",
        ] {
            d.insert(s(k), Value::None);
        }
        let out = dumps(&Value::Dict(d)).unwrap();
        let order: Vec<&str> = out.split("\"").skip(1).step_by(2).collect();
        assert_eq!(
            order,
            ["B", "Zeta", "_private", "a", "a-2", "a.2", "a2", "a_2", "b", "\\u00e9"]
        );
    }

    #[test]
    fn unencodable_values_and_keys_fail_with_a_path() {
        let mut inner = Dict::new();
        inner.insert(
            s("date"),
            Value::Unencodable {
                repr: "datetime.date(2016, 9, 6)".into(),
                hashable: true,
            },
        );
        let mut d = Dict::new();
        d.insert(s("repos"), Value::List(vec![Value::Dict(inner)]));
        let err = dumps(&Value::Dict(d)).unwrap_err();
        assert_eq!(err.path, "repos[0].date");
        assert!(err.reason.contains("not JSON serializable"));

        let mut d = Dict::new();
        d.insert(Value::Tuple(vec![int(1)]), int(1));
        assert!(dumps(&Value::Dict(d))
            .unwrap_err()
            .reason
            .contains("is not a string"));

        let mut d = Dict::new();
        d.insert(Value::Bytes(vec![0xc3, 0xa9]), int(1));
        d.insert(s("x"), int(1));
        assert!(dumps(&Value::Dict(d)).is_err());
    }

    #[test]
    fn tuples_encode_as_lists() {
        let v = Value::Tuple(vec![s("k"), int(1)]);
        assert_eq!(dumps(&v).unwrap(), r#"["k", 1]"#);
    }
}
