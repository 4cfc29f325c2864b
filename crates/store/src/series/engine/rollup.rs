//! Rollups and the aggregate accumulator. Every sealed chunk carries its per-minute and
//! per-hour rollups (count, sum, min, max, first, last per bucket), so an
//! aggregate over a long range reads one small record per minute or hour
//! instead of every point. Raw points and rollups fold into the same
//! accumulator, so both paths give the same answer.

use serde::{Deserialize, Serialize};
use tributary_model::Value;

use super::chunk::Entry;
use crate::series::Aggregate;

/// Rollup intervals kept for every chunk (ns): one minute, one hour.
pub const ROLLUPS: [i64; 2] = [60_000_000_000, 3_600_000_000_000];

/// What an interval's points add up to.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Acc {
    /// Points of any kind.
    pub count: u64,
    /// Numeric points.
    pub numeric: u64,
    /// Sum of the numeric points as floats.
    pub sum: f64,
    /// Sum of the integer points, exact (i128 cannot overflow here), used
    /// while every numeric point is an integer. Stored as a varint, so
    /// rollups written when it was an i64 read unchanged.
    pub int_sum: i128,
    /// Whether every numeric point was an integer.
    pub all_int: bool,
    /// Smallest numeric point.
    pub min: Option<Value>,
    /// Largest numeric point.
    pub max: Option<Value>,
    /// Oldest point (ts, value).
    pub first: Option<(i64, Value)>,
    /// Newest point (ts, value).
    pub last: Option<(i64, Value)>,
}

fn num(v: &Value) -> Option<f64> {
    v.as_f64()
}

impl Acc {
    pub(super) fn empty() -> Self {
        Acc {
            all_int: true,
            ..Acc::default()
        }
    }

    /// Adds one point.
    pub fn add(&mut self, ts: i64, v: &Value) {
        self.count += 1;
        if self.first.as_ref().is_none_or(|(t, _)| ts < *t) {
            self.first = Some((ts, v.clone()));
        }
        if self.last.as_ref().is_none_or(|(t, _)| ts >= *t) {
            self.last = Some((ts, v.clone()));
        }
        let Some(f) = num(v) else { return };
        self.numeric += 1;
        self.sum += f;
        match v {
            Value::Int(i) => self.int_sum += i128::from(*i),
            _ => self.all_int = false,
        }
        if self.min.as_ref().and_then(num).is_none_or(|m| f < m) {
            self.min = Some(v.clone());
        }
        if self.max.as_ref().and_then(num).is_none_or(|m| f > m) {
            self.max = Some(v.clone());
        }
    }

    /// The accumulator of `points` sorted by time: what adding them one by
    /// one gives, in one pass over plain numbers.
    fn of_sorted(points: &[Entry]) -> Self {
        let mut acc = Acc::empty();
        let (Some(first), Some(last)) = (points.first(), points.last()) else {
            return acc;
        };
        acc.count = points.len() as u64;
        // Sorted: the first point is the oldest and the last the newest
        // (of equal timestamps, the one added last).
        acc.first = Some((first.0, first.1.clone()));
        acc.last = Some((last.0, last.1.clone()));
        let mut min: Option<(f64, &Value)> = None;
        let mut max: Option<(f64, &Value)> = None;
        for (_, v, _) in points {
            let f = match v {
                Value::Float(f) => {
                    acc.all_int = false;
                    *f
                }
                Value::Int(i) => {
                    acc.int_sum += i128::from(*i);
                    *i as f64
                }
                _ => continue,
            };
            acc.numeric += 1;
            acc.sum += f;
            if min.is_none_or(|(m, _)| f < m) {
                min = Some((f, v));
            }
            if max.is_none_or(|(m, _)| f > m) {
                max = Some((f, v));
            }
        }
        acc.min = min.map(|(_, v)| v.clone());
        acc.max = max.map(|(_, v)| v.clone());
        acc
    }

