//! The in-process revocation list.

use std::hash::BuildHasher;
use std::time::Duration;

use super::table::{Expiring, ExpiringTable};
use super::{
    BoxFuture, RevocationBackend, RevocationError, RevocationStats, Revoked, SyncStatus,
    next_version,
};
use crate::claims::SessionId;
use crate::clock::UnixMillis;

/// A revoked session id's entry: when it can be forgotten. 4 bytes, so an entry is 20 bytes.
#[derive(Clone, Copy)]
struct SessionEntry {
    until_secs: u32,
}

impl Expiring for SessionEntry {
    fn expires_at_secs(&self) -> u64 {
        u64::from(self.until_secs)
    }
}

/// A user's minimum version. The name is kept so the list can be re-published to a shared store.
struct UserEntry {
    min_version: u64,
    until_secs: u64,
    user_id: Box<str>,
}

impl Expiring for UserEntry {
    fn expires_at_secs(&self) -> u64 {
        self.until_secs
    }
}

/// A live entry of the list, as re-published to a shared store.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) enum LiveEntry {
    /// A revoked session id and when it can be forgotten.
    Session {
        /// The id.
        session_id: SessionId,
        /// Its token's absolute expiry.
        until: UnixMillis,
    },
    /// A user's minimum version and when it can be forgotten.
    User {
        /// The user.
        user_id: String,
        /// Tokens with a lower version are revoked.
        min_version: u64,
        /// Bump time + absolute timeout.
        until: UnixMillis,
    },
}

/// The in-process revocation list: exact, bounded by expiry, fast to check.
///
/// ```
/// use sealed_sessions::revocation::{MemoryRevocations, RevocationBackend, Revoked};
/// use sealed_sessions::{SessionId, clock::UnixMillis};
/// let list = MemoryRevocations::new();
/// let sid = SessionId::from_bytes([7; 16]);
/// let now = UnixMillis(1_000_000);
/// list.revoke_session_now(sid, UnixMillis(2_000_000), now);
/// assert_eq!(list.check(&sid, "alice", 0, now), Err(Revoked::Session));
/// ```
pub struct MemoryRevocations {
    sessions: ExpiringTable<SessionEntry>,
    users: ExpiringTable<UserEntry>,
    // Two independent seeded hashes give a 128-bit key for a user id. A collision could only
    // merge two users' minimum versions (max of both): it can over-revoke, never under-revoke.
    user_hash: (
        foldhash::quality::RandomState,
        foldhash::quality::RandomState,
    ),
}

impl Default for MemoryRevocations {
    fn default() -> Self {
        MemoryRevocations::new()
    }
}

impl std::fmt::Debug for MemoryRevocations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryRevocations")
            .field("revoked_sessions", &self.sessions.len())
            .field("user_versions", &self.users.len())
            .finish()
    }
}

fn secs_u32(t: UnixMillis) -> u32 {
    u32::try_from(t.as_secs_ceil()).unwrap_or(u32::MAX)
}

impl MemoryRevocations {
    /// An empty list that sweeps expired entries at most once a minute, on writes.
    pub fn new() -> MemoryRevocations {
        MemoryRevocations::with_purge_interval(Duration::from_secs(60))
    }

    /// An empty list that sweeps expired entries at most once per `every`, on writes.
    pub fn with_purge_interval(every: Duration) -> MemoryRevocations {
        MemoryRevocations {
            sessions: ExpiringTable::new(every.as_secs()),
            users: ExpiringTable::new(every.as_secs()),
            user_hash: Default::default(),
        }
    }

    fn user_key(&self, user_id: &str) -> [u8; 16] {
        let a = self.user_hash.0.hash_one(user_id);
        let b = self.user_hash.1.hash_one(user_id);
        let mut k = [0u8; 16];
        k[..8].copy_from_slice(&a.to_le_bytes());
        k[8..].copy_from_slice(&b.to_le_bytes());
        k
    }

