//! PyYAML's implicit resolver: the YAML 1.1 tag of a plain scalar, its
//! regexps transcribed.

use super::timestamp::parse_timestamp_fields;

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
pub(super) fn span_of(s: &[u8], mut i: usize, pred: impl Fn(u8) -> bool) -> usize {
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
