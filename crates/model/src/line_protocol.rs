//! InfluxDB line protocol: `measurement[,tag=v…] field=v[,field=v…] [timestamp]`.
//! Each line is parsed on its own; a bad line is reported with its number and
//! text, the others still count (InfluxDB's partial-write behaviour).

use std::borrow::Cow;
use std::collections::HashMap;

use crate::device_json::ParseLimits;
use crate::point::{Key, Point, Value};

/// Units of the timestamps in a body.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Precision {
    /// Nanoseconds (the default).
    #[default]
    Ns,
    /// Microseconds.
    Us,
    /// Milliseconds.
    Ms,
    /// Seconds.
    S,
    /// Minutes (v1 only).
    M,
    /// Hours (v1 only).
    H,
}

impl Precision {
    /// From the `precision` parameter (`n`/`ns`, `u`/`us`, `ms`, `s`, `m`, `h`).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "" | "n" | "ns" => Precision::Ns,
            "u" | "us" | "µ" | "µs" => Precision::Us,
            "ms" => Precision::Ms,
            "s" => Precision::S,
            "m" => Precision::M,
            "h" => Precision::H,
            _ => return None,
        })
    }

    fn nanos(self) -> i64 {
        match self {
            Precision::Ns => 1,
            Precision::Us => 1_000,
            Precision::Ms => 1_000_000,
            Precision::S => 1_000_000_000,
            Precision::M => 60_000_000_000,
            Precision::H => 3_600_000_000_000,
        }
    }
}

/// A line's measurement and tags, and the key naming its device; its text
/// borrows from the body unless it had escapes or unsorted tags.
#[derive(Clone, Debug, PartialEq)]
pub struct Series<'a> {
    /// The measurement.
    pub measurement: Cow<'a, str>,
    /// Tags, sorted by key.
    pub tags: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    /// `measurement,tag=value,…` with sorted tags, escaped as in line
    /// protocol: the line's own text in the common case.
    pub key: Cow<'a, str>,
}

/// A parsed body: its points grouped by series, and its bad lines.
#[derive(Debug, Default)]
pub struct Parsed<'a> {
    /// Each series with its points in the order written; series in the
    /// order of their first good line, which names the series.
    pub groups: Vec<(Series<'a>, Vec<Point>)>,
    /// The lines that could not be parsed, in order.
    pub errors: Vec<LineError>,
}

/// The canonical series key of `measurement` and sorted `tags`.
fn series_key(measurement: &str, tags: &[(Cow<'_, str>, Cow<'_, str>)]) -> String {
    let mut s = escape(measurement, &[',', ' ']);
    for (k, v) in tags {
        s.push(',');
        s.push_str(&escape(k, &[',', '=', ' ']));
        s.push('=');
        s.push_str(&escape(v, &[',', '=', ' ']));
    }
    s
}

fn escape(s: &str, special: &[char]) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if special.contains(&c) || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Longest excerpt of a line (or of a value in a reason) an error repeats.
pub const ECHO_CHARS: usize = 200;

/// `s` cut to [`ECHO_CHARS`] characters, with `…` where it was cut: an error
/// names what was wrong without echoing a huge input back.
pub fn clip(s: &str) -> String {
    match s.char_indices().nth(ECHO_CHARS) {
        None => s.to_string(),
        Some((end, _)) => format!("{}…", &s[..end]),
    }
}

/// A line that could not be parsed.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("unable to parse '{text}': {reason}")]
pub struct LineError {
    /// 1-based line number in the body.
    pub line: usize,
    /// The line (shortened when long).
    pub text: String,
    /// What is wrong.
    pub reason: String,
}

/// Parses every line of `body` into points grouped by series; lines
/// without a timestamp get `now_ns`. A bad line is reported and skipped.
pub fn parse<'a>(
    body: &'a str,
    precision: Precision,
    now_ns: i64,
    limits: &ParseLimits,
) -> Parsed<'a> {
    let mut out = Groups {
        parsed: Parsed::default(),
        index: HashMap::new(),
        // Lines not yet parsed (an upper bound): a series whose lines come
        // in a run, as a bulk write's do, gets room for the rest at once.
        lines_left: memchr::memchr_iter(b'\n', body.as_bytes()).count() + 1,
    };
    // The last good line's measurement-and-tags text, group and field count.
    let mut previous: Option<Previous<'a>> = None;
    for (i, raw) in lines(body).enumerate() {
        out.lines_left = out.lines_left.saturating_sub(1);
        let text = raw.trim_ascii();
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        match parse_line(text, previous, precision, now_ns, limits, &mut out) {
            Ok(p) => previous = Some(p),
            Err(reason) => out.parsed.errors.push(LineError {
                line: i + 1,
                text: clip(text),
                reason: clip(&reason),
            }),
        }
    }
    // A series whose every line was bad has no points, and no place here.
    out.parsed.groups.retain(|(_, points)| !points.is_empty());
    out.parsed
}

