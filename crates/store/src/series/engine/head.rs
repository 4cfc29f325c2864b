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

/// Smallest buffer worth keeping for reuse (smaller ones are cheap to allocate).
const MIN_SPARE: usize = 4096;

/// Emptied point buffers of sealed heads, handed to the heads that follow:
/// a busy series reuses memory already faulted in instead of growing (and
/// zeroing) a fresh vector after every seal.
pub struct Spares {
    /// The buffers, empty.
    bufs: Vec<Vec<Entry>>,
    /// Entries of room they hold in all.
    room: usize,
    /// Most entries of room kept.
    max_room: usize,
}

impl Spares {
    /// A pool keeping at most `max_room` entries of room.
    pub fn new(max_room: usize) -> Self {
        Self {
            bufs: Vec::new(),
            room: 0,
            max_room,
        }
    }

    /// An empty buffer with room for at least `room` entries.
    fn get(&mut self, room: usize) -> Vec<Entry> {
        if room >= MIN_SPARE {
            if let Some(i) = self.bufs.iter().position(|b| b.capacity() >= room) {
                let buf = self.bufs.swap_remove(i);
                self.room -= buf.capacity();
                return buf;
            }
        }
        // Fresh memory is mapped as it is first written, so generous room costs
        // nothing until used.
        Vec::with_capacity(room)
    }

    /// Keeps `buf` for reuse when it is large and the pool has room.
    pub fn put(&mut self, mut buf: Vec<Entry>) {
        let cap = buf.capacity();
        if cap >= MIN_SPARE && self.room + cap <= self.max_room {
            buf.clear();
            self.room += cap;
            self.bufs.push(buf);
        }
    }
}

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

    /// Takes a buffer from `spares` with room for `points` more when the
    /// head has none yet (a new series, or one whose buffer went back).
    pub fn make_room(&mut self, spares: &mut Spares, points: usize) {
        if self.sorted.capacity() == 0 {
            self.sorted = spares.get(points);
        }
    }

    /// Gives an empty head's large buffer back to `spares`: a series gone
    /// quiet does not keep the room it had while busy.
    pub fn give_back(&mut self, spares: &mut Spares) {
        if self.sorted.is_empty() && self.sorted.capacity() >= MIN_SPARE {
            spares.put(std::mem::take(&mut self.sorted));
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

    /// Empties the head, returning its merged points, oldest first; the
    /// head goes on in a buffer from `spares`.
    pub fn take(&mut self, spares: &mut Spares) -> Vec<Entry> {
        // A busy series will likely be as busy until the next seal: room for
        // twice as many points (a seal in flight lets the head grow on) saves
        // growing, and copying, the vector step by step again.
        let room = (2 * self.sorted.len()).min(MAX_ROOM);
        let sorted = std::mem::replace(&mut self.sorted, spares.get(room));
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
        let all = h.take(&mut Spares::new(0));
        assert_eq!(all.len(), 2);
        assert!(h.is_empty());
    }

    #[test]
    fn large_buffers_are_reused_within_the_pool_limit() {
        let mut spares = Spares::new(8 * MIN_SPARE);
        let mut h = Head::default();
        let n = MIN_SPARE as i64;
        for ts in 0..n {
            h.upsert(ts, Value::Int(ts), 1);
        }
        let taken = h.take(&mut spares);
        assert!(
            h.sorted.capacity() >= 2 * MIN_SPARE,
            "room for twice as many"
        );
        let ptr = taken.as_ptr();
        spares.put(taken);
        assert_eq!(spares.bufs.len(), 1, "a large buffer is kept");
        spares.put(Vec::with_capacity(16));
        assert_eq!(spares.bufs.len(), 1, "a small one is not");
        spares.put(Vec::with_capacity(8 * MIN_SPARE));
        assert_eq!(spares.bufs.len(), 1, "nor one beyond the limit");
        for ts in n..n + n / 2 {
            h.upsert(ts, Value::Int(ts), 2);
        }
        let again = h.take(&mut spares);
        assert_eq!(again.len(), MIN_SPARE / 2);
        assert!(spares.bufs.is_empty(), "the head took the kept buffer");
        assert_eq!(spares.room, 0);
        // The head goes on in the reused buffer.
        h.upsert(2 * n, Value::Int(1), 3);
        assert_eq!(h.sorted.as_ptr(), ptr);
        assert_eq!(h.range(i64::MIN, i64::MAX).len(), 1);

        // A quiet head gives its buffer back; a new head takes it.
        let mut quiet = Head::default();
        quiet.make_room(&mut spares, MIN_SPARE);
        let room = quiet.sorted.capacity();
        assert!(room >= MIN_SPARE);
        quiet.give_back(&mut spares);
        assert_eq!(quiet.sorted.capacity(), 0);
        assert_eq!(spares.room, room);
        let mut fresh = Head::default();
        fresh.make_room(&mut spares, 100);
        assert_eq!(
            fresh.sorted.capacity(),
            100,
            "small runs get no pooled buffer"
        );
        let mut busy = Head::default();
        busy.make_room(&mut spares, MIN_SPARE);
        assert_eq!(busy.sorted.capacity(), room, "the given-back buffer");
        assert_eq!(spares.room, 0);
        busy.upsert(1, Value::Int(1), 1);
        busy.give_back(&mut spares);
        assert_eq!(
            busy.sorted.capacity(),
            room,
            "a head with points keeps its buffer"
        );
    }
}
