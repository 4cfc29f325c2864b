//! The most recent commits, bounded by bytes, for clients that resume.

use std::collections::VecDeque;
use std::sync::Arc;

use tributary_log::Committed;

/// Recent commits in LSN order.
pub(crate) struct Ring {
    entries: VecDeque<(Arc<Committed>, usize)>,
    bytes: usize,
    max_bytes: usize,
    /// The highest LSN ever pushed (0: none since start).
    last: u64,
}

impl Ring {
    pub(crate) fn new(max_bytes: usize) -> Self {
        Self {
            entries: VecDeque::new(),
            bytes: 0,
            max_bytes,
            last: 0,
        }
    }

    pub(crate) fn push(&mut self, entry: &Arc<Committed>) {
        let size = entry.event.size_hint();
        self.last = self.last.max(entry.lsn);
        self.entries.push_back((entry.clone(), size));
        self.bytes += size;
        while self.bytes > self.max_bytes {
            match self.entries.pop_front() {
                Some((_, s)) => self.bytes -= s,
                None => break,
            }
        }
    }

    /// Every commit after `since`, if the ring still holds all of them.
    pub(crate) fn since(&self, since: u64) -> Option<Vec<Arc<Committed>>> {
        if self.last != 0 && since >= self.last {
            return Some(Vec::new());
        }
        let first = self.entries.front()?.0.lsn;
        if first > since + 1 {
            return None;
        }
        Some(
            self.entries
                .iter()
                .filter(|(e, _)| e.lsn > since)
                .map(|(e, _)| e.clone())
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tributary_model::{Batch, DeviceId, Event, Point, TenantId, Value};

    fn entry(lsn: u64) -> Arc<Committed> {
        Arc::new(Committed {
            lsn,
            event: Event::Telemetry(Batch {
                tenant: TenantId::new(),
                device: DeviceId::new(),
                points: vec![Point {
                    key: "k".into(),
                    ts: 0,
                    value: Value::Int(0),
                }],
            }),
        })
    }

    #[test]
    fn covers_only_what_it_still_holds() {
        let one = entry(1).event.size_hint();
        let mut r = Ring::new(one * 3);
        assert!(r.since(0).is_none(), "nothing known yet");
        for lsn in 1..=5 {
            r.push(&entry(lsn));
        }
        assert!(r.since(0).is_none(), "1 and 2 were evicted");
        assert!(r.since(1).is_none());
        assert_eq!(
            r.since(2)
                .unwrap()
                .iter()
                .map(|e| e.lsn)
                .collect::<Vec<_>>(),
            vec![3, 4, 5]
        );
        assert_eq!(r.since(4).unwrap().len(), 1);
        assert!(r.since(5).unwrap().is_empty(), "up to date");
        assert!(r.since(9).unwrap().is_empty());
    }
}
