//! The slice of Python 2.7's object model that `yaml.load` can produce and
//! `json.dumps` consumes.
//!
//! Invariants:
//! - [`Dict`] behaves like a Python 2 `dict` built by PyYAML: assigning an
//!   existing key replaces the value but keeps the *first* key object
//!   (`{1: a, 1.0: b}` is `{1: b}`), and keys compare the Python way (`1 == 1.0
//!   == True`, `'a' == u'a'`, NaN never equals anything).
//! - Integers are unbounded ([`BigInt`]): Python 2 promotes to `long`, and
//!   `json.dumps` prints every digit.
//! - Text is [`PyStr`]: any code point a wide-build Python 2 `unicode` holds,
//!   lone UTF-16 surrogates included (`"\ud83d"` in YAML is one code point,
//!   `"\ud83d\ude00"` two, never joined into U+1F600), ordered by code point.
//! - Values json cannot encode (dates, sets, complex numbers) are kept as
//!   [`Value::Unencodable`] so that a DEA may hold them where they are not hashed.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::fmt;

/// A constructed Python value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(BigInt),
    Float(f64),
    /// `unicode`, or an ASCII `str`: json treats both as text.
    Str(PyStr),
    /// A byte `str` that may hold non-ASCII bytes (`!!binary`, `!!python/str`
    /// of non-ASCII text); json decodes it as UTF-8.
    Bytes(Vec<u8>),
    List(Vec<Value>),
    /// A tuple (`!!python/tuple`, `!!omap` pairs): json writes it as a list.
    Tuple(Vec<Value>),
    Dict(Dict),
    /// A list or dict met again inside itself (an alias to an enclosing
    /// collection): Python builds the cycle, json.dumps raises on reaching it.
    Circular {
        type_name: &'static str,
    },
    /// Something json cannot serialise; the text is Python's repr, for messages.
    Unencodable {
        repr: String,
        hashable: bool,
    },
}

impl Value {
    /// Python's type name, for messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::None => "NoneType",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "str",
            Value::List(_) => "list",
            Value::Tuple(_) => "tuple",
            Value::Dict(_) => "dict",
            Value::Unencodable { .. } => "object",
            Value::Circular { type_name } => type_name,
        }
    }

    /// Whether Python could use this value as a dict key.
    pub fn is_hashable(&self) -> bool {
        match self {
            Value::List(_) | Value::Dict(_) | Value::Circular { .. } => false,
            Value::Tuple(items) => items.iter().all(Value::is_hashable),
            Value::Unencodable { hashable, .. } => *hashable,
            _ => true,
        }
    }

    /// A short Python-like repr, for error messages.
    pub fn repr(&self) -> String {
        match self {
            Value::None => "None".into(),
            Value::Bool(true) => "True".into(),
            Value::Bool(false) => "False".into(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => super::pyjson::float_repr(*f),
            Value::Str(s) => format!("{:?}", s.to_string_lossy()),
            Value::Bytes(b) => format!("{:?}", String::from_utf8_lossy(b)),
            Value::List(_) => "[...]".into(),
            Value::Tuple(_) => "(...)".into(),
            Value::Dict(_) => "{...}".into(),
            Value::Unencodable { repr, .. } => repr.clone(),
            Value::Circular { type_name: "dict" } => "{...}".into(),
            Value::Circular { .. } => "[...]".into(),
        }
    }

    /// The key Python's dict equality would see, or `None` for a value equal
    /// to nothing (NaN).
    fn canonical_key(&self) -> Option<CanonKey> {
        Some(match self {
            Value::None => CanonKey::None,
            Value::Bool(b) => CanonKey::Int(if *b { "1".into() } else { "0".into() }),
            Value::Int(i) => CanonKey::Int(i.to_string()),
            Value::Float(f) => {
                if f.is_nan() {
                    // Python's dict finds a key by identity before equality.
                    return (f.to_bits() == PYYAML_NAN.to_bits())
                        .then_some(CanonKey::Float(f.to_bits()));
                }
                if f.is_finite() && f.fract() == 0.0 {
                    CanonKey::Int(integral_float_digits(*f))
                } else {
                    CanonKey::Float(f.to_bits())
                }
            }
            Value::Str(s) => CanonKey::Str(s.as_bytes().to_vec()),
            // Python 2: an ASCII `str` equals the `unicode` of the same text.
            Value::Bytes(b) if b.is_ascii() => CanonKey::Str(b.clone()),
            Value::Bytes(b) => CanonKey::Bytes(b.clone()),
            Value::Tuple(items) => CanonKey::Tuple(
                items
                    .iter()
                    .map(Value::canonical_key)
                    .collect::<Option<Vec<_>>>()?,
            ),
            Value::Unencodable { repr, .. } => CanonKey::Other(repr.clone()),
            Value::List(_) | Value::Dict(_) | Value::Circular { .. } => return None,
        })
    }
}

