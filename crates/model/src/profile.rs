//! Device profiles: the telemetry key schema a device's batches must follow.

use std::collections::BTreeMap;

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;
use utoipa::ToSchema;

use crate::point::{Point, Value};

/// The type a key's values must have.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ValueKind {
    /// A float or an integer.
    Number,
    /// A float (integers are accepted and stored as sent).
    Float,
    /// An integer only.
    Int,
    /// A boolean.
    Bool,
    /// A string.
    String,
}

/// Rules for one telemetry key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, remote = "Self")]
pub struct KeyRule {
    /// Required type of the values.
    #[serde(rename = "type")]
    pub kind: ValueKind,
    /// Unit, for display (e.g. `°C`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// Smallest allowed numeric value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Largest allowed numeric value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// Every batch must carry this key.
    #[serde(default)]
    pub required: bool,
}

/// The key schema of a profile.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, remote = "Self")]
pub struct ProfileSchema {
    /// Rules per key.
    #[serde(default)]
    pub keys: BTreeMap<String, KeyRule>,
    /// Whether keys without a rule are accepted.
    #[serde(default = "yes")]
    pub allow_unknown_keys: bool,
}

fn yes() -> bool {
    true
}

/// A struct read only from a JSON object: serde's derive would also take
/// it from an array of its fields in order (`[{}]` as a schema), which the
/// API documents as an error.
trait FromObject: Sized {
    fn from_map<'de, A: MapAccess<'de>>(map: A) -> Result<Self, A::Error>;
}

struct ObjectVisitor<T>(std::marker::PhantomData<T>);

impl<'de, T: FromObject> Visitor<'de> for ObjectVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        T::from_map(map)
    }
}

/// `Serialize` as derived, and `Deserialize` from an object only.
macro_rules! object_only {
    ($t:ty) => {
        impl FromObject for $t {
            fn from_map<'de, A: MapAccess<'de>>(map: A) -> Result<Self, A::Error> {
                <$t>::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }

        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_map(ObjectVisitor(std::marker::PhantomData))
            }
        }

        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                <$t>::serialize(self, s)
            }
        }
    };
}

object_only!(KeyRule);
object_only!(ProfileSchema);

impl Default for ProfileSchema {
    fn default() -> Self {
        Self {
            keys: BTreeMap::new(),
            allow_unknown_keys: true,
        }
    }
}

/// A batch that breaks a profile rule; names the key and the rule.
#[derive(Debug, Error, PartialEq)]
#[error("key {key:?} breaks the device profile: {rule}")]
pub struct ProfileViolation {
    /// The key.
    pub key: String,
    /// The rule and how it was broken.
    pub rule: String,
}

impl ProfileSchema {
    /// Checks a profile's own consistency (min ≤ max, bounds only on numbers).
    pub fn check(&self) -> Result<(), String> {
        for (key, rule) in &self.keys {
            if let (Some(min), Some(max)) = (rule.min, rule.max) {
                if min > max {
                    return Err(format!("key {key:?}: min {min} is greater than max {max}"));
                }
            }
            let numeric = matches!(
                rule.kind,
                ValueKind::Number | ValueKind::Float | ValueKind::Int
            );
            if !numeric && (rule.min.is_some() || rule.max.is_some()) {
                return Err(format!(
                    "key {key:?}: min and max apply to numeric types only"
                ));
            }
        }
        Ok(())
    }

