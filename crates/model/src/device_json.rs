//! The ThingsBoard device telemetry payload: `{"temp":21.5}`,
//! `{"ts":1700000000000,"values":{"temp":21.5}}`, or an array of either.

use serde_json::{Map, Number};
use thiserror::Error;

use crate::point::{Point, Value};
use crate::time::{ms_to_ns, MAX_MS};

/// Limits a payload must respect; every one of them has a config setting.
#[derive(Clone, Debug)]
pub struct ParseLimits {
    /// Longest key, in bytes.
    pub max_key_len: usize,
    /// Longest string value, in bytes.
    pub max_string_len: usize,
    /// Most points in one batch.
    pub max_points: usize,
}

impl Default for ParseLimits {
    fn default() -> Self {
        Self {
            max_key_len: 255,
            max_string_len: 8 * 1024,
            max_points: 100_000,
        }
    }
}

/// Why a payload was rejected; `Display` is the human detail, `field` the offending key.
#[derive(Debug, Error, PartialEq)]
pub enum ParseError {
    /// The body is not JSON.
    #[error("malformed JSON: {0}")]
    Json(String),
    /// The top-level JSON has the wrong shape.
    #[error("{0}")]
    Shape(String),
    /// A key is empty, too long or has control characters.
    #[error("invalid key {key:?}: {reason}")]
    Key {
        /// The offending key.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A value has a type Tributary does not store.
    #[error("unsupported value for key {key:?}: {found} (expected a number, boolean or string)")]
    UnsupportedValue {
        /// The key whose value was rejected.
        key: String,
        /// The JSON type that was found.
        found: &'static str,
    },
    /// A value is of a supported type but out of range.
    #[error("invalid value for key {key:?}: {reason}")]
    InvalidValue {
        /// The key whose value was rejected.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The `ts` field is missing, of the wrong type or out of range.
    #[error("invalid ts: {0}")]
    Timestamp(String),
    /// The batch holds no points or too many.
    #[error("{0}")]
    Size(String),
}

impl ParseError {
    /// The JSON field the error is about, when there is one.
    pub fn field(&self) -> Option<&str> {
        match self {
            ParseError::Key { key, .. }
            | ParseError::UnsupportedValue { key, .. }
            | ParseError::InvalidValue { key, .. } => Some(key),
            ParseError::Timestamp(_) => Some("ts"),
            _ => None,
        }
    }
}

/// Parses a telemetry payload into points; `now_ns` stamps points that carry no `ts`.
pub fn parse_telemetry(
    body: &[u8],
    now_ns: i64,
    limits: &ParseLimits,
) -> Result<Vec<Point>, ParseError> {
    let json: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| ParseError::Json(e.to_string()))?;
    let mut points = Vec::new();
    match json {
        serde_json::Value::Array(items) => {
            if items.is_empty() {
                return Err(ParseError::Size(
                    "empty array: no telemetry to store".into(),
                ));
            }
            for (i, item) in items.into_iter().enumerate() {
                match item {
                    serde_json::Value::Object(obj) => {
                        parse_entry(obj, now_ns, limits, &mut points)?
                    }
                    other => {
                        return Err(ParseError::Shape(format!(
                            "array element {i} is {}, expected an object",
                            json_type(&other)
                        )))
                    }
                }
            }
        }
        serde_json::Value::Object(obj) => parse_entry(obj, now_ns, limits, &mut points)?,
        other => {
            return Err(ParseError::Shape(format!(
                "payload is {}, expected an object or an array of objects",
                json_type(&other)
            )))
        }
    }
    if points.is_empty() {
        return Err(ParseError::Size("payload holds no telemetry values".into()));
    }
    check_big_integers(body, &points)?;
    Ok(points)
}

/// JSON parsers read an integer literal beyond u64 as a float; refuse it
/// instead, like one beyond i64. Only a whole float of 2^63 or more can have
/// come from one, so the body is scanned only then.
fn check_big_integers(body: &[u8], points: &[Point]) -> Result<(), ParseError> {
    const TWO_63: f64 = 9_223_372_036_854_775_808.0;
    let suspect =
        |p: &&Point| matches!(p.value, Value::Float(f) if f.abs() >= TWO_63 && f.fract() == 0.0);
    if !points.iter().any(|p| suspect(&p)) {
        return Ok(());
    }
    let Some(literal) = oversized_integer_literal(body) else {
        return Ok(());
    };
    let key = literal
        .parse::<f64>()
        .ok()
        .and_then(|f| points.iter().find(|p| p.value == Value::Float(f)))
        .map_or_else(String::new, |p| p.key.to_string());
    Err(ParseError::InvalidValue {
        key,
        reason: format!("integer {literal} does not fit in a signed 64-bit integer"),
    })
}

/// The first integer literal (no fraction, no exponent) outside strings
/// that does not fit in an i64.
fn oversized_integer_literal(body: &[u8]) -> Option<&str> {
    let (mut i, mut in_string) = (0, false);
    while i < body.len() {
        let b = body[i];
        if in_string {
            match b {
                b'\\' => i += 1,
                b'"' => in_string = false,
                _ => {}
            }
            i += 1;
            continue;
        }
        if b == b'"' {
            in_string = true;
            i += 1;
            continue;
        }
        if b == b'-' || b.is_ascii_digit() {
            let start = i;
            i += 1;
            while i < body.len()
                && matches!(body[i], b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-')
            {
                i += 1;
            }
            let token = std::str::from_utf8(&body[start..i]).ok()?;
            if !token.contains(['.', 'e', 'E']) && token.parse::<i64>().is_err() {
                return Some(token);
            }
            continue;
        }
        i += 1;
    }
    None
}

/// One object: either flat key/values stamped now, or `{"ts":..,"values":{..}}`.
fn parse_entry(
    mut obj: Map<String, serde_json::Value>,
    now_ns: i64,
    limits: &ParseLimits,
    out: &mut Vec<Point>,
) -> Result<(), ParseError> {
    let (ts, values) = if obj.contains_key("values") {
        let Some(ts) = obj.remove("ts") else {
            return Err(ParseError::Timestamp(
                "an object with \"values\" must also carry \"ts\" (milliseconds since the epoch)"
                    .into(),
            ));
        };
        let values = match obj.remove("values") {
            Some(serde_json::Value::Object(v)) => v,
            Some(other) => {
                return Err(ParseError::Shape(format!(
                    "\"values\" is {}, expected an object of key/value pairs",
                    json_type(&other)
                )))
            }
            None => Map::new(),
        };
        if let Some(extra) = obj.keys().next() {
            return Err(ParseError::Shape(format!(
                "unexpected field {extra:?} next to \"ts\" and \"values\""
            )));
        }
        (parse_ts(&ts)?, values)
    } else if obj.contains_key("ts") {
        return Err(ParseError::Shape(
            "\"ts\" given without \"values\": use {\"ts\":<ms>,\"values\":{...}}".into(),
        ));
    } else {
        (now_ns, obj)
    };
    for (key, value) in values {
        check_key(&key, limits)?;
        let value = parse_value(&key, value, limits)?;
        if out.len() >= limits.max_points {
            return Err(ParseError::Size(format!(
                "too many points in one batch (limit {})",
                limits.max_points
            )));
        }
        out.push(Point {
            key: key.into(),
            ts,
            value,
        });
    }
    Ok(())
}

fn parse_ts(ts: &serde_json::Value) -> Result<i64, ParseError> {
    let ms = match ts {
        serde_json::Value::Number(n) => n.as_i64().ok_or_else(|| {
            ParseError::Timestamp(format!("{n} is not a whole number of milliseconds"))
        })?,
        other => {
            return Err(ParseError::Timestamp(format!(
                "is {}, expected milliseconds since the epoch",
                json_type(other)
            )))
        }
    };
    ms_to_ns(ms).ok_or_else(|| ParseError::Timestamp(format!("{ms} is outside 0..={MAX_MS}")))
}

fn check_key(key: &str, limits: &ParseLimits) -> Result<(), ParseError> {
    let reason = if key.is_empty() {
        "keys must not be empty".to_string()
    } else if key.len() > limits.max_key_len {
        format!("longer than {} bytes", limits.max_key_len)
    } else if key.chars().any(char::is_control) {
        "keys must not contain control characters".to_string()
    } else {
        return Ok(());
    };
    Err(ParseError::Key {
        key: truncate(key, 64),
        reason,
    })
}

fn parse_value(
    key: &str,
    value: serde_json::Value,
    limits: &ParseLimits,
) -> Result<Value, ParseError> {
    match value {
        serde_json::Value::Number(n) => number(key, &n),
        serde_json::Value::Bool(b) => Ok(Value::Bool(b)),
        serde_json::Value::String(s) if s.len() > limits.max_string_len => {
            Err(ParseError::InvalidValue {
                key: key.to_string(),
                reason: format!("string longer than {} bytes", limits.max_string_len),
            })
        }
        serde_json::Value::String(s) => Ok(Value::Str(s)),
        other => Err(ParseError::UnsupportedValue {
            key: key.to_string(),
            found: json_type(&other),
        }),
    }
}

fn number(key: &str, n: &Number) -> Result<Value, ParseError> {
    if let Some(i) = n.as_i64() {
        Ok(Value::Int(i))
    } else if n.is_u64() {
        Err(ParseError::InvalidValue {
            key: key.to_string(),
            reason: format!("integer {n} does not fit in a signed 64-bit integer"),
        })
    } else {
        n.as_f64()
            .filter(|f| f.is_finite())
            .map(Value::Float)
            .ok_or_else(|| ParseError::InvalidValue {
                key: key.to_string(),
                reason: format!("{n} is not a finite number"),
            })
    }
}

fn json_type(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_000;

    fn parse(s: &str) -> Result<Vec<Point>, ParseError> {
        parse_telemetry(s.as_bytes(), NOW, &ParseLimits::default())
    }

    #[test]
    fn flat_object_is_stamped_now_and_keeps_int_and_float_apart() {
        let pts = parse(r#"{"temp":21.5,"count":3,"on":true,"mode":"eco","whole":21.0}"#).unwrap();
        let by_key = |k: &str| pts.iter().find(|p| p.key == k).unwrap().clone();
        assert_eq!(by_key("temp").value, Value::Float(21.5));
        assert_eq!(by_key("count").value, Value::Int(3));
        assert_eq!(by_key("on").value, Value::Bool(true));
        assert_eq!(by_key("mode").value, Value::Str("eco".into()));
        assert_eq!(by_key("whole").value, Value::Float(21.0));
        assert!(pts.iter().all(|p| p.ts == NOW));
    }

    #[test]
    fn timestamped_form_and_arrays() {
        let pts = parse(
            r#"[{"ts":1700000000000,"values":{"a":1}},{"b":2.5},{"ts":1700000000001,"values":{"a":2}}]"#,
        )
        .unwrap();
        assert_eq!(pts.len(), 3);
        assert_eq!(pts[0].ts, 1_700_000_000_000_000_000);
        assert_eq!(pts[1].ts, NOW);
        assert_eq!(pts[2].value, Value::Int(2));
    }

    #[test]
    fn rejections_name_what_is_wrong() {
        let cases = [
            ("{bad json", "malformed JSON"),
            ("42", "payload is a number"),
            ("[]", "empty array"),
            ("{}", "no telemetry"),
            (r#"{"a":null}"#, "unsupported value for key \"a\": null"),
            (
                r#"{"a":{"b":1}}"#,
                "unsupported value for key \"a\": an object",
            ),
            (r#"{"a":[1]}"#, "an array"),
            (r#"{"":1}"#, "keys must not be empty"),
            (r#"{"a":18446744073709551615}"#, "does not fit"),
            (r#"{"ts":"x","values":{"a":1}}"#, "invalid ts"),
            (r#"{"ts":-5,"values":{"a":1}}"#, "outside"),
            (r#"{"ts":1.5,"values":{"a":1}}"#, "whole number"),
            (r#"{"values":{"a":1}}"#, "must also carry \"ts\""),
            (r#"{"ts":1,"temp":2}"#, "without \"values\""),
            (
                r#"{"ts":1,"values":{"a":1},"x":2}"#,
                "unexpected field \"x\"",
            ),
            (r#"[{"a":1}, 3]"#, "array element 1 is a number"),
        ];
        for (body, want) in cases {
            let err = parse(body).expect_err(body).to_string();
            assert!(
                err.contains(want),
                "{body}: {err:?} does not contain {want:?}"
            );
        }
    }

    #[test]
    fn limits_are_enforced() {
        let limits = ParseLimits {
            max_key_len: 3,
            max_string_len: 4,
            max_points: 2,
        };
        let p = |s: &str| parse_telemetry(s.as_bytes(), NOW, &limits);
        assert!(matches!(p(r#"{"abcd":1}"#), Err(ParseError::Key { .. })));
        assert!(matches!(
            p(r#"{"a":"12345"}"#),
            Err(ParseError::InvalidValue { .. })
        ));
        assert!(matches!(
            p(r#"{"a":1,"b":2,"c":3}"#),
            Err(ParseError::Size(_))
        ));
        assert_eq!(p(r#"{"a":1,"b":2}"#).unwrap().len(), 2);
    }

    #[test]
    fn errors_carry_their_field() {
        let err = parse(r#"{"temp":null}"#).unwrap_err();
        assert_eq!(err.field(), Some("temp"));
        assert_eq!(parse("{").unwrap_err().field(), None);
    }

    #[test]
    fn integers_beyond_i64_are_refused_not_made_floats() {
        for body in [
            r#"{"big":18446744073709551616}"#,
            r#"{"ok":1.5,"big":-99999999999999999999999}"#,
            r#"[{"ts":1700000000000,"values":{"big":123456789012345678901234567890}}]"#,
        ] {
            let err = parse(body).unwrap_err();
            assert_eq!(err.field(), Some("big"), "{body}: {err}");
            assert!(err.to_string().contains("does not fit"), "{err}");
        }
        // Floats written as floats stay floats, however large; strings are not numbers.
        let ok =
            parse(r#"{"f":1e20,"g":18446744073709551616.0,"s":"99999999999999999999"}"#).unwrap();
        assert_eq!(ok.len(), 3);
    }
}
