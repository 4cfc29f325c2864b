//! The fleet: turns a scenario into messages over simulated time.

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::SeedableRng;
use serde_json::Value;

use crate::events::Events;
use crate::scenario::Scenario;
use crate::signal::Signal;

/// One reading of one device: a timestamp and values by key.
#[derive(Clone, Debug, PartialEq)]
pub struct Reading {
    /// Milliseconds since the epoch (with any clock skew applied).
    pub ts: i64,
    /// Values by key.
    pub values: BTreeMap<String, Value>,
}

/// Readings of one device sent together.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    /// Device number.
    pub device: usize,
    /// The readings, oldest first.
    pub readings: Vec<Reading>,
}

struct DeviceState {
    rng: StdRng,
    signals: Vec<Signal>,
    /// Simulated milliseconds (from the start) of the next reading.
    next_due: f64,
    readings: u64,
    pending: Vec<Reading>,
    /// Last value of each key, for `stuck` events.
    last: BTreeMap<String, (f64, Value)>,
}

/// Every device of a scenario and where it is in time.
pub struct Fleet {
    scenario: Scenario,
    events: Events,
    start_ms: i64,
    interval_ms: f64,
    devices: Vec<DeviceState>,
    /// Points generated so far, for `rate.points`.
    points: u64,
}

impl Fleet {
    /// The fleet at simulated time 0, which is `start_ms` on the wall clock.
    pub fn new(scenario: &Scenario, seed: u64, start_ms: i64) -> Self {
        let interval_ms = scenario.interval_ms();
        let count = scenario.fleet.count;
        let devices = (0..count)
            .map(|i| {
                let mut rng = StdRng::seed_from_u64(
                    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (i as u64).wrapping_add(1),
                );
                let signals = scenario
                    .keys
                    .iter()
                    .map(|k| Signal::new(k, i, &mut rng))
                    .collect();
                let ramp = scenario.rate.ramp_up_secs * 1000.0 * i as f64 / count as f64;
                // Spread devices over one interval so they do not all send at once.
                let spread = interval_ms * i as f64 / count as f64;
                DeviceState {
                    rng,
                    signals,
                    next_due: ramp + spread,
                    readings: 0,
                    pending: Vec::new(),
                    last: BTreeMap::new(),
                }
            })
            .collect();
        Self {
            scenario: scenario.clone(),
            events: Events::new(&scenario.events),
            start_ms,
            interval_ms,
            devices,
            points: 0,
        }
    }

    fn done(&self, d: &DeviceState) -> bool {
        self.scenario.rate.points.is_some_and(|n| self.points >= n)
            || self.scenario.rate.readings.is_some_and(|n| d.readings >= n)
            || self
                .scenario
                .rate
                .duration_secs
                .is_some_and(|s| d.next_due >= s * 1000.0)
    }

    /// Whether every device has sent all it will.
    pub fn finished(&self) -> bool {
        self.devices.iter().all(|d| self.done(d))
    }

    /// The messages due up to simulated millisecond `until`, in time order per device.
    /// At the end (`flush`), partly filled batches are sent too.
    pub fn advance(&mut self, until: f64, flush: bool) -> Vec<Message> {
        let mut out = Vec::new();
        let batch = self.scenario.rate.batch;
        for i in 0..self.devices.len() {
            loop {
                let finished = self.done(&self.devices[i]);
                let d = &mut self.devices[i];
                if finished || d.next_due > until {
                    break;
                }
                let t = d.next_due / 1000.0;
                let burst = self.events.burst(i, t);
                d.next_due += self.interval_ms / burst;
                d.readings += 1;
                if self.events.offline(i, t) {
                    continue;
                }
                let mut values = BTreeMap::new();
                for s in d.signals.iter_mut() {
                    for (key, v) in s.next(t, &mut d.rng) {
                        if self.events.dropped(i, s.name(), t) {
                            continue;
                        }
                        let v = match self.events.stuck_since(i, s.name(), t) {
                            Some(since) => match d.last.get(&key) {
                                Some((at, frozen))
                                    if *at <= since || (*at - since).abs() < 1e-9 =>
                                {
                                    frozen.clone()
                                }
                                _ => v,
                            },
                            None => v,
                        };
                        let v = self.events.shift(i, s.name(), t, v);
                        if self.events.stuck_since(i, s.name(), t).is_none()
                            || !d.last.contains_key(&key)
                        {
                            d.last.insert(key.clone(), (t, v.clone()));
                        }
                        values.insert(key, v);
                    }
                }
                self.points += values.len() as u64;
                let ts = self.start_ms + (t * 1000.0).round() as i64 + self.events.skew_ms(i, t);
                d.pending.push(Reading { ts, values });
                if d.pending.len() >= batch {
                    out.push(Message {
                        device: i,
                        readings: std::mem::take(&mut d.pending),
                    });
                }
            }
            let finished = self.done(&self.devices[i]);
            let d = &mut self.devices[i];
            if (flush || finished) && !d.pending.is_empty() {
                out.push(Message {
                    device: i,
                    readings: std::mem::take(&mut d.pending),
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCENARIO: &str = r#"
seed = 1
[fleet]
count = 3
[rate]
interval_ms = 1000
batch = 2
readings = 10
[[keys]]
name = "t"
signal = "sine"
offset = 20.0
amplitude = 1.0
[[keys]]
name = "c"
signal = "counter"
[[events]]
kind = "offline"
devices = [1]
at_secs = 2.0
duration_secs = 3.0
[[events]]
kind = "spike"
key = "t"
devices = [0]
at_secs = 0.0
duration_secs = 1.0
magnitude = 100.0
[[events]]
kind = "clock_skew"
devices = [2]
at_secs = 0.0
duration_secs = 100.0
magnitude = -5000.0
"#;

    fn all(seed: u64) -> Vec<Message> {
        let s = Scenario::parse(SCENARIO).unwrap();
        let mut f = Fleet::new(&s, seed, 1_000_000);
        let mut out = f.advance(1e12, true);
        assert!(f.finished());
        out.sort_by_key(|m| (m.device, m.readings[0].ts));
        out
    }

    #[test]
    fn readings_batches_events_and_determinism() {
        let msgs = all(1);
        assert_eq!(msgs, all(1), "same seed, same messages");
        let count = |d: usize| {
            msgs.iter()
                .filter(|m| m.device == d)
                .map(|m| m.readings.len())
                .sum::<usize>()
        };
        assert_eq!(count(0), 10);
        assert_eq!(count(1), 7, "offline for 3 of 10 readings");
        assert!(msgs.iter().all(|m| m.readings.len() <= 2));
        let first0 = &msgs.iter().find(|m| m.device == 0).unwrap().readings[0];
        assert!(first0.values["t"].as_f64().unwrap() > 100.0, "spiked");
        let first2 = &msgs.iter().find(|m| m.device == 2).unwrap().readings[0];
        assert!(first2.ts < 1_000_000, "skewed clock");
        assert_eq!(
            msgs.iter().find(|m| m.device == 0).unwrap().readings[1].values["c"],
            Value::from(2)
        );

        // A total point budget stops the whole fleet.
        let mut s = Scenario::parse(SCENARIO).unwrap();
        s.rate.readings = None;
        s.rate.points = Some(30);
        let mut f = Fleet::new(&s, 1, 0);
        let points: usize = f
            .advance(1e12, true)
            .iter()
            .flat_map(|m| &m.readings)
            .map(|r| r.values.len())
            .sum();
        assert!(f.finished());
        assert!((30..32).contains(&points), "{points}");
    }
}
