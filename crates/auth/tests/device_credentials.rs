//! Device credentials against a real metadata store: tokens and MQTT passwords.

use std::time::Duration;

use tributary_auth::{AuthConfig, Authenticator, LoginLimits};
use tributary_store::meta::prelude::*;
use tributary_store::meta::MqttCredentials;
use tributary_store::{NewDevice, Role, SqliteMeta};

async fn setup() -> (
    tempfile::TempDir,
    std::sync::Arc<dyn MetaStore>,
    std::sync::Arc<Authenticator>,
) {
    let dir = tempfile::tempdir().unwrap();
    let meta: std::sync::Arc<dyn MetaStore> =
        std::sync::Arc::new(SqliteMeta::open(&dir.path().join("m.db")).await.unwrap());
    let auth = Authenticator::new(
        meta.clone(),
        b"0123456789abcdef0123456789abcdef",
        AuthConfig {
            access_ttl_secs: 60,
            refresh_ttl_secs: 600,
            invite_ttl_secs: 600,
            device_cache_entries: 2,
            login_limits: LoginLimits {
                per_account_address: 5,
                per_account: 50,
                per_address: 100,
                max_delay: Duration::from_secs(900),
                window: Duration::from_secs(60),
                max_tracked: 100,
            },
        },
    )
    .unwrap();
    (dir, meta, auth)
}

#[tokio::test]
async fn mqtt_credentials_check_password_and_client_id_binding() {
    let (_dir, meta, auth) = setup().await;
    let (tenant, _) = meta
        .create_tenant_with_owner("t", "o@x.io", "h", Role::Owner)
        .await
        .unwrap();
    let (_, hash, hint) = Authenticator::new_device_token();
    let d = meta
        .create_device(
            tenant.id,
            NewDevice {
                name: "d".into(),
                token_hash: hash,
                token_hint: hint,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let pw_hash = Authenticator::hash_device_password("mqtt-password")
        .await
        .unwrap();
    let creds = MqttCredentials {
        username: "dev-user".into(),
        client_id: Some("client-1".into()),
    };
    meta.set_device_mqtt(tenant.id, d.id, Some((&creds, &pw_hash)))
        .await
        .unwrap();

    let ok = auth
        .device_by_mqtt("dev-user", "mqtt-password", "client-1")
        .await
        .unwrap();
    assert_eq!(ok.map(|x| x.id), Some(d.id));
    assert!(auth
        .device_by_mqtt("dev-user", "wrong-password", "client-1")
        .await
        .unwrap()
        .is_none());
    assert!(
        auth.device_by_mqtt("dev-user", "mqtt-password", "client-2")
            .await
            .unwrap()
            .is_none(),
        "client id bound"
    );
    assert!(auth
        .device_by_mqtt("nobody", "mqtt-password", "client-1")
        .await
        .unwrap()
        .is_none());
    // Cached after success, and the cache honours the binding and removal.
    assert!(auth
        .device_by_mqtt("dev-user", "mqtt-password", "client-2")
        .await
        .unwrap()
        .is_none());
    meta.set_device_mqtt(tenant.id, d.id, None).await.unwrap();
    auth.forget_device(d.id);
    assert!(
        auth.device_by_mqtt("dev-user", "mqtt-password", "client-1")
            .await
            .unwrap()
            .is_none(),
        "removed at once"
    );
    assert!(Authenticator::hash_device_password("short").await.is_err());
}

#[tokio::test]
async fn device_tokens_resolve_until_rotated_and_the_cache_stays_bounded() {
    let (_dir, meta, auth) = setup().await;
    let (tenant, _) = meta
        .create_tenant_with_owner("t", "o@x.io", "h", Role::Owner)
        .await
        .unwrap();
    let mut tokens = Vec::new();
    for i in 0..5 {
        let (token, hash, hint) = Authenticator::new_device_token();
        let d = meta
            .create_device(
                tenant.id,
                NewDevice {
                    name: format!("d{i}"),
                    token_hash: hash,
                    token_hint: hint,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        tokens.push((d.id, token));
    }
    for (id, token) in &tokens {
        assert_eq!(auth.device(token).await.unwrap().map(|d| d.id), Some(*id));
    }
    let (id, old) = &tokens[0];
    let (_, new_hash, new_hint) = Authenticator::new_device_token();
    meta.set_device_token(tenant.id, *id, &new_hash, &new_hint)
        .await
        .unwrap();
    auth.forget_device(*id);
    assert!(
        auth.device(old).await.unwrap().is_none(),
        "rotation takes effect at once"
    );
    assert!(auth.device("not-a-token").await.unwrap().is_none());
}
