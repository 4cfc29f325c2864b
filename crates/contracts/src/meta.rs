//! The contract every metadata store meets: call [`run`] on a fresh store.
//! Each check makes its own tenants (with unique names and emails), so one
//! store takes them all, and a check never depends on another's data.

use std::collections::BTreeMap;

use tributary_model::{AttributeChange, AttributeScope, DeviceId, TenantId};
use tributary_store::meta::prelude::*;
use tributary_store::meta::{
    AuditFilter, DeviceFilter, DevicePatch, KeyScope, ListParams, MqttCredentials, NewAudit,
    TakeOutcome, Updated,
};
use tributary_store::{NewDevice, RefreshToken, Role, StoreError, Tenant, User};

/// Every check of the contract, in turn.
pub async fn run(store: &dyn MetaStore) {
    store.ping().await.expect("a fresh store answers");
    tenants_users_and_roles(store).await;
    devices_are_scoped_by_tenant(store).await;
    devices_are_ensured_in_bulk(store).await;
    updates_are_conditional_on_the_version(store).await;
    lists_page_with_cursors(store).await;
    profiles_and_groups_stay_in_their_tenant(store).await;
    attribute_changes_apply_once(store).await;
    credentials_people_hold(store).await;
    refresh_tokens_are_single_use_and_families_revocable(store).await;
    the_audit_log_is_per_tenant_newest_first(store).await;
    deleting_a_tenant_removes_what_it_had(store).await;
}

/// A name no other check uses.
fn unique(what: &str) -> String {
    format!("{what}-{}", uuid::Uuid::new_v4().simple())
}

fn new_device(name: &str, hash: &str) -> NewDevice {
    NewDevice {
        name: name.into(),
        token_hash: hash.into(),
        token_hint: "abcd".into(),
        ..Default::default()
    }
}

fn first_page(limit: u32) -> ListParams {
    ListParams {
        limit,
        ..Default::default()
    }
}

/// A new tenant with a new owner.
async fn tenant(store: &dyn MetaStore) -> (Tenant, User) {
    let email = format!("{}@example.com", unique("owner"));
    store
        .create_tenant_with_owner(&unique("tenant"), &email, "hash", Role::Owner)
        .await
        .expect("a tenant with its owner")
}

/// Tenants and owners; e-mail addresses are unique whatever their case;
/// members, roles, and the owner count.
pub async fn tenants_users_and_roles(store: &dyn MetaStore) {
    let before = store.tenant_count().await.unwrap();
    let (a, owner) = tenant(store).await;
    assert_eq!(store.tenant_count().await.unwrap(), before + 1);
    assert!(
        matches!(
            store
                .create_tenant_with_owner("dup", &owner.email.to_uppercase(), "h", Role::Owner)
                .await,
            Err(StoreError::Conflict(_))
        ),
        "an e-mail address in another case is the same user"
    );
    let found = store.user_by_email(&owner.email).await.unwrap().unwrap();
    assert_eq!(found.id, owner.id);
    assert_eq!(
        store.role_in(owner.id, a.id).await.unwrap(),
        Some(Role::Owner)
    );

    let viewer = store
        .create_user(&format!("{}@example.com", unique("viewer")), "h")
        .await
        .unwrap();
    assert_eq!(store.role_in(viewer.id, a.id).await.unwrap(), None);
    store
        .join_tenant(viewer.id, a.id, Role::Viewer)
        .await
        .unwrap();
    assert_eq!(
        store.role_in(viewer.id, a.id).await.unwrap(),
        Some(Role::Viewer)
    );
    assert!(store.set_role(a.id, viewer.id, Role::Editor).await.unwrap());
    assert_eq!(
        store.member(a.id, viewer.id).await.unwrap().unwrap().role,
        Role::Editor
    );
    let members = store
        .list_members(a.id, None, None, &first_page(10))
        .await
        .unwrap();
    assert_eq!(members.items.len(), 2);
    assert_eq!(store.owner_count(a.id).await.unwrap(), 1);

    // A second tenant of the same owner; the viewer is not in it.
    let b = store
        .create_tenant_for(owner.id, &unique("second"))
        .await
        .unwrap();
    assert_eq!(store.memberships(owner.id).await.unwrap().len(), 2);
    assert!(
        !store.set_role(b.id, viewer.id, Role::Admin).await.unwrap(),
        "a role is only set where the user is a member"
    );
    assert!(store.remove_member(a.id, viewer.id).await.unwrap());
    assert_eq!(store.role_in(viewer.id, a.id).await.unwrap(), None);

    store.set_password(viewer.id, "new-hash").await.unwrap();
    assert_eq!(
        store
            .user_by_id(viewer.id)
            .await
            .unwrap()
            .unwrap()
            .password_hash,
        "new-hash"
    );
}

