//! Signal models: each key of each device produces values from its own state
//! and its own seeded random stream, so a run is reproducible.

use rand::rngs::StdRng;
use rand::Rng;
use serde_json::Value;

use crate::scenario::{KeySpec, SignalKind};

/// The evolving state of one key of one device.
#[derive(Clone, Debug)]
pub struct Signal {
    spec: KeySpec,
    device: usize,
    value: f64,
    count: i64,
    flag: bool,
    choice: usize,
    lat: f64,
    lon: f64,
    step_until: f64,
}

fn round(v: f64, decimals: Option<u32>) -> f64 {
    match decimals {
        Some(d) => {
            let f = 10f64.powi(d as i32);
            (v * f).round() / f
        }
        None => v,
    }
}

impl Signal {
    /// The starting state for `device`.
    pub fn new(spec: &KeySpec, device: usize, rng: &mut StdRng) -> Self {
        let min = spec.min.unwrap_or(0.0);
        let max = spec.max.unwrap_or(100.0);
        let value = match spec.signal {
            SignalKind::RandomWalk | SignalKind::Step => rng.random_range(min..=max),
            _ => spec.offset.unwrap_or(min),
        };
        Self {
            spec: spec.clone(),
            device,
            value,
            count: 0,
            flag: rng.random_bool(0.5),
            choice: if spec.values.is_empty() {
                0
            } else {
                rng.random_range(0..spec.values.len())
            },
            lat: spec.offset.unwrap_or(52.52) + rng.random_range(-0.05..0.05),
            lon: 13.405 + rng.random_range(-0.05..0.05),
            step_until: 0.0,
        }
    }

    /// The key's name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// Values at `t` seconds after the start: one (key, value), or two for GPS.
    pub fn next(&mut self, t: f64, rng: &mut StdRng) -> Vec<(String, Value)> {
        let s = &self.spec;
        let (min, max) = (s.min.unwrap_or(0.0), s.max.unwrap_or(100.0));
        let period = s.period_secs.unwrap_or(60.0).max(1e-3);
        let noise = if s.noise > 0.0 {
            rng.random_range(-s.noise..=s.noise)
        } else {
            0.0
        };
        let numeric = |v: f64| -> Value {
            if s.integer {
                Value::from(v.round() as i64)
            } else {
                serde_json::Number::from_f64(round(v, s.decimals))
                    .map(Value::Number)
                    .unwrap_or(Value::Null)
            }
        };
        let v = match s.signal {
            SignalKind::Sine => {
                let phase = s.phase + s.phase_spread * self.device as f64;
                let v = s.offset.unwrap_or(0.0)
                    + s.amplitude.unwrap_or(1.0)
                        * (2.0 * std::f64::consts::PI * t / period + phase).sin();
                numeric(v + noise)
            }
            SignalKind::RandomWalk => {
                let step = s.step.unwrap_or((max - min) / 100.0);
                self.value = (self.value + rng.random_range(-step..=step)).clamp(min, max);
                numeric(self.value + noise)
            }
            SignalKind::Step => {
                if t >= self.step_until {
                    self.value = rng.random_range(min..=max);
                    self.step_until = t + period;
                }
                numeric(self.value + noise)
            }
            SignalKind::Sawtooth => numeric(min + (max - min) * ((t / period).fract()) + noise),
            SignalKind::Counter => {
                self.count += s.step.unwrap_or(1.0).round() as i64;
                Value::from(self.count)
            }
            SignalKind::Boolean => {
                if rng.random_bool(s.p.unwrap_or(0.1)) {
                    self.flag = !self.flag;
                }
                Value::Bool(self.flag)
            }
            SignalKind::Enum => {
                if rng.random_bool(s.p.unwrap_or(0.1)) {
                    self.choice = rng.random_range(0..s.values.len().max(1));
                }
                Value::String(s.values.get(self.choice).cloned().unwrap_or_default())
            }
            SignalKind::Gps => {
                let step = s.step.unwrap_or(0.0005);
                self.lat = (self.lat + rng.random_range(-step..=step)).clamp(-89.9, 89.9);
                self.lon = (self.lon + rng.random_range(-step..=step)).clamp(-179.9, 179.9);
                let six = |v: f64| {
                    serde_json::Number::from_f64(round(v, Some(6)))
                        .map(Value::Number)
                        .unwrap_or(Value::Null)
                };
                return vec![
                    (format!("{}_lat", s.name), six(self.lat)),
                    (format!("{}_lon", s.name), six(self.lon)),
                ];
            }
            SignalKind::Constant => numeric(s.offset.unwrap_or(0.0)),
        };
        vec![(s.name.clone(), v)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn spec(toml: &str) -> KeySpec {
        toml::from_str(toml).unwrap()
    }

    #[test]
    fn signals_stay_in_bounds_and_repeat_with_the_same_seed() {
        let walk =
            spec("name = \"h\"\nsignal = \"random_walk\"\nmin = 10.0\nmax = 20.0\nstep = 5.0");
        let run = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut s = Signal::new(&walk, 0, &mut rng);
            (0..200)
                .map(|i| s.next(i as f64, &mut rng)[0].1.as_f64().unwrap())
                .collect::<Vec<_>>()
        };
        let a = run(1);
        assert_eq!(a, run(1), "deterministic");
        assert_ne!(a, run(2));
        assert!(a.iter().all(|v| (10.0..=20.0).contains(v)));

        let mut rng = StdRng::seed_from_u64(0);
        let mut saw = Signal::new(
            &spec("name = \"s\"\nsignal = \"sawtooth\"\nmin = 0.0\nmax = 10.0\nperiod_secs = 10.0"),
            0,
            &mut rng,
        );
        assert_eq!(saw.next(5.0, &mut rng)[0].1.as_f64(), Some(5.0));
        let mut c = Signal::new(
            &spec("name = \"c\"\nsignal = \"counter\"\nstep = 2"),
            0,
            &mut rng,
        );
        c.next(0.0, &mut rng);
        assert_eq!(c.next(1.0, &mut rng)[0].1, Value::from(4));
        let mut sine = Signal::new(&spec("name = \"t\"\nsignal = \"sine\"\noffset = 20.0\namplitude = 5.0\nperiod_secs = 4.0\ndecimals = 3"), 0, &mut rng);
        assert_eq!(sine.next(1.0, &mut rng)[0].1.as_f64(), Some(25.0));
        let mut gps = Signal::new(&spec("name = \"pos\"\nsignal = \"gps\""), 0, &mut rng);
        let p = gps.next(0.0, &mut rng);
        assert_eq!((p[0].0.as_str(), p[1].0.as_str()), ("pos_lat", "pos_lon"));
        let mut e = Signal::new(
            &spec("name = \"m\"\nsignal = \"enum\"\nvalues = [\"a\", \"b\"]\np = 1.0"),
            0,
            &mut rng,
        );
        assert!(["a", "b"].contains(&e.next(0.0, &mut rng)[0].1.as_str().unwrap()));
    }
}
