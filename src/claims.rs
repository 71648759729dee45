//! What a sealed cookie carries: [`Claims`] and the [`SessionId`].

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::clock::UnixMillis;

/// A 128-bit session identifier drawn from the operating system's CSPRNG.
///
/// It names a session for revocation; it is not a credential by itself (a cookie is), but it is
/// still kept out of logs: audit events carry [`SessionId::short_hash`] instead.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SessionId([u8; 16]);

impl SessionId {
    /// A fresh id from the OS CSPRNG.
    ///
    /// # Errors
    /// When the operating system cannot supply randomness.
    pub fn generate() -> Result<SessionId, rand::rand_core::OsError> {
        use rand::TryRngCore;
        let mut b = [0u8; 16];
        rand::rngs::OsRng.try_fill_bytes(&mut b)?;
        Ok(SessionId(b))
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// From raw bytes (as stored in a revocation list or in Redis).
    pub fn from_bytes(b: [u8; 16]) -> SessionId {
        SessionId(b)
    }

    /// Parses the 32-hex-digit form produced by `Display`.
    pub fn parse_hex(s: &str) -> Option<SessionId> {
        let s = s.as_bytes();
        if s.len() != 32 {
            return None;
        }
        let mut out = [0u8; 16];
        for (i, o) in out.iter_mut().enumerate() {
            let hi = (s[2 * i] as char).to_digit(16)?;
            let lo = (s[2 * i + 1] as char).to_digit(16)?;
            *o = (hi * 16 + lo) as u8;
        }
        Some(SessionId(out))
    }

    /// A short, non-reversible tag for logs: the first 8 hex digits of SHA-256 of the id.
    pub fn short_hash(&self) -> String {
        let d = ring::digest::digest(&ring::digest::SHA256, &self.0);
        d.as_ref()[..4].iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId(#{})", self.short_hash())
    }
}

/// A short hash binding a session to properties of its client (see the fingerprint modes of the
/// HTTP layer). Compared in constant time.
#[derive(Clone, Copy, Serialize, Deserialize)]
pub struct Fingerprint([u8; 8]);

impl Fingerprint {
    /// Hashes the given parts (each length-prefixed, so parts cannot run into each other).
    pub fn from_parts(parts: &[&[u8]]) -> Fingerprint {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(b"sealed-sessions fingerprint v1");
        for p in parts {
            ctx.update(&(p.len() as u64).to_le_bytes());
            ctx.update(p);
        }
        let d = ctx.finish();
        let mut out = [0u8; 8];
        out.copy_from_slice(&d.as_ref()[..8]);
        Fingerprint(out)
    }

    /// From the raw 8 bytes.
    pub fn from_bytes(b: [u8; 8]) -> Fingerprint {
        Fingerprint(b)
    }

    /// Constant-time equality.
    pub fn ct_eq(&self, other: &Fingerprint) -> bool {
        use subtle::ConstantTimeEq;
        self.0.ct_eq(&other.0).into()
    }
}

impl PartialEq for Fingerprint {
    fn eq(&self, other: &Self) -> bool {
        self.ct_eq(other)
    }
}
impl Eq for Fingerprint {}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Fingerprint(..)")
    }
}

/// The claims sealed into a cookie. They exist only after the token's tag has verified.
///
/// Times are [`UnixMillis`]. Field order is part of the wire format (postcard encodes fields in
/// declaration order): changing it requires a new token format version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims<T> {
    /// The session id, fresh on every login and regeneration.
    pub session_id: SessionId,
    /// The application's user id.
    pub user_id: String,
    /// The user's session version when this token's session was issued; a token whose version is
    /// below the user's current minimum is revoked (logout everywhere).
    pub version: u64,
    /// When the session was created (login).
    pub created_at: UnixMillis,
    /// Last password or step-up check.
    pub auth_time: UnixMillis,
    /// Last time the session was renewed; drives the idle timeout.
    pub last_seen: UnixMillis,
    /// Absolute expiry.
    pub expires_at: UnixMillis,
    /// Optional client binding.
    pub fingerprint: Option<Fingerprint>,
    /// Application data.
    pub data: T,
}
