//! The ingest caches in front of the SQLite metadata store meet the cache
//! invalidation contract.

use std::sync::Arc;
use std::time::Duration;

use tributary_auth::{AuthConfig, Authenticator, LoginLimits};
use tributary_contracts::caches as contract;
use tributary_ingest::Caches;
use tributary_store::{MetaStore, SqliteMeta};

#[tokio::test]
async fn the_ingest_caches_meet_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let meta: Arc<dyn MetaStore> =
        Arc::new(SqliteMeta::open(&dir.path().join("meta.db")).await.unwrap());
    let config = AuthConfig {
        access_ttl_secs: 60,
        refresh_ttl_secs: 600,
        invite_ttl_secs: 600,
        device_cache_entries: 1000,
        login_limits: LoginLimits {
            per_account_address: 5,
            per_account: 50,
            per_address: 100,
            max_delay: Duration::from_secs(900),
            window: Duration::from_secs(60),
            max_tracked: 100,
        },
    };
    let auth = Authenticator::new(meta.clone(), &[9u8; 32], config).unwrap();
    contract::run(meta, &Caches::new(auth)).await;
}
