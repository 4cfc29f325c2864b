//! Scenario files (TOML): the fleet, its keys and signal models, events and rates.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A whole scenario.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Seed of every random choice (overridden by `--seed`).
    #[serde(default)]
    pub seed: u64,
    /// The devices.
    pub fleet: FleetSpec,
    /// How fast and how long.
    #[serde(default)]
    pub rate: RateSpec,
    /// What each device sends.
    #[serde(default, rename = "keys")]
    pub keys: Vec<KeySpec>,
    /// Things that happen to the signals or devices.
    #[serde(default)]
    pub events: Vec<EventSpec>,
}

/// The devices of a scenario.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FleetSpec {
    /// How many devices.
    pub count: usize,
    /// Name pattern; `{i}` is the device number from 0.
    #[serde(default = "default_name")]
    pub name: String,
    /// Labels given to every device when provisioned.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

fn default_name() -> String {
    "sim-{i}".into()
}

/// Rate, batching and stop condition.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RateSpec {
    /// Milliseconds between two readings of one device.
    #[serde(default)]
    pub interval_ms: Option<u64>,
    /// Total points per second across the fleet (instead of `interval_ms`).
    #[serde(default)]
    pub points_per_sec: Option<f64>,
    /// Readings per message (a message is one request or publish).
    #[serde(default = "one")]
    pub batch: usize,
    /// Stop after this many seconds of simulated time.
    #[serde(default)]
    pub duration_secs: Option<f64>,
    /// Stop after this many readings per device.
    #[serde(default)]
    pub readings: Option<u64>,
    /// Stop after this many points in total (a point is one key's value).
    #[serde(default)]
    pub points: Option<u64>,
    /// Seconds over which the fleet comes online, device by device.
    #[serde(default)]
    pub ramp_up_secs: f64,
}

fn one() -> usize {
    1
}

impl Default for RateSpec {
    fn default() -> Self {
        Self {
            interval_ms: Some(1000),
            points_per_sec: None,
            batch: 1,
            duration_secs: None,
            readings: None,
            points: None,
            ramp_up_secs: 0.0,
        }
    }
}

/// A signal model.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SignalKind {
    /// `offset + amplitude · sin(2π t / period + phase)`.
    Sine,
    /// Steps of ±`step` (uniform), kept within `min`..`max`.
    RandomWalk,
    /// Holds a level, jumping to a new one between `min` and `max` every `period_secs`.
    Step,
    /// Rises linearly from `min` to `max` every `period_secs`, then drops.
    Sawtooth,
    /// An integer that grows by `step` each reading.
    Counter,
    /// true/false, flipping with probability `p` per reading.
    Boolean,
    /// A position moving around (`lat`, `lon`); emits `<name>_lat` and `<name>_lon`.
    Gps,
    /// One of `values`, changing with probability `p` per reading.
    Enum,
    /// Always `offset`.
    Constant,
}

/// One telemetry key and its signal.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KeySpec {
    /// Key name.
    pub name: String,
    /// Signal model.
    pub signal: SignalKind,
    /// Lower bound (random walk, step, sawtooth).
    #[serde(default)]
    pub min: Option<f64>,
    /// Upper bound.
    #[serde(default)]
    pub max: Option<f64>,
    /// Sine amplitude.
    #[serde(default)]
    pub amplitude: Option<f64>,
    /// Sine centre / constant value / GPS latitude start.
    #[serde(default)]
    pub offset: Option<f64>,
    /// Period (s) of sine, step and sawtooth.
    #[serde(default)]
    pub period_secs: Option<f64>,
    /// Sine phase (radians); devices are spread by `device · phase_spread` on top.
    #[serde(default)]
    pub phase: f64,
    /// Extra phase per device number.
    #[serde(default)]
    pub phase_spread: f64,
    /// Step size of random walks and counters; GPS step in degrees.
    #[serde(default)]
    pub step: Option<f64>,
    /// Flip/change probability of booleans and enums.
    #[serde(default)]
    pub p: Option<f64>,
    /// Values of an enum.
    #[serde(default)]
    pub values: Vec<String>,
    /// Gaussian-ish noise (± this, uniform sum) added to numeric values.
    #[serde(default)]
    pub noise: f64,
    /// Round to this many decimals (floats); integers when 0 and `integer = true`.
    #[serde(default)]
    pub decimals: Option<u32>,
    /// Send as integers.
    #[serde(default)]
    pub integer: bool,
}

