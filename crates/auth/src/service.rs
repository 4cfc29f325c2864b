//! The authenticator: logs users in, refreshes sessions, checks bearer tokens
//! and device access tokens. It owns a bounded cache of device credentials,
//! because devices authenticate at connect (and request) rate.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use tributary_model::time::{now_ns, ns_to_ms};
use tributary_model::{DeviceId, TenantId, UserId};
use tributary_store::meta::TakeOutcome;
use tributary_store::{Device, MetaStore, RefreshToken, Role};

use crate::jwt::TokenSigner;
use crate::{password, token, AuthError};

/// Lengths and lifetimes of credentials.
#[derive(Clone, Debug)]
pub struct AuthConfig {
    /// Access token lifetime (seconds).
    pub access_ttl_secs: i64,
    /// Refresh token lifetime (seconds).
    pub refresh_ttl_secs: i64,
    /// Most device credentials held in memory.
    pub device_cache_entries: usize,
}

/// Who is calling, in which tenant, with which role.
#[derive(Clone, Debug, PartialEq)]
pub struct Principal {
    /// The user.
    pub user: UserId,
    /// The tenant the call acts in.
    pub tenant: TenantId,
    /// The user's role there.
    pub role: Role,
    /// When the credential expires (seconds since the epoch).
    pub expires_at: i64,
}

/// A fresh pair of tokens.
#[derive(Clone, Debug)]
pub struct Session {
    /// JWT for `Authorization: Bearer`.
    pub access_token: String,
    /// Opaque, single-use token to get the next pair.
    pub refresh_token: String,
    /// Seconds until the access token expires.
    pub expires_in: i64,
}

/// Length of device access tokens (≈ 149 bits of entropy).
const DEVICE_TOKEN_LEN: usize = 25;
/// Length of refresh tokens (≈ 256 bits).
const REFRESH_TOKEN_LEN: usize = 43;

/// Checks and issues every kind of credential.
pub struct Authenticator {
    meta: MetaStore,
    signer: TokenSigner,
    config: AuthConfig,
    /// Device credentials by token hash.
    devices: RwLock<HashMap<String, Device>>,
    /// Bumped by every [`Authenticator::forget_device`]: a look-up that raced
    /// with one does not cache what it read.
    device_generation: AtomicU64,
    /// A valid hash to verify against when the email is unknown, so timing does not tell.
    dummy_hash: String,
}

impl Authenticator {
    /// An authenticator over `meta`, signing access tokens with `secret`.
    pub fn new(meta: MetaStore, secret: &[u8], config: AuthConfig) -> Result<Arc<Self>, AuthError> {
        Ok(Arc::new(Self {
            meta,
            signer: TokenSigner::new(secret, config.access_ttl_secs),
            dummy_hash: password::hash(&token::generate(16))?,
            config,
            devices: RwLock::new(HashMap::new()),
            device_generation: AtomicU64::new(0),
        }))
    }

    /// Verifies email and password and opens a session in the user's first tenant.
    pub async fn login(&self, email: &str, pw: &str) -> Result<Session, AuthError> {
        let user = self.meta.user_by_email(email).await?;
        let phc = user
            .as_ref()
            .map(|u| u.password_hash.clone())
            .unwrap_or_else(|| self.dummy_hash.clone());
        let pw = pw.to_string();
        let ok = tokio::task::spawn_blocking(move || password::verify(&pw, &phc))
            .await
            .map_err(|e| AuthError::Internal(e.to_string()))?;
        let user = match (user, ok) {
            (Some(u), true) => u,
            _ => return Err(AuthError::BadCredentials),
        };
        let (tenant, role) = self
            .meta
            .memberships(user.id)
            .await?
            .into_iter()
            .next()
            .ok_or(AuthError::NoTenant)?;
        self.open_session(user.id, tenant.id, role, token::generate(16))
            .await
    }

