//! Adapts the series store to the pipeline's durable sink.

use std::sync::Arc;

use async_trait::async_trait;
use tributary_pipeline::{Committed, Sink, SinkError};
use tributary_store::SeriesStore;

/// Feeds committed batches into a [`SeriesStore`].
pub struct SeriesSink(pub Arc<dyn SeriesStore>);

#[async_trait]
impl Sink for SeriesSink {
    async fn apply(&self, entries: &[Arc<Committed>]) -> Result<(), SinkError> {
        let batches: Vec<_> = entries.iter().map(|e| (e.lsn, &e.batch)).collect();
        self.0
            .apply(&batches)
            .await
            .map_err(|e| SinkError(e.to_string()))
    }

    fn durable_lsn(&self) -> Option<u64> {
        self.0.durable_lsn()
    }

    async fn applied_lsn(&self) -> Result<u64, SinkError> {
        self.0
            .applied_lsn()
            .await
            .map_err(|e| SinkError(e.to_string()))
    }
}
