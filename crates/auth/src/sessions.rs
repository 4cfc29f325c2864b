//! User sessions: login, refresh, logout, tenant switch, password change,
//! invitations and API keys.

use tributary_model::time::{now_ns, ns_to_ms};
use tributary_model::{TenantId, UserId};
use tributary_store::meta::{ApiKey, Invite, KeyScope, TakeOutcome};
use tributary_store::{RefreshToken, Role, StoreError, User};

use crate::limiter::AttemptKeys;
use crate::principal::Principal;
use crate::service::{Authenticator, Session, API_KEY_PREFIX};
use crate::{password, token, AuthError};

/// Length of refresh tokens (≈ 256 bits).
const REFRESH_TOKEN_LEN: usize = 43;
/// Length of invitation tokens.
const INVITE_TOKEN_LEN: usize = 32;
/// Length of the random part of API keys (≈ 238 bits).
const API_KEY_LEN: usize = 40;

fn now_ms() -> i64 {
    ns_to_ms(now_ns())
}

impl Authenticator {
    /// Verifies email and password (under progressive delays per account,
    /// per address and per pair) and opens a session in `tenant`, or the
    /// user's first tenant.
    pub async fn login(
        &self,
        email: &str,
        pw: &str,
        tenant: Option<TenantId>,
        address: &str,
    ) -> Result<Session, AuthError> {
        let user = self.check_password(email, pw, address).await?;
        let memberships = self.meta.memberships(user.id).await?;
        let (tenant, role) = match tenant {
            Some(t) => memberships.into_iter().find(|(m, _)| m.id == t),
            None => memberships.into_iter().next(),
        }
        .ok_or(AuthError::NoTenant)?;
        self.open_session(user.id, tenant.id, role, token::generate(16))
            .await
    }

