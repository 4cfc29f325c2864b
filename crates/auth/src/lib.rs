//! Authentication: user passwords (argon2id), access tokens (JWT) with
//! rotating refresh tokens, and device access tokens (high-entropy, stored as
//! SHA-256). [`Authenticator`] is the one entry point the APIs use.

pub mod jwt;
pub mod password;
pub mod policy;
mod service;
pub mod token;

pub use jwt::{AccessClaims, TokenSigner};
pub use service::{AuthConfig, Authenticator, Principal, Session};

/// Why a credential was refused or could not be checked.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Email or password wrong (never says which).
    #[error("invalid email or password")]
    BadCredentials,
    /// The token is malformed, expired, revoked or unknown.
    #[error("invalid or expired token")]
    InvalidToken,
    /// A refresh token was used twice; its whole family is now revoked.
    #[error("refresh token reuse detected; all sessions of this login were revoked")]
    TokenReuse,
    /// The user has no tenant to log into.
    #[error("user belongs to no tenant")]
    NoTenant,
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] tributary_store::StoreError),
    /// Hashing or signing failed.
    #[error("credential processing failed: {0}")]
    Internal(String),
}
