//! PyYAML's `SafeConstructor` conversions of scalars: `int()`, `float()`,
//! base 60 and `!!binary`, as Python does them.

use crate::pyvalue::{BigInt, PYYAML_NAN};

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
pub(super) fn construct_int(raw: &str) -> Result<BigInt, String> {
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
pub(super) fn construct_float(raw: &str) -> Result<f64, String> {
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
pub(super) fn decode_base64(value: &str) -> Result<Vec<u8>, String> {
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
