//! `!!timestamp`: PyYAML's resolver and constructor regexps for dates and
//! times, and the value it constructs.

use super::resolve::span_of;

/// Fields of a timestamp. `loose` is the constructor's regexp (which also
/// allows a date with one-digit month/day); otherwise the resolver's second
/// alternative (date and time).
pub(super) struct Timestamp {
    year: u32,
    month: u32,
    day: u32,
    time: Option<(u32, u32, u32, u32, i64)>, // h, m, s, microseconds, tz offset minutes
}

pub(super) fn parse_timestamp_fields(s: &[u8], loose: bool) -> Option<Timestamp> {
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
pub(super) fn construct_timestamp(value: &str) -> Result<String, String> {
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
