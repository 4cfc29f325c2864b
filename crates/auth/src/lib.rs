//! Authentication: user passwords (argon2id), access tokens (JWT) with
//! rotating refresh tokens, API keys, invitations, and device credentials
//! (high-entropy tokens stored as SHA-256, MQTT passwords as argon2id).
//! [`Authenticator`] is the one entry point the APIs use.
//!
//! - `service`: [`Authenticator`], bearer credential → [`Principal`]
//! - `sessions`: login, refresh, logout, switching tenant, password
//!   changes, invitations, API keys
//! - `devices`: device tokens and MQTT passwords, and their bounded cache
//! - [`policy`]: the one table of what each role may do
//! - `limiter`: failed-login limits; [`password`]: hashing and policy;
//!   [`jwt`], [`token`]: access tokens and opaque token hashing

mod devices;
pub mod jwt;
mod limiter;
pub mod password;
pub mod policy;
mod principal;
mod service;
mod sessions;
pub mod token;

pub use jwt::{AccessClaims, TokenSigner};
pub use limiter::LoginLimits;
pub use principal::{Actor, Principal};
pub use service::{AuthConfig, Authenticator, Session, API_KEY_PREFIX};

/// Why a credential was refused or could not be checked.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Email or password wrong (never says which).
    #[error("invalid email or password")]
    BadCredentials,
    /// The token is malformed, expired, revoked or unknown.
    #[error("invalid or expired token")]
    InvalidToken,
    /// The session was logged out or revoked.
    #[error("session has been revoked; log in again")]
    SessionRevoked,
    /// A refresh token was used twice; its whole family is now revoked.
    #[error("refresh token reuse detected; all sessions of this login were revoked")]
    TokenReuse,
    /// The user has no tenant to log into, or not the one asked for.
    #[error("not a member of that tenant")]
    NoTenant,
    /// Too many failed logins.
    #[error("too many failed login attempts; retry in {retry_after} seconds")]
    RateLimited {
        /// Seconds until a retry may succeed.
        retry_after: u64,
    },
    /// The invitation token is unknown, used, revoked or expired.
    #[error("invitation is invalid, already used, revoked or expired")]
    InvalidInvite,
    /// The caller may not do this (e.g. an API key on a user-only action).
    #[error("{0}")]
    Forbidden(String),
    /// A new password breaks the policy.
    #[error("{0}")]
    WeakPassword(String),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] tributary_store::StoreError),
    /// Hashing or signing failed.
    #[error("credential processing failed: {0}")]
    Internal(String),
}