/// A device is visible to, changed by and found by its own tenant only;
/// names are unique within a tenant; a rotated or deleted token finds nothing.
pub async fn devices_are_scoped_by_tenant(store: &dyn MetaStore) {
    let ((a, _), (b, _)) = (tenant(store).await, tenant(store).await);
    let (h1, h2, h3, h9) = (unique("h"), unique("h"), unique("h"), unique("h"));
    let d = store
        .create_device(a.id, new_device("pump", &h1))
        .await
        .unwrap();
    // The same name in another tenant is fine; twice in one tenant is a conflict.
    store
        .create_device(b.id, new_device("pump", &h2))
        .await
        .unwrap();
    assert!(matches!(
        store.create_device(a.id, new_device("pump", &h3)).await,
        Err(StoreError::Conflict(_))
    ));

    assert!(
        store.get_device(b.id, d.id).await.unwrap().is_none(),
        "B cannot read A's device"
    );
    assert!(
        store
            .device_by_name(b.id, "pump")
            .await
            .unwrap()
            .unwrap()
            .id
            != d.id
    );
    assert!(
        !store.delete_device(b.id, d.id).await.unwrap(),
        "B cannot delete A's device"
    );
    assert!(
        !store.set_device_token(b.id, d.id, "x", "x").await.unwrap(),
        "B cannot rotate A's token"
    );
    let b_devices = store
        .list_devices(b.id, &DeviceFilter::default(), &first_page(10))
        .await
        .unwrap();
    assert_eq!(b_devices.items.len(), 1);
    assert_eq!(
        store
            .device_by_token_hash(&h1)
            .await
            .unwrap()
            .unwrap()
            .tenant,
        a.id
    );

    // MQTT credentials: found by username, with the password's hash.
    let login = unique("plc");
    let creds = MqttCredentials {
        username: login.clone(),
        client_id: None,
    };
    assert!(store
        .set_device_mqtt(a.id, d.id, Some((&creds, "pw-hash")))
        .await
        .unwrap());
    let by_login = store.devices_by_mqtt_username(&login).await.unwrap();
    assert_eq!(by_login.len(), 1);
    assert_eq!(
        (by_login[0].0.id, by_login[0].1.as_str()),
        (d.id, "pw-hash")
    );
    assert!(!store
        .set_device_mqtt(b.id, d.id, Some((&creds, "x")))
        .await
        .unwrap());

    assert!(store.set_device_token(a.id, d.id, &h9, "h9").await.unwrap());
    assert!(store.device_by_token_hash(&h1).await.unwrap().is_none());
    assert!(store.delete_device(a.id, d.id).await.unwrap());
    assert!(store.device_by_token_hash(&h9).await.unwrap().is_none());
    assert!(store
        .devices_by_mqtt_username(&login)
        .await
        .unwrap()
        .is_empty());
}

