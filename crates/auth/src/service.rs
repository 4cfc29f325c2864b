//! The authenticator: the one object that checks and issues credentials.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, RwLock};

use tributary_store::meta::prelude::*;
use tributary_store::meta::KeyScope;
use tributary_store::{Device, Role};

use crate::jwt::TokenSigner;
use crate::limiter::{Limiter, LoginLimits};
use crate::principal::{Actor, Principal};
use crate::{password, token, AuthError};

/// Lengths and lifetimes of credentials.
#[derive(Clone, Debug)]
pub struct AuthConfig {
    /// Access token lifetime (seconds).
    pub access_ttl_secs: i64,
    /// Refresh token lifetime (seconds).
    pub refresh_ttl_secs: i64,
    /// Invitation lifetime (seconds) when the inviter names none.
    pub invite_ttl_secs: i64,
    /// Most device credentials held in memory.
    pub device_cache_entries: usize,
    /// Failed-login limits.
    pub login_limits: LoginLimits,
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

/// Prefix that tells API keys from access tokens.
pub const API_KEY_PREFIX: &str = "trb_";

/// Checks and issues every kind of credential.
pub struct Authenticator {
    pub(crate) meta: Arc<dyn MetaStore>,
    pub(crate) signer: TokenSigner,
    pub(crate) config: AuthConfig,
    /// Device credentials by token hash (or MQTT username + password hash).
    pub(crate) devices: RwLock<HashMap<String, Device>>,
    /// Bumped by every [`Authenticator::forget_device`]: a look-up that raced
    /// with one does not cache what it read.
    pub(crate) device_generation: AtomicU64,
    /// A valid hash to verify against when the email is unknown, so timing does not tell.
    pub(crate) dummy_hash: String,
    pub(crate) limiter: Limiter,
}

impl Authenticator {
    /// An authenticator over `meta`, signing access tokens with `secret`.
    pub fn new(
        meta: Arc<dyn MetaStore>,
        secret: &[u8],
        config: AuthConfig,
    ) -> Result<Arc<Self>, AuthError> {
        Ok(Arc::new(Self {
            meta,
            signer: TokenSigner::new(secret, config.access_ttl_secs),
            dummy_hash: password::hash(&token::generate(16))?,
            config,
            devices: RwLock::new(HashMap::new()),
            device_generation: AtomicU64::new(0),
            limiter: Limiter::default(),
        }))
    }

    /// The principal behind a bearer credential: an access token or an API key.
    /// Revocation, removal from the tenant and role changes apply at once.
    pub async fn authenticate(&self, bearer: &str) -> Result<Principal, AuthError> {
        if bearer.starts_with(API_KEY_PREFIX) {
            let key = self
                .meta
                .api_key_by_hash(&token::hash(bearer))
                .await?
                .ok_or(AuthError::InvalidToken)?;
            let role = match key.scope {
                KeyScope::Read => Role::Viewer,
                KeyScope::Write => Role::Editor,
                KeyScope::Admin => Role::Admin,
            };
            return Ok(Principal {
                actor: Actor::ApiKey { id: key.id },
                tenant: key.tenant,
                role,
                expires_at: key.expires_at.map(|ms| ms / 1000),
            });
        }
        let claims = self.signer.verify(bearer)?;
        let user = claims.sub.parse().map_err(|_| AuthError::InvalidToken)?;
        let tenant = claims.tid.parse().map_err(|_| AuthError::InvalidToken)?;
        match self.meta.session_role(user, tenant, &claims.sid).await? {
            None => Err(AuthError::InvalidToken),
            Some((_, true)) => Err(AuthError::SessionRevoked),
            Some((role, false)) => Ok(Principal {
                actor: Actor::User {
                    id: user,
                    session: claims.sid,
                },
                tenant,
                role,
                expires_at: Some(claims.exp),
            }),
        }
    }

    /// Hashes a password on a blocking thread, after checking the policy.
    pub async fn hash_password(pw: &str) -> Result<String, AuthError> {
        password::check_policy(pw).map_err(AuthError::WeakPassword)?;
        let pw = pw.to_string();
        tokio::task::spawn_blocking(move || password::hash(&pw))
            .await
            .map_err(|e| AuthError::Internal(e.to_string()))?
    }

    /// Verifies a password against a PHC hash on a blocking thread.
    pub(crate) async fn verify_password(pw: &str, phc: String) -> Result<bool, AuthError> {
        let pw = pw.to_string();
        tokio::task::spawn_blocking(move || password::verify(&pw, &phc))
            .await
            .map_err(|e| AuthError::Internal(e.to_string()))
    }
}
