//! The per-user index of live sessions: listing a user's sessions and enforcing a concurrent
//! session limit.
//!
//! The index is touched only on login, logout, regeneration and logout-everywhere — never on
//! validation, so it costs nothing per request. Entries leave when their session expires (swept
//! whenever the user's index is touched) or is removed. Past the limit the oldest sessions are
//! returned by [`SessionIndex::add`] so the caller revokes them.
//!
//! [`MemorySessionIndex`] serves one node; [`RedisSessionIndex`] shares the index across nodes
//! with one sorted set (score = created_at) and one hash (details) per user, under the same key
//! prefix and hash tag as the revocation stream.

use std::collections::HashMap;
use std::time::Duration;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::claims::SessionId;
use crate::clock::UnixMillis;
use crate::redis_conn::LazyConn;
use crate::revocation::{BoxFuture, RevocationError};

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
    /// removed from the index, for the caller to revoke.
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

    /// The user's live sessions, oldest first.
    fn list<'a>(
        &'a self,
        user: &'a str,
        now: UnixMillis,
    ) -> BoxFuture<'a, Result<Vec<SessionEntry>, RevocationError>>;
}

/// The in-process index (one node).
#[derive(Debug)]
pub struct MemorySessionIndex {
    limit: Option<usize>,
    // Short critical sections only; never held across an await.
    users: Mutex<HashMap<String, Vec<SessionEntry>>>,
}

impl MemorySessionIndex {
    /// An index that keeps at most `limit` sessions per user (`None`: no limit).
    pub fn new(limit: Option<usize>) -> MemorySessionIndex {
        MemorySessionIndex {
            limit: limit.filter(|l| *l > 0),
            users: Mutex::new(HashMap::new()),
        }
    }

    fn add_now(&self, user: &str, entry: SessionEntry, now: UnixMillis) -> Vec<SessionEntry> {
        let mut users = self.users.lock();
        let list = users.entry(user.to_owned()).or_default();
        list.retain(|e| e.expires_at > now && e.session_id != entry.session_id);
        list.push(entry);
        list.sort_by_key(|e| e.created_at);
        match self.limit {
            Some(limit) if list.len() > limit => {
                let extra = list.len() - limit;
                list.drain(..extra).collect()
            }
            _ => Vec::new(),
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
        let mut users = self.users.lock();
        if let Some(list) = users.get_mut(user) {
            list.retain(|e| e.session_id != session_id);
            if list.is_empty() {
                users.remove(user);
            }
        }
        Box::pin(async { Ok(()) })
    }

    fn clear<'a>(&'a self, user: &'a str) -> BoxFuture<'a, Result<(), RevocationError>> {
        self.users.lock().remove(user);
        Box::pin(async { Ok(()) })
    }

    fn list<'a>(
        &'a self,
        user: &'a str,
        now: UnixMillis,
    ) -> BoxFuture<'a, Result<Vec<SessionEntry>, RevocationError>> {
        let out = self
            .users
            .lock()
            .get(user)
            .map(|l| l.iter().filter(|e| e.expires_at > now).cloned().collect())
            .unwrap_or_default();
        Box::pin(async move { Ok(out) })
    }
}

/// Adds a session, sweeps expired ones and pops the oldest past the limit, atomically.
/// KEYS: zset (score created_at, member sid), hash (sid -> json)
/// ARGV: sid, created_at, json, now, limit (0 = none), expire_at (ms)
const ADD: &str = r"
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
local all = redis.call('HGETALL', KEYS[2])
local now = tonumber(ARGV[4])
for i = 1, #all, 2 do
  local e = cjson.decode(all[i + 1])
  if tonumber(e['expires_at']) <= now then
    redis.call('ZREM', KEYS[1], all[i])
    redis.call('HDEL', KEYS[2], all[i])
  end
end
local evicted = {}
local limit = tonumber(ARGV[5])
if limit > 0 then
  local n = redis.call('ZCARD', KEYS[1])
  if n > limit then
    local popped = redis.call('ZPOPMIN', KEYS[1], n - limit)
    for i = 1, #popped, 2 do
      local info = redis.call('HGET', KEYS[2], popped[i])
      if info then table.insert(evicted, info) end
      redis.call('HDEL', KEYS[2], popped[i])
    end
  end
end
local exp = tonumber(ARGV[6])
if redis.call('PEXPIRETIME', KEYS[1]) < exp then
  redis.call('PEXPIREAT', KEYS[1], ARGV[6])
  redis.call('PEXPIREAT', KEYS[2], ARGV[6])
end
return evicted
";

/// The index shared through Redis.
pub struct RedisSessionIndex {
    conn: LazyConn,
    prefix: String,
    limit: Option<usize>,
}

impl std::fmt::Debug for RedisSessionIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSessionIndex")
            .field("prefix", &self.prefix)
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

