//! Passwords: argon2id hashing with OWASP's parameters, and the rules a new password must meet.
//!
//! [`check_new_password`] is the one rule set: `POST /password` applies it to the new password
//! and `hash-password` to the password it hashes, so an operator cannot put a password in the
//! users file that the server would refuse to set.

use anyhow::Context as _;
use argon2::password_hash::{PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Params, PasswordHasher as _, PasswordVerifier as _, Version};
use rand::TryRngCore as _;

/// OWASP's argon2id recommendation: 19 MiB, 2 passes, 1 lane.
pub const ARGON2_M_KIB: u32 = 19_456;
/// Passes over memory.
pub const ARGON2_T: u32 = 2;
/// Lanes.
pub const ARGON2_P: u32 = 1;

/// Shortest password accepted, in bytes.
pub const MIN_PASSWORD_BYTES: usize = 8;
/// Longest password accepted, in bytes (login, step-up, new passwords). It caps argon2's input
/// and the time one request can cost, not security.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Verified against when the username is unknown, so that costs what a wrong password costs. Made
/// by `hash-password` from random bytes that were thrown away; the unknown-user path returns "no"
/// whatever the outcome anyway. Same parameters as [`hash_password`] (a unit test pins that).
pub(crate) const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$yzdgowYnurK+dcl97RgXyg$3jgM0aetC7uVYABsebx3hJmEBJvZ0JOCg4IYBXeOXCo";

/// Why a new password is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PasswordRuleError {
    /// Shorter than [`MIN_PASSWORD_BYTES`].
    #[error("password too short: {len} bytes, at least {MIN_PASSWORD_BYTES} needed")]
    TooShort {
        /// The password's length in bytes.
        len: usize,
    },
    /// Longer than [`MAX_PASSWORD_BYTES`].
    #[error("password too long: more than {MAX_PASSWORD_BYTES} bytes")]
    TooLong,
}

/// Checks a password about to be hashed and stored: [`MIN_PASSWORD_BYTES`] to
/// [`MAX_PASSWORD_BYTES`] bytes.
///
/// # Errors
/// [`PasswordRuleError`].
pub fn check_new_password(password: &str) -> Result<(), PasswordRuleError> {
    match password.len() {
        len if len < MIN_PASSWORD_BYTES => Err(PasswordRuleError::TooShort { len }),
        len if len > MAX_PASSWORD_BYTES => Err(PasswordRuleError::TooLong),
        _ => Ok(()),
    }
}

fn argon2() -> anyhow::Result<Argon2<'static>> {
    let params = Params::new(ARGON2_M_KIB, ARGON2_T, ARGON2_P, None)
        .map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// An argon2id PHC string for `password` (m=19456 KiB, t=2, p=1, random 16-byte salt). CPU-heavy:
/// call from blocking code or [`super::PasswordVerifier::hash`].
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let mut salt = [0u8; 16];
    rand::rngs::OsRng
        .try_fill_bytes(&mut salt)
        .context("the operating system random number generator failed")?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    let hash = argon2()?
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("hashing failed: {e}"))?;
    Ok(hash.to_string())
}

/// Whether `password` matches `hash` (with the hash's own parameters). CPU-heavy.
pub(crate) fn verify_hash(password: &[u8], hash: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default().verify_password(password, &parsed).is_ok(),
        Err(_) => false,
    }
}

/// Whether checking `hash` costs measurably more or less than checking the dummy hash used for
/// unknown users: true when its argon2 parameters are not [`hash_password`]'s.
pub fn timing_outlier(hash: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return true;
    };
    match Params::try_from(&parsed) {
        Ok(p) => (p.m_cost(), p.t_cost(), p.p_cost()) != (ARGON2_M_KIB, ARGON2_T, ARGON2_P),
        Err(_) => true,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::auth::users_file::check_password_hash;

    #[test]
    fn hash_uses_owasp_parameters_and_dummy_hash_matches_them() {
        let h = hash_password("secret").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify_hash(b"secret", &h));
        assert!(!verify_hash(b"Secret", &h));
        let dummy = PasswordHash::new(DUMMY_HASH).unwrap();
        let real = PasswordHash::new(&h).unwrap();
        assert_eq!(
            Params::try_from(&dummy).unwrap(),
            Params::try_from(&real).unwrap()
        );
        assert_eq!(dummy.algorithm, real.algorithm);
        check_password_hash(DUMMY_HASH).unwrap();
    }

    #[test]
    fn hashes_with_other_parameters_are_flagged_as_timing_outliers() {
        let h = hash_password("pw").unwrap();
        assert!(!timing_outlier(&h));
        assert!(!timing_outlier(DUMMY_HASH));
        let other = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHRzYWx0$PpHpvM2LByVKjbxvwzP9wi7KqHW6YIF8ZZr6XbZGhZ4";
        assert!(timing_outlier(other));
    }

    #[test]
    fn new_passwords_must_be_8_to_1024_bytes() {
        assert_eq!(
            check_new_password(""),
            Err(PasswordRuleError::TooShort { len: 0 })
        );
        assert_eq!(
            check_new_password("1234567"),
            Err(PasswordRuleError::TooShort { len: 7 })
        );
        // Bytes, not characters: four two-byte characters are enough.
        check_new_password("éééé").unwrap();
        check_new_password("12345678").unwrap();
        check_new_password(&"x".repeat(1024)).unwrap();
        assert_eq!(
            check_new_password(&"x".repeat(1025)),
            Err(PasswordRuleError::TooLong)
        );
    }
}
