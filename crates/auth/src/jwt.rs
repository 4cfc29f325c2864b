//! Short-lived access tokens: HS256 JWTs naming the user, tenant and role.

use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use tributary_model::time::{now_ns, ns_to_ms};

use crate::AuthError;

/// What an access token asserts.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct AccessClaims {
    /// User id.
    pub sub: String,
    /// Tenant id the token acts in.
    pub tid: String,
    /// Role in that tenant.
    pub role: String,
    /// Session (refresh-token family) the token belongs to.
    pub sid: String,
    /// Issued at (seconds).
    pub iat: i64,
    /// Expiry (seconds).
    pub exp: i64,
}

/// Signs and verifies access tokens with one secret.
pub struct TokenSigner {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl_secs: i64,
}

impl TokenSigner {
    /// A signer for `secret`; tokens live `ttl_secs` seconds.
    pub fn new(secret: &[u8], ttl_secs: i64) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            ttl_secs,
        }
    }

    /// Seconds an access token lives.
    pub fn ttl_secs(&self) -> i64 {
        self.ttl_secs
    }

    /// Issues a token for `sub` in tenant `tid` with `role`, in session `sid`.
    pub fn issue(&self, sub: &str, tid: &str, role: &str, sid: &str) -> Result<String, AuthError> {
        let now = ns_to_ms(now_ns()) / 1000;
        let claims = AccessClaims {
            sub: sub.to_string(),
            tid: tid.to_string(),
            role: role.to_string(),
            sid: sid.to_string(),
            iat: now,
            exp: now + self.ttl_secs,
        };
        encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| AuthError::Internal(e.to_string()))
    }

    /// Verifies signature and expiry (a token is valid strictly before its `exp` second).
    pub fn verify(&self, token: &str) -> Result<AccessClaims, AuthError> {
        let claims = decode::<AccessClaims>(token, &self.decoding, &self.validation)
            .map(|d| d.claims)
            .map_err(|_| AuthError::InvalidToken)?;
        if claims.exp.saturating_mul(1000) <= ns_to_ms(now_ns()) {
            return Err(AuthError::InvalidToken);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_tokens_verify_and_tampering_fails() {
        let s = TokenSigner::new(b"0123456789abcdef0123456789abcdef", 60);
        let t = s.issue("u", "t", "admin", "s").unwrap();
        let c = s.verify(&t).unwrap();
        assert_eq!(
            (c.sub.as_str(), c.tid.as_str(), c.role.as_str()),
            ("u", "t", "admin")
        );
        assert!(c.exp - c.iat == 60);
        let other = TokenSigner::new(b"another secret, just as long....", 60);
        assert!(other.verify(&t).is_err());
        assert!(s.verify("garbage").is_err());
        let expired = TokenSigner::new(b"0123456789abcdef0123456789abcdef", -10);
        let t = expired.issue("u", "t", "admin", "s").unwrap();
        assert!(s.verify(&t).is_err());
    }
}