fn unavailable(e: impl std::fmt::Display) -> RevocationError {
    RevocationError::Unavailable(e.to_string())
}

impl RedisSessionIndex {
    /// An index in the Redis at `url`, with keys `<prefix>{<tag>}:sessions:<user>`.
    ///
    /// # Errors
    /// When the URL does not parse.
    pub fn new(
        url: &str,
        prefix: &str,
        hash_tag: &str,
        limit: Option<usize>,
    ) -> Result<RedisSessionIndex, RevocationError> {
        let client = redis::Client::open(url).map_err(unavailable)?;
        Ok(RedisSessionIndex {
            conn: LazyConn::new(client, Duration::from_millis(500)),
            prefix: format!("{prefix}{{{hash_tag}}}"),
            limit: limit.filter(|l| *l > 0),
        })
    }

    fn keys(&self, user: &str) -> (String, String) {
        (
            format!("{}:sessions:{user}", self.prefix),
            format!("{}:sessioninfo:{user}", self.prefix),
        )
    }

    async fn run<T: redis::FromRedisValue>(&self, cmd: redis::Cmd) -> Result<T, RevocationError> {
        self.conn.query(cmd).await
    }
}

fn parse_entries(raw: Vec<String>) -> Vec<SessionEntry> {
    // An entry that does not parse was written by another version; it is skipped, not fatal.
    raw.iter()
        .filter_map(|s| serde_json::from_str::<StoredEntry>(s).ok())
        .filter_map(StoredEntry::into_entry)
        .collect()
}

#[derive(Serialize, Deserialize)]
struct StoredEntry {
    sid: String,
    created_at: u64,
    expires_at: u64,
    user_agent: String,
}

impl StoredEntry {
    fn from_entry(e: &SessionEntry) -> StoredEntry {
        StoredEntry {
            sid: e.session_id.to_string(),
            created_at: e.created_at.0,
            expires_at: e.expires_at.0,
            user_agent: e.user_agent.clone(),
        }
    }
    fn into_entry(self) -> Option<SessionEntry> {
        Some(SessionEntry {
            session_id: SessionId::parse_hex(&self.sid)?,
            created_at: UnixMillis(self.created_at),
            expires_at: UnixMillis(self.expires_at),
            user_agent: self.user_agent,
        })
    }
}

impl SessionIndex for RedisSessionIndex {
    fn add<'a>(
        &'a self,
        user: &'a str,
        entry: SessionEntry,
        now: UnixMillis,
    ) -> BoxFuture<'a, Result<Vec<SessionEntry>, RevocationError>> {
        Box::pin(async move {
            let (zset, hash) = self.keys(user);
            let json =
                serde_json::to_string(&StoredEntry::from_entry(&entry)).map_err(unavailable)?;
            let mut cmd = redis::cmd("EVAL");
            cmd.arg(ADD)
                .arg(2)
                .arg(zset)
                .arg(hash)
                .arg(entry.session_id.to_string())
                .arg(entry.created_at.0)
                .arg(json)
                .arg(now.0)
                .arg(self.limit.unwrap_or(0))
                .arg(entry.expires_at.0);
            let evicted: Vec<String> = self.run(cmd).await?;
            Ok(parse_entries(evicted))
        })
    }

    fn remove<'a>(
        &'a self,
        user: &'a str,
        session_id: SessionId,
    ) -> BoxFuture<'a, Result<(), RevocationError>> {
        Box::pin(async move {
            let (zset, hash) = self.keys(user);
            let sid = session_id.to_string();
            let mut cmd = redis::cmd("EVAL");
            // One script, so the set and the hash never disagree.
            cmd.arg("redis.call('ZREM', KEYS[1], ARGV[1]) redis.call('HDEL', KEYS[2], ARGV[1]) return 1")
                .arg(2)
                .arg(zset)
                .arg(hash)
                .arg(sid);
            let _: i64 = self.run(cmd).await?;
            Ok(())
        })
    }

    fn clear<'a>(&'a self, user: &'a str) -> BoxFuture<'a, Result<(), RevocationError>> {
        Box::pin(async move {
            let (zset, hash) = self.keys(user);
            let mut cmd = redis::cmd("DEL");
            cmd.arg(zset).arg(hash);
            let _: i64 = self.run(cmd).await?;
            Ok(())
        })
    }

    fn list<'a>(
        &'a self,
        user: &'a str,
        now: UnixMillis,
    ) -> BoxFuture<'a, Result<Vec<SessionEntry>, RevocationError>> {
        Box::pin(async move {
            let (_, hash) = self.keys(user);
            let mut cmd = redis::cmd("HVALS");
            cmd.arg(hash);
            let raw: Vec<String> = self.run(cmd).await?;
            let mut out: Vec<SessionEntry> = parse_entries(raw)
                .into_iter()
                .filter(|e| e.expires_at > now)
                .collect();
            out.sort_by_key(|e| e.created_at);
            Ok(out)
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

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
