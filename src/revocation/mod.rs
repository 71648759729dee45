//! Revocation: the part of a session that stateless tokens cannot do.
//!
//! Two kinds of entry, both with an expiry so the list stays bounded without ever evicting a
//! live revocation:
//! - **revoked session ids** (single logout, regeneration), kept until the token's absolute
//!   expiry — after that the token is rejected as expired anyway;
//! - **per-user minimum session versions** (logout everywhere, password change), kept until
//!   `bump time + absolute timeout` — after that every token issued before the bump has expired.
//!
//! The engine talks to a [`RevocationBackend`]. [`MemoryRevocations`] is the in-process list; the
//! Redis-synced backend wraps one and adds replication. [`RevocationBackend::check`] is the hot
//! path: synchronous, no I/O, no lock a writer holds for long.
//!
//! # Why versions are `max(current + 1, now_ms)`
//! A user's new minimum version is derived from the clock as well as from the stored value. If
//! the store that remembers versions loses its data (Redis restarted empty, an entry expired),
//! `current` reads as 0 — but every token in circulation carries a version no greater than the
//! time its user last bumped, which is in the past; `now_ms` is larger than all of them, so the
//! new bump still revokes every older token. `current + 1` keeps versions strictly increasing
//! when two bumps land in the same millisecond or a node's clock is behind the stored value.

mod filter;
pub mod memory;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod redis;
#[cfg(feature = "redis")]
mod snapshot;
mod table;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub use memory::MemoryRevocations;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use redis::{ColdStart, RedisConfig, RedisRevocations, SyncPhase};

use crate::claims::SessionId;
use crate::clock::UnixMillis;

/// A boxed future, so the backend trait stays object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A stream id `ms-seq` as a pair, so ids compare numerically (`9-0` < `10-0`).
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) fn parse_stream_id(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

/// The new minimum version for a user whose current one is `current`, bumped at `now`.
pub fn next_version(current: u64, now: UnixMillis) -> u64 {
    current.saturating_add(1).max(now.0)
}

/// A failure to record or read a revocation in a shared store.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum RevocationError {
    /// The shared store could not be reached, did not answer in time, or this node has not yet
    /// applied its latest revocations. A revocation that returned this is already enforced on
    /// this node and is retried in the background until the store accepts it.
    #[error("revocation store unavailable")]
    Unavailable(#[source] StoreError),
}

impl From<StoreError> for RevocationError {
    fn from(e: StoreError) -> RevocationError {
        RevocationError::Unavailable(e)
    }
}

/// Why a shared store was unavailable. Opaque: its message and source chain say what happened.
/// A custom [`RevocationBackend`] wraps its client's error with [`StoreError::new`].
#[derive(Debug, Clone, thiserror::Error)]
#[error(transparent)]
pub struct StoreError(StoreErrorKind);

// Private, so no store client's error type is part of the public API. `Arc`, because
// `RevocationError` is `Clone`.
#[derive(Debug, Clone, thiserror::Error)]
enum StoreErrorKind {
    #[error("this node has not applied the latest revocations yet")]
    Behind,
    #[error(transparent)]
    Backend(Arc<dyn std::error::Error + Send + Sync>),
}

impl StoreError {
    /// The store client's own error (a connection refused, a timeout, a refused command).
    pub fn new(source: impl std::error::Error + Send + Sync + 'static) -> StoreError {
        StoreError(StoreErrorKind::Backend(Arc::new(source)))
    }

    /// The store answered, but this node has not applied the revocations it holds in time.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn behind() -> StoreError {
        StoreError(StoreErrorKind::Behind)
    }
}

/// Why a token is revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revoked {
    /// The session id was revoked (logout, regeneration).
    Session,
    /// The user's sessions older than a version were revoked (logout everywhere).
    UserVersion,
}

/// Sizes for metrics and health.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RevocationStats {
    /// Revoked session ids held (including expired ones not yet swept).
    pub revoked_sessions: usize,
    /// Users with a minimum version held.
    pub user_versions: usize,
    /// Approximate bytes held by both lists.
    pub approx_bytes: usize,
}

/// Replication health, for `/healthz`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncStatus {
    /// Backend name (`memory`, `redis`).
    pub backend: &'static str,
    /// Whether this node is in sync with the shared store (always true for `memory`).
    pub synced: bool,
    /// Whether this node has once read the shared store's whole history (always true for
    /// `memory`). Until then its list may lack any revocation: see [`RevocationBackend::ready`].
    pub replayed: bool,
    /// How long ago, in milliseconds, this node was last caught up with the shared store (since
    /// start when it never was).
    pub lag_ms: u64,
}

/// Where revocations live. The engine holds one as `Arc<dyn RevocationBackend>`.
pub trait RevocationBackend: Send + Sync + 'static {
    /// Is this token revoked? Called on every request: must not block or do I/O.
    fn check(
        &self,
        session_id: &SessionId,
        user_id: &str,
        version: u64,
        now: UnixMillis,
    ) -> Result<(), Revoked>;

    /// The version to put in a new token for `user_id` (the current minimum, 0 if none).
    fn current_version<'a>(
        &'a self,
        user_id: &'a str,
    ) -> BoxFuture<'a, Result<u64, RevocationError>>;

    /// Revokes one session id until `until` (its token's absolute expiry).
    fn revoke_session(
        &self,
        session_id: SessionId,
        until: UnixMillis,
        now: UnixMillis,
    ) -> BoxFuture<'_, Result<(), RevocationError>>;

    /// Raises the user's minimum version to [`next_version`]; the entry lives until `until`
    /// (bump time + absolute timeout). Returns the new version.
    fn bump_user_version<'a>(
        &'a self,
        user_id: &'a str,
        now: UnixMillis,
        until: UnixMillis,
    ) -> BoxFuture<'a, Result<u64, RevocationError>>;

    /// Sizes of the lists.
    fn stats(&self) -> RevocationStats;

    /// Replication health.
    fn sync_status(&self) -> SyncStatus;

    /// Whether [`RevocationBackend::check`] can be trusted at all: false until a replicated
    /// backend has read the shared store's history once (a node started while the store is
    /// unreachable, or still replaying, knows none of the revocations made elsewhere). Only ever
    /// goes from false to true. Called on every request: one atomic load at most.
    fn ready(&self) -> bool {
        true
    }

    /// Waits until this node has applied every revocation the shared store held when the call
    /// began, so a change about to commit sees a logout made on another node a moment ago
    /// (not only once the sync delivers it). Called on the mutation path only (regenerate,
    /// step-up, password change), never per request. Local backends have nothing to wait for.
    ///
    /// # Errors
    /// [`RevocationError::Unavailable`] when the node could not catch up in time.
    fn barrier(&self) -> BoxFuture<'_, Result<(), RevocationError>> {
        Box::pin(async { Ok(()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn a_store_failure_keeps_its_cause_as_the_source_not_in_the_message() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let e = RevocationError::from(StoreError::new(io));
        assert_eq!(e.to_string(), "revocation store unavailable");
        let store = e.source().map(ToString::to_string);
        assert_eq!(store.as_deref(), Some("refused"));
        let behind = RevocationError::from(StoreError::behind());
        assert_eq!(
            behind.source().map(ToString::to_string).as_deref(),
            Some("this node has not applied the latest revocations yet")
        );
    }
}
