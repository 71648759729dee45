//! The per-user index in Redis ([`RedisSessionIndex`]), shared by every node.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{BATCH, SessionEntry, SessionIndex};
use crate::claims::SessionId;
use crate::clock::UnixMillis;
use crate::redis_conn::LazyConn;
use crate::redis_topology::{Connector, RedisSetupError, RedisTarget, RedisTls};
use crate::revocation::RedisConfig;
use crate::revocation::{BoxFuture, RevocationError, StoreError};

/// Adds a session, sweeps expired ones and evicts the oldest past the limit, atomically; each
/// eviction appends a session-revocation event to the revocation stream in the same step, so
/// every node (this one through its tail) revokes it even if this reply is lost. Bounded work:
/// at most ARGV[7] expired entries swept and ARGV[7] entries evicted per call. Entries written
/// by older versions (no expiry set, possibly many) leave through the bounded eviction.
///
/// The event has exactly the fields the sync loop applies (`k`=`s`, `id`, `until`); the
/// stream is trimmed by the next revocation write, not here.
///
/// KEYS: by-created zset, details hash, by-expiry zset, revocation events stream
/// ARGV: sid, created_at, json, now, limit (0 = none), expires_at, batch
const ADD: &str = r"
local sid, limit, batch = ARGV[1], tonumber(ARGV[5]), tonumber(ARGV[7])
redis.call('ZADD', KEYS[1], ARGV[2], sid)
redis.call('ZADD', KEYS[3], ARGV[6], sid)
redis.call('HSET', KEYS[2], sid, ARGV[3])
local expired = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', ARGV[4], 'LIMIT', 0, batch)
for _, id in ipairs(expired) do
  redis.call('ZREM', KEYS[1], id)
  redis.call('ZREM', KEYS[3], id)
  redis.call('HDEL', KEYS[2], id)
end
local evicted = {}
if limit > 0 then
  local extra = math.min(redis.call('ZCARD', KEYS[1]) - limit, batch)
  if extra > 0 then
    local popped = redis.call('ZPOPMIN', KEYS[1], extra)
    for i = 1, #popped, 2 do
      local id = popped[i]
      local info = redis.call('HGET', KEYS[2], id)
      local until_ms = tonumber(redis.call('ZSCORE', KEYS[3], id))
      if not until_ms and info then
        local ok, e = pcall(cjson.decode, info)
        if ok and type(e) == 'table' then until_ms = tonumber(e['expires_at']) end
      end
      -- Unknown expiry: the new session's, which no older session outlives.
      until_ms = until_ms or tonumber(ARGV[6])
      redis.call('HDEL', KEYS[2], id)
      redis.call('ZREM', KEYS[3], id)
      redis.call('XADD', KEYS[4], '*', 'k', 's', 'id', id, 'until', string.format('%d', until_ms))
      if info then table.insert(evicted, info) end
    end
  end
end
local exp = tonumber(ARGV[6])
for i = 1, 3 do
  if redis.call('PEXPIRETIME', KEYS[i]) < exp then redis.call('PEXPIREAT', KEYS[i], ARGV[6]) end
end
return evicted
";

/// The details of the newest sessions, oldest first: at most ARGV[1] (0 = all).
///
/// KEYS: by-created zset, details hash
const LIST: &str = r"
local n = tonumber(ARGV[1])
local ids
if n > 0 then ids = redis.call('ZRANGE', KEYS[1], -n, -1) else ids = redis.call('ZRANGE', KEYS[1], 0, -1) end
local out = {}
for _, id in ipairs(ids) do
  local info = redis.call('HGET', KEYS[2], id)
  if info then table.insert(out, info) end
end
return out
";

/// Removes one session from the three structures, so they never disagree.
///
/// KEYS: by-created zset, details hash, by-expiry zset. ARGV: sid
const REMOVE: &str = r"
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return 1
";