    /// Checks every point of a batch against the rules.
    pub fn validate(&self, points: &[Point]) -> Result<(), ProfileViolation> {
        for p in points {
            let Some(rule) = self.keys.get(p.key.as_str()) else {
                if self.allow_unknown_keys {
                    continue;
                }
                return Err(ProfileViolation {
                    key: p.key.to_string(),
                    rule: "the key is not in the profile and unknown keys are not allowed".into(),
                });
            };
            let type_ok = matches!(
                (rule.kind, &p.value),
                (
                    ValueKind::Number | ValueKind::Float,
                    Value::Float(_) | Value::Int(_)
                ) | (ValueKind::Int, Value::Int(_))
                    | (ValueKind::Bool, Value::Bool(_))
                    | (ValueKind::String, Value::Str(_))
            );
            if !type_ok {
                return Err(ProfileViolation {
                    key: p.key.to_string(),
                    rule: format!("type must be {:?}, got {}", rule.kind, kind_name(&p.value))
                        .to_lowercase(),
                });
            }
            if let Some(v) = p.value.as_f64() {
                if let Some(min) = rule.min.filter(|m| v < *m) {
                    return Err(ProfileViolation {
                        key: p.key.to_string(),
                        rule: format!("value {v} is below min {min}"),
                    });
                }
                if let Some(max) = rule.max.filter(|m| v > *m) {
                    return Err(ProfileViolation {
                        key: p.key.to_string(),
                        rule: format!("value {v} is above max {max}"),
                    });
                }
            }
        }
        for (key, rule) in &self.keys {
            if rule.required && !points.iter().any(|p| p.key == key.as_str()) {
                return Err(ProfileViolation {
                    key: key.clone(),
                    rule: "the key is required in every message".into(),
                });
            }
        }
        Ok(())
    }
}

fn kind_name(v: &Value) -> &'static str {
    match v {
        Value::Float(_) => "float",
        Value::Int(_) => "int",
        Value::Bool(_) => "bool",
        Value::Str(_) => "string",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schema_or_a_key_rule_is_read_from_an_object_only() {
        let ok: ProfileSchema =
            serde_json::from_str(r#"{"keys":{"t":{"type":"number","max":5}}}"#).unwrap();
        assert_eq!(ok.keys["t"].max, Some(5.0));
        assert!(ok.allow_unknown_keys);
        assert_eq!(
            serde_json::from_value::<ProfileSchema>(serde_json::to_value(&ok).unwrap()).unwrap(),
            ok
        );
        for bad in [
            r#"[{}]"#,
            r#"{"keys":{"t":["number"]}}"#,
            r#"{"keys":{},"extra":1}"#,
        ] {
            let e = serde_json::from_str::<ProfileSchema>(bad)
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("object") || e.contains("unknown field"),
                "{bad}: {e}"
            );
        }
    }

    fn pt(key: &str, value: Value) -> Point {
        Point {
            key: key.into(),
            ts: 0,
            value,
        }
    }

    #[test]
    fn rules_name_the_key_and_the_rule() {
        let schema: ProfileSchema = serde_json::from_str(
            r#"{"keys":{"temp":{"type":"number","unit":"°C","min":-40,"max":85,"required":true},
                        "mode":{"type":"string"}},"allow_unknown_keys":false}"#,
        )
        .unwrap();
        assert!(schema.check().is_ok());
        assert!(schema
            .validate(&[
                pt("temp", Value::Int(20)),
                pt("mode", Value::Str("a".into()))
            ])
            .is_ok());
        let err = |pts: &[Point]| schema.validate(pts).unwrap_err().to_string();
        assert!(err(&[pt("temp", Value::Float(90.0))]).contains("above max 85"));
        assert!(err(&[pt("temp", Value::Float(-41.0))]).contains("below min -40"));
        assert!(err(&[pt("temp", Value::Str("hot".into()))])
            .contains("type must be number, got string"));
        assert!(err(&[pt("mode", Value::Str("a".into()))]).contains("\"temp\""));
        assert!(err(&[pt("temp", Value::Int(1)), pt("x", Value::Int(1))])
            .contains("not in the profile"));
        let bad: ProfileSchema =
            serde_json::from_str(r#"{"keys":{"a":{"type":"int","min":5,"max":1}}}"#).unwrap();
        assert!(bad.check().is_err());
        assert!(
            serde_json::from_str::<ProfileSchema>(r#"{"keys":{"a":{"type":"complex"}}}"#).is_err()
        );
    }
}