/// Devices created in bulk (line protocol's first writes): missing names are
/// created in one go, existing ones left as they are, other tenants untouched.
pub async fn devices_are_ensured_in_bulk(store: &dyn MetaStore) {
    let ((a, _), (b, _)) = (tenant(store).await, tenant(store).await);
    let existing = store
        .create_device(a.id, new_device("m,host=1", &unique("h")))
        .await
        .unwrap();
    store
        .create_device(b.id, new_device("m,host=2", &unique("h")))
        .await
        .unwrap();
    let wanted: Vec<NewDevice> = (1..=1500)
        .map(|i| new_device(&format!("m,host={i}"), &unique("h")))
        .collect();
    let got = store.ensure_devices(a.id, &wanted).await.unwrap();
    assert_eq!(got.len(), 1500);
    assert!(got.iter().all(|d| d.tenant == a.id));
    let host1 = got.iter().find(|d| d.name == "m,host=1").unwrap();
    assert_eq!(host1.id, existing.id, "an existing device is kept");
    let again = store.ensure_devices(a.id, &wanted[..10]).await.unwrap();
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
    assert_eq!(store.devices_by_names(b.id, &names).await.unwrap().len(), 1);
    assert_eq!(
        store
            .device_ids(a.id, &DeviceFilter::default())
            .await
            .unwrap()
            .len(),
        1500
    );
}

/// A change names the version it read: an older one is refused with the
/// current state, and every change moves the version on.
pub async fn updates_are_conditional_on_the_version(store: &dyn MetaStore) {
    let ((a, _), (b, _)) = (tenant(store).await, tenant(store).await);
    let d = store
        .create_device(a.id, new_device("v", &unique("h")))
        .await
        .unwrap();
    let rename = |name: &str| DevicePatch {
        name: Some(name.into()),
        labels: Some(BTreeMap::from([("site".to_string(), "berlin".to_string())])),
        ..Default::default()
    };
    let v2 = match store
        .update_device(a.id, d.id, rename("v2"), Some(d.version))
        .await
        .unwrap()
    {
        Updated::Ok(v2) => v2,
        other => panic!("an update at the current version applies: {other:?}"),
    };
    assert_eq!(v2.name, "v2");
    assert!(v2.version > d.version, "the version moves on");
    match store
        .update_device(a.id, d.id, rename("v3"), Some(d.version))
        .await
        .unwrap()
    {
        Updated::Stale(now) => assert_eq!(now.name, "v2"),
        other => panic!("an update at an old version is stale: {other:?}"),
    }
    assert!(matches!(
        store
            .update_device(b.id, d.id, rename("x"), None)
            .await
            .unwrap(),
        Updated::NotFound
    ));
    let berlin = DeviceFilter {
        labels: vec![("site".into(), "berlin".into())],
        ..Default::default()
    };
    assert_eq!(store.device_ids(a.id, &berlin).await.unwrap(), vec![d.id]);
}

/// Walking a list by its cursors gives every item once, in order; a cursor
/// the store did not make is refused as invalid.
pub async fn lists_page_with_cursors(store: &dyn MetaStore) {
    let (a, _) = tenant(store).await;
    for i in 0..7 {
        store
            .create_device(a.id, new_device(&format!("d{i}"), &unique("h")))
            .await
            .unwrap();
    }
    let mut params = first_page(3);
    let mut names = Vec::new();
    loop {
        let page = store
            .list_devices(a.id, &DeviceFilter::default(), &params)
            .await
            .unwrap();
        assert!(page.items.len() <= 3);
        names.extend(page.items.into_iter().map(|d| d.name));
        match page.next_cursor {
            Some(c) => params.cursor = Some(c),
            None => break,
        }
    }
    let want: Vec<String> = (0..7).map(|i| format!("d{i}")).collect();
    assert_eq!(names, want, "by name, each once");
    params.cursor = Some("not-a-cursor".into());
    assert!(matches!(
        store
            .list_devices(a.id, &DeviceFilter::default(), &params)
            .await,
        Err(StoreError::Invalid(_))
    ));
}

