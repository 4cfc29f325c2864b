//! One client's bounded, coalescing queue of updates and attribute changes.

use std::collections::{BTreeMap, VecDeque};

use tributary_model::{DeviceId, Key, Point};

/// New points of one device from one committed batch.
#[derive(Clone, Debug, PartialEq)]
pub struct Update {
    /// Log sequence number of the batch (increasing; clients resume from it).
    pub seq: u64,
    /// The device.
    pub device: DeviceId,
    /// The points the client subscribed to, in batch order.
    pub points: Vec<Point>,
}

/// Attributes of one device set in one scope.
#[derive(Clone, Debug, PartialEq)]
pub struct AttributeChange {
    /// The device.
    pub device: DeviceId,
    /// `client`, `server` or `shared`.
    pub scope: String,
    /// New values by key.
    pub values: BTreeMap<String, serde_json::Value>,
}

/// What a client receives next.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// An update, in log order.
    Update(Update),
    /// Attributes changed.
    Attributes(AttributeChange),
    /// The client fell behind: the latest value per key of what it missed.
    Lagged {
        /// Latest points per device.
        updates: Vec<Update>,
        /// Latest attribute values per device and scope.
        attributes: Vec<AttributeChange>,
    },
}

enum Item {
    Update(Update),
    Attributes(AttributeChange),
}

/// Queue state behind the client's mutex.
#[derive(Default)]
pub(crate) struct Queue {
    items: VecDeque<Item>,
    /// Latest (seq, point) per (device, key) once the queue overflowed.
    points: BTreeMap<(DeviceId, Key), (u64, Point)>,
    /// Latest value per (device, scope, key) once the queue overflowed.
    attributes: BTreeMap<(DeviceId, String, String), serde_json::Value>,
    lagged: bool,
    pub(crate) closed: bool,
}

impl Queue {
    fn push(&mut self, item: Item, capacity: usize) -> bool {
        if !self.lagged && self.items.len() < capacity {
            self.items.push_back(item);
            return false;
        }
        let newly_lagged = !self.lagged;
        self.lagged = true;
        for item in self.items.drain(..).chain(std::iter::once(item)) {
            match item {
                Item::Update(u) => {
                    for p in u.points {
                        let slot = (u.device, p.key.clone());
                        match self.points.get(&slot) {
                            Some((_, old)) if old.ts > p.ts => {}
                            _ => {
                                self.points.insert(slot, (u.seq, p));
                            }
                        }
                    }
                }
                Item::Attributes(a) => {
                    for (k, v) in a.values {
                        self.attributes.insert((a.device, a.scope.clone(), k), v);
                    }
                }
            }
        }
        newly_lagged
    }

    /// Adds an update; true when this made the client lag.
    pub(crate) fn push_update(&mut self, u: Update, capacity: usize) -> bool {
        self.push(Item::Update(u), capacity)
    }

    /// Adds an attribute change; true when this made the client lag.
    pub(crate) fn push_attributes(&mut self, a: AttributeChange, capacity: usize) -> bool {
        self.push(Item::Attributes(a), capacity)
    }

    /// Takes the next event, if any.
    pub(crate) fn pop(&mut self) -> Option<Event> {
        if self.lagged {
            self.lagged = false;
            let mut by_device: BTreeMap<DeviceId, Update> = BTreeMap::new();
            for ((device, _), (seq, point)) in std::mem::take(&mut self.points) {
                let u = by_device.entry(device).or_insert_with(|| Update {
                    seq,
                    device,
                    points: Vec::new(),
                });
                u.seq = u.seq.max(seq);
                u.points.push(point);
            }
            let mut attrs: BTreeMap<(DeviceId, String), AttributeChange> = BTreeMap::new();
            for ((device, scope, key), v) in std::mem::take(&mut self.attributes) {
                attrs
                    .entry((device, scope.clone()))
                    .or_insert_with(|| AttributeChange {
                        device,
                        scope,
                        values: BTreeMap::new(),
                    })
                    .values
                    .insert(key, v);
            }
            return Some(Event::Lagged {
                updates: by_device.into_values().collect(),
                attributes: attrs.into_values().collect(),
            });
        }
        self.items.pop_front().map(|i| match i {
            Item::Update(u) => Event::Update(u),
            Item::Attributes(a) => Event::Attributes(a),
        })
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
        assert!(!q.push_update(update(1, d, "a", 1), 2));
        assert!(!q.push_update(update(2, d, "b", 2), 2));
        assert!(
            q.push_update(update(3, d, "a", 3), 2),
            "third update overflows"
        );
        assert!(!q.push_update(update(4, d, "a", 4), 2), "already lagged");
        let attr = AttributeChange {
            device: d,
            scope: "shared".into(),
            values: [("x".to_string(), serde_json::json!(1))].into(),
        };
        q.push_attributes(attr.clone(), 2);
        let Some(Event::Lagged {
            updates,
            attributes,
        }) = q.pop()
        else {
            panic!("expected lagged")
        };
        assert_eq!(updates.len(), 1);
        assert_eq!(updates[0].seq, 4);
        let vals: Vec<_> = updates[0]
            .points
            .iter()
            .map(|p| (p.key.as_str(), p.value.clone()))
            .collect();
        assert_eq!(vals, vec![("a", Value::Int(4)), ("b", Value::Int(2))]);
        assert_eq!(attributes, vec![attr]);
        assert_eq!(q.pop(), None);
        assert!(!q.push_update(update(5, d, "a", 5), 2));
        assert!(matches!(q.pop(), Some(Event::Update(u)) if u.seq == 5));
    }
}