    /// Exchanges a refresh token for a new pair; a reused token revokes its family.
    pub async fn refresh(&self, refresh_token: &str) -> Result<Session, AuthError> {
        match self
            .meta
            .take_refresh_token(&token::hash(refresh_token))
            .await?
        {
            TakeOutcome::Taken(t) => {
                let role = self
                    .meta
                    .role_in(t.user, t.tenant)
                    .await?
                    .ok_or(AuthError::InvalidToken)?;
                self.open_session(t.user, t.tenant, role, t.family).await
            }
            TakeOutcome::Reused(t) => {
                self.meta.revoke_refresh_family(&t.family).await?;
                tracing::warn!(user = %t.user, "refresh token reuse; family revoked");
                Err(AuthError::TokenReuse)
            }
            TakeOutcome::Invalid => Err(AuthError::InvalidToken),
        }
    }

    async fn open_session(
        &self,
        user: UserId,
        tenant: TenantId,
        role: Role,
        family: String,
    ) -> Result<Session, AuthError> {
        let access_token =
            self.signer
                .issue(&user.to_string(), &tenant.to_string(), role.as_str())?;
        let refresh_token = token::generate(REFRESH_TOKEN_LEN);
        self.meta
            .insert_refresh_token(&RefreshToken {
                hash: token::hash(&refresh_token),
                family,
                user,
                tenant,
                expires_at: ns_to_ms(now_ns()) + self.config.refresh_ttl_secs * 1000,
            })
            .await?;
        Ok(Session {
            access_token,
            refresh_token,
            expires_in: self.signer.ttl_secs(),
        })
    }

    /// The principal a bearer access token stands for.
    pub fn principal(&self, bearer: &str) -> Result<Principal, AuthError> {
        let claims = self.signer.verify(bearer)?;
        Ok(Principal {
            user: claims.sub.parse().map_err(|_| AuthError::InvalidToken)?,
            tenant: claims.tid.parse().map_err(|_| AuthError::InvalidToken)?,
            role: claims.role.parse().map_err(|_| AuthError::InvalidToken)?,
            expires_at: claims.exp,
        })
    }

    /// The device a device access token belongs to, or `None` when unknown.
    pub async fn device(&self, access_token: &str) -> Result<Option<Device>, AuthError> {
        let hash = token::hash(access_token);
        if let Some(d) = self.devices.read().ok().and_then(|c| c.get(&hash).cloned()) {
            return Ok(Some(d));
        }
        let generation = self.device_generation.load(Ordering::Acquire);
        let Some(device) = self.meta.device_by_token_hash(&hash).await? else {
            return Ok(None);
        };
        if let Ok(mut cache) = self.devices.write() {
            if self.device_generation.load(Ordering::Acquire) != generation {
                return Ok(Some(device));
            }
            if cache.len() >= self.config.device_cache_entries {
                cache.clear();
            }
            cache.insert(hash, device.clone());
        }
        Ok(Some(device))
    }

    /// Drops a device's cached credentials (after delete or token rotation).
    pub fn forget_device(&self, id: DeviceId) {
        if let Ok(mut cache) = self.devices.write() {
            self.device_generation.fetch_add(1, Ordering::AcqRel);
            cache.retain(|_, d| d.id != id);
        }
    }

    /// A new device access token and its stored forms: (token, hash, hint).
    pub fn new_device_token() -> (String, String, String) {
        let t = token::generate(DEVICE_TOKEN_LEN);
        let (h, hint) = (token::hash(&t), token::hint(&t));
        (t, h, hint)
    }

    /// Hashes a password on a blocking thread, after checking the policy.
    pub async fn hash_password(pw: &str) -> Result<String, AuthError> {
        password::check_policy(pw).map_err(AuthError::Internal)?;
        let pw = pw.to_string();
        tokio::task::spawn_blocking(move || password::hash(&pw))
            .await
            .map_err(|e| AuthError::Internal(e.to_string()))?
    }
}
