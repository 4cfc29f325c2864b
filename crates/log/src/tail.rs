//! The newest committed events, kept in memory (up to a byte budget) so
//! consumers that keep up read them without touching the disk; one that
//! falls further behind reads the log instead (see [`crate::wal::LogReader`]).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use crate::consumer::Committed;

/// The in-memory tail of the log.
pub(crate) struct Tail {
    inner: Mutex<Ring>,
    max_bytes: usize,
}

#[derive(Default)]
struct Ring {
    entries: VecDeque<(Arc<Committed>, usize)>,
    bytes: usize,
}

impl Tail {
    /// A tail holding about `max_bytes` of events.
    pub fn new(max_bytes: usize) -> Self {
        Self {
            inner: Mutex::new(Ring::default()),
            max_bytes,
        }
    }

    fn ring(&self) -> std::sync::MutexGuard<'_, Ring> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds newly committed events (in LSN order), dropping the oldest past the budget.
    pub fn push(&self, entries: &[Arc<Committed>]) {
        let mut ring = self.ring();
        for e in entries {
            let size = e.event.size_hint();
            ring.bytes += size;
            ring.entries.push_back((e.clone(), size));
        }
        while ring.bytes > self.max_bytes && ring.entries.len() > 1 {
            if let Some((_, size)) = ring.entries.pop_front() {
                ring.bytes -= size;
            }
        }
    }

    /// Up to `max` events from `lsn` on, or `None` when `lsn` is older than
    /// the tail holds (read the log on disk).
    pub fn since(&self, lsn: u64, max: usize) -> Option<Vec<Arc<Committed>>> {
        let ring = self.ring();
        let first = ring.entries.front().map(|(e, _)| e.lsn)?;
        if lsn < first {
            return None;
        }
        // LSNs in the ring are consecutive.
        let skip = (lsn - first) as usize;
        Some(
            ring.entries
                .iter()
                .skip(skip)
                .take(max)
                .map(|(e, _)| e.clone())
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tributary_model::{Event, TenantChange, TenantEvent, TenantId};

    fn entry(lsn: u64) -> Arc<Committed> {
        Arc::new(Committed {
            lsn,
            event: Event::Tenant(TenantEvent {
                tenant: TenantId::new(),
                change: TenantChange::Created,
            }),
        })
    }

    #[test]
    fn keeps_the_newest_within_its_budget() {
        let size = entry(1).event.size_hint();
        let tail = Tail::new(size * 3);
        assert!(tail.since(1, 10).is_none(), "empty: read the disk");
        tail.push(&(1..=5).map(entry).collect::<Vec<_>>());
        assert!(tail.since(2, 10).is_none(), "dropped: read the disk");
        let lsns = |v: Vec<Arc<Committed>>| v.iter().map(|e| e.lsn).collect::<Vec<_>>();
        assert_eq!(lsns(tail.since(3, 10).unwrap()), vec![3, 4, 5]);
        assert_eq!(lsns(tail.since(4, 1).unwrap()), vec![4]);
        assert!(tail.since(6, 10).unwrap().is_empty(), "nothing newer yet");
    }
}
