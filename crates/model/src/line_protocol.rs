//! InfluxDB line protocol: `measurement[,tag=v…] field=v[,field=v…] [timestamp]`.
//! Each line is parsed on its own; a bad line is reported with its number and
//! text, the others still count (InfluxDB's partial-write behaviour).

use std::borrow::Cow;

use crate::device_json::ParseLimits;
use crate::point::Value;

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

/// A line's fields (key and value) in the order written: inline up to two,
/// so the usual line costs no allocation.
pub type Fields<'a> = smallvec::SmallVec<[(Cow<'a, str>, Value); 2]>;

/// One parsed line.
#[derive(Clone, Debug, PartialEq)]
pub struct Line<'a> {
    /// The line's series; `None` when its measurement-and-tags text is the
    /// same as that of the good line before it (the common case, parsed once).
    pub series: Option<Box<Series<'a>>>,
    /// Fields in the order written.
    pub fields: Fields<'a>,
    /// Timestamp in nanoseconds.
    pub ts: i64,
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

/// Parses every line of `body`; returns the good lines and the errors.
/// Lines without a timestamp get `now_ns`.
pub fn parse<'a>(
    body: &'a str,
    precision: Precision,
    now_ns: i64,
    limits: &ParseLimits,
) -> (Vec<Line<'a>>, Vec<LineError>) {
    let mut lines = Vec::new();
    let mut errors = Vec::new();
    for l in parse_iter(body, precision, now_ns, limits) {
        match l {
            Ok(l) => lines.push(l),
            Err(e) => errors.push(e),
        }
    }
    (lines, errors)
}

/// Parses `body` line by line as it is iterated: each line or its error.
/// Lines without a timestamp get `now_ns`.
pub fn parse_iter<'a>(
    body: &'a str,
    precision: Precision,
    now_ns: i64,
    limits: &ParseLimits,
) -> impl Iterator<Item = Result<Line<'a>, LineError>> + 'a {
    let limits = limits.clone();
    // The measurement-and-tags text of the last good line.
    let mut previous: Option<&'a str> = None;
    lines(body).enumerate().filter_map(move |(i, raw)| {
        let text = raw.trim_ascii();
        if text.is_empty() || text.starts_with('#') {
            return None;
        }
        Some(
            match parse_line(text, previous, precision, now_ns, &limits) {
                Ok((line, prefix)) => {
                    previous = Some(prefix);
                    Ok(line)
                }
                Err(reason) => Err(LineError {
                    line: i + 1,
                    text: text.chars().take(200).collect(),
                    reason,
                }),
            },
        )
    })
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
const POW10: [f64; 16] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
];

