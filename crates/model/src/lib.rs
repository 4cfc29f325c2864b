//! Tributary's data model: identifiers, points, batches and the parsers that
//! turn device payloads into batches. Pure: no I/O, so it can be fuzzed.

pub mod device_json;
pub mod ids;
pub mod line_protocol;
pub mod point;
pub mod profile;
pub mod time;

pub use device_json::{parse_telemetry, ParseError, ParseLimits};
pub use ids::{DeviceId, TenantId, UserId};
pub use point::{Batch, Key, Point, Value};