    /// Revokes a session id until `until` (synchronous form of
    /// [`RevocationBackend::revoke_session`]). Idempotent; keeps the later expiry.
    pub fn revoke_session_now(&self, session_id: SessionId, until: UnixMillis, now: UnixMillis) {
        self.revoke_sessions_now([(session_id, until)], now);
    }

    /// Revokes many session ids at once, each until its time, as a replay of the shared stream
    /// applies them: one writer lock and one purge check for the whole batch. Idempotent; keeps
    /// the later expiry of each.
    pub fn revoke_sessions_now(
        &self,
        revocations: impl IntoIterator<Item = (SessionId, UnixMillis)>,
        now: UnixMillis,
    ) {
        let items = revocations
            .into_iter()
            .map(|(sid, until)| (*sid.as_bytes(), secs_u32(until)));
        self.sessions
            .upsert_many(now.as_secs_ceil(), items, |old, until_secs| SessionEntry {
                until_secs: old.map_or(until_secs, |o| o.until_secs.max(until_secs)),
            });
    }

    /// Revokes many session ids given as raw keys and expiry seconds, as a snapshot stores
    /// them (see [`super::snapshot`]): one writer lock for the whole batch. Idempotent.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn revoke_session_keys(
        &self,
        revocations: impl IntoIterator<Item = ([u8; 16], u32)>,
        now: UnixMillis,
    ) {
        self.sessions
            .upsert_many(now.as_secs_ceil(), revocations, |old, until_secs| {
                SessionEntry {
                    until_secs: old.map_or(until_secs, |o| o.until_secs.max(until_secs)),
                }
            });
    }

    /// Makes room for this many more revoked sessions and users (before a bulk load).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn reserve(&self, sessions: usize, users: usize) {
        self.sessions.reserve(sessions);
        self.users.reserve(users);
    }

    /// How many shards the `for_each_live_*_in` walks cover.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn shard_count(&self) -> usize {
        self.sessions.shard_count().max(self.users.shard_count())
    }

    /// Calls `f(key, until_secs)` on every revoked session of one shard still in force at `now`.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn for_each_live_session_in(
        &self,
        shard: usize,
        now: UnixMillis,
        mut f: impl FnMut(&[u8; 16], u32),
    ) {
        if shard < self.sessions.shard_count() {
            self.sessions
                .for_each_live_in(shard, now.0 / 1000, |k, e| f(k, e.until_secs));
        }
    }

    /// Calls `f(user_id, min_version, until_secs)` on every user version of one shard still in
    /// force at `now`.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn for_each_live_user_in(
        &self,
        shard: usize,
        now: UnixMillis,
        mut f: impl FnMut(&str, u64, u64),
    ) {
        if shard < self.users.shard_count() {
            self.users.for_each_live_in(shard, now.0 / 1000, |_, e| {
                f(&e.user_id, e.min_version, e.until_secs);
            });
        }
    }

    /// Raises a user's minimum version to at least `min_version` (idempotent: keeps the max).
    /// This is how replicated events are applied.
    pub fn raise_user_version(
        &self,
        user_id: &str,
        min_version: u64,
        until: UnixMillis,
        now: UnixMillis,
    ) {
        let until_secs = until.as_secs_ceil();
        self.users.upsert(
            self.user_key(user_id),
            now.as_secs_ceil(),
            |old| match old {
                Some(o) => UserEntry {
                    min_version: o.min_version.max(min_version),
                    until_secs: o.until_secs.max(until_secs),
                    user_id: o.user_id,
                },
                None => UserEntry {
                    min_version,
                    until_secs,
                    user_id: user_id.into(),
                },
            },
        );
    }

    /// Bumps a user's version (synchronous form of [`RevocationBackend::bump_user_version`]).
    pub fn bump_user_version_now(&self, user_id: &str, now: UnixMillis, until: UnixMillis) -> u64 {
        let v = next_version(self.user_min_version(user_id, now), now);
        self.raise_user_version(user_id, v, until, now);
        v
    }

    /// The user's current minimum version at `now` (0 when none is held).
    pub fn user_min_version(&self, user_id: &str, now: UnixMillis) -> u64 {
        self.users
            .get(&self.user_key(user_id), now.as_secs_ceil(), |e| {
                e.min_version
            })
            .unwrap_or(0)
    }

    /// Removes expired entries now; returns how many.
    pub fn purge_expired(&self, now: UnixMillis) -> usize {
        // An entry is expired once `now` is strictly past its expiry second.
        let secs = now.0 / 1000;
        self.sessions.purge_expired(secs) + self.users.purge_expired(secs)
    }

    /// Every entry still in force at `now`.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn live_entries(&self, now: UnixMillis) -> Vec<LiveEntry> {
        let secs = now.0 / 1000;
        let mut out = Vec::new();
        self.sessions.for_each_live(secs, |k, e| {
            out.push(LiveEntry::Session {
                session_id: SessionId::from_bytes(*k),
                until: UnixMillis(u64::from(e.until_secs) * 1000),
            });
        });
        self.users.for_each_live(secs, |_, e| {
            out.push(LiveEntry::User {
                user_id: e.user_id.to_string(),
                min_version: e.min_version,
                until: UnixMillis(e.until_secs * 1000),
            });
        });
        out
    }
}