/// A device may only use its own tenant's profile; a group only holds its
/// own tenant's devices.
pub async fn profiles_and_groups_stay_in_their_tenant(store: &dyn MetaStore) {
    let ((a, _), (b, _)) = (tenant(store).await, tenant(store).await);
    let schema = Default::default();
    let pa = store
        .create_profile(a.id, "sensor", Some("a's"), &schema)
        .await
        .unwrap();
    assert!(store.get_profile(b.id, &pa.id).await.unwrap().is_none());
    let with_foreign = NewDevice {
        profile: Some(pa.id.clone()),
        ..new_device("uses-a", &unique("h"))
    };
    assert!(
        matches!(
            store.create_device(b.id, with_foreign.clone()).await,
            Err(StoreError::Invalid(_))
        ),
        "B's device cannot use A's profile"
    );
    let d = store.create_device(a.id, with_foreign).await.unwrap();
    assert_eq!(d.profile.as_deref(), Some(pa.id.as_str()));

    let g = store.create_group(a.id, "hall", None).await.unwrap();
    assert!(store.get_group(b.id, &g.id).await.unwrap().is_none());
    let other = store
        .create_device(b.id, new_device("b's", &unique("h")))
        .await
        .unwrap();
    assert!(!store.add_to_group(a.id, &g.id, other.id).await.unwrap());
    assert!(!store.add_to_group(b.id, &g.id, other.id).await.unwrap());
    assert!(store.add_to_group(a.id, &g.id, d.id).await.unwrap());
    let in_group = DeviceFilter {
        group: Some(g.id.clone()),
        ..Default::default()
    };
    assert_eq!(store.device_ids(a.id, &in_group).await.unwrap(), vec![d.id]);
    assert!(store.remove_from_group(a.id, &g.id, d.id).await.unwrap());
    assert!(store.device_ids(a.id, &in_group).await.unwrap().is_empty());
    assert!(!store.delete_group(b.id, &g.id).await.unwrap());
    assert!(store.delete_group(a.id, &g.id).await.unwrap());
    assert!(!store.delete_profile(b.id, &pa.id).await.unwrap());
    assert!(store.delete_profile(a.id, &pa.id).await.unwrap());
}

/// Attribute changes from the log: applied in one go, again with the same
/// result (a replay), and passed over for a device of another tenant.
pub async fn attribute_changes_apply_once(store: &dyn MetaStore) {
    let ((a, _), (b, _)) = (tenant(store).await, tenant(store).await);
    let d = store
        .create_device(a.id, new_device("attrs", &unique("h")))
        .await
        .unwrap();
    let change = |tenant: TenantId, device: DeviceId, set: &[(&str, &str)], deleted: &[&str]| {
        AttributeChange {
            tenant,
            device,
            scope: AttributeScope::Client,
            set: set
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            deleted: deleted.iter().map(|k| k.to_string()).collect(),
            at_ms: 1_700_000_000_000,
        }
    };
    let first = change(a.id, d.id, &[("fw", "\"1.2\""), ("n", "3")], &[]);
    assert!(store.apply_attribute_change(&first).await.unwrap());
    assert!(store.apply_attribute_change(&first).await.unwrap());
    let second = change(a.id, d.id, &[("n", "4")], &["fw"]);
    assert!(store.apply_attribute_change(&second).await.unwrap());
    let got = store.get_attributes(a.id, d.id, &[], &[]).await.unwrap();
    let client = &got[&AttributeScope::Client];
    assert_eq!(client.len(), 1, "fw was deleted: {client:?}");
    assert_eq!(client["n"].value, serde_json::json!(4));
    assert_eq!(client["n"].updated_at, 1_700_000_000_000);
    assert!(
        !store
            .apply_attribute_change(&change(b.id, d.id, &[("n", "9")], &[]))
            .await
            .unwrap(),
        "a change naming another tenant is passed over"
    );
    let shared_only = store
        .get_attributes(a.id, d.id, &[AttributeScope::Shared], &[])
        .await
        .unwrap();
    assert!(shared_only.values().all(|m| m.is_empty()));
    assert!(store
        .get_attributes(b.id, d.id, &[], &[])
        .await
        .unwrap()
        .values()
        .all(|m| m.is_empty()));
}

