//! Injected events: windows of time in which a key or a device misbehaves.

use serde_json::Value;

use crate::scenario::{EventKind, EventSpec};

/// The events of a scenario, asked per device and time.
#[derive(Clone, Debug, Default)]
pub struct Events {
    events: Vec<EventSpec>,
}

impl Events {
    /// Wraps the scenario's events.
    pub fn new(events: &[EventSpec]) -> Self {
        Self {
            events: events.to_vec(),
        }
    }

    fn active(&self, kind: EventKind, device: usize, t: f64) -> impl Iterator<Item = &EventSpec> {
        self.events.iter().filter(move |e| {
            e.kind == kind
                && e.devices.as_ref().is_none_or(|d| d.contains(&device))
                && t >= e.at_secs
                && t < e.at_secs + e.duration_secs
        })
    }

    /// Whether the device sends nothing at `t`.
    pub fn offline(&self, device: usize, t: f64) -> bool {
        self.active(EventKind::Offline, device, t).next().is_some()
    }

    /// How many times faster the device sends at `t`.
    pub fn burst(&self, device: usize, t: f64) -> f64 {
        self.active(EventKind::Burst, device, t)
            .map(|e| e.magnitude)
            .fold(1.0, f64::max)
    }

    /// Milliseconds the device's clock is off at `t`.
    pub fn skew_ms(&self, device: usize, t: f64) -> i64 {
        self.active(EventKind::ClockSkew, device, t)
            .map(|e| e.magnitude as i64)
            .sum()
    }

    /// Whether `key` is left out at `t`.
    pub fn dropped(&self, device: usize, key: &str, t: f64) -> bool {
        self.active(EventKind::Dropout, device, t)
            .any(|e| e.key.as_deref() == Some(key))
    }

    /// The window start of a `stuck` event on `key` at `t`, if any.
    pub fn stuck_since(&self, device: usize, key: &str, t: f64) -> Option<f64> {
        self.active(EventKind::Stuck, device, t)
            .find(|e| e.key.as_deref() == Some(key))
            .map(|e| e.at_secs)
    }

    /// Applies spikes and drifts to a numeric value of `key` at `t`.
    pub fn shift(&self, device: usize, key: &str, t: f64, value: Value) -> Value {
        let Some(v) = value.as_f64() else {
            return value;
        };
        let mut delta = 0.0;
        for e in self.events.iter().filter(|e| {
            e.key.as_deref() == Some(key) && e.devices.as_ref().is_none_or(|d| d.contains(&device))
        }) {
            match e.kind {
                EventKind::Spike if t >= e.at_secs && t < e.at_secs + e.duration_secs => {
                    delta += e.magnitude
                }
                EventKind::Drift if t >= e.at_secs => {
                    let progress = if e.duration_secs > 0.0 {
                        ((t - e.at_secs) / e.duration_secs).min(1.0)
                    } else {
                        1.0
                    };
                    delta += e.magnitude * progress;
                }
                _ => {}
            }
        }
        if delta == 0.0 {
            return value;
        }
        if value.is_i64() {
            Value::from((v + delta).round() as i64)
        } else {
            serde_json::Number::from_f64(v + delta)
                .map(Value::Number)
                .unwrap_or(value)
        }
    }
}
