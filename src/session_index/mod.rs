//! The per-user index of live sessions: listing a user's sessions and enforcing a concurrent
//! session limit.
//!
//! The index is touched only on login, logout, regeneration and logout-everywhere — never on
//! validation, so it costs nothing per request. Entries leave when their session expires, is
//! removed, or is evicted by the limit. Past the limit the oldest sessions (by creation) are
//! evicted and returned by [`SessionIndex::add`] so the caller revokes them at once.
//!
//! # Cost
//! One `add` does bounded work whatever the user's history: it sweeps at most [`BATCH`] expired
//! entries and evicts at most [`BATCH`] over-limit entries, each an `O(log n)` step on ordered
//! sets. A user with a huge index (written by an older version without a default limit)
//! shrinks by up to `BATCH` entries per login instead of stalling one. [`SessionIndex::list`]
//! returns at most the limit (the newest sessions).
//!
//! [`MemorySessionIndex`] serves one node; its users are spread over independently locked
//! shards, so one user's index never blocks the others for long. `RedisSessionIndex` (feature `redis`) shares
//! the index across nodes with, per user, a sorted set by creation, a sorted set by expiry and
//! a hash of details, under the same key prefix and hash tag as the revocation stream. Its
//! eviction and the revocation events for the evicted sessions are one Lua script: the limit
//! holds even when the script's reply never reaches the node that ran it.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeSet, HashMap};
use std::hash::BuildHasher;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::claims::SessionId;
use crate::clock::UnixMillis;
use crate::revocation::{BoxFuture, RevocationError};

#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use redis::RedisSessionIndex;

/// The server's default concurrent-session limit (`--max-sessions-per-user`).
pub const DEFAULT_MAX_SESSIONS_PER_USER: usize = 100;

/// Most expired entries swept, and most over-limit entries evicted, by one
/// [`SessionIndex::add`]. Bounds the work of one login; a login adds one entry, so an index
/// never falls behind.
pub const BATCH: usize = 128;

/// One live session of a user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionEntry {
    /// The session id.
    pub session_id: SessionId,
    /// When it was created (login).
    pub created_at: UnixMillis,
    /// Its absolute expiry.
    pub expires_at: UnixMillis,
    /// A coarse description of the client, such as `Firefox on Linux`.
    pub user_agent: String,
}

/// Where the per-user session index lives.
pub trait SessionIndex: Send + Sync + std::fmt::Debug + 'static {
    /// Records a new session; returns the sessions past the limit (oldest first), already
    /// removed from the index, for the caller to revoke. Does bounded work (see [`BATCH`]).
    fn add<'a>(
        &'a self,
        user: &'a str,
        entry: SessionEntry,
        now: UnixMillis,
    ) -> BoxFuture<'a, Result<Vec<SessionEntry>, RevocationError>>;

    /// Removes one session (logout, regeneration, revocation by the user).
    fn remove<'a>(
        &'a self,
        user: &'a str,
        session_id: SessionId,
    ) -> BoxFuture<'a, Result<(), RevocationError>>;

    /// Removes all of a user's sessions (logout everywhere).
    fn clear<'a>(&'a self, user: &'a str) -> BoxFuture<'a, Result<(), RevocationError>>;

    /// The user's live sessions, oldest first: at most the limit, the newest ones.
    fn list<'a>(
        &'a self,
        user: &'a str,
        now: UnixMillis,
    ) -> BoxFuture<'a, Result<Vec<SessionEntry>, RevocationError>>;
}

/// Shards of [`MemorySessionIndex`]; a power of two well above the core count, so two busy
/// users rarely share a lock.
const SHARDS: usize = 64;

/// An ordering key: a time, then the id to tell apart sessions with equal times.
type Key = (UnixMillis, [u8; 16]);

/// One user's sessions, ordered both ways so sweeping and evicting take the first few.
#[derive(Default)]
struct UserSessions {
    by_id: HashMap<SessionId, SessionEntry>,
    by_created: BTreeSet<Key>,
    by_expiry: BTreeSet<Key>,
}

impl UserSessions {
    fn insert(&mut self, entry: SessionEntry) {
        self.remove(entry.session_id);
        let id = *entry.session_id.as_bytes();
        self.by_created.insert((entry.created_at, id));
        self.by_expiry.insert((entry.expires_at, id));
        self.by_id.insert(entry.session_id, entry);
    }

    fn remove(&mut self, sid: SessionId) -> Option<SessionEntry> {
        let e = self.by_id.remove(&sid)?;
        let id = *sid.as_bytes();
        self.by_created.remove(&(e.created_at, id));
        self.by_expiry.remove(&(e.expires_at, id));
        Some(e)
    }