/// A plain decimal (`-12.375`) of at most 15 digits, exactly as the full
/// parser would round it: the digits and the power of ten are both exact
/// in an `f64`, so one division rounds correctly. `None` for anything else.
fn plain_decimal(s: &[u8]) -> Option<f64> {
    // With at most a sign and a point besides, a longer text has too many digits.
    if s.len() > 17 {
        return None;
    }
    let (negative, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    let (mut mantissa, mut count, mut fraction, mut dot) = (0u64, 0usize, 0usize, false);
    for &b in digits {
        match b {
            b'0'..=b'9' => {
                mantissa = mantissa * 10 + u64::from(b - b'0');
                count += 1;
                fraction += usize::from(dot);
                if count > 15 {
                    return None;
                }
            }
            b'.' if !dot => dot = true,
            _ => return None,
        }
    }
    if count == 0 {
        return None;
    }
    let v = mantissa as f64 / POW10[fraction];
    Some(if negative { -v } else { v })
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

/// One line, and its measurement-and-tags text; the series is parsed only
/// when that text differs from `previous`.
fn parse_line<'a>(
    text: &'a str,
    previous: Option<&str>,
    precision: Precision,
    now_ns: i64,
    limits: &ParseLimits,
) -> Result<(Line<'a>, &'a str), String> {
    let bytes = text.as_bytes();
    let (end, series) = match previous {
        // The same bytes then a space: the same prefix, so the same series
        // (how those bytes escape one another does not change).
        Some(prev)
            if bytes.get(prev.len()) == Some(&b' ') && bytes.starts_with(prev.as_bytes()) =>
        {
            (prev.len(), None)
        }
        _ => {
            let (end, escaped) = prefix_end(bytes);
            // Stop bytes are ASCII, so `end` is a character boundary.
            (end, Some(Box::new(parse_series(&text[..end], escaped)?)))
        }
    };
    let prefix = &text[..end];
    let mut c = Cursor {
        text,
        s: text.as_bytes(),
        pos: end,
    };
    c.skip_spaces();
    let mut fields = Fields::new();
    loop {
        let k = c.token(&FIELD_KEY, b",= ")?;
        if k.is_empty() {
            return Err("missing fields".into());
        }
        if k.len() > limits.max_key_len || k.chars().any(char::is_control) {
            return Err(format!("invalid field key {k:?}"));
        }
        if !c.eat(b'=') {
            return Err(format!("missing field value for {k:?}"));
        }
        let v = field_value(&mut c, &k, limits)?;
        fields.push((k, v));
        if !c.eat(b',') {
            break;
        }
    }
    c.skip_spaces();
    let ts = if c.peek().is_some() {
        let raw = c.token(&TIMESTAMP, b"")?;
        let n: i64 = raw.parse().map_err(|_| format!("bad timestamp {raw:?}"))?;
        n.checked_mul(precision.nanos())
            .ok_or_else(|| format!("timestamp {raw} out of range"))?
    } else {
        now_ns
    };
    c.skip_spaces();
    if c.peek().is_some() {
        return Err("unexpected text after the timestamp".into());
    }
    Ok((Line { series, fields, ts }, prefix))
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
    let f: f64 = match plain_decimal(raw.as_bytes()) {
        Some(f) => f,
        None => raw.parse().map_err(|_| bad())?,
    };
    if !f.is_finite() {
        return Err(bad());
    }
    Ok(Value::Float(f))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(s: &str) -> Result<Line<'_>, String> {
        let (mut lines, mut errors) = parse(s, Precision::Ns, 42, &ParseLimits::default());
        match (lines.pop(), errors.pop()) {
            (Some(l), None) => Ok(l),
            (None, Some(e)) => Err(e.reason),
            other => panic!("{other:?}"),
        }
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
            "1.00000000000001",
            "99999.9999999999",
            "0.00000000000001",
            "48.31",
            "3.14159265358979",
        ];
        for c in cases {
            let want: f64 = c.parse().unwrap();
            let got = plain_decimal(c.as_bytes()).unwrap_or_else(|| panic!("{c} not plain"));
            assert_eq!(got.to_bits(), want.to_bits(), "{c}");
        }
        // Beyond 15 digits, exponents and oddities go to the full parser.
        for c in [
            "1234567890123456",
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
            assert_eq!(plain_decimal(c.as_bytes()), None, "{c}");
        }
        let mut x = 1u64;
        for _ in 0..20_000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let digits = (x >> 20) % 10u64.pow(15);
            let point = (x % 16) as usize;
            let mut text = digits.to_string();
            if point < text.len() {
                text.insert(text.len() - point, '.');
            }
            let want: f64 = text.parse().unwrap();
            assert_eq!(
                plain_decimal(text.as_bytes()).map(f64::to_bits),
                Some(want.to_bits()),
                "{text}"
            );
        }
    }

    #[test]
    fn telegraf_style_lines_parse() {
        let l = one("cpu,host=a\\ b,cpu=cpu0 usage_idle=99.5,usage_user=0.5 1700000000000000000")
            .unwrap();
        let series = l.series.as_ref().unwrap();
        assert_eq!(series.measurement, "cpu");
        assert_eq!(
            series.tags,
            vec![("cpu".into(), "cpu0".into()), ("host".into(), "a b".into())]
        );
        assert_eq!(l.fields[0], ("usage_idle".into(), Value::Float(99.5)));
        assert_eq!(l.ts, 1_700_000_000_000_000_000);
        assert_eq!(series.key, "cpu,cpu=cpu0,host=a\\ b");
        let l =
            one(r#"weather,city=Z\,rich temp=21i,ok=t,note="say \"hi\", ok",count=7u"#).unwrap();
        assert_eq!(l.series.unwrap().tags[0].1, "Z,rich");
        assert_eq!(
            l.fields.to_vec(),
            vec![
                ("temp".into(), Value::Int(21)),
                ("ok".into(), Value::Bool(true)),
                ("note".into(), Value::Str("say \"hi\", ok".into())),
                ("count".into(), Value::Int(7)),
            ]
        );
        assert_eq!(l.ts, 42, "no timestamp: now");
        assert_eq!(one("m v=1").unwrap().fields[0].1, Value::Float(1.0));
    }

    fn key(s: &str) -> Cow<'_, str> {
        one(s).unwrap().series.unwrap().key
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

    /// A line whose measurement and tags repeat those of the good line
    /// before it shares that line's series; an error in between changes nothing.
    /// Each line's own series key (`None`: the previous line's).
    fn series_keys<'a>(lines: &'a [Line<'_>]) -> Vec<Option<&'a str>> {
        lines
            .iter()
            .map(|l| l.series.as_ref().map(|s| s.key.as_ref()))
            .collect()
    }

    #[test]
    fn repeated_series_are_parsed_once() {
        let body = "m,a=1 v=1 1\nm,a=1 v=2 2\nm,a=1 v= 3\nm,a=1 v=4 4\nm,a=2 v=5 5\nm,a=1 v=6 6";
        let (lines, errors) = parse(body, Precision::Ns, 0, &ParseLimits::default());
        assert_eq!(errors.len(), 1);
        let keys = series_keys(&lines);
        assert_eq!(
            keys,
            vec![Some("m,a=1"), None, None, Some("m,a=2"), Some("m,a=1")]
        );
        assert_eq!(lines[2].fields[0].1, Value::Float(4.0));

        // Escaped spaces, and a line whose text begins like the previous
        // prefix but goes on (its own, longer series).
        let body =
            "m,a=x\\ y v=1 1\nm,a=x\\ y v=2 2\nm,a=x\\ yz v=3 3\nm,a=x v=4 4\nm,a=x\\ v f=5 5";
        let (lines, errors) = parse(body, Precision::Ns, 0, &ParseLimits::default());
        assert!(errors.is_empty(), "{errors:?}");
        let keys = series_keys(&lines);
        assert_eq!(
            keys,
            vec![
                Some("m,a=x\\ y"),
                None,
                Some("m,a=x\\ yz"),
                Some("m,a=x"),
                Some("m,a=x\\ v")
            ]
        );
        assert_eq!(lines[4].fields[0].0, "f");
    }

    #[test]
    fn precision_scales_timestamps() {
        let (lines, _) = parse("m v=1 1700000000", Precision::S, 0, &ParseLimits::default());
        assert_eq!(lines[0].ts, 1_700_000_000_000_000_000);
        let (lines, _) = parse(
            "m v=1 1700000000000",
            Precision::Ms,
            0,
            &ParseLimits::default(),
        );
        assert_eq!(lines[0].ts, 1_700_000_000_000_000_000);
        let (_, errors) = parse(
            "m v=1 9223372036854775807",
            Precision::S,
            0,
            &ParseLimits::default(),
        );
        assert!(errors[0].reason.contains("out of range"));
    }

    #[test]
    fn bad_lines_are_named_and_the_rest_kept() {
        let body = "ok v=1\n\n# comment\nbad\nm v=\nm v=abc\nm v=1 12x\nm,t v=1\nm v=\"open\nm v=99999999999999999999i\nfine v=2";
        let (lines, errors) = parse(body, Precision::Ns, 0, &ParseLimits::default());
        assert_eq!(lines.len(), 2);
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