/// API keys and invites: found by their hash, listed and revoked within
/// their tenant only; an invite is taken once, and can be given back.
pub async fn credentials_people_hold(store: &dyn MetaStore) {
    let ((a, owner), (b, _)) = (tenant(store).await, tenant(store).await);
    let hash = unique("key");
    let key = store
        .create_api_key(a.id, "ci", "trb_ab", &hash, KeyScope::Write, "owner", None)
        .await
        .unwrap();
    assert_eq!(
        store.api_key_by_hash(&hash).await.unwrap().unwrap().tenant,
        a.id
    );
    let listed = store
        .list_api_keys(b.id, None, &first_page(10))
        .await
        .unwrap();
    assert!(listed.items.is_empty());
    assert!(!store.revoke_api_key(b.id, &key.id).await.unwrap());
    assert!(store.revoke_api_key(a.id, &key.id).await.unwrap());
    assert!(
        store.api_key_by_hash(&hash).await.unwrap().is_none(),
        "a revoked key finds nothing"
    );

    let invite_hash = unique("invite");
    let far = i64::MAX / 2;
    let email = format!("{}@example.com", unique("invitee"));
    let inv = store
        .create_invite(a.id, &email, Role::Viewer, &invite_hash, &owner.email, far)
        .await
        .unwrap();
    assert!(store
        .list_invites(b.id, &first_page(10))
        .await
        .unwrap()
        .items
        .is_empty());
    assert_eq!(
        store.take_invite(&invite_hash).await.unwrap().unwrap().id,
        inv.id
    );
    assert!(
        store.take_invite(&invite_hash).await.unwrap().is_none(),
        "taken once"
    );
    store.untake_invite(&inv.id).await.unwrap();
    assert!(store.take_invite(&invite_hash).await.unwrap().is_some());
    store.untake_invite(&inv.id).await.unwrap();
    assert!(!store.revoke_invite(b.id, &inv.id).await.unwrap());
    assert!(store.revoke_invite(a.id, &inv.id).await.unwrap());
    assert!(store.take_invite(&invite_hash).await.unwrap().is_none());
}

/// Refresh tokens are single use; a used one is reported as reused (theft);
/// a family and a user's other sessions can be revoked.
pub async fn refresh_tokens_are_single_use_and_families_revocable(store: &dyn MetaStore) {
    let (t, u) = tenant(store).await;
    let far = i64::MAX / 2;
    let (fam, other) = (unique("fam"), unique("fam"));
    let tok = |hash: &str, family: &str, expires_at| RefreshToken {
        hash: hash.into(),
        family: family.into(),
        user: u.id,
        tenant: t.id,
        expires_at,
    };
    let (r1, r2, old, r3) = (unique("r"), unique("r"), unique("r"), unique("r"));
    store
        .insert_refresh_token(&tok(&r1, &fam, far))
        .await
        .unwrap();
    store
        .insert_refresh_token(&tok(&r2, &fam, far))
        .await
        .unwrap();
    store
        .insert_refresh_token(&tok(&old, &fam, 1))
        .await
        .unwrap();
    store
        .insert_refresh_token(&tok(&r3, &other, far))
        .await
        .unwrap();
    assert!(matches!(
        store.take_refresh_token(&r1).await.unwrap(),
        TakeOutcome::Taken(_)
    ));
    assert!(matches!(
        store.take_refresh_token(&r1).await.unwrap(),
        TakeOutcome::Reused(_)
    ));
    assert_eq!(
        store.take_refresh_token(&old).await.unwrap(),
        TakeOutcome::Invalid,
        "expired"
    );
    assert_eq!(
        store.take_refresh_token("nope").await.unwrap(),
        TakeOutcome::Invalid
    );
    assert_eq!(
        store.session_role(u.id, t.id, &fam).await.unwrap(),
        Some((Role::Owner, false)),
        "the session is not revoked yet"
    );
    store.revoke_refresh_family(&fam).await.unwrap();
    assert_eq!(
        store.session_role(u.id, t.id, &fam).await.unwrap(),
        Some((Role::Owner, true)),
        "now it is"
    );
    assert!(
        matches!(
            store.take_refresh_token(&r2).await.unwrap(),
            TakeOutcome::Reused(_)
        ),
        "revoked"
    );
    assert_eq!(
        store.revoke_user_sessions(u.id, Some(&fam)).await.unwrap(),
        1
    );
    assert!(matches!(
        store.take_refresh_token(&r3).await.unwrap(),
        TakeOutcome::Reused(_)
    ));
}