    /// Drops up to `max` entries expired at `now`.
    fn sweep(&mut self, now: UnixMillis, max: usize) {
        for _ in 0..max {
            match self.by_expiry.first() {
                Some(&(exp, id)) if exp <= now => {
                    self.remove(SessionId::from_bytes(id));
                }
                _ => break,
            }
        }
    }

    /// Pops up to `max` of the oldest entries past `limit`.
    fn evict(&mut self, limit: usize, max: usize) -> Vec<SessionEntry> {
        let extra = self.by_id.len().saturating_sub(limit).min(max);
        let oldest: Vec<Key> = self.by_created.iter().take(extra).copied().collect();
        oldest
            .into_iter()
            .filter_map(|(_, id)| self.remove(SessionId::from_bytes(id)))
            .collect()
    }

    /// Live entries, oldest first; at most the newest `limit`.
    fn live(&self, now: UnixMillis, limit: Option<usize>) -> Vec<SessionEntry> {
        let mut out: Vec<SessionEntry> = self
            .by_created
            .iter()
            .rev()
            .filter_map(|(_, id)| self.by_id.get(&SessionId::from_bytes(*id)))
            .filter(|e| e.expires_at > now)
            .take(limit.unwrap_or(usize::MAX))
            .cloned()
            .collect();
        out.reverse();
        out
    }
}

/// The in-process index (one node).
pub struct MemorySessionIndex {
    limit: Option<usize>,
    hasher: RandomState,
    // Users spread over shards by name. Critical sections do bounded work (see [`BATCH`]) and
    // are never held across an await.
    shards: Box<[Mutex<HashMap<String, UserSessions>>]>,
}

impl std::fmt::Debug for MemorySessionIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the entries: user names and session ids stay out of Debug output.
        f.debug_struct("MemorySessionIndex")
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

impl MemorySessionIndex {
    /// An index that keeps at most `limit` sessions per user (`None` or `0`: no limit; the
    /// server always sets one, see [`DEFAULT_MAX_SESSIONS_PER_USER`]).
    pub fn new(limit: Option<usize>) -> MemorySessionIndex {
        MemorySessionIndex {
            limit: limit.filter(|l| *l > 0),
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    fn shard(&self, user: &str) -> &Mutex<HashMap<String, UserSessions>> {
        // Truncating the hash on a 32-bit target is fine: it only spreads users.
        let i = (self.hasher.hash_one(user) as usize) % self.shards.len();
        &self.shards[i]
    }

    fn add_now(&self, user: &str, entry: SessionEntry, now: UnixMillis) -> Vec<SessionEntry> {
        let mut users = self.shard(user).lock();
        let sessions = users.entry(user.to_owned()).or_default();
        sessions.insert(entry);
        sessions.sweep(now, BATCH);
        match self.limit {
            Some(limit) => sessions.evict(limit, BATCH),
            None => Vec::new(),
        }
    }
}

impl SessionIndex for MemorySessionIndex {
    fn add<'a>(
        &'a self,
        user: &'a str,
        entry: SessionEntry,
        now: UnixMillis,
    ) -> BoxFuture<'a, Result<Vec<SessionEntry>, RevocationError>> {
        let evicted = self.add_now(user, entry, now);
        Box::pin(async move { Ok(evicted) })
    }