/// What a line repeating the previous good line's series reuses of it.
#[derive(Clone, Copy)]
struct Previous<'a> {
    /// Its measurement-and-tags text.
    prefix: &'a str,
    /// Its group.
    group: usize,
    /// How many fields it had.
    width: usize,
}

/// The groups being filled, found by series key.
struct Groups<'a> {
    parsed: Parsed<'a>,
    index: HashMap<Cow<'a, str>, usize>,
    lines_left: usize,
}

impl<'a> Groups<'a> {
    /// The group of `series`, new if it has none yet.
    fn of(&mut self, series: Series<'a>) -> usize {
        if let Some(&g) = self.index.get(&series.key) {
            return g;
        }
        let g = self.parsed.groups.len();
        self.index.insert(series.key.clone(), g);
        self.parsed.groups.push((series, Vec::new()));
        g
    }
}

/// The lines of `body` (split at `\n`; a `\r` before it is trimmed with
/// the other whitespace).
fn lines(body: &str) -> impl Iterator<Item = &str> {
    let mut rest = body;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let (line, next) = match memchr::memchr(b'\n', rest.as_bytes()) {
            // `\n` is ASCII, so both sides are character boundaries.
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, ""),
        };
        rest = next;
        Some(line)
    })
}

/// Powers of ten exactly representable as `f64`.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// Most digits a `u64` takes without overflow.
const MAX_DIGITS: usize = 19;

/// The plain decimal (`-12.375`) at the start of `s` and its length, when
/// its digits, read as an integer, are at most 2^53: exactly as the full
/// parser would round it, since the digits and the power of ten are both
/// exact in an `f64` and one division rounds correctly (Clinger's fast
/// path). `None` for anything else.
fn plain_decimal(s: &[u8]) -> Option<(f64, usize)> {
    let negative = s.first() == Some(&b'-');
    let mut i = usize::from(negative);
    let (mut mantissa, mut count, mut fraction, mut dot) = (0u64, 0usize, 0usize, false);
    while let Some(&b) = s.get(i) {
        match b {
            b'0'..=b'9' => {
                // 19 digits fit in a u64.
                if count == MAX_DIGITS {
                    return None;
                }
                mantissa = mantissa * 10 + u64::from(b - b'0');
                count += 1;
                fraction += usize::from(dot);
            }
            b'.' if !dot => dot = true,
            _ => break,
        }
        i += 1;
    }
    if count == 0 || mantissa > 1 << 53 {
        return None;
    }
    let v = mantissa as f64 / POW10.get(fraction)?;
    Some((if negative { -v } else { v }, i))
}

/// The integer of at most 19 digits (`-`, then digits) at the start of
/// `s` and its length; `None` for anything else, or one out of range.
fn plain_integer(s: &[u8]) -> Option<(i64, usize)> {
    let negative = s.first() == Some(&b'-');
    let start = usize::from(negative);
    let (mut n, mut i) = (0u64, start);
    while let Some(&b) = s.get(i).filter(|b| b.is_ascii_digit()) {
        // 19 digits fit in a u64.
        if i - start == MAX_DIGITS {
            return None;
        }
        n = n * 10 + u64::from(b - b'0');
        i += 1;
    }
    if i == start {
        return None;
    }
    let v = if negative {
        0i64.checked_sub_unsigned(n)?
    } else {
        i64::try_from(n).ok()?
    };
    Some((v, i))
}

/// The bytes that end a token, as a lookup table; the backslash, which
/// escapes, is in every one (a scan stops there to look at what follows).
struct Stops([bool; 256]);

const fn stops(set: &[u8]) -> Stops {
    let mut t = [false; 256];
    t[b'\\' as usize] = true;
    let mut i = 0;
    while i < set.len() {
        t[set[i] as usize] = true;
        i += 1;
    }
    Stops(t)
}

