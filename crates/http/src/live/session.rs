//! One live client's state, independent of the transport.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Map, Value as Json};
use tributary_auth::Principal;
use tributary_live::{ConnectError, Event, KeyFilter, SubscribeError, Subscription, Update};
use tributary_model::time::ns_to_ms;
use tributary_model::{DeviceId, Point};
use tributary_store::meta::{DeviceFilter, ListParams};

use crate::problem::ApiError;
use crate::state::AppState;

/// Close code when the credential expired.
pub const CLOSE_TOKEN_EXPIRED: u16 = 4001;
/// Close code when the credential was revoked (logout, key revoked, member removed).
pub const CLOSE_REVOKED: u16 = 4003;
/// Close code when the server shuts down ("going away").
pub const CLOSE_GOING_AWAY: u16 = 1001;

/// Why a session ends, as a close code and reason.
#[derive(Clone, Debug, PartialEq)]
pub struct Close {
    /// WebSocket close code (also sent as an SSE `close` event).
    pub code: u16,
    /// Human reason.
    pub reason: &'static str,
}

/// What to subscribe to: exactly one of these.
#[derive(Clone, Debug, PartialEq)]
pub enum Selector {
    /// One device.
    Device(String),
    /// Several devices.
    Devices(Vec<String>),
    /// The devices of a group (re-resolved periodically).
    Group(String),
    /// The devices whose labels all match (re-resolved periodically).
    Labels(BTreeMap<String, String>),
    /// Every device of the tenant, present and future.
    Tenant,
}

/// A subscribe or unsubscribe request, from either transport.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscribeRequest {
    /// One device id.
    #[serde(default)]
    pub device: Option<String>,
    /// Several device ids.
    #[serde(default)]
    pub devices: Option<Vec<String>>,
    /// A group id.
    #[serde(default)]
    pub group: Option<String>,
    /// A label selector.
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
    /// The whole tenant.
    #[serde(default)]
    pub tenant: Option<bool>,
    /// Only these keys (all when empty).
    #[serde(default)]
    pub keys: Vec<String>,
    /// Resume after this sequence number instead of sending a snapshot.
    #[serde(default)]
    pub since: Option<u64>,
}

impl SubscribeRequest {
    /// The one selector the request names.
    pub fn selector(&self) -> Result<Selector, String> {
        let mut found = Vec::new();
        if let Some(d) = &self.device {
            found.push(Selector::Device(d.clone()));
        }
        if let Some(d) = &self.devices {
            found.push(Selector::Devices(d.clone()));
        }
        if let Some(g) = &self.group {
            found.push(Selector::Group(g.clone()));
        }
        if let Some(l) = &self.labels {
            found.push(Selector::Labels(l.clone()));
        }
        if self.tenant == Some(true) {
            found.push(Selector::Tenant);
        }
        match found.len() {
            1 => Ok(found.remove(0)),
            0 => Err("name what to subscribe to: device, devices, group, labels or tenant".into()),
            _ => Err("name only one of device, devices, group, labels or tenant".into()),
        }
    }
}

/// An error message with a code.
pub fn error_msg(code: &str, detail: impl Into<String>) -> Json {
    json!({"type": "error", "code": code, "detail": detail.into()})
}

fn points_json(points: &[Point]) -> Map<String, Json> {
    let mut out: Map<String, Json> = Map::new();
    for p in points {
        if let Json::Array(list) = out
            .entry(p.key.clone())
            .or_insert_with(|| Json::Array(Vec::new()))
        {
            list.push(json!({"ts": ns_to_ms(p.ts), "value": p.value.to_json()}));
        }
    }
    out
}

/// The message for one update.
pub fn update_msg(u: &Update) -> Json {
    json!({"type": "update", "device": u.device.to_string(), "seq": u.seq, "points": points_json(&u.points)})
}

/// A re-resolved selector and the devices it covered last time.
struct Tracked {
    selector: Selector,
    keys: Vec<String>,
    devices: HashSet<DeviceId>,
}

/// One live client.
pub struct Session {
    s: AppState,
    principal: Principal,
    token: String,
    sub: Subscription,
    /// Per device: the sequence its snapshot or resume already covers.
    covered: HashMap<DeviceId, u64>,
    /// The same for the tenant-wide subscription.
    tenant_covered: Option<u64>,
    /// Selectors that are re-resolved (groups, labels) and explicit device lists.
    tracked: Vec<Tracked>,
}

