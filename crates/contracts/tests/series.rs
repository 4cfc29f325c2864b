//! Both series stores (SQLite and Tributary's engine) meet the series store
//! contract.

use tributary_contracts::series as contract;
use tributary_store::{Engine, EngineConfig, SqliteSeries};

#[tokio::test]
async fn sqlite_meets_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteSeries::open(&dir.path().join("s.db")).await.unwrap();
    contract::run(&store, true).await;
}

#[tokio::test]
async fn the_engine_meets_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    // A tiny head, so queries cross sealed blocks, the frozen head and the live head.
    let config = EngineConfig {
        max_head_points: 3,
        ..EngineConfig::default()
    };
    let store = Engine::open(&dir.path().join("tsdb"), config)
        .await
        .unwrap();
    contract::run(&store, false).await;
}
