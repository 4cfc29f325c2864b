//! The SQLite metadata store meets the metadata store contract.

use tributary_contracts::meta as contract;
use tributary_store::SqliteMeta;

#[tokio::test]
async fn sqlite_meets_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteMeta::open(&dir.path().join("meta.db")).await.unwrap();
    contract::run(&store).await;
}