/// Audit entries are read back by their own tenant only, newest first,
/// filtered by action.
pub async fn the_audit_log_is_per_tenant_newest_first(store: &dyn MetaStore) {
    let ((a, _), (b, _)) = (tenant(store).await, tenant(store).await);
    for action in ["device.create", "device.delete", "device.create"] {
        let entry = NewAudit {
            actor: "owner@example.com",
            action,
            resource_type: "device",
            resource_id: Some("d1"),
            ip: Some("127.0.0.1"),
            detail: Some(serde_json::json!({"name": "pump"})),
        };
        store.audit(a.id, entry).await.unwrap();
    }
    let all = AuditFilter {
        limit: 10,
        ..Default::default()
    };
    let got = store.audit_entries(a.id, &all).await.unwrap();
    assert_eq!(got.len(), 3);
    assert!(got.windows(2).all(|w| w[0].id > w[1].id), "newest first");
    assert_eq!(got[0].detail, Some(serde_json::json!({"name": "pump"})));
    assert!(store.audit_entries(b.id, &all).await.unwrap().is_empty());
    let creates = AuditFilter {
        action: Some("device.create".into()),
        ..all
    };
    assert_eq!(store.audit_entries(a.id, &creates).await.unwrap().len(), 2);
}

/// Deleting a tenant takes its devices, credentials, keys, settings and
/// memberships with it, and leaves other tenants alone.
pub async fn deleting_a_tenant_removes_what_it_had(store: &dyn MetaStore) {
    let ((a, owner), (b, _)) = (tenant(store).await, tenant(store).await);
    let (ha, hb, key) = (unique("h"), unique("h"), unique("key"));
    store
        .create_device(a.id, new_device("x", &ha))
        .await
        .unwrap();
    store
        .create_device(b.id, new_device("x", &hb))
        .await
        .unwrap();
    store
        .create_api_key(a.id, "k", "trb_cd", &key, KeyScope::Admin, "o", None)
        .await
        .unwrap();
    let settings = store
        .update_tenant_settings(a.id, None, Some(Some(30)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(settings.retention_days, Some(30));
    assert!(store
        .all_tenant_settings()
        .await
        .unwrap()
        .iter()
        .any(|s| s.id == a.id && s.retention_days == Some(30)));

    assert!(store.delete_tenant(a.id).await.unwrap());
    assert!(!store.delete_tenant(a.id).await.unwrap(), "gone already");
    assert!(store.device_by_token_hash(&ha).await.unwrap().is_none());
    assert!(store.api_key_by_hash(&key).await.unwrap().is_none());
    assert!(store.tenant_settings(a.id).await.unwrap().is_none());
    assert_eq!(store.role_in(owner.id, a.id).await.unwrap(), None);
    assert!(store.device_by_token_hash(&hb).await.unwrap().is_some());
}