    fn remove<'a>(
        &'a self,
        user: &'a str,
        session_id: SessionId,
    ) -> BoxFuture<'a, Result<(), RevocationError>> {
        let mut users = self.shard(user).lock();
        if let Some(sessions) = users.get_mut(user) {
            sessions.remove(session_id);
            if sessions.by_id.is_empty() {
                users.remove(user);
            }
        }
        Box::pin(async { Ok(()) })
    }

    fn clear<'a>(&'a self, user: &'a str) -> BoxFuture<'a, Result<(), RevocationError>> {
        self.shard(user).lock().remove(user);
        Box::pin(async { Ok(()) })
    }

    fn list<'a>(
        &'a self,
        user: &'a str,
        now: UnixMillis,
    ) -> BoxFuture<'a, Result<Vec<SessionEntry>, RevocationError>> {
        let out = self
            .shard(user)
            .lock()
            .get(user)
            .map(|s| s.live(now, self.limit))
            .unwrap_or_default();
        Box::pin(async move { Ok(out) })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn entry(b: u8, created: u64) -> SessionEntry {
        SessionEntry {
            session_id: SessionId::from_bytes([b; 16]),
            created_at: UnixMillis(created),
            expires_at: UnixMillis(created + 1000),
            user_agent: "Firefox on Linux".into(),
        }
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn past_the_limit_the_oldest_sessions_are_evicted() {
        let idx = MemorySessionIndex::new(Some(2));
        block_on(async {
            assert!(
                idx.add("u", entry(1, 10), UnixMillis(10))
                    .await
                    .unwrap()
                    .is_empty()
            );
            assert!(
                idx.add("u", entry(2, 20), UnixMillis(20))
                    .await
                    .unwrap()
                    .is_empty()
            );
            let evicted = idx.add("u", entry(3, 30), UnixMillis(30)).await.unwrap();
            assert_eq!(evicted, vec![entry(1, 10)]);
            let ids: Vec<_> = idx.list("u", UnixMillis(30)).await.unwrap();
            assert_eq!(ids, vec![entry(2, 20), entry(3, 30)]);
        });
    }

    fn numbered(i: u32, created: u64, ttl: u64) -> SessionEntry {
        let mut id = [0u8; 16];
        id[..4].copy_from_slice(&i.to_be_bytes());
        SessionEntry {
            session_id: SessionId::from_bytes(id),
            created_at: UnixMillis(created),
            expires_at: UnixMillis(created + ttl),
            user_agent: String::new(),
        }
    }

    /// The fastest of `n` adds for `user`, each a new session.
    fn fastest_add(idx: &MemorySessionIndex, user: &str, first: u32, n: u32) -> Duration {
        (first..first + n)
            .map(|i| {
                let e = numbered(i, u64::from(i), 1 << 40);
                let started = std::time::Instant::now();
                idx.add_now(user, e, UnixMillis(0));
                started.elapsed()
            })
            .min()
            .unwrap()
    }

    #[test]
    fn a_login_costs_the_same_for_a_small_and_a_huge_unlimited_index() {
        // Without a limit the index of a user may grow large; a login must not do work (under
        // the shard's lock) proportional to it. Old code: retain and sort the whole list.
        let idx = MemorySessionIndex::new(None);
        for i in 0..20_000 {
            idx.add_now("huge", numbered(i, u64::from(i), 1 << 40), UnixMillis(0));
        }
        for i in 0..10 {
            idx.add_now("small", numbered(i, u64::from(i), 1 << 40), UnixMillis(0));
        }
        // Fastest of many, against scheduling noise; a ratio within this run, no absolute time.
        let huge = fastest_add(&idx, "huge", 1_000_000, 50);
        let small = fastest_add(&idx, "small", 2_000_000, 50).max(Duration::from_nanos(1));
        let ratio = huge.as_secs_f64() / small.as_secs_f64();
        assert!(
            ratio < 20.0,
            "huge {huge:?} vs small {small:?}: {ratio:.1}×"
        );
    }

    #[test]
    fn one_add_sweeps_a_bounded_number_of_expired_entries_and_all_of_them_eventually() {
        let idx = MemorySessionIndex::new(None);
        let n = u32::try_from(3 * BATCH).unwrap();
        for i in 0..n {
            idx.add_now("u", numbered(i, 0, 100), UnixMillis(0));
        }
        let held =
            |idx: &MemorySessionIndex| idx.shard("u").lock().get("u").map_or(0, |s| s.by_id.len());
        idx.add_now("u", numbered(n, 200, 100), UnixMillis(200));
        assert_eq!(held(&idx), 3 * BATCH + 1 - BATCH);
        for i in 1..=3 {
            idx.add_now("u", numbered(n + i, 200, 100), UnixMillis(200));
        }
        assert_eq!(held(&idx), 4, "only the four live sessions are left");
        assert_eq!(block_on(idx.list("u", UnixMillis(200))).unwrap().len(), 4);
    }

    #[test]
    fn users_are_spread_over_shards() {
        let idx = MemorySessionIndex::new(Some(3));
        for u in 0..1000u32 {
            idx.add_now(&format!("user{u}"), numbered(u, 0, 100), UnixMillis(0));
        }
        let used = idx.shards.iter().filter(|s| !s.lock().is_empty()).count();
        assert!(used > SHARDS / 2, "{used} of {SHARDS} shards used");
    }

    #[test]
    fn expired_and_removed_sessions_leave_the_index() {
        let idx = MemorySessionIndex::new(None);
        block_on(async {
            idx.add("u", entry(1, 0), UnixMillis(0)).await.unwrap();
            idx.add("u", entry(2, 500), UnixMillis(500)).await.unwrap();
            assert_eq!(
                idx.list("u", UnixMillis(1000)).await.unwrap(),
                vec![entry(2, 500)]
            );
            idx.remove("u", entry(2, 500).session_id).await.unwrap();
            assert!(idx.list("u", UnixMillis(1000)).await.unwrap().is_empty());
            idx.add("u", entry(3, 900), UnixMillis(900)).await.unwrap();
            idx.clear("u").await.unwrap();
            assert!(idx.list("u", UnixMillis(900)).await.unwrap().is_empty());
        });
    }
}