/// A Python 2 `unicode` of a wide build (see the module doc).
///
/// Stored as the UTF-8 form of each code point on its own: surrogates take
/// their 3-byte form (`ED A0..BF xx`) and a surrogate pair stays two code
/// points. Byte order is then code point order (Python 2's `unicode`
/// comparison), and text without surrogates is plain UTF-8.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PyStr(Vec<u8>);

impl PyStr {
    /// Append one code point (`0..=0x10FFFF`, surrogates included).
    pub fn push(&mut self, cp: u32) {
        debug_assert!(cp <= 0x10ffff);
        match cp {
            0..=0x7f => self.0.push(cp as u8),
            0x80..=0x7ff => self
                .0
                .extend_from_slice(&[0xc0 | (cp >> 6) as u8, 0x80 | (cp & 0x3f) as u8]),
            0x800..=0xffff => self.0.extend_from_slice(&[
                0xe0 | (cp >> 12) as u8,
                0x80 | ((cp >> 6) & 0x3f) as u8,
                0x80 | (cp & 0x3f) as u8,
            ]),
            _ => self.0.extend_from_slice(&[
                0xf0 | (cp >> 18) as u8,
                0x80 | ((cp >> 12) & 0x3f) as u8,
                0x80 | ((cp >> 6) & 0x3f) as u8,
                0x80 | (cp & 0x3f) as u8,
            ]),
        }
    }

    /// The bytes: UTF-8, except that surrogates are encoded one by one.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The code points, in order.
    pub fn code_points(&self) -> impl Iterator<Item = u32> + '_ {
        let b = &self.0;
        let mut i = 0;
        std::iter::from_fn(move || {
            let b0 = *b.get(i)?;
            let len = match b0 {
                0x00..=0x7f => 1,
                0xc0..=0xdf => 2,
                0xe0..=0xef => 3,
                _ => 4,
            };
            let mut cp = if len == 1 {
                u32::from(b0)
            } else {
                u32::from(b0) & (0x7f >> len)
            };
            for k in 1..len {
                cp = (cp << 6) | (u32::from(b[i + k]) & 0x3f);
            }
            i += len;
            Some(cp)
        })
    }

    /// The text with each surrogate as U+FFFD, for messages and for the
    /// constructors that parse a number or a date out of it.
    pub fn to_string_lossy(&self) -> String {
        self.code_points()
            .map(|cp| char::from_u32(cp).unwrap_or('\u{fffd}'))
            .collect()
    }

    pub fn is_ascii(&self) -> bool {
        self.0.is_ascii()
    }
}

impl FromIterator<u32> for PyStr {
    fn from_iter<I: IntoIterator<Item = u32>>(iter: I) -> Self {
        let mut s = PyStr::default();
        for cp in iter {
            s.push(cp);
        }
        s
    }
}

impl From<&str> for PyStr {
    fn from(s: &str) -> Self {
        PyStr(s.as_bytes().to_vec())
    }
}

impl From<String> for PyStr {
    fn from(s: String) -> Self {
        PyStr(s.into_bytes())
    }
}

