//! The stores as consumers of the log: the series store (first: queries
//! read it) keeps its checkpoint with its data (the LSN of the last batch
//! stored, durable once sealed); the attribute store applies attribute
//! changes to the metadata store, its checkpoint kept by the log (applying
//! a change again leaves the same state).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use tributary_log::{Committed, Consumer, ConsumerError};
use tributary_model::Event;
use tributary_store::meta::prelude::*;
use tributary_store::SeriesStore;

/// Feeds committed telemetry into a [`SeriesStore`].
pub struct SeriesConsumer {
    store: Arc<dyn SeriesStore>,
    /// LSN of the last telemetry batch stored: what the store records as
    /// applied (events of other kinds after it come again after a restart,
    /// and are passed over again).
    stored: AtomicU64,
}

impl SeriesConsumer {
    /// The consumer feeding `store`.
    pub fn new(store: Arc<dyn SeriesStore>) -> Self {
        Self {
            store,
            stored: AtomicU64::new(0),
        }
    }
}

#[async_trait]
impl Consumer for SeriesConsumer {
    fn name(&self) -> &str {
        "series"
    }

    async fn apply(&self, entries: &[Arc<Committed>]) -> Result<(), ConsumerError> {
        let batches: Vec<_> = entries
            .iter()
            .filter_map(|e| Some((e.lsn, e.event.telemetry()?)))
            .collect();
        self.store
            .apply(&batches)
            .await
            .map_err(|e| ConsumerError(e.to_string()))?;
        if let Some((lsn, _)) = batches.last() {
            self.stored.fetch_max(*lsn, Ordering::AcqRel);
        }
        Ok(())
    }

    async fn own_checkpoint(&self) -> Result<Option<u64>, ConsumerError> {
        let lsn = self
            .store
            .applied_lsn()
            .await
            .map_err(|e| ConsumerError(e.to_string()))?;
        self.stored.fetch_max(lsn, Ordering::AcqRel);
        Ok(Some(lsn))
    }

    fn durable_lsn(&self) -> Option<u64> {
        // Once every batch stored is durable, so is everything applied
        // (the events after the last batch leave nothing in the store).
        let stored = self.stored.load(Ordering::Acquire);
        self.store.durable_lsn().filter(|d| *d < stored)
    }

    async fn idle(&self) {
        // An empty apply seals the head when the seal interval has passed.
        if let Err(e) = self.store.apply(&[]).await {
            tracing::warn!(error = %e, "series store: a timed seal failed; retried on the next tick");
        }
    }
}

/// Applies attribute changes to the metadata store.
pub struct AttributesConsumer(pub Arc<dyn MetaStore>);

#[async_trait]
impl Consumer for AttributesConsumer {
    fn name(&self) -> &str {
        tributary_ingest::gateway::ATTRIBUTES_CONSUMER
    }

    fn serves_reads(&self) -> bool {
        true
    }

    async fn apply(&self, entries: &[Arc<Committed>]) -> Result<(), ConsumerError> {
        for e in entries {
            if let Event::Attributes(change) = &e.event {
                self.0
                    .apply_attribute_change(change)
                    .await
                    .map_err(|e| ConsumerError(e.to_string()))?;
            }
        }
        Ok(())
    }
}