    /// Folds another accumulator (of disjoint points) into this one.
    pub fn merge(&mut self, o: &Acc) {
        self.count += o.count;
        self.numeric += o.numeric;
        self.sum += o.sum;
        self.int_sum += o.int_sum;
        self.all_int &= o.all_int;
        if let Some(m) = &o.min {
            if self
                .min
                .as_ref()
                .and_then(num)
                .is_none_or(|s| num(m).is_some_and(|x| x < s))
            {
                self.min = Some(m.clone());
            }
        }
        if let Some(m) = &o.max {
            if self
                .max
                .as_ref()
                .and_then(num)
                .is_none_or(|s| num(m).is_some_and(|x| x > s))
            {
                self.max = Some(m.clone());
            }
        }
        if let Some((t, v)) = &o.first {
            if self.first.as_ref().is_none_or(|(s, _)| t < s) {
                self.first = Some((*t, v.clone()));
            }
        }
        if let Some((t, v)) = &o.last {
            if self.last.as_ref().is_none_or(|(s, _)| t >= s) {
                self.last = Some((*t, v.clone()));
            }
        }
    }

    /// The aggregate's value: integers stay integers (except for avg) when
    /// every numeric input was one; numeric aggregates of no numbers are none.
    /// An integer sum past i64 widens to a float; a float sum or mean past
    /// f64 saturates at ±f64::MAX ([`Acc::overflows`] tells).
    pub fn value(&self, agg: Aggregate) -> Option<Value> {
        let float = |v: &Value| match v {
            Value::Int(i) if !self.all_int => Value::Float(*i as f64),
            other => other.clone(),
        };
        let saturate = |f: f64| Value::Float(f.clamp(-f64::MAX, f64::MAX));
        match agg {
            Aggregate::Count => Some(Value::Int(self.count as i64)),
            Aggregate::First => self.first.as_ref().map(|(_, v)| v.clone()),
            Aggregate::Last => self.last.as_ref().map(|(_, v)| v.clone()),
            _ if self.numeric == 0 => None,
            Aggregate::Avg if self.all_int => {
                Some(Value::Float(self.int_sum as f64 / self.numeric as f64))
            }
            Aggregate::Avg => Some(saturate(self.sum / self.numeric as f64)),
            Aggregate::Sum if self.all_int => Some(match i64::try_from(self.int_sum) {
                Ok(i) => Value::Int(i),
                Err(_) => Value::Float(self.int_sum as f64),
            }),
            Aggregate::Sum => Some(saturate(self.sum)),
            Aggregate::Min => self.min.as_ref().map(float),
            Aggregate::Max => self.max.as_ref().map(float),
        }
    }

    /// Whether [`Acc::value`] of `agg` went beyond its type (widened or saturated).
    pub fn overflows(&self, agg: Aggregate) -> bool {
        if self.numeric == 0 {
            return false;
        }
        match agg {
            Aggregate::Sum if self.all_int => i64::try_from(self.int_sum).is_err(),
            Aggregate::Sum | Aggregate::Avg if !self.all_int => !self.sum.is_finite(),
            _ => false,
        }
    }
}

