//! One client's bounded, coalescing queue of updates.

use std::collections::{BTreeMap, VecDeque};

use tributary_model::{DeviceId, Point};

/// New points of one device from one committed batch.
#[derive(Clone, Debug, PartialEq)]
pub struct Update {
    /// Log sequence number of the batch (increasing; clients can resume from it).
    pub seq: u64,
    /// The device.
    pub device: DeviceId,
    /// The points the client subscribed to, in batch order.
    pub points: Vec<Point>,
}

/// What a client receives next.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// An update, in log order.
    Update(Update),
    /// The client fell behind: the latest value per key of what it missed.
    Lagged(Vec<Update>),
}

/// Queue state behind the client's mutex.
#[derive(Default)]
pub(crate) struct Queue {
    updates: VecDeque<Update>,
    /// Latest (seq, point) per (device, key) once the queue overflowed.
    coalesced: BTreeMap<(DeviceId, String), (u64, Point)>,
    pub(crate) closed: bool,
}

impl Queue {
    /// Adds an update, coalescing everything when `capacity` is reached.
    pub(crate) fn push(&mut self, update: Update, capacity: usize) -> bool {
        if self.coalesced.is_empty() && self.updates.len() < capacity {
            self.updates.push_back(update);
            return false;
        }
        let newly_lagged = self.coalesced.is_empty();
        for u in self.updates.drain(..).chain(std::iter::once(update)) {
            for p in u.points {
                let slot = (u.device, p.key.clone());
                match self.coalesced.get(&slot) {
                    Some((_, old)) if old.ts > p.ts => {}
                    _ => {
                        self.coalesced.insert(slot, (u.seq, p));
                    }
                }
            }
        }
        newly_lagged
    }

    /// Takes the next event, if any.
    pub(crate) fn pop(&mut self) -> Option<Event> {
        if !self.coalesced.is_empty() {
            let mut by_device: BTreeMap<DeviceId, Update> = BTreeMap::new();
            for ((device, _), (seq, point)) in std::mem::take(&mut self.coalesced) {
                let u = by_device.entry(device).or_insert_with(|| Update {
                    seq,
                    device,
                    points: Vec::new(),
                });
                u.seq = u.seq.max(seq);
                u.points.push(point);
            }
            return Some(Event::Lagged(by_device.into_values().collect()));
        }
        self.updates.pop_front().map(Event::Update)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tributary_model::Value;

    fn update(seq: u64, device: DeviceId, key: &str, v: i64) -> Update {
        Update {
            seq,
            device,
            points: vec![Point {
                key: key.into(),
                ts: seq as i64,
                value: Value::Int(v),
            }],
        }
    }

    #[test]
    fn overflow_coalesces_to_latest_per_key() {
        let d = DeviceId::new();
        let mut q = Queue::default();
        assert!(!q.push(update(1, d, "a", 1), 2));
        assert!(!q.push(update(2, d, "b", 2), 2));
        assert!(q.push(update(3, d, "a", 3), 2), "third update overflows");
        assert!(!q.push(update(4, d, "a", 4), 2), "already lagged");
        let Some(Event::Lagged(ups)) = q.pop() else {
            panic!("expected lagged")
        };
        assert_eq!(ups.len(), 1);
        assert_eq!(ups[0].seq, 4);
        let vals: Vec<_> = ups[0]
            .points
            .iter()
            .map(|p| (p.key.as_str(), p.value.clone()))
            .collect();
        assert_eq!(vals, vec![("a", Value::Int(4)), ("b", Value::Int(2))]);
        assert_eq!(q.pop(), None);
        assert!(!q.push(update(5, d, "a", 5), 2));
        assert!(matches!(q.pop(), Some(Event::Update(u)) if u.seq == 5));
    }
}
