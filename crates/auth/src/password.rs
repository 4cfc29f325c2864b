//! Password hashing with argon2id. CPU-heavy: call from a blocking thread.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

use crate::AuthError;

/// Shortest password accepted.
pub const MIN_LENGTH: usize = 10;

/// Hashes a password into a PHC string (argon2id, default parameters).
pub fn hash(password: &str) -> Result<String, AuthError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AuthError::Internal(e.to_string()))
}

/// True when `password` matches the PHC hash; false for a malformed hash too.
pub fn verify(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// Commonly used passwords of at least [`MIN_LENGTH`] characters (lower case).
const COMMON: &[&str] = &[
    "1234567890",
    "12345678910",
    "123456789a",
    "1234567890a",
    "0123456789",
    "0987654321",
    "9876543210",
    "1111111111",
    "0000000000",
    "1234512345",
    "1q2w3e4r5t",
    "1qaz2wsx3edc",
    "q1w2e3r4t5",
    "qwertyuiop",
    "qwerty1234",
    "qwerty12345",
    "qwerty123456",
    "1qazxsw23edc",
    "asdfghjkl1",
    "zxcvbnm123",
    "password12",
    "password123",
    "password1234",
    "passw0rd123",
    "p@ssw0rd123",
    "password!",
    "password01",
    "iloveyou12",
    "iloveyou123",
    "abcdefghij",
    "abcd123456",
    "abc1234567",
    "welcome123",
    "welcome1234",
    "letmein123",
    "changeme123",
    "administrator",
    "admin12345",
    "admin123456",
    "trustno1234",
    "football123",
    "baseball123",
    "sunshine123",
    "princess123",
    "superman123",
    "starwars123",
    "dragon1234",
    "monkey1234",
    "michael123",
    "charlie123",
    "computer123",
    "internet123",
    "whatever123",
    "123123123123",
    "123qweasdzxc",
    "qweasdzxc123",
    "aaaaaaaaaa",
    "secret1234",
    "mypassword",
    "mypassword1",
    "tributary1",
    "tributary123",
];

/// Checks the password policy; the error says what to change.
pub fn check_policy(password: &str) -> Result<(), String> {
    if password.chars().count() < MIN_LENGTH {
        return Err(format!("password must be at least {MIN_LENGTH} characters"));
    }
    if password.len() > 1024 {
        return Err("password must be at most 1024 bytes".into());
    }
    let lower = password.to_lowercase();
    let mut chars = lower.chars();
    let first = chars.next();
    if COMMON.contains(&lower.as_str()) || chars.all(|c| Some(c) == first) {
        return Err("password is too common; choose a less guessable one".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_verifies_only_the_right_password() {
        let h = hash("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify("correct horse battery", &h));
        assert!(!verify("wrong horse battery", &h));
        assert!(!verify("x", "not a hash"));
    }

    #[test]
    fn policy() {
        assert!(check_policy("short").is_err());
        assert!(check_policy("long enough pw").is_ok());
        assert!(check_policy("Password123").is_err());
        assert!(check_policy("zzzzzzzzzzzz").is_err());
    }
}
