//! Points and batches: what every source produces and every sink consumes.

use serde::{Deserialize, Serialize};

use crate::ids::{DeviceId, TenantId};

/// A telemetry value. Integers and floats are kept apart, as devices send them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Value {
    /// A 64-bit float (never NaN or infinite: JSON cannot carry those).
    Float(f64),
    /// A signed 64-bit integer.
    Int(i64),
    /// A boolean.
    Bool(bool),
    /// A UTF-8 string.
    Str(String),
}

impl Value {
    /// The value as plain JSON (`21.5`, `3`, `true`, `"on"`).
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Float(f) => serde_json::Number::from_f64(*f)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
            Value::Int(i) => serde_json::Value::from(*i),
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Str(s) => serde_json::Value::String(s.clone()),
        }
    }

    /// The value as a float, for numeric kinds.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Float(f) => Some(*f),
            Value::Int(i) => Some(*i as f64),
            _ => None,
        }
    }

    /// Approximate heap plus inline size, for memory accounting.
    pub fn size_hint(&self) -> usize {
        std::mem::size_of::<Self>()
            + match self {
                Value::Str(s) => s.len(),
                _ => 0,
            }
    }
}

/// A telemetry key, e.g. `temp`: kept inline (no allocation) up to 24 bytes,
/// which nearly every key is.
pub type Key = compact_str::CompactString;

/// One reading of one key at one time; the device and tenant come from its batch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// Telemetry key, e.g. `temp`.
    pub key: Key,
    /// Timestamp in nanoseconds since the epoch.
    pub ts: i64,
    /// The reading.
    pub value: Value,
}

/// The points of one message from one device: accepted or rejected whole.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    /// The tenant that owns the device.
    pub tenant: TenantId,
    /// The device the points belong to.
    pub device: DeviceId,
    /// The readings, in the order the device sent them.
    pub points: Vec<Point>,
}

impl Batch {
    /// Approximate memory taken by this batch, for bounded queues.
    pub fn size_hint(&self) -> usize {
        std::mem::size_of::<Self>()
            + self
                .points
                .iter()
                .map(|p| std::mem::size_of::<Point>() + p.key.len() + p.value.size_hint())
                .sum::<usize>()
    }
}
