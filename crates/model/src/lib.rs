//! Tributary's data model: identifiers, points, batches, the events of the
//! log, and the parsers that turn device payloads into batches. Pure: no
//! I/O, so it can be fuzzed.
//!
//! - [`ids`]: typed identifiers
//! - [`point`]: values, points and batches
//! - [`event`]: the event kinds the log carries (telemetry, attributes,
//!   device and tenant lifecycle)
//! - [`device_json`], [`line_protocol`]: payload parsers
//! - [`profile`]: device profiles' key schemas
//! - [`time`]: clock helpers

pub mod device_json;
pub mod event;
pub mod ids;
pub mod line_protocol;
pub mod point;
pub mod profile;
pub mod time;

pub use device_json::{parse_telemetry, ParseError, ParseLimits};
pub use event::{
    AttributeChange, AttributeScope, DeviceChange, DeviceEvent, Event, TenantChange, TenantEvent,
};
pub use ids::{DeviceId, TenantId, UserId};
pub use point::{Batch, Key, Point, Value};