impl Session {
    /// Registers a client with the hub; refused when the tenant has too many.
    pub fn open(s: AppState, principal: Principal, token: String) -> Result<Self, ApiError> {
        let sub = s
            .hub
            .connect(principal.tenant)
            .map_err(|ConnectError::TooManyClients(n)| {
                ApiError::rate_limited(format!("this tenant already has {n} live connections"), 5)
            })?;
        Ok(Self {
            s,
            principal,
            token,
            sub,
            covered: HashMap::new(),
            tenant_covered: None,
            tracked: Vec::new(),
        })
    }

    /// How long until the credential expires.
    pub fn time_left(&self) -> Duration {
        let ms = self
            .principal
            .expires_at
            .map(|exp| exp.saturating_mul(1000) - ns_to_ms(tributary_model::time::now_ns()))
            .unwrap_or(i64::from(u32::MAX) * 1000);
        Duration::from_millis(ms.max(0) as u64)
    }

    /// Checks the credential again: revoked or removed clients are closed.
    pub async fn recheck(&self) -> Option<Close> {
        match self.s.auth.authenticate(&self.token).await {
            Ok(p) if p.tenant == self.principal.tenant => None,
            Err(tributary_auth::AuthError::Store(_)) => None,
            _ if self.time_left().is_zero() => Some(Close {
                code: CLOSE_TOKEN_EXPIRED,
                reason: "token expired",
            }),
            _ => Some(Close {
                code: CLOSE_REVOKED,
                reason: "credential revoked",
            }),
        }
    }

    /// Waits for the next hub event.
    pub async fn next_event(&self) -> Option<Event> {
        self.sub.recv().await
    }

    /// Turns a hub event into messages, dropping what a snapshot or resume covered.
    pub fn on_event(&self, event: Event) -> Vec<Json> {
        match event {
            Event::Update(u) => {
                let covered = self.covered.get(&u.device).copied().or(self.tenant_covered);
                if covered.is_some_and(|seq| u.seq <= seq) {
                    return Vec::new();
                }
                vec![update_msg(&u)]
            }
            Event::Attributes(a) => {
                vec![
                    json!({"type": "attributes", "device": a.device.to_string(), "scope": a.scope, "values": a.values}),
                ]
            }
            Event::Lagged {
                updates,
                attributes,
            } => {
                let mut out = vec![
                    json!({"type": "lagged", "detail": "you fell behind; what you missed is coalesced to the latest value per key"}),
                ];
                out.extend(updates.iter().map(update_msg));
                out.extend(attributes.iter().map(|a| {
                    json!({"type": "attributes", "device": a.device.to_string(), "scope": a.scope, "values": a.values})
                }));
                out
            }
        }
    }

    /// The devices of the tenant a selector names now (bounded by the subscription limit).
    async fn resolve(&self, selector: &Selector) -> Result<Vec<DeviceId>, Json> {
        let tenant = self.principal.tenant;
        let limit = self.s.config.live_max_subscriptions as u32;
        let not_found = |what: &str| error_msg("not_found", format!("no {what}"));
        match selector {
            Selector::Device(d) => self.resolve_ids(std::slice::from_ref(d)).await,
            Selector::Devices(ids) => self.resolve_ids(ids).await,
            Selector::Group(g) => {
                match self.s.meta.get_group(tenant, g).await {
                    Ok(Some(_)) => {}
                    Ok(None) => return Err(not_found(&format!("group {g:?}"))),
                    Err(e) => return Err(error_msg("internal", ApiError::internal(e).detail)),
                }
                self.list(
                    DeviceFilter {
                        group: Some(g.clone()),
                        ..Default::default()
                    },
                    limit,
                )
                .await
            }
            Selector::Labels(labels) => {
                for k in labels.keys() {
                    crate::validate::key("labels", k)
                        .map_err(|e| error_msg("bad_request", e.detail))?;
                }
                let labels = labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                self.list(
                    DeviceFilter {
                        labels,
                        ..Default::default()
                    },
                    limit,
                )
                .await
            }
            Selector::Tenant => self.list(DeviceFilter::default(), limit).await,
        }
    }

    /// Device ids of the tenant, each checked to exist there.
    async fn resolve_ids(&self, ids: &[String]) -> Result<Vec<DeviceId>, Json> {
        let limit = self.s.config.live_max_subscriptions;
        if ids.len() > limit {
            return Err(error_msg(
                "too_many_subscriptions",
                format!("at most {limit} devices per connection"),
            ));
        }
        let mut out = Vec::new();
        for raw in ids {
            let not_found = || error_msg("not_found", format!("no device {raw:?}"));
            let id = raw.parse::<DeviceId>().map_err(|_| not_found())?;
            match self.s.meta.get_device(self.principal.tenant, id).await {
                Ok(Some(_)) => out.push(id),
                Ok(None) => return Err(not_found()),
                Err(e) => return Err(error_msg("internal", ApiError::internal(e).detail)),
            }
        }
        Ok(out)
    }

