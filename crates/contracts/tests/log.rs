//! The local write-ahead log meets the event log contract.

use std::sync::Arc;

use tributary_contracts::log as contract;
use tributary_log::{Consumer, EventLog, Pipeline, PipelineConfig};

#[tokio::test]
async fn the_local_log_meets_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let open: &contract::Open = &|dir, mut consumers: Vec<Arc<dyn Consumer>>| {
        Box::pin(async move {
            let store = consumers.remove(0);
            let config = PipelineConfig {
                dir,
                segment_bytes: 1 << 20,
                max_group_bytes: 1 << 20,
                queue_capacity: 64,
                tail_bytes: 1 << 20,
                max_retained_bytes: 1 << 30,
            };
            let log: Arc<dyn EventLog> = Pipeline::start(config, store, consumers, Vec::new())
                .await
                .unwrap();
            log
        })
    };
    contract::run(open, dir.path()).await;
}