const MEASUREMENT: Stops = stops(b", ");
const TAG_KEY: Stops = stops(b"=, ");
const TAG_VALUE: Stops = stops(b", ");
const FIELD_KEY: Stops = stops(b"= ,");
const FIELD_VALUE: Stops = stops(b", ");
const TIMESTAMP: Stops = stops(b" ");

struct Cursor<'a> {
    text: &'a str,
    s: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    /// Reads up to an unescaped byte in `stop`, unescaping `\x` for x in
    /// `escapable`; borrowed from the text when nothing was escaped.
    #[inline]
    fn token(&mut self, stop: &Stops, escapable: &[u8]) -> Result<Cow<'a, str>, String> {
        let start = self.pos;
        while let Some(&b) = self.s.get(self.pos) {
            if stop.0[usize::from(b)] {
                break;
            }
            self.pos += 1;
        }
        if self.peek() != Some(b'\\') {
            // Stop bytes are ASCII, so both ends are character boundaries.
            return Ok(Cow::Borrowed(&self.text[start..self.pos]));
        }
        self.escaped_token(start, stop, escapable)
    }

    /// The rest of a token from `start` that holds a backslash at `pos`.
    #[cold]
    fn escaped_token(
        &mut self,
        start: usize,
        stop: &Stops,
        escapable: &[u8],
    ) -> Result<Cow<'a, str>, String> {
        let mut out = self.s[start..self.pos].to_vec();
        while let Some(b) = self.peek() {
            if b == b'\\' {
                if let Some(&n) = self.s.get(self.pos + 1) {
                    if escapable.contains(&n) || n == b'\\' {
                        out.push(n);
                        self.pos += 2;
                        continue;
                    }
                }
            }
            if b != b'\\' && stop.0[usize::from(b)] {
                break;
            }
            out.push(b);
            self.pos += 1;
        }
        String::from_utf8(out)
            .map(Cow::Owned)
            .map_err(|_| "invalid UTF-8".to_string())
    }

    /// A plain decimal field value (see [`plain_decimal`]), read when it is one.
    #[inline]
    fn plain_decimal(&mut self) -> Option<f64> {
        let rest = self.s.get(self.pos..)?;
        let (f, n) = plain_decimal(rest)?;
        if !matches!(rest.get(n), None | Some(b',' | b' ')) {
            return None;
        }
        self.pos += n;
        Some(f)
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn skip_spaces(&mut self) {
        while self.peek() == Some(b' ') {
            self.pos += 1;
        }
    }
}

/// Whether `a` and `b` are equal; compared in place (keys are short, and a
/// call to `memcmp` would cost more than the comparison).
#[inline]
fn short_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