/// What an event does.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// Adds `magnitude` to the key during the window.
    Spike,
    /// Adds `magnitude` × progress through the window (and keeps it after).
    Drift,
    /// The key repeats its value from the window's start.
    Stuck,
    /// The key is not sent during the window.
    Dropout,
    /// The device sends nothing during the window.
    Offline,
    /// The device's timestamps are off by `magnitude` milliseconds during the window.
    ClockSkew,
    /// The device sends `magnitude` times as often during the window.
    Burst,
}

/// An event in the scenario.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EventSpec {
    /// What happens.
    pub kind: EventKind,
    /// The key (for spike, drift, stuck, dropout).
    #[serde(default)]
    pub key: Option<String>,
    /// Device numbers it applies to; all when omitted.
    #[serde(default)]
    pub devices: Option<Vec<usize>>,
    /// Start (seconds after the scenario starts).
    pub at_secs: f64,
    /// Length in seconds.
    pub duration_secs: f64,
    /// Size of the effect.
    #[serde(default)]
    pub magnitude: f64,
}

/// A scenario error, pointing at the line of the file when it can.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{}{message}", line.map(|l| format!("line {l}: ")).unwrap_or_default())]
pub struct ScenarioError {
    /// 1-based line number in the file.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// The line where `[[section]]` number `index` (or the first `key =` inside it) starts.
fn line_of_item(text: &str, section: &str, index: usize) -> Option<usize> {
    let header = format!("[[{section}]]");
    text.lines()
        .enumerate()
        .filter(|(_, l)| l.trim() == header)
        .nth(index)
        .map(|(i, _)| i + 1)
}

impl Scenario {
    /// Parses and checks a scenario; errors name the line.
    pub fn parse(text: &str) -> Result<Self, ScenarioError> {
        let scenario: Scenario = toml::from_str(text).map_err(|e| ScenarioError {
            line: e.span().map(|s| line_of(text, s.start)),
            message: e.message().trim().to_string(),
        })?;
        scenario.check(text)?;
        Ok(scenario)
    }