/// The index shared through Redis.
pub struct RedisSessionIndex {
    conn: LazyConn,
    prefix: String,
    events: String,
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

/// One user's keys.
struct UserKeys {
    by_created: String,
    info: String,
    by_expiry: String,
}

impl RedisSessionIndex {
    /// An index in the Redis at `url`, with keys `<prefix>{<tag>}:sessions:<user>` (and
    /// `:sessioninfo:`, `:sessionexp:`). Evictions are published as revocation events on
    /// `<prefix>{<tag>}:events`: pass the same prefix and tag as the revocation backend's
    /// [`RedisConfig`].
    ///
    /// # Errors
    /// [`RedisSetupError`] when the URL does not parse.
    pub fn new(
        url: &str,
        prefix: &str,
        hash_tag: &str,
        limit: Option<usize>,
    ) -> Result<RedisSessionIndex, RedisSetupError> {
        let connector = Connector::new(&RedisTarget::single(url), &RedisTls::new())?;
        Ok(RedisSessionIndex::with_connector(
            connector, prefix, hash_tag, limit,
        ))
    }

    /// An index beside the revocation list that `config` describes: the same Redis (one
    /// server, Cluster or Sentinel; TLS), key prefix and hash tag.
    ///
    /// # Errors
    /// [`RedisSetupError`] when the URLs or TLS settings are unusable.
    pub fn for_config(
        config: &RedisConfig,
        limit: Option<usize>,
    ) -> Result<RedisSessionIndex, RedisSetupError> {
        let connector = Connector::new(&config.target, &config.tls)?;
        Ok(RedisSessionIndex::with_connector(
            connector,
            &config.prefix,
            &config.hash_tag,
            limit,
        ))
    }

    fn with_connector(
        connector: Connector,
        prefix: &str,
        hash_tag: &str,
        limit: Option<usize>,
    ) -> RedisSessionIndex {
        let prefix = format!("{prefix}{{{hash_tag}}}");
        RedisSessionIndex {
            conn: LazyConn::new(Arc::new(connector), Duration::from_millis(500)),
            events: format!("{prefix}:events"),
            prefix,
            limit: limit.filter(|l| *l > 0),
        }
    }

    fn keys(&self, user: &str) -> UserKeys {
        UserKeys {
            by_created: format!("{}:sessions:{user}", self.prefix),
            info: format!("{}:sessioninfo:{user}", self.prefix),
            by_expiry: format!("{}:sessionexp:{user}", self.prefix),
        }
    }

    async fn run<T: redis::FromRedisValue>(&self, cmd: redis::Cmd) -> Result<T, RevocationError> {
        Ok(self.conn.query(cmd).await?)
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
            let k = self.keys(user);
            let json =
                serde_json::to_string(&StoredEntry::from_entry(&entry)).map_err(StoreError::new)?;
            let mut cmd = redis::cmd("EVAL");
            cmd.arg(ADD)
                .arg(4)
                .arg(k.by_created)
                .arg(k.info)
                .arg(k.by_expiry)
                .arg(&self.events)
                .arg(entry.session_id.to_string())
                .arg(entry.created_at.0)
                .arg(json)
                .arg(now.0)
                .arg(self.limit.unwrap_or(0))
                .arg(entry.expires_at.0)
                .arg(BATCH);
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
            let k = self.keys(user);
            let mut cmd = redis::cmd("EVAL");
            cmd.arg(REMOVE)
                .arg(3)
                .arg(k.by_created)
                .arg(k.info)
                .arg(k.by_expiry)
                .arg(session_id.to_string());
            let _: i64 = self.run(cmd).await?;
            Ok(())
        })
    }

    fn clear<'a>(&'a self, user: &'a str) -> BoxFuture<'a, Result<(), RevocationError>> {
        Box::pin(async move {
            let k = self.keys(user);
            let mut cmd = redis::cmd("DEL");
            cmd.arg(k.by_created).arg(k.info).arg(k.by_expiry);
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
            let k = self.keys(user);
            let mut cmd = redis::cmd("EVAL");
            cmd.arg(LIST)
                .arg(2)
                .arg(k.by_created)
                .arg(k.info)
                .arg(self.limit.unwrap_or(0));
            let raw: Vec<String> = self.run(cmd).await?;
            let mut out: Vec<SessionEntry> = parse_entries(raw)
                .into_iter()
                .filter(|e| e.expires_at > now)
                .collect();
            // Already in creation order; sorting again keeps entries with equal times stable
            // whichever backend wrote them.
            out.sort_by_key(|e| e.created_at);
            Ok(out)
        })
    }
}
