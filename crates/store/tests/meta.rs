//! The metadata store: tenant scoping of devices, tokens, refresh families.

use tributary_store::meta::{DeviceFilter, ListParams, TakeOutcome};
use tributary_store::{MetaStore, NewDevice, RefreshToken, Role, StoreError, Tenant};

fn new_device(name: &str, hash: &str) -> NewDevice {
    NewDevice {
        name: name.into(),
        token_hash: hash.into(),
        token_hint: "abcd".into(),
        ..Default::default()
    }
}

/// A fresh store with tenants "a" and "b", each with an owner.
async fn two_tenants(dir: &std::path::Path) -> (MetaStore, Tenant, Tenant) {
    let meta = MetaStore::open(&dir.join("m.db")).await.unwrap();
    let (a, _) = meta
        .create_tenant_with_owner("a", "a@x.io", "h", Role::Owner)
        .await
        .unwrap();
    let (b, _) = meta
        .create_tenant_with_owner("b", "b@x.io", "h", Role::Owner)
        .await
        .unwrap();
    (meta, a, b)
}

#[tokio::test]
async fn devices_are_scoped_by_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let (meta, a, b) = two_tenants(dir.path()).await;
    assert_eq!(meta.tenant_count().await.unwrap(), 2);
    assert!(matches!(
        meta.create_tenant_with_owner("c", "A@X.IO", "h", Role::Owner)
            .await,
        Err(StoreError::Conflict(_))
    ));

    let d = meta
        .create_device(a.id, new_device("pump", "h1"))
        .await
        .unwrap();
    // Same name in another tenant is fine; twice in one tenant is a conflict.
    meta.create_device(b.id, new_device("pump", "h2"))
        .await
        .unwrap();
    assert!(matches!(
        meta.create_device(a.id, new_device("pump", "h3")).await,
        Err(StoreError::Conflict(_))
    ));

    assert!(
        meta.get_device(b.id, d.id).await.unwrap().is_none(),
        "B cannot read A's device"
    );
    assert!(
        !meta.delete_device(b.id, d.id).await.unwrap(),
        "B cannot delete A's device"
    );
    assert!(
        !meta.set_device_token(b.id, d.id, "x", "x").await.unwrap(),
        "B cannot rotate A's token"
    );
    let params = ListParams {
        limit: 10,
        ..Default::default()
    };
    assert_eq!(
        meta.list_devices(b.id, &DeviceFilter::default(), &params)
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    assert_eq!(
        meta.device_by_token_hash("h1")
            .await
            .unwrap()
            .unwrap()
            .tenant,
        a.id
    );

    assert!(meta.set_device_token(a.id, d.id, "h9", "h9").await.unwrap());
    assert!(meta.device_by_token_hash("h1").await.unwrap().is_none());
    assert!(meta.delete_device(a.id, d.id).await.unwrap());
    assert!(meta.device_by_token_hash("h9").await.unwrap().is_none());
}

#[tokio::test]
async fn refresh_tokens_are_single_use_and_families_revocable() {
    let dir = tempfile::tempdir().unwrap();
    let meta = MetaStore::open(&dir.path().join("m.db")).await.unwrap();
    let (t, u) = meta
        .create_tenant_with_owner("a", "a@x.io", "h", Role::Owner)
        .await
        .unwrap();
    let far = i64::MAX / 2;
    let tok = |hash: &str, expires_at| RefreshToken {
        hash: hash.into(),
        family: "fam".into(),
        user: u.id,
        tenant: t.id,
        expires_at,
    };
    meta.insert_refresh_token(&tok("r1", far)).await.unwrap();
    meta.insert_refresh_token(&tok("r2", far)).await.unwrap();
    meta.insert_refresh_token(&tok("old", 1)).await.unwrap();
    assert!(matches!(
        meta.take_refresh_token("r1").await.unwrap(),
        TakeOutcome::Taken(_)
    ));
    assert!(matches!(
        meta.take_refresh_token("r1").await.unwrap(),
        TakeOutcome::Reused(_)
    ));
    assert_eq!(
        meta.take_refresh_token("old").await.unwrap(),
        TakeOutcome::Invalid,
        "expired"
    );
    assert_eq!(
        meta.take_refresh_token("nope").await.unwrap(),
        TakeOutcome::Invalid
    );
    meta.revoke_refresh_family("fam").await.unwrap();
    assert!(
        matches!(
            meta.take_refresh_token("r2").await.unwrap(),
            TakeOutcome::Reused(_)
        ),
        "revoked"
    );
    assert_eq!(meta.memberships(u.id).await.unwrap()[0].1, Role::Owner);
}

/// Devices created in bulk (line protocol's first writes): missing names are
/// created in one go, existing ones left as they are, other tenants untouched.
#[tokio::test]
async fn devices_are_ensured_in_bulk() {
    let dir = tempfile::tempdir().unwrap();
    let (meta, a, b) = two_tenants(dir.path()).await;
    let existing = meta
        .create_device(a.id, new_device("m,host=1", "h0"))
        .await
        .unwrap();
    meta.create_device(b.id, new_device("m,host=2", "hb"))
        .await
        .unwrap();
    let wanted: Vec<NewDevice> = (1..=1500)
        .map(|i| new_device(&format!("m,host={i}"), &format!("h{i}")))
        .collect();
    let got = meta.ensure_devices(a.id, &wanted).await.unwrap();
    assert_eq!(got.len(), 1500);
    assert!(got.iter().all(|d| d.tenant == a.id));
    let host1 = got.iter().find(|d| d.name == "m,host=1").unwrap();
    assert_eq!(host1.id, existing.id, "an existing device is kept");
    let again = meta.ensure_devices(a.id, &wanted[..10]).await.unwrap();
    let mut ids: Vec<_> = again.iter().map(|d| d.id).collect();
    ids.sort();
    let mut first: Vec<_> = got
        .iter()
        .filter(|d| wanted[..10].iter().any(|w| w.name == d.name))
        .map(|d| d.id)
        .collect();
    first.sort();
    assert_eq!(ids, first, "a second call creates nothing new");
    let names: Vec<String> = vec!["m,host=2".into()];
    assert_eq!(meta.devices_by_names(b.id, &names).await.unwrap().len(), 1);
}
