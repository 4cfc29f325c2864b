//! A series' points not yet sealed. Points arriving in time order (the
//! usual case) are appended to a vector; the few that arrive out of order
//! go to a map. Reads merge the two; for equal timestamps the write with
//! the highest LSN wins.

use std::collections::BTreeMap;

use tributary_model::Value;

use super::chunk::Entry;
use super::merge::merge_runs;

/// Most points a head keeps room for after a seal.
const MAX_ROOM: usize = 1 << 20;

/// The unsealed points of one series.
#[derive(Default)]
pub struct Head {
    /// Points in strictly increasing time order.
    sorted: Vec<Entry>,
    /// Points that arrived older than `sorted`'s newest: (value, lsn) by time.
    late: BTreeMap<i64, (Value, u64)>,
}

impl Head {
    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty() && self.late.is_empty()
    }

    /// Adds a point unless a write with a higher LSN holds its timestamp;
    /// true when the timestamp was not held before.
    pub fn upsert(&mut self, ts: i64, v: Value, lsn: u64) -> bool {
        match self.sorted.last_mut() {
            Some(last) if ts > last.0 => {
                self.sorted.push((ts, v, lsn));
                true
            }
            None if self.late.is_empty() => {
                self.sorted.push((ts, v, lsn));
                true
            }
            Some(last) if ts == last.0 => {
                if lsn >= last.2 {
                    *last = (ts, v, lsn);
                }
                false
            }
            _ => {
                let held = self.holds_sorted(ts);
                match self.late.get(&ts) {
                    Some((_, have)) if *have > lsn => false,
                    Some(_) => {
                        self.late.insert(ts, (v, lsn));
                        false
                    }
                    None => {
                        self.late.insert(ts, (v, lsn));
                        !held
                    }
                }
            }
        }
    }

    /// Adds a point only where its timestamp is not held; true when added.
    pub fn insert_absent(&mut self, ts: i64, v: Value, lsn: u64) -> bool {
        if self.holds_sorted(ts) || self.late.contains_key(&ts) {
            return false;
        }
        self.upsert(ts, v, lsn)
    }

    fn holds_sorted(&self, ts: i64) -> bool {
        self.sorted.binary_search_by_key(&ts, |p| p.0).is_ok()
    }

    /// The merged points in [from, to], oldest first.
    pub fn range(&self, from: i64, to: i64) -> Vec<Entry> {
        let lo = self.sorted.partition_point(|p| p.0 < from);
        let hi = self.sorted.partition_point(|p| p.0 <= to);
        let sorted = self.sorted.get(lo..hi).unwrap_or_default().to_vec();
        if self.late.is_empty() {
            return sorted;
        }
        let late = self
            .late
            .range(from..=to)
            .map(|(ts, (v, l))| (*ts, v.clone(), *l))
            .collect();
        merge_runs(vec![sorted, late])
    }

    /// Empties the head, returning its merged points, oldest first.
    pub fn take(&mut self) -> Vec<Entry> {
        // A busy series will likely be as busy until the next seal: room for
        // as many points saves growing the vector step by step again.
        let room = self.sorted.len().min(MAX_ROOM);
        let sorted = std::mem::replace(&mut self.sorted, Vec::with_capacity(room));
        let late = std::mem::take(&mut self.late);
        if late.is_empty() {
            return sorted;
        }
        merge_runs(vec![
            sorted,
            late.into_iter().map(|(ts, (v, l))| (ts, v, l)).collect(),
        ])
    }

    /// Drops the points older than `before`; returns how many went.
    pub fn drop_before(&mut self, before: i64) -> usize {
        let n = self.sorted.partition_point(|p| p.0 < before);
        self.sorted.drain(..n);
        let kept = self.late.split_off(&before);
        let gone = n + self.late.len();
        self.late = kept;
        gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn int(h: &Head) -> Vec<(i64, i64, u64)> {
        h.range(i64::MIN, i64::MAX)
            .into_iter()
            .map(|(ts, v, l)| match v {
                Value::Int(i) => (ts, i, l),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn in_order_late_and_rewritten_points_merge() {
        let mut h = Head::default();
        assert!(h.upsert(10, Value::Int(1), 1));
        assert!(h.upsert(20, Value::Int(2), 1));
        assert!(!h.upsert(20, Value::Int(3), 2), "a rewrite of the newest");
        assert!(h.upsert(15, Value::Int(4), 3), "late, new timestamp");
        assert!(
            !h.upsert(10, Value::Int(5), 4),
            "late rewrite of an appended point"
        );
        assert!(!h.upsert(10, Value::Int(6), 2), "an older write loses");
        assert!(!h.insert_absent(15, Value::Int(7), 9));
        assert!(h.insert_absent(5, Value::Int(8), 9));
        assert_eq!(int(&h), vec![(5, 8, 9), (10, 5, 4), (15, 4, 3), (20, 3, 2)]);
        assert_eq!(
            h.range(11, 20).len(),
            2,
            "range bounds are inclusive: 15 and 20"
        );
        assert_eq!(
            h.drop_before(15),
            2 + 1,
            "5 (late), 10 (appended), 10 (late)"
        );
        assert_eq!(int(&h), vec![(15, 4, 3), (20, 3, 2)]);
        let all = h.take();
        assert_eq!(all.len(), 2);
        assert!(h.is_empty());
    }
}
