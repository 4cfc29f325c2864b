//! The contract of cache invalidation: given a lifecycle event, every cache
//! in front of the metadata store stops answering with what the event made
//! stale, at once, and open connections are told. Call [`run`] with the
//! metadata store the caches read through and the [`Caches`] to check (it
//! is driven through the [`Invalidate`] seam only).

use std::sync::Arc;
use std::time::Duration;

use tributary_auth::Authenticator;
use tributary_ingest::{Caches, Invalidate};
use tributary_model::{DeviceChange, DeviceEvent, Event, TenantChange, TenantEvent};
use tributary_store::meta::prelude::*;
use tributary_store::{Device, NewDevice, Role};

/// Every check of the contract, in turn.
pub async fn run(meta: Arc<dyn MetaStore>, caches: &Caches) {
    a_deleted_device_is_forgotten_and_told(meta.as_ref(), caches).await;
    a_rotated_token_stops_working(meta.as_ref(), caches).await;
    a_deleted_tenant_takes_all_its_devices(meta.as_ref(), caches).await;
    a_changed_profile_is_read_again(meta.as_ref(), caches).await;
}

fn device_event(d: &Device, change: DeviceChange) -> Event {
    Event::Device(DeviceEvent {
        tenant: d.tenant,
        device: d.id,
        change,
    })
}

/// A new tenant with one device; its token.
async fn device(meta: &dyn MetaStore) -> (Device, String) {
    let email = format!("{}@example.com", uuid::Uuid::new_v4().simple());
    let (tenant, _) = meta
        .create_tenant_with_owner("caches", &email, "h", Role::Owner)
        .await
        .unwrap();
    let (token, token_hash, token_hint) = Authenticator::new_device_token();
    let d = meta
        .create_device(
            tenant.id,
            NewDevice {
                name: "cached".into(),
                token_hash,
                token_hint,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    (d, token)
}

/// Waits (briefly) for a notice to `d`'s connections.
async fn told(listener: &mut tributary_ingest::revocation::Listener, d: &Device) {
    tokio::time::timeout(
        Duration::from_secs(1),
        listener.concerns(d.tenant, Some(d.id)),
    )
    .await
    .expect("open connections of the device are told");
}

/// Deleting a device: its token finds nothing, its line-protocol series
/// key is dropped, and its connections are told.
pub async fn a_deleted_device_is_forgotten_and_told(meta: &dyn MetaStore, caches: &Caches) {
    let (d, token) = device(meta).await;
    assert!(caches.auth.device(&token).await.unwrap().is_some());
    caches.series_devices.put(d.clone(), "m,host=a".into());
    let mut listener = caches.revocations.subscribe();
    assert!(meta.delete_device(d.tenant, d.id).await.unwrap());
    (caches as &dyn Invalidate).apply(&device_event(&d, DeviceChange::Deleted));
    assert!(
        caches.auth.device(&token).await.unwrap().is_none(),
        "a deleted device's token is refused at once"
    );
    assert!(caches.series_devices.get(d.tenant, "m,host=a").is_none());
    told(&mut listener, &d).await;
}

/// Rotating a token: the old one is refused, the new one works.
pub async fn a_rotated_token_stops_working(meta: &dyn MetaStore, caches: &Caches) {
    let (d, old) = device(meta).await;
    assert!(caches.auth.device(&old).await.unwrap().is_some());
    let (new, hash, hint) = Authenticator::new_device_token();
    assert!(meta
        .set_device_token(d.tenant, d.id, &hash, &hint)
        .await
        .unwrap());
    let mut listener = caches.revocations.subscribe();
    (caches as &dyn Invalidate).apply(&device_event(&d, DeviceChange::CredentialsRotated));
    assert!(caches.auth.device(&old).await.unwrap().is_none());
    assert_eq!(caches.auth.device(&new).await.unwrap().unwrap().id, d.id);
    told(&mut listener, &d).await;
}

/// Deleting a tenant: every device of it is refused and told; another
/// tenant's device is not.
pub async fn a_deleted_tenant_takes_all_its_devices(meta: &dyn MetaStore, caches: &Caches) {
    let (d, token) = device(meta).await;
    let (other, other_token) = device(meta).await;
    assert!(caches.auth.device(&token).await.unwrap().is_some());
    assert!(caches.auth.device(&other_token).await.unwrap().is_some());
    caches.series_devices.put(d.clone(), "m,host=t".into());
    let mut listener = caches.revocations.subscribe();
    assert!(meta.delete_tenant(d.tenant).await.unwrap());
    (caches as &dyn Invalidate).apply(&Event::Tenant(TenantEvent {
        tenant: d.tenant,
        change: TenantChange::Deleted,
    }));
    assert!(caches.auth.device(&token).await.unwrap().is_none());
    assert!(caches.series_devices.get(d.tenant, "m,host=t").is_none());
    told(&mut listener, &d).await;
    assert!(caches.auth.device(&other_token).await.unwrap().is_some());
    let mut bystander = caches.revocations.subscribe();
    let quiet = tokio::time::timeout(
        Duration::from_millis(100),
        bystander.concerns(other.tenant, Some(other.id)),
    )
    .await;
    assert!(
        quiet.is_err(),
        "another tenant's connections are left alone"
    );
}

/// Changing a profile: its schema is read again, and a device that names it
/// is read again too.
pub async fn a_changed_profile_is_read_again(meta: &dyn MetaStore, caches: &Caches) {
    let (d, token) = device(meta).await;
    let schema = Default::default();
    let profile = meta
        .create_profile(d.tenant, "p", None, &schema)
        .await
        .unwrap();
    assert!(caches
        .profiles
        .get(meta, d.tenant, &profile.id)
        .await
        .unwrap()
        .is_some());
    assert!(caches.auth.device(&token).await.unwrap().is_some());
    assert!(meta.delete_profile(d.tenant, &profile.id).await.unwrap());
    (caches as &dyn Invalidate).apply(&Event::Tenant(TenantEvent {
        tenant: d.tenant,
        change: TenantChange::ProfileChanged {
            profile: profile.id.clone(),
        },
    }));
    assert!(
        caches
            .profiles
            .get(meta, d.tenant, &profile.id)
            .await
            .unwrap()
            .is_none(),
        "a deleted profile's schema is not served from the cache"
    );
}