    async fn list(&self, filter: DeviceFilter, limit: u32) -> Result<Vec<DeviceId>, Json> {
        let params = ListParams {
            limit: limit.clamp(1, 10_000),
            ..Default::default()
        };
        self.s
            .meta
            .list_devices(self.principal.tenant, &filter, &params)
            .await
            .map(|page| page.items.into_iter().map(|d| d.id).collect())
            .map_err(|e| error_msg("internal", ApiError::internal(e).detail))
    }

    /// Handles a subscribe request: registers, then a snapshot or a resume.
    pub async fn subscribe(&mut self, req: SubscribeRequest) -> Vec<Json> {
        let selector = match req.selector() {
            Ok(s) => s,
            Err(e) => return vec![error_msg("bad_request", e)],
        };
        let devices = match self.resolve(&selector).await {
            Ok(d) => d,
            Err(e) => return vec![e],
        };
        // Register first, then read: nothing falls between the two.
        if selector == Selector::Tenant {
            self.sub.subscribe_tenant(&req.keys);
        } else {
            for d in &devices {
                if let Err(SubscribeError::TooMany(n)) = self.sub.subscribe(*d, &req.keys) {
                    return vec![error_msg(
                        "too_many_subscriptions",
                        format!("at most {n} devices per connection"),
                    )];
                }
            }
            self.tracked.push(Tracked {
                selector: selector.clone(),
                keys: req.keys.clone(),
                devices: devices.iter().copied().collect(),
            });
        }
        let mut out = match req.since {
            None => self.snapshots(&devices, &req.keys).await,
            Some(since) => self.resume(&devices, since).await,
        };
        let seq = out
            .iter()
            .filter_map(|m| m["seq"].as_u64())
            .max()
            .unwrap_or_else(|| self.s.pipeline.applied_lsn());
        if selector == Selector::Tenant {
            self.tenant_covered = Some(self.tenant_covered.unwrap_or(0).max(seq));
        }
        out.push(json!({"type": "subscribed", "devices": devices.len(), "seq": seq}));
        out
    }

    /// The latest values of each device, marking the sequence they cover.
    async fn snapshots(&mut self, devices: &[DeviceId], keys: &[String]) -> Vec<Json> {
        self.s.catch_up().await;
        let seq = self.s.pipeline.applied_lsn();
        let mut out = Vec::with_capacity(devices.len());
        for d in devices {
            match self.s.series.latest(self.principal.tenant, *d, keys).await {
                Ok(latest) => {
                    let values: Map<String, Json> = latest
                        .iter()
                        .map(|(k, v)| {
                            (
                                k.clone(),
                                json!({"ts": ns_to_ms(v.ts), "value": v.value.to_json()}),
                            )
                        })
                        .collect();
                    let c = self.covered.entry(*d).or_insert(0);
                    *c = (*c).max(seq);
                    out.push(json!({"type": "snapshot", "device": d.to_string(), "seq": seq, "values": values}));
                }
                Err(e) => out.push(error_msg("internal", ApiError::internal(e).detail)),
            }
        }
        out
    }