/// Decimal digits of an integral, finite float (`-0.0` gives `0`).
fn integral_float_digits(f: f64) -> String {
    let s = format!("{f:.0}");
    if s == "-0" {
        "0".into()
    } else {
        s
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum CanonKey {
    None,
    Int(String),
    Float(u64),
    /// The text's [`PyStr`] bytes.
    Str(Vec<u8>),
    Bytes(Vec<u8>),
    Tuple(Vec<CanonKey>),
    Other(String),
}

/// A Python 2 dict with PyYAML's insertion semantics (see the module doc).
/// PyYAML's `SafeConstructor.nan_value`: every `.nan` it constructs is this
/// one float object, so two `.nan` keys are the same key (a dict finds a key
/// by identity before equality), while `float('nan')` (from `!!float nan`)
/// is a new object each time, equal to no key. A NaN payload no arithmetic
/// here produces marks it.
pub const PYYAML_NAN: f64 = f64::from_bits(0x7ff8_0000_0079_616d);

#[derive(Clone, Debug, Default)]
pub struct Dict {
    entries: Vec<(Value, Value)>,
    index: HashMap<CanonKey, usize>,
}

impl PartialEq for Dict {
    fn eq(&self, other: &Self) -> bool {
        self.entries == other.entries
    }
}

impl Dict {
    pub fn new() -> Self {
        Self::default()
    }

    /// `d[key] = value`. The caller has checked that `key` is hashable.
    pub fn insert(&mut self, key: Value, value: Value) {
        match key.canonical_key() {
            Some(canon) => match self.index.get(&canon) {
                Some(&i) => self.entries[i].1 = value,
                None => {
                    self.index.insert(canon, self.entries.len());
                    self.entries.push((key, value));
                }
            },
            None => self.entries.push((key, value)),
        }
    }

    /// `d[key]` for a text key.
    pub fn get_str(&self, key: &str) -> Option<&Value> {
        self.index
            .get(&CanonKey::Str(key.as_bytes().to_vec()))
            .map(|&i| &self.entries[i].1)
    }

    pub fn entries(&self) -> &[(Value, Value)] {
        &self.entries
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

/// An arbitrary-precision integer: sign and magnitude in base 10^9 limbs,
/// least significant first, no trailing zero limbs (zero is empty, never negative).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct BigInt {
    negative: bool,
    limbs: Vec<u32>,
}

const LIMB: u64 = 1_000_000_000;

impl BigInt {
    pub fn zero() -> Self {
        Self::default()
    }

    pub fn from_i64(v: i64) -> Self {
        let mut r = Self::zero();
        let mut m = v.unsigned_abs();
        while m > 0 {
            r.limbs.push((m % LIMB) as u32);
            m /= LIMB;
        }
        r.negative = v < 0;
        r
    }

    pub fn is_zero(&self) -> bool {
        self.limbs.is_empty()
    }

    /// `self = self * mul + add` on the magnitude.
    pub fn mul_add(&mut self, mul: u32, add: u32) {
        let mut carry = u64::from(add);
        for limb in &mut self.limbs {
            let v = u64::from(*limb) * u64::from(mul) + carry;
            *limb = (v % LIMB) as u32;
            carry = v / LIMB;
        }
        while carry > 0 {
            self.limbs.push((carry % LIMB) as u32);
            carry /= LIMB;
        }
        self.trim();
    }

    /// Add another magnitude (signs are ignored: both are treated as non-negative).
    pub fn add_magnitude(&mut self, other: &BigInt) {
        let mut carry = 0u64;
        for i in 0..other.limbs.len().max(self.limbs.len()) {
            let a = u64::from(self.limbs.get(i).copied().unwrap_or(0));
            let b = u64::from(other.limbs.get(i).copied().unwrap_or(0));
            let v = a + b + carry;
            if i < self.limbs.len() {
                self.limbs[i] = (v % LIMB) as u32;
            } else {
                self.limbs.push((v % LIMB) as u32);
            }
            carry = v / LIMB;
        }
        if carry > 0 {
            self.limbs.push(carry as u32);
        }
        self.trim();
    }

    pub fn negate(mut self) -> Self {
        self.negative = !self.negative && !self.is_zero();
        self
    }

    fn trim(&mut self) {
        while self.limbs.last() == Some(&0) {
            self.limbs.pop();
        }
        if self.limbs.is_empty() {
            self.negative = false;
        }
    }

    /// Parse an exact decimal integer such as `-123` (used for integral floats).
    fn from_decimal(s: &str) -> Option<Self> {
        let (neg, digits) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let mut r = Self::zero();
        for c in digits.chars() {
            r.mul_add(10, c.to_digit(10)?);
        }
        Some(if neg { r.negate() } else { r })
    }

    fn cmp_magnitude(&self, other: &Self) -> Ordering {
        self.limbs
            .len()
            .cmp(&other.limbs.len())
            .then_with(|| self.limbs.iter().rev().cmp(other.limbs.iter().rev()))
    }

    /// Exact comparison with a float, as Python 2 does it (`nan` compares as equal,
    /// which only matters for sorting NaN keys; see the module doc of `pyjson`).
    pub fn cmp_float(&self, f: f64) -> Ordering {
        if f.is_nan() {
            return Ordering::Equal;
        }
        if f.is_infinite() {
            return if f > 0.0 {
                Ordering::Less
            } else {
                Ordering::Greater
            };
        }
        let t = f.trunc();
        let ti = match BigInt::from_decimal(&integral_float_digits(t)) {
            Some(v) => v,
            None => return Ordering::Equal,
        };
        match self.cmp(&ti) {
            Ordering::Equal => {
                let frac = f - t;
                if frac > 0.0 {
                    Ordering::Less
                } else if frac < 0.0 {
                    Ordering::Greater
                } else {
                    Ordering::Equal
                }
            }
            o => o,
        }
    }
}

impl Ord for BigInt {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self.negative, other.negative) {
            (false, true) => Ordering::Greater,
            (true, false) => Ordering::Less,
            (false, false) => self.cmp_magnitude(other),
            (true, true) => other.cmp_magnitude(self),
        }
    }
}

impl PartialOrd for BigInt {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for BigInt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.limbs.is_empty() {
            return f.write_str("0");
        }
        if self.negative {
            f.write_str("-")?;
        }
        let mut iter = self.limbs.iter().rev();
        if let Some(first) = iter.next() {
            write!(f, "{first}")?;
        }
        for limb in iter {
            write!(f, "{limb:09}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bigint_prints_beyond_u64() {
        let mut v = BigInt::zero();
        for c in "123456789012345678901234567890".chars() {
            v.mul_add(10, c.to_digit(10).unwrap());
        }
        assert_eq!(v.to_string(), "123456789012345678901234567890");
        assert_eq!(
            v.clone().negate().to_string(),
            "-123456789012345678901234567890"
        );
        assert_eq!(BigInt::from_i64(-1_000_000_000).to_string(), "-1000000000");
        assert_eq!(BigInt::zero().negate().to_string(), "0");
    }

    #[test]
    fn bigint_compares_with_floats_exactly() {
        let nine = BigInt::from_i64(9_007_199_254_740_993); // 2^53 + 1
        assert_eq!(nine.cmp_float(9_007_199_254_740_992.0), Ordering::Greater);
        assert_eq!(BigInt::from_i64(1).cmp_float(1.5), Ordering::Less);
        assert_eq!(BigInt::from_i64(-1).cmp_float(-1.5), Ordering::Greater);
        assert_eq!(BigInt::from_i64(2).cmp_float(2.0), Ordering::Equal);
        assert_eq!(BigInt::from_i64(2).cmp_float(f64::INFINITY), Ordering::Less);
    }

    #[test]
    fn dict_keeps_first_key_and_last_value() {
        let mut d = Dict::new();
        d.insert(Value::Int(BigInt::from_i64(1)), Value::Str("a".into()));
        d.insert(Value::Float(1.0), Value::Str("b".into()));
        d.insert(Value::Bool(true), Value::Str("c".into()));
        assert_eq!(d.len(), 1);
        assert_eq!(d.entries()[0].0, Value::Int(BigInt::from_i64(1)));
        assert_eq!(d.entries()[0].1, Value::Str("c".into()));
        d.insert(Value::Float(f64::NAN), Value::None);
        d.insert(Value::Float(f64::NAN), Value::None);
        assert_eq!(d.len(), 3, "NaN keys never compare equal");
        d.insert(Value::Bytes(b"k".to_vec()), Value::None);
        d.insert(Value::Str("k".into()), Value::Bool(true));
        assert_eq!(d.get_str("k"), Some(&Value::Bool(true)));
    }

    #[test]
    fn pystr_holds_lone_surrogates_in_code_point_order() {
        let pair: PyStr = [0xd83d, 0xde00].into_iter().collect();
        let astral: PyStr = [0x1f600].into_iter().collect();
        assert_eq!(pair.code_points().collect::<Vec<_>>(), [0xd83d, 0xde00]);
        assert_eq!(astral.code_points().collect::<Vec<_>>(), [0x1f600]);
        assert_ne!(pair, astral, "a pair is not joined");
        let bmp_high: PyStr = [0xe000].into_iter().collect();
        assert!(pair < bmp_high && bmp_high < astral, "code point order");
        let all: Vec<u32> = vec![
            0, 0x41, 0x7f, 0x80, 0x7ff, 0x800, 0xd800, 0xdfff, 0xfffd, 0x10000, 0x10ffff,
        ];
        let s: PyStr = all.iter().copied().collect();
        assert_eq!(s.code_points().collect::<Vec<_>>(), all);
        assert_eq!(
            PyStr::from("é中").code_points().collect::<Vec<_>>(),
            [0xe9, 0x4e2d]
        );
        let mut d = Dict::new();
        d.insert(Value::Str(pair.clone()), Value::None);
        d.insert(Value::Str(astral), Value::None);
        d.insert(Value::Str(pair), Value::Bool(true));
        assert_eq!(d.len(), 2, "U+1F600 and the pair are different keys");
    }
}