/// Where the measurement and tags end (the first unescaped space), and
/// whether a backslash came before.
fn prefix_end(s: &[u8]) -> (usize, bool) {
    // Most lines have no backslash: the first space ends the prefix.
    let Some(mut i) = memchr::memchr2(b' ', b'\\', s) else {
        return (s.len(), false);
    };
    if s[i] == b' ' {
        return (i, false);
    }
    // A backslash came first: step over each escaped byte.
    while let Some(&b) = s.get(i) {
        match b {
            b' ' => return (i, true),
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
    (s.len(), true)
}

/// The measurement and tags of `prefix` (a line's text up to its first
/// unescaped space); `escaped` says whether it holds a backslash.
fn parse_series(prefix: &str, escaped: bool) -> Result<Series<'_>, String> {
    let mut c = Cursor {
        text: prefix,
        s: prefix.as_bytes(),
        pos: 0,
    };
    let measurement = c.token(&MEASUREMENT, b", ")?;
    if measurement.is_empty() {
        return Err("missing measurement".into());
    }
    let mut tags = Vec::new();
    while c.eat(b',') {
        let k = c.token(&TAG_KEY, b",= ")?;
        if !c.eat(b'=') {
            return Err(format!("missing tag value for {k:?}"));
        }
        let v = c.token(&TAG_VALUE, b",= ")?;
        if k.is_empty() || v.is_empty() {
            return Err("empty tag key or value".into());
        }
        tags.push((k, v));
    }
    // The text is already the key when nothing was escaped and the tags are in order.
    let canonical = !escaped
        && tags.windows(2).all(|w| w[0] <= w[1])
        && tags.iter().all(|(_, v)| !v.contains('='));
    let key = if canonical {
        Cow::Borrowed(prefix)
    } else {
        tags.sort();
        Cow::Owned(series_key(&measurement, &tags))
    };
    Ok(Series {
        measurement,
        tags,
        key,
    })
}

/// Parses one line into its series' group. The series is parsed only when
/// the line's measurement-and-tags text differs from `previous`'s; a bad
/// line leaves no point behind.
fn parse_line<'a>(
    text: &'a str,
    previous: Option<Previous<'a>>,
    precision: Precision,
    now_ns: i64,
    limits: &ParseLimits,
    groups: &mut Groups<'a>,
) -> Result<Previous<'a>, String> {
    let bytes = text.as_bytes();
    // The previous line's field count, when it went to this line's group.
    let mut stride = 0;
    let (end, group) = match previous {
        // The same bytes then a space: the same prefix, so the same series
        // (how those bytes escape one another does not change).
        Some(p)
            if bytes.get(p.prefix.len()) == Some(&b' ')
                && bytes.starts_with(p.prefix.as_bytes()) =>
        {
            let points = &mut groups.parsed.groups[p.group].1;
            if points.len() == points.capacity() {
                points.reserve(p.width.max(1) * (groups.lines_left + 1));
            }
            stride = p.width;
            (p.prefix.len(), p.group)
        }
        _ => {
            let (end, escaped) = prefix_end(bytes);
            // Stop bytes are ASCII, so `end` is a character boundary.
            let series = parse_series(&text[..end], escaped)?;
            (end, groups.of(series))
        }
    };
    let points = &mut groups.parsed.groups[group].1;
    let first = points.len();
    let mut c = Cursor {
        text,
        s: bytes,
        pos: end,
    };
    let ts = fields(&mut c, precision, now_ns, limits, points, stride)
        .inspect_err(|_| points.truncate(first))?;
    for p in &mut points[first..] {
        p.ts = ts;
    }
    Ok(Previous {
        prefix: &text[..end],
        group,
        width: points.len() - first,
    })
}

/// Parses the fields after the prefix into `points` (their timestamps
/// left for the caller), then the timestamp, which it returns. A field
/// whose key is that of the point `stride` back (the same field of the
/// previous line, when it had `stride` fields) shares that key.
fn fields(
    c: &mut Cursor<'_>,
    precision: Precision,
    now_ns: i64,
    limits: &ParseLimits,
    points: &mut Vec<Point>,
    stride: usize,
) -> Result<i64, String> {
    c.skip_spaces();
    loop {
        let k = c.token(&FIELD_KEY, b",= ")?;
        let same = points
            .len()
            .checked_sub(stride)
            .filter(|_| stride > 0)
            .and_then(|i| points.get(i))
            .filter(|p| short_eq(p.key.as_bytes(), k.as_bytes()));
        // A copy of a key checked before is cheaper than a new one.
        let key = match same {
            Some(p) => p.key.clone(),
            None => {
                if k.is_empty() {
                    return Err("missing fields".into());
                }
                if k.len() > limits.max_key_len || k.chars().any(char::is_control) {
                    return Err(format!("invalid field key {k:?}"));
                }
                Key::from(k.as_ref())
            }
        };
        if !c.eat(b'=') {
            return Err(format!("missing field value for {k:?}"));
        }
        // Most values are plain decimals: read in place, without a token first.
        let value = match c.plain_decimal() {
            Some(f) => Value::Float(f),
            None => field_value(c, &k, limits)?,
        };
        points.push(Point { key, ts: 0, value });
        if !c.eat(b',') {
            break;
        }
    }
    c.skip_spaces();
    let plain = plain_integer(&c.s[c.pos..])
        .filter(|(_, n)| matches!(c.s.get(c.pos + n), None | Some(b' ')));
    let ts = if let Some((n, len)) = plain {
        c.pos += len;
        n.checked_mul(precision.nanos())
            .ok_or_else(|| format!("timestamp {n} out of range"))?
    } else if c.peek().is_some() {
        let raw = c.token(&TIMESTAMP, b"")?;
        let n: i64 = raw.parse().map_err(|_| format!("bad timestamp {raw:?}"))?;
        n.checked_mul(precision.nanos())
            .ok_or_else(|| format!("timestamp {raw} out of range"))?
    } else {
        now_ns
    };
    if ts < 0 {
        // The APIs read from the epoch on; a point before it could never be read.
        return Err(format!("timestamp {ts} ns is before 1970-01-01"));
    }
    c.skip_spaces();
    if c.peek().is_some() {
        return Err("unexpected text after the timestamp".into());
    }
    Ok(ts)
}