    /// What the devices missed after `since`: from memory when recent, else from the store.
    async fn resume(&mut self, devices: &[DeviceId], since: u64) -> Vec<Json> {
        let wanted: HashSet<DeviceId> = devices.iter().copied().collect();
        let tenant_wide = devices.is_empty() || self.tenant_covered.is_some();
        let filter = |d: DeviceId| -> Option<KeyFilter> {
            if wanted.contains(&d) || tenant_wide {
                self.sub.filter_for(d)
            } else {
                None
            }
        };
        let upto_mem = self.s.pipeline.committed_lsn();
        if let Some(updates) = self.s.hub.replay(self.principal.tenant, since, filter) {
            for d in devices {
                let c = self.covered.entry(*d).or_insert(0);
                *c = (*c).max(upto_mem);
            }
            return updates.iter().map(update_msg).collect();
        }
        // Not in memory any more: read it from the store, up to what it has applied.
        self.s.catch_up().await;
        let upto = self.s.pipeline.applied_lsn();
        let max = self.s.config.live_resume_max_points;
        let mut out = Vec::new();
        let mut total = 0usize;
        for d in devices {
            let keys = self.sub.filter_for(*d).flatten();
            let changes = match self
                .s
                .series
                .changes_since(self.principal.tenant, *d, since, max as u32 + 1)
                .await
            {
                Ok(c) => c,
                Err(e) => return vec![error_msg("internal", ApiError::internal(e).detail)],
            };
            total += changes.len();
            if total > max {
                let mut msgs = vec![
                    json!({"type": "lagged", "detail": "too much was missed to replay; here is the latest of each key"}),
                ];
                msgs.extend(self.snapshots(devices, &[]).await);
                return msgs;
            }
            let mut by_lsn: BTreeMap<u64, Vec<Point>> = BTreeMap::new();
            for c in changes.into_iter().filter(|c| c.lsn <= upto) {
                if keys.as_ref().is_none_or(|k| k.contains(&c.key)) {
                    by_lsn.entry(c.lsn).or_default().push(Point {
                        key: c.key.into(),
                        ts: c.sample.ts,
                        value: c.sample.value,
                    });
                }
            }
            out.extend(by_lsn.into_iter().map(|(seq, points)| {
                update_msg(&Update {
                    seq,
                    device: *d,
                    points,
                })
            }));
            let c = self.covered.entry(*d).or_insert(0);
            *c = (*c).max(upto);
        }
        out.sort_by_key(|m| m["seq"].as_u64().unwrap_or(0));
        out
    }

    /// Handles an unsubscribe request.
    pub fn unsubscribe(&mut self, req: SubscribeRequest) -> Vec<Json> {
        let selector = match req.selector() {
            Ok(s) => s,
            Err(e) => return vec![error_msg("bad_request", e)],
        };
        if selector == Selector::Tenant {
            self.tenant_covered = None;
            return if self.sub.unsubscribe_tenant() {
                vec![json!({"type": "unsubscribed", "tenant": true})]
            } else {
                vec![error_msg("not_subscribed", "not subscribed to the tenant")]
            };
        }
        let before = self.tracked.len();
        let mut dropped: HashSet<DeviceId> = HashSet::new();
        self.tracked.retain(|t| {
            let same = t.selector == selector
                || matches!((&t.selector, &selector), (Selector::Device(a), Selector::Devices(b)) | (Selector::Devices(b), Selector::Device(a)) if b.len() == 1 && &b[0] == a);
            if same {
                dropped.extend(t.devices.iter().copied());
            }
            !same
        });
        if before == self.tracked.len() {
            return vec![error_msg(
                "not_subscribed",
                "no such subscription on this connection",
            )];
        }
        let still: HashSet<DeviceId> = self
            .tracked
            .iter()
            .flat_map(|t| t.devices.iter().copied())
            .collect();
        for d in dropped.difference(&still) {
            self.sub.unsubscribe(*d);
            self.covered.remove(d);
        }
        let mut msg = json!({"type": "unsubscribed"});
        if let Selector::Device(d) = &selector {
            msg["device"] = json!(d);
        }
        vec![msg]
    }

    /// Re-resolves group and label selectors: new members get a snapshot, leavers are dropped.
    pub async fn refresh(&mut self) -> Vec<Json> {
        let mut out = Vec::new();
        for i in 0..self.tracked.len() {
            if !matches!(
                self.tracked[i].selector,
                Selector::Group(_) | Selector::Labels(_)
            ) {
                continue;
            }
            let selector = self.tracked[i].selector.clone();
            let Ok(now) = self.resolve(&selector).await else {
                continue;
            };
            let now: HashSet<DeviceId> = now.into_iter().collect();
            let keys = self.tracked[i].keys.clone();
            let joined: Vec<DeviceId> = now.difference(&self.tracked[i].devices).copied().collect();
            let left: Vec<DeviceId> = self.tracked[i].devices.difference(&now).copied().collect();
            self.tracked[i].devices = now;
            for d in &joined {
                if self.sub.subscribe(*d, &keys).is_err() {
                    out.push(error_msg(
                        "too_many_subscriptions",
                        "a selector grew beyond the subscription limit",
                    ));
                }
            }
            out.extend(self.snapshots(&joined, &keys).await);
            let still: HashSet<DeviceId> = self
                .tracked
                .iter()
                .flat_map(|t| t.devices.iter().copied())
                .collect();
            for d in left.iter().filter(|d| !still.contains(d)) {
                self.sub.unsubscribe(*d);
                self.covered.remove(d);
                out.push(json!({"type": "unsubscribed", "device": d.to_string(), "detail": "left the selector"}));
            }
        }
        out
    }
}