    fn check(&self, text: &str) -> Result<(), ScenarioError> {
        let at = |section: &str, i: usize, message: String| ScenarioError {
            line: line_of_item(text, section, i),
            message,
        };
        let top = |message: &str| ScenarioError {
            line: None,
            message: message.to_string(),
        };
        if self.fleet.count == 0 || self.fleet.count > 1_000_000 {
            return Err(top("fleet.count must be between 1 and 1000000"));
        }
        if self.keys.is_empty() {
            return Err(top(
                "the scenario has no [[keys]]: name at least one key and its signal",
            ));
        }
        if self.rate.batch == 0 {
            return Err(top("rate.batch must be at least 1"));
        }
        match (self.rate.interval_ms, self.rate.points_per_sec) {
            (Some(0), _) => return Err(top("rate.interval_ms must be positive")),
            (_, Some(p)) if p <= 0.0 => return Err(top("rate.points_per_sec must be positive")),
            _ => {}
        }
        for (i, k) in self.keys.iter().enumerate() {
            if k.name.is_empty() {
                return Err(at("keys", i, "key name must not be empty".into()));
            }
            if let (Some(min), Some(max)) = (k.min, k.max) {
                if min > max {
                    return Err(at(
                        "keys",
                        i,
                        format!("key {:?}: min {min} is greater than max {max}", k.name),
                    ));
                }
            }
            if k.signal == SignalKind::Enum && k.values.is_empty() {
                return Err(at(
                    "keys",
                    i,
                    format!("key {:?}: an enum signal needs values = [..]", k.name),
                ));
            }
            if matches!(k.signal, SignalKind::Step | SignalKind::Sawtooth)
                && k.period_secs.is_some_and(|p| p <= 0.0)
            {
                return Err(at(
                    "keys",
                    i,
                    format!("key {:?}: period_secs must be positive", k.name),
                ));
            }
            if let Some(p) = k.p {
                if !(0.0..=1.0).contains(&p) {
                    return Err(at(
                        "keys",
                        i,
                        format!("key {:?}: p must be between 0 and 1", k.name),
                    ));
                }
            }
        }
        for (i, e) in self.events.iter().enumerate() {
            let keyed = matches!(
                e.kind,
                EventKind::Spike | EventKind::Drift | EventKind::Stuck | EventKind::Dropout
            );
            match &e.key {
                None if keyed => {
                    return Err(at(
                        "events",
                        i,
                        format!("a {:?} event needs key = \"...\"", e.kind).to_lowercase(),
                    ))
                }
                Some(k) if !self.keys.iter().any(|s| &s.name == k) => {
                    return Err(at(
                        "events",
                        i,
                        format!("event key {k:?} is not one of the scenario's keys"),
                    ))
                }
                _ => {}
            }
            if e.duration_secs < 0.0 || e.at_secs < 0.0 {
                return Err(at(
                    "events",
                    i,
                    "at_secs and duration_secs must not be negative".into(),
                ));
            }
            if e.kind == EventKind::Burst && e.magnitude < 1.0 {
                return Err(at(
                    "events",
                    i,
                    "a burst needs magnitude >= 1 (the rate multiplier)".into(),
                ));
            }
            if let Some(d) = e
                .devices
                .as_ref()
                .and_then(|d| d.iter().find(|d| **d >= self.fleet.count))
            {
                return Err(at(
                    "events",
                    i,
                    format!(
                        "device {d} does not exist (the fleet has {})",
                        self.fleet.count
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Milliseconds between two readings of one device.
    pub fn interval_ms(&self) -> f64 {
        match (self.rate.points_per_sec, self.rate.interval_ms) {
            (Some(pps), _) => {
                let points_per_reading = self
                    .keys
                    .iter()
                    .map(|k| if k.signal == SignalKind::Gps { 2 } else { 1 })
                    .sum::<usize>() as f64;
                1000.0 * self.fleet.count as f64 * points_per_reading / pps
            }
            (None, Some(ms)) => ms as f64,
            (None, None) => 1000.0,
        }
    }

    /// The device name of number `i`.
    pub fn device_name(&self, i: usize) -> String {
        self.fleet.name.replace("{i}", &i.to_string())
    }

    /// The built-in demo: a few rooms with thermostats, meters and doors.
    pub fn demo() -> Self {
        Self::parse(DEMO).unwrap_or_else(|e| panic!("built-in demo scenario is invalid: {e}"))
    }
}

/// The demo scenario (also `examples/demo.toml`).
pub const DEMO: &str = include_str!("../../../examples/demo.toml");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_is_valid_and_errors_point_at_lines() {
        let demo = Scenario::demo();
        assert!(demo.fleet.count > 0);
        let bad = "[fleet]\ncount = 2\n\n[[keys]]\nname = \"t\"\nsignal = \"sine\"\n\n[[keys]]\nname = \"m\"\nsignal = \"wobble\"\n";
        let e = Scenario::parse(bad).unwrap_err();
        assert_eq!(e.line, Some(10), "{e}");
        assert!(
            e.to_string()
                .starts_with("line 10: unknown variant `wobble`"),
            "{e}"
        );
        let bad = "[fleet]\ncount = 2\ncolour = 1\n[[keys]]\nname = \"t\"\nsignal = \"sine\"\n";
        assert_eq!(Scenario::parse(bad).unwrap_err().line, Some(3));
        let bad = "[fleet]\ncount = 2\n[[keys]]\nname = \"t\"\nsignal = \"sine\"\n[[events]]\nkind = \"spike\"\nkey = \"nope\"\nat_secs = 1\nduration_secs = 1\n";
        let e = Scenario::parse(bad).unwrap_err();
        assert_eq!(e.line, Some(6));
        assert!(e.message.contains("\"nope\""));
        let bad = "[fleet]\ncount = 2\n[[keys]]\nname = \"m\"\nsignal = \"enum\"\n";
        assert!(Scenario::parse(bad)
            .unwrap_err()
            .message
            .contains("needs values"));
    }
}