/// Buckets of `interval` (epoch-aligned) over sorted points.
pub fn rollup(points: &[Entry], interval: i64) -> Vec<(i64, Acc)> {
    let mut out: Vec<(i64, Acc)> = Vec::new();
    let mut rest = points;
    while let Some(first) = rest.first() {
        let b = first.0.div_euclid(interval);
        // The bucket's points are those before its end (none past i64::MAX).
        let n = match (b + 1).checked_mul(interval) {
            Some(end) => rest.iter().position(|p| p.0 >= end).unwrap_or(rest.len()),
            None => rest.len(),
        };
        out.push((b, Acc::of_sorted(&rest[..n])));
        rest = &rest[n..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rollups_merge_to_what_raw_points_give() {
        let points: Vec<Entry> = (0..10_000i64)
            .map(|i| {
                let v = if i % 7 == 0 {
                    Value::Int(i % 100)
                } else {
                    Value::Float((i % 13) as f64 * 0.5)
                };
                (i * 1_000_000_000, v, 1)
            })
            .collect();
        let hour = ROLLUPS[1];
        let raw = rollup(&points, hour);
        let mut from_minutes: std::collections::BTreeMap<i64, Acc> = Default::default();
        for (b, acc) in rollup(&points, ROLLUPS[0]) {
            from_minutes
                .entry((b * ROLLUPS[0]).div_euclid(hour))
                .or_insert_with(Acc::empty)
                .merge(&acc);
        }
        for (b, acc) in raw {
            let m = &from_minutes[&b];
            for agg in [
                Aggregate::Count,
                Aggregate::Sum,
                Aggregate::Min,
                Aggregate::Max,
                Aggregate::First,
                Aggregate::Last,
            ] {
                assert_eq!(m.value(agg), acc.value(agg), "{agg:?}");
            }
            let (a, b) = (m.value(Aggregate::Avg), acc.value(Aggregate::Avg));
            match (a, b) {
                (Some(Value::Float(x)), Some(Value::Float(y))) => assert!((x - y).abs() < 1e-9),
                other => panic!("{other:?}"),
            }
        }
    }

    /// A sealed chunk's buckets, made in one pass, are what adding its
    /// points one at a time gives, for every kind and with equal timestamps.
    #[test]
    fn buckets_match_points_added_one_by_one() {
        let points: Vec<Entry> = (0..500i64)
            .map(|i| {
                let v = match i % 5 {
                    0 => Value::Int(i % 17 - 8),
                    1 => Value::Str(format!("s{i}")),
                    2 => Value::Bool(i % 2 == 0),
                    _ => Value::Float((i % 11) as f64 * -0.25),
                };
                ((i / 3) * 1_000_000_000, v, 1)
            })
            .collect();
        let interval = 7_000_000_000;
        let mut one_by_one: Vec<(i64, Acc)> = Vec::new();
        for (ts, v, _) in &points {
            let b = ts.div_euclid(interval);
            if one_by_one.last().is_none_or(|(last, _)| *last != b) {
                one_by_one.push((b, Acc::empty()));
            }
            if let Some((_, acc)) = one_by_one.last_mut() {
                acc.add(*ts, v);
            }
        }
        assert_eq!(rollup(&points, interval), one_by_one);
        let ints: Vec<Entry> = (0..10).map(|i| (i, Value::Int(i), 1)).collect();
        assert_eq!(
            rollup(&ints, 100)[0].1.value(Aggregate::Sum),
            Some(Value::Int(45))
        );
    }

    #[test]
    fn integer_results_stay_integers() {
        let mut acc = Acc::empty();
        acc.add(1, &Value::Int(3));
        acc.add(2, &Value::Int(-5));
        acc.add(3, &Value::Str("x".into()));
        assert_eq!(acc.value(Aggregate::Sum), Some(Value::Int(-2)));
        assert_eq!(acc.value(Aggregate::Min), Some(Value::Int(-5)));
        assert_eq!(acc.value(Aggregate::Count), Some(Value::Int(3)));
        assert_eq!(acc.value(Aggregate::Last), Some(Value::Str("x".into())));
        acc.add(4, &Value::Float(0.5));
        assert_eq!(acc.value(Aggregate::Max), Some(Value::Float(3.0)));
    }

    #[test]
    fn sums_past_their_type_widen_or_saturate_and_say_so() {
        let mut ints = Acc::empty();
        for v in [i64::MAX, i64::MAX, 2] {
            ints.add(1, &Value::Int(v));
        }
        // MAX + MAX + 2 = 2^64: no longer wraps to 0.
        assert_eq!(
            ints.value(Aggregate::Sum),
            Some(Value::Float(2f64.powi(64)))
        );
        assert!(ints.overflows(Aggregate::Sum));
        assert_eq!(
            ints.value(Aggregate::Avg),
            Some(Value::Float(2f64.powi(64) / 3.0))
        );
        assert!(!ints.overflows(Aggregate::Avg));
        // Merged halves give the same.
        let (mut a, mut b) = (Acc::empty(), Acc::empty());
        a.add(1, &Value::Int(i64::MAX));
        b.add(2, &Value::Int(i64::MAX));
        a.merge(&b);
        assert_eq!(
            a.value(Aggregate::Sum),
            Some(Value::Float(2.0 * i64::MAX as f64))
        );
        let mut floats = Acc::empty();
        floats.add(1, &Value::Float(f64::MAX));
        floats.add(2, &Value::Float(f64::MAX));
        assert_eq!(floats.value(Aggregate::Sum), Some(Value::Float(f64::MAX)));
        assert_eq!(floats.value(Aggregate::Avg), Some(Value::Float(f64::MAX)));
        assert!(floats.overflows(Aggregate::Sum) && floats.overflows(Aggregate::Avg));
        let mut fine = Acc::empty();
        fine.add(1, &Value::Int(-3));
        assert!(!fine.overflows(Aggregate::Sum));
    }
}