fn field_value(c: &mut Cursor<'_>, key: &str, limits: &ParseLimits) -> Result<Value, String> {
    if c.eat(b'"') {
        let mut out = Vec::new();
        loop {
            match c.peek() {
                None => return Err(format!("unterminated string for {key:?}")),
                Some(b'\\') if matches!(c.s.get(c.pos + 1), Some(b'"') | Some(b'\\')) => {
                    out.push(c.s[c.pos + 1]);
                    c.pos += 2;
                }
                Some(b'"') => {
                    c.pos += 1;
                    break;
                }
                Some(b) => {
                    out.push(b);
                    c.pos += 1;
                }
            }
        }
        if out.len() > limits.max_string_len {
            return Err(format!(
                "string for {key:?} is longer than {} bytes",
                limits.max_string_len
            ));
        }
        return String::from_utf8(out)
            .map(Value::Str)
            .map_err(|_| format!("string for {key:?} is not UTF-8"));
    }
    let raw = c.token(&FIELD_VALUE, b"")?;
    let bad = || format!("invalid field value {raw:?} for {key:?}");
    let raw = raw.as_ref();
    // The first and last bytes tell the kinds apart; floats are the common case.
    match (raw.as_bytes().first(), raw.as_bytes().last()) {
        (None, _) => return Err(format!("missing field value for {key:?}")),
        (Some(b't' | b'T' | b'f' | b'F'), _) => {
            return match raw {
                "t" | "T" | "true" | "True" | "TRUE" => Ok(Value::Bool(true)),
                "f" | "F" | "false" | "False" | "FALSE" => Ok(Value::Bool(false)),
                _ => Err(bad()),
            }
        }
        (_, Some(b'i')) => {
            return raw[..raw.len() - 1]
                .parse::<i64>()
                .map(Value::Int)
                .map_err(|_| bad())
        }
        (_, Some(b'u')) => {
            let u: u64 = raw[..raw.len() - 1].parse().map_err(|_| bad())?;
            return i64::try_from(u)
                .map(Value::Int)
                .map_err(|_| format!("unsigned value {u} for {key:?} exceeds the integer range"));
        }
        _ => {}
    }
    let f: f64 = raw.parse().map_err(|_| bad())?;
    if !f.is_finite() {
        return Err(bad());
    }
    Ok(Value::Float(f))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The series and points of a one-line body, or its error.
    fn one(s: &str) -> Result<(Series<'_>, Vec<Point>), String> {
        let mut parsed = parse(s, Precision::Ns, 42, &ParseLimits::default());
        match (parsed.groups.pop(), parsed.errors.pop()) {
            (Some(g), None) if parsed.groups.is_empty() => Ok(g),
            (None, Some(e)) => Err(e.reason),
            other => panic!("{other:?}"),
        }
    }

    /// (key, ts, value) of each point.
    fn triples(points: &[Point]) -> Vec<(&str, i64, Value)> {
        points
            .iter()
            .map(|p| (p.key.as_str(), p.ts, p.value.clone()))
            .collect()
    }

    /// The plain decimal that is the whole of `s`.
    fn whole_decimal(s: &str) -> Option<f64> {
        plain_decimal(s.as_bytes())
            .filter(|(_, n)| *n == s.len())
            .map(|(f, _)| f)
    }

    #[test]
    fn plain_integers_parse_as_the_full_parser() {
        for c in [
            "0",
            "-0",
            "1700000000000",
            "1700000000000000000",
            "9223372036854775807",
            "-9223372036854775808",
        ] {
            assert_eq!(
                plain_integer(c.as_bytes()),
                Some((c.parse().unwrap(), c.len()))
            );
        }
        for c in [
            "",
            "-",
            "+1",
            "9223372036854775808",
            "-9223372036854775809",
            "12345678901234567890",
        ] {
            assert_eq!(plain_integer(c.as_bytes()), None, "{c}");
        }
        assert_eq!(plain_integer(b"12 x"), Some((12, 2)), "a prefix");
    }

    #[test]
    fn plain_decimals_parse_exactly_as_the_full_parser() {
        let cases = [
            "0",
            "-0",
            "1",
            "21.5",
            "-12.375",
            "0.1",
            "0.3",
            "5.",
            ".5",
            "-.5",
            "123456789012345",
            "9007199254740992",
            "48.31000000000001",
            "0.000000000000000001",
            "1.00000000000001",
            "99999.9999999999",
            "0.00000000000001",
            "48.31",
            "3.14159265358979",
        ];
        for c in cases {
            let want: f64 = c.parse().unwrap();
            let got = whole_decimal(c).unwrap_or_else(|| panic!("{c} not plain"));
            assert_eq!(got.to_bits(), want.to_bits(), "{c}");
        }
        // Digits beyond 2^53, exponents and oddities go to the full parser.
        for c in [
            "9007199254740993",
            "12345678901234567",
            "0.00000000000000000000001",
            "1e5",
            "",
            "-",
            ".",
            "1.2.3",
            "+1",
            "1_0",
            "inf",
            "NaN",
        ] {
            assert_eq!(whole_decimal(c), None, "{c}");
        }
        let mut x = 1u64;
        for _ in 0..20_000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            // Up to 15 digits, and up to 2^53 (16 digits) in every other case.
            let digits = (x >> 11) % 10u64.pow(15 + (x & 1) as u32);
            let point = (x % 17) as usize;
            let mut text = digits.to_string();
            if point < text.len() {
                text.insert(text.len() - point, '.');
            }
            let want: f64 = text.parse().unwrap();
            let got = whole_decimal(&text);
            if digits <= 1 << 53 {
                assert_eq!(got.map(f64::to_bits), Some(want.to_bits()), "{text}");
            } else {
                assert_eq!(got, None, "{text}");
            }
        }
    }

    #[test]
    fn telegraf_style_lines_parse() {
        let (series, points) =
            one("cpu,host=a\\ b,cpu=cpu0 usage_idle=99.5,usage_user=0.5 1700000000000000000")
                .unwrap();
        assert_eq!(series.measurement, "cpu");
        assert_eq!(
            series.tags,
            vec![("cpu".into(), "cpu0".into()), ("host".into(), "a b".into())]
        );
        let ts = 1_700_000_000_000_000_000;
        assert_eq!(
            triples(&points),
            vec![
                ("usage_idle", ts, Value::Float(99.5)),
                ("usage_user", ts, Value::Float(0.5))
            ]
        );
        assert_eq!(series.key, "cpu,cpu=cpu0,host=a\\ b");
        let (series, points) =
            one(r#"weather,city=Z\,rich temp=21i,ok=t,note="say \"hi\", ok",count=7u"#).unwrap();
        assert_eq!(series.tags[0].1, "Z,rich");
        assert_eq!(
            triples(&points),
            vec![
                ("temp", 42, Value::Int(21)),
                ("ok", 42, Value::Bool(true)),
                ("note", 42, Value::Str("say \"hi\", ok".into())),
                ("count", 42, Value::Int(7)),
            ],
            "no timestamp: now"
        );
        assert_eq!(one("m v=1").unwrap().1[0].value, Value::Float(1.0));
    }

    fn key(s: &str) -> Cow<'_, str> {
        one(s).unwrap().0.key
    }

    /// The series key is the line's own text when that is canonical, and
    /// built (tags sorted, specials escaped) when it is not.
    #[test]
    fn series_keys_are_canonical() {
        assert!(matches!(key("m,a=1,b=2 v=1"), Cow::Borrowed("m,a=1,b=2")));
        assert_eq!(key("m,b=2,a=1 v=1"), "m,a=1,b=2");
        assert_eq!(key("m,a=x=y v=1"), "m,a=x\\=y");
        assert_eq!(key("m\\,n,a=1 v=1"), "m\\,n,a=1");
        assert_eq!(key("m\\ n,a=1 v=1"), "m\\ n,a=1");
        assert_eq!(key("m v=1"), "m");
    }

    /// Each group's series key and its points' (key, ts).
    fn grouped<'a>(parsed: &'a Parsed<'_>) -> Vec<(&'a str, Vec<(&'a str, i64)>)> {
        parsed
            .groups
            .iter()
            .map(|(s, points)| {
                let points = points.iter().map(|p| (p.key.as_str(), p.ts)).collect();
                (s.key.as_ref(), points)
            })
            .collect()
    }

    /// Lines of one series are grouped whatever comes between them; a line
    /// repeating the previous good line's measurement and tags (parsed once)
    /// joins its group, and an error in between changes nothing.
    #[test]
    fn lines_are_grouped_by_series() {
        let body = "m,a=1 v=1 1\nm,a=1 v=2 2\nm,a=1 v= 3\nm,a=1 v=4 4\nm,a=2 v=5 5\nm,a=1 v=6 6";
        let parsed = parse(body, Precision::Ns, 0, &ParseLimits::default());
        assert_eq!(parsed.errors.len(), 1);
        assert_eq!(
            grouped(&parsed),
            vec![
                ("m,a=1", vec![("v", 1), ("v", 2), ("v", 4), ("v", 6)]),
                ("m,a=2", vec![("v", 5)])
            ]
        );

        // Escaped spaces, and a line whose text begins like the previous
        // prefix but goes on (its own, longer series).
        let body =
            "m,a=x\\ y v=1 1\nm,a=x\\ y v=2 2\nm,a=x\\ yz v=3 3\nm,a=x v=4 4\nm,a=x\\ v f=5 5";
        let parsed = parse(body, Precision::Ns, 0, &ParseLimits::default());
        assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
        assert_eq!(
            grouped(&parsed),
            vec![
                ("m,a=x\\ y", vec![("v", 1), ("v", 2)]),
                ("m,a=x\\ yz", vec![("v", 3)]),
                ("m,a=x", vec![("v", 4)]),
                ("m,a=x\\ v", vec![("f", 5)])
            ]
        );

        // Unsorted tags name the same series as sorted ones.
        let body = "m,b=2,a=1 v=1 1\nm,a=1,b=2 v=2 2\nm,b=2,a=1 w=3 3";
        let parsed = parse(body, Precision::Ns, 0, &ParseLimits::default());
        assert_eq!(
            grouped(&parsed),
            vec![("m,a=1,b=2", vec![("v", 1), ("v", 2), ("w", 3)])]
        );
    }

    /// A bad line leaves no point behind, not even its good fields, and a
    /// series none of whose lines is good has no group.
    #[test]
    fn bad_lines_leave_nothing() {
        let body = "m v=1 1\nm v=2,w=x 2\nm v=3 3\nonly v=abc 4\nm v=5,w=6 y";
        let parsed = parse(body, Precision::Ns, 0, &ParseLimits::default());
        let numbers: Vec<usize> = parsed.errors.iter().map(|e| e.line).collect();
        assert_eq!(numbers, vec![2, 4, 5]);
        assert_eq!(grouped(&parsed), vec![("m", vec![("v", 1), ("v", 3)])]);
    }

    #[test]
    fn precision_scales_timestamps() {
        let parsed = parse("m v=1 1700000000", Precision::S, 0, &ParseLimits::default());
        assert_eq!(parsed.groups[0].1[0].ts, 1_700_000_000_000_000_000);
        let parsed = parse(
            "m v=1 1700000000000",
            Precision::Ms,
            0,
            &ParseLimits::default(),
        );
        assert_eq!(parsed.groups[0].1[0].ts, 1_700_000_000_000_000_000);
        let parsed = parse(
            "m v=1 9223372036854775807",
            Precision::S,
            0,
            &ParseLimits::default(),
        );
        assert!(parsed.errors[0].reason.contains("out of range"));
    }

    #[test]
    fn bad_lines_are_named_and_the_rest_kept() {
        let body = "ok v=1\n\n# comment\nbad\nm v=\nm v=abc\nm v=1 12x\nm,t v=1\nm v=\"open\nm v=99999999999999999999i\nfine v=2";
        let Parsed { groups, errors } = parse(body, Precision::Ns, 0, &ParseLimits::default());
        let keys: Vec<&str> = groups.iter().map(|(s, _)| s.key.as_ref()).collect();
        assert_eq!(keys, vec!["ok", "fine"]);
        let numbers: Vec<usize> = errors.iter().map(|e| e.line).collect();
        assert_eq!(numbers, vec![4, 5, 6, 7, 8, 9, 10]);
        assert!(
            errors[0]
                .to_string()
                .starts_with("unable to parse 'bad': missing fields"),
            "{}",
            errors[0]
        );
    }
}