    /// The user with this email and password, under the failed-login limits;
    /// an unknown email and a wrong password fail alike, in the same time.
    async fn check_password(
        &self,
        email: &str,
        pw: &str,
        address: &str,
    ) -> Result<User, AuthError> {
        let limits = &self.config.login_limits;
        let attempt = AttemptKeys::new(limits, email, address);
        if let Some(retry_after) = self.limiter.wait(&attempt, limits.window) {
            return Err(AuthError::RateLimited { retry_after });
        }
        let user = self.meta.user_by_email(email).await?;
        let phc = user
            .as_ref()
            .map(|u| u.password_hash.clone())
            .unwrap_or_else(|| self.dummy_hash.clone());
        let ok = Self::verify_password(pw, phc).await?;
        let Some(user) = user.filter(|_| ok) else {
            self.limiter
                .fail(&attempt, limits.window, limits.max_tracked);
            return Err(AuthError::BadCredentials);
        };
        self.limiter.succeed(&attempt);
        Ok(user)
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

    /// Ends the caller's session: its refresh tokens and access tokens stop working at once.
    pub async fn logout(&self, p: &Principal) -> Result<(), AuthError> {
        let (_, session) = p.user()?;
        self.meta.revoke_refresh_family(session).await?;
        Ok(())
    }

    /// Opens a new session for the caller in another tenant they belong to.
    pub async fn switch_tenant(
        &self,
        p: &Principal,
        tenant: TenantId,
    ) -> Result<Session, AuthError> {
        let (user, _) = p.user()?;
        let role = self
            .meta
            .role_in(user, tenant)
            .await?
            .ok_or(AuthError::NoTenant)?;
        self.open_session(user, tenant, role, token::generate(16))
            .await
    }

    /// Changes the caller's password and revokes their other sessions.
    pub async fn change_password(
        &self,
        p: &Principal,
        current: &str,
        new: &str,
    ) -> Result<(), AuthError> {
        let (user_id, session) = p.user()?;
        let user = self
            .meta
            .user_by_id(user_id)
            .await?
            .ok_or(AuthError::InvalidToken)?;
        if !Self::verify_password(current, user.password_hash).await? {
            return Err(AuthError::BadCredentials);
        }
        let hash = Self::hash_password(new).await?;
        self.meta.set_password(user_id, &hash).await?;
        self.meta
            .revoke_user_sessions(user_id, Some(session))
            .await?;
        Ok(())
    }

    pub(crate) async fn open_session(
        &self,
        user: UserId,
        tenant: TenantId,
        role: Role,
        family: String,
    ) -> Result<Session, AuthError> {
        let access_token = self.signer.issue(
            &user.to_string(),
            &tenant.to_string(),
            role.as_str(),
            &family,
        )?;
        let refresh_token = token::generate(REFRESH_TOKEN_LEN);
        self.meta
            .insert_refresh_token(&RefreshToken {
                hash: token::hash(&refresh_token),
                family,
                user,
                tenant,
                expires_at: now_ms() + self.config.refresh_ttl_secs * 1000,
            })
            .await?;
        Ok(Session {
            access_token,
            refresh_token,
            expires_in: self.signer.ttl_secs(),
        })
    }

    /// Invites `email` into the caller's tenant with `role`; returns the invitation and its token.
    pub async fn invite(
        &self,
        p: &Principal,
        email: &str,
        role: Role,
        ttl_secs: Option<i64>,
    ) -> Result<(Invite, String), AuthError> {
        let secret = token::generate(INVITE_TOKEN_LEN);
        let expires_at = now_ms() + ttl_secs.unwrap_or(self.config.invite_ttl_secs) * 1000;
        let invite = self
            .meta
            .create_invite(
                p.tenant,
                email,
                role,
                &token::hash(&secret),
                &p.audit_name(),
                expires_at,
            )
            .await?;
        Ok((invite, secret))
    }

    /// Accepts an invitation. A caller already logged in joins as themselves
    /// (the invitation must name their email). Otherwise a new email sets
    /// `pw`, and an existing account proves it with its password under the
    /// same limits and errors as login; each wrong password counts against
    /// the invitation too, which is revoked after as many as login allows.
    /// Opens a session in the tenant.
    pub async fn accept_invite(
        &self,
        invite_token: &str,
        pw: Option<&str>,
        caller: Option<&Principal>,
        address: &str,
    ) -> Result<(Invite, Session), AuthError> {
        let caller = caller.map(Principal::user).transpose()?;
        // Checked before anything is looked up, so the answer to a weak
        // password cannot tell whether the invited email has an account.
        if caller.is_none() {
            password::check_policy(pw.unwrap_or_default()).map_err(AuthError::WeakPassword)?;
        }
        let invite = self
            .meta
            .take_invite(&token::hash(invite_token))
            .await?
            .ok_or(AuthError::InvalidInvite)?;
        let result = async {
            let user = match (caller, self.meta.user_by_email(&invite.email).await?) {
                (Some((id, _)), Some(u)) if u.id == id => u,
                (Some(_), _) => {
                    return Err(AuthError::Forbidden(
                        "this invitation is for another account".into(),
                    ))
                }
                (None, Some(_)) => {
                    self.check_password(&invite.email, pw.unwrap_or_default(), address)
                        .await?
                }
                (None, None) => {
                    let hash = Self::hash_password(pw.unwrap_or_default()).await?;
                    match self.meta.create_user(&invite.email, &hash).await {
                        Ok(u) => u,
                        Err(StoreError::Conflict(_)) => return Err(AuthError::InvalidInvite),
                        Err(e) => return Err(e.into()),
                    }
                }
            };
            self.meta
                .join_tenant(user.id, invite.tenant, invite.role)
                .await?;
            self.open_session(user.id, invite.tenant, invite.role, token::generate(16))
                .await
        }
        .await;
        match result {
            Ok(session) => Ok((invite, session)),
            Err(e) => {
                let limits = &self.config.login_limits;
                let spent = matches!(e, AuthError::BadCredentials)
                    && self
                        .limiter
                        .count(&format!("invite:{}", invite.id), limits.window)
                        >= limits.per_account_address;
                // A wrong or weak password does not burn the invitation …
                self.meta.untake_invite(&invite.id).await?;
                if spent {
                    // … but guessing through one ends with it.
                    self.meta.revoke_invite(invite.tenant, &invite.id).await?;
                }
                Err(e)
            }
        }
    }

    /// Creates an API key in the caller's tenant; returns it and its secret (shown once).
    pub async fn create_api_key(
        &self,
        p: &Principal,
        name: &str,
        scope: KeyScope,
        expires_at: Option<i64>,
    ) -> Result<(ApiKey, String), AuthError> {
        let secret = format!("{API_KEY_PREFIX}{}", token::generate(API_KEY_LEN));
        let prefix: String = secret.chars().take(API_KEY_PREFIX.len() + 6).collect();
        let key = self
            .meta
            .create_api_key(
                p.tenant,
                name,
                &prefix,
                &token::hash(&secret),
                scope,
                &p.audit_name(),
                expires_at,
            )
            .await?;
        Ok((key, secret))
    }
}