impl RevocationBackend for MemoryRevocations {
    #[inline]
    fn check(
        &self,
        session_id: &SessionId,
        user_id: &str,
        version: u64,
        now: UnixMillis,
    ) -> Result<(), Revoked> {
        let secs = now.0 / 1000;
        let user_key = self.user_key(user_id);
        // Both filters are loaded before either is read (see `ExpiringTable::probe`): for a
        // random key each read is a cache miss, and this way the two overlap.
        let session = self.sessions.probe(session_id.as_bytes());
        let user = self.users.probe(&user_key);
        let (session_maybe, user_maybe) = (session.may_contain(), user.may_contain());
        if session_maybe && session.get(secs, |_| ()).is_some() {
            return Err(Revoked::Session);
        }
        if !user_maybe {
            return Ok(());
        }
        match user.get(secs, |e| e.min_version) {
            Some(min) if version < min => Err(Revoked::UserVersion),
            _ => Ok(()),
        }
    }

    fn current_version<'a>(
        &'a self,
        user_id: &'a str,
    ) -> BoxFuture<'a, Result<u64, RevocationError>> {
        // Expired entries are still in force for versions: a token's version must not drop
        // below an old bump just because the entry aged out, so read without an expiry cut-off.
        Box::pin(async move { Ok(self.user_min_version(user_id, UnixMillis(0))) })
    }

    fn revoke_session(
        &self,
        session_id: SessionId,
        until: UnixMillis,
        now: UnixMillis,
    ) -> BoxFuture<'_, Result<(), RevocationError>> {
        self.revoke_session_now(session_id, until, now);
        Box::pin(async { Ok(()) })
    }

    fn bump_user_version<'a>(
        &'a self,
        user_id: &'a str,
        now: UnixMillis,
        until: UnixMillis,
    ) -> BoxFuture<'a, Result<u64, RevocationError>> {
        let v = self.bump_user_version_now(user_id, now, until);
        Box::pin(async move { Ok(v) })
    }

    fn stats(&self) -> RevocationStats {
        RevocationStats {
            revoked_sessions: self.sessions.len(),
            user_versions: self.users.len(),
            approx_bytes: self.sessions.approx_bytes() + self.users.approx_bytes(),
        }
    }

    fn sync_status(&self) -> SyncStatus {
        SyncStatus {
            backend: "memory",
            synced: true,
            replayed: true,
            lag_ms: 0,
        }
    }
}
