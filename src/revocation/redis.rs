//! The Redis-synced revocation list: every node keeps a [`MemoryRevocations`] and replicates it
//! through a Redis Stream.
//!
//! # Design
//! - **Events** (`session revoked until T`, `user version raised to V until T`) are appended to one
//!   stream, `<prefix>{<tag>}:events`, trimmed by time on every append
//!   (`XADD … MINID ~ <redis now − absolute timeout>`): everything still in force is in the
//!   stream, and nothing much else is. An event older than the longest session lifetime can only
//!   revoke tokens that have expired anyway.
//! - The authoritative per-user version lives beside it in `<prefix>{<tag>}:ver:<user>`, raised
//!   with `max(current + 1, proposal)` by a Lua script that also appends the event, so the two
//!   never disagree. The proposal is the node's `max(local + 1, now_ms)`, which keeps versions
//!   monotonic even when Redis has lost the key (see [`super::next_version`]).
//! - Each node replays the stream at start, then tails it with a blocking `XREAD` on its own
//!   task and connection. Events apply idempotently (max of versions, set insert of ids), so
//!   order and duplicates do not matter. The request path only reads the in-process list.
//! - Writes are applied locally first (a node reads its own writes), then recorded in Redis
//!   within `op_timeout`. When Redis does not take a write, the call returns
//!   [`RevocationError::Unavailable`], the revocation stays enforced locally, and the sync task
//!   retries it until Redis accepts it.
//! - **Data loss**: when Redis comes back without (some of) the events, every node that notices
//!   re-publishes every live entry it holds and replays the stream from the start (reported not
//!   caught up until that replay completes), so a node started afterwards still learns every
//!   revocation in force. Once per loop iteration (at most once per `block`), one Lua call
//!   (`PROBE`) reads the two things that can show a loss:
//!   - the **epoch**, `<prefix>{<tag>}:epoch`, a random value set once (`SET NX`): missing or
//!     different from the one this node adopted means Redis lost everything or was replaced
//!     (restart without persistence, `FLUSHALL`, failover to an empty replica);
//!   - the **stream's `last-generated-id`** (`XINFO STREAM`), compared numerically as `ms-seq`
//!     with the id of the last event this node applied. Once a node has applied an event
//!     (its id is above `0-0`), the stream key being gone (`DEL`, eviction under an
//!     `allkeys-*` policy) or its last generated id being below that id (restore from an older
//!     snapshot, failover to a lagging replica that kept the epoch key) is a loss. A stream
//!     trimmed to no entries still exists and keeps its last generated id, so trimming is not
//!     a loss; nor is an absent stream on a node that has applied nothing (fresh deployment).
//!
//!   A re-publish cut short by a dropped connection is redone after reconnecting.
//! - The sync task reconnects with exponential backoff capped at `max_backoff`; the backoff
//!   starts over after a connection that completed a read, so each new outage is retried
//!   quickly at first.
//! - All keys share one hash tag, so the Lua script's keys live in one slot and the layout works
//!   unchanged on Redis Cluster.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;
use redis::streams::{StreamReadOptions, StreamReadReply};
use tokio::sync::watch;

use super::memory::LiveEntry;
use super::{
    BoxFuture, MemoryRevocations, RevocationBackend, RevocationError, RevocationStats, Revoked,
    SyncStatus, next_version,
};
use crate::claims::SessionId;
use crate::clock::{Clock, SystemClock, UnixMillis, duration_ms};
use crate::redis_conn::LazyConn;

/// Records one event atomically: for users, raises the version key and appends the event with
/// the version actually stored; for sessions, appends the event. Trims the stream by Redis's own
/// clock so node clocks do not matter for trimming.
///
/// KEYS: events, version key (any key for sessions, unused)
/// ARGV: kind ('s' session, 'u' bump, 'r' raise to at least), id, until_ms, absolute_ms, proposal
const RECORD: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local minid = string.format('%d-0', math.max(0, now - tonumber(ARGV[4])))
if ARGV[1] == 's' then
  redis.call('XADD', KEYS[1], 'MINID', '~', minid, '*', 'k', 's', 'id', ARGV[2], 'until', ARGV[3])
  return ARGV[5]
end
local cur = tonumber(redis.call('GET', KEYS[2]) or '0')
local v = tonumber(ARGV[5])
if ARGV[1] == 'u' then v = math.max(cur + 1, v) else v = math.max(cur, v) end
local vs = string.format('%d', v)
local until_ms = tonumber(ARGV[3])
local old_exp = redis.call('PEXPIRETIME', KEYS[2])
if old_exp > until_ms then until_ms = old_exp end
redis.call('SET', KEYS[2], vs, 'PXAT', string.format('%d', until_ms))
redis.call('XADD', KEYS[1], 'MINID', '~', minid, '*', 'k', 'u', 'id', ARGV[2], 'v', vs, 'until', ARGV[3])
return vs
";

/// Reads, in one round trip, what the sync loop needs to detect data loss: the epoch (nil when
/// missing) and the events stream's last generated id (nil when the stream key does not exist;
/// `pcall` turns the error `XINFO` raises for a missing key into that nil).
///
/// KEYS: epoch, events
const PROBE: &str = r"
local epoch = redis.call('GET', KEYS[1])
local last = false
local ok, info = pcall(redis.call, 'XINFO', 'STREAM', KEYS[2])
if ok then
  for i = 1, #info - 1, 2 do
    if info[i] == 'last-generated-id' then
      last = info[i + 1]
      break
    end
  end
end
return {epoch, last}
";

/// How to reach Redis and name the keys.
#[derive(Clone, Debug)]
pub struct RedisConfig {
    /// `redis://host:port/db` (or `rediss://`, `unix://`).
    pub url: String,
    /// Key prefix (default `sealed-sessions`); keys are `<prefix>{<tag>}:…`.
    pub prefix: String,
    /// Hash tag shared by all keys (default `ss`), so they live in one Cluster slot.
    pub hash_tag: String,
    /// The engine's absolute timeout: the stream keeps events this long.
    pub absolute_timeout: Duration,
    /// How long one blocking read waits for new events (default 1 s); also how often the node
    /// checks for data loss (epoch and stream, see the module docs) when nothing happens.
    pub block: Duration,
    /// Longest a request waits for Redis to take a write (default 500 ms).
    pub op_timeout: Duration,
    /// Cap of the reconnect backoff (default 2 s). The backoff starts at 50 ms, doubles on each
    /// failed attempt, and starts over after a connection that completed a read.
    pub max_backoff: Duration,
    /// How long [`RedisRevocations::connect`] waits for the first replay (default 3 s). When
    /// Redis is unreachable the node starts unsynced and keeps trying.
    pub startup_wait: Duration,
    /// Most writes kept for retry while Redis does not take them (default 10,000). Past that,
    /// the queue is dropped and the node re-publishes every live entry once Redis takes writes
    /// again: the local list holds every one of them, so nothing is lost and memory stays
    /// bounded however long the outage.
    pub max_pending: usize,
}

impl RedisConfig {
    /// Defaults for `url`, with the engine's absolute timeout.
    pub fn new(url: impl Into<String>, absolute_timeout: Duration) -> RedisConfig {
        RedisConfig {
            url: url.into(),
            prefix: "sealed-sessions".into(),
            hash_tag: "ss".into(),
            absolute_timeout,
            block: Duration::from_secs(1),
            op_timeout: Duration::from_millis(500),
            max_backoff: Duration::from_secs(2),
            startup_wait: Duration::from_secs(3),
            max_pending: 10_000,
        }
    }

    /// Sets the key prefix.
    #[must_use]
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> RedisConfig {
        self.prefix = prefix.into();
        self
    }
}

/// The Redis URL is unusable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisSetupError {
    /// The URL does not parse as a Redis connection URL.
    #[error("invalid Redis URL: {0}")]
    Url(String),
}

/// Validates a Redis URL without connecting.
///
/// # Errors
/// [`RedisSetupError::Url`].
pub fn validate_url(url: &str) -> Result<(), RedisSetupError> {
    redis::Client::open(url)
        .map(|_| ())
        .map_err(|e| RedisSetupError::Url(e.to_string()))
}

#[derive(Clone, Debug)]
enum Pending {
    Session {
        id: SessionId,
        until: UnixMillis,
    },
    Version {
        user: String,
        version: u64,
        until: UnixMillis,
    },
}

struct Keys {
    events: String,
    epoch: String,
    version_prefix: String,
}

impl Keys {
    fn new(prefix: &str, tag: &str) -> Keys {
        let base = format!("{prefix}{{{tag}}}");
        Keys {
            events: format!("{base}:events"),
            epoch: format!("{base}:epoch"),
            version_prefix: format!("{base}:ver:"),
        }
    }
    fn version(&self, user: &str) -> String {
        format!("{}{user}", self.version_prefix)
    }
}

struct Shared {
    local: MemoryRevocations,
    keys: Keys,
    // Blocking reads use their own connection; this one carries writes and version reads.
    client: redis::Client,
    writer: LazyConn,
    config: RedisConfig,
    clock: Arc<dyn Clock>,
    // Writes Redis has not accepted yet, retried by the sync task (at most `max_pending`).
    pending: Mutex<Vec<Pending>>,
    // The pending queue overflowed and was dropped: re-publish everything live instead.
    republish_owed: AtomicBool,
    connected: AtomicBool,
    caught_up: AtomicBool,
    last_contact_ms: AtomicU64,
    started_ms: u64,
    ready: watch::Sender<bool>,
}

/// The Redis-synced revocation backend. Drop it to stop its sync task.
pub struct RedisRevocations {
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RedisRevocations {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl std::fmt::Debug for RedisRevocations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisRevocations")
            .field("events", &self.shared.keys.events)
            .field("local", &self.shared.local)
            .finish_non_exhaustive()
    }
}

impl RedisRevocations {
    /// Starts the backend: spawns the sync task (on the current tokio runtime), and waits up to
    /// `startup_wait` for it to replay the stream. If Redis cannot be reached the node still
    /// starts, unsynced, and keeps retrying with capped exponential backoff.
    ///
    /// # Errors
    /// [`RedisSetupError::Url`] when the URL is unusable.
    pub async fn connect(config: RedisConfig) -> Result<RedisRevocations, RedisSetupError> {
        RedisRevocations::connect_with_clock(config, Arc::new(SystemClock)).await
    }

    /// As [`RedisRevocations::connect`], with a chosen clock for entry expiry.
    ///
    /// # Errors
    /// [`RedisSetupError::Url`] when the URL is unusable.
    pub async fn connect_with_clock(
        config: RedisConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<RedisRevocations, RedisSetupError> {
        let client = redis::Client::open(config.url.as_str())
            .map_err(|e| RedisSetupError::Url(e.to_string()))?;
        let (ready, mut ready_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            local: MemoryRevocations::new(),
            keys: Keys::new(&config.prefix, &config.hash_tag),
            writer: LazyConn::new(client.clone(), config.op_timeout),
            client,
            started_ms: clock.now().0,
            clock,
            config,
            pending: Mutex::new(Vec::new()),
            republish_owed: AtomicBool::new(false),
            connected: AtomicBool::new(false),
            caught_up: AtomicBool::new(false),
            last_contact_ms: AtomicU64::new(0),
            ready,
        });
        let task = tokio::spawn(sync_loop(shared.clone()));
        let wait = shared.config.startup_wait;
        let _ = tokio::time::timeout(wait, ready_rx.wait_for(|r| *r)).await;
        Ok(RedisRevocations { shared, task })
    }

    /// The in-process list this node validates against.
    pub fn local(&self) -> &MemoryRevocations {
        &self.shared.local
    }

    /// Writes waiting for Redis to accept them.
    pub fn pending_writes(&self) -> usize {
        self.shared.pending.lock().len()
    }
}

impl Shared {
    fn now(&self) -> UnixMillis {
        self.clock.now()
    }

    fn record_cmd(&self, p: &Pending) -> redis::Cmd {
        let abs = duration_ms(self.config.absolute_timeout);
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(RECORD).arg(2).arg(&self.keys.events);
        match p {
            Pending::Session { id, until } => {
                cmd.arg(&self.keys.epoch)
                    .arg("s")
                    .arg(id.to_string())
                    .arg(until.0)
                    .arg(abs)
                    .arg(0);
            }
            Pending::Version {
                user,
                version,
                until,
            } => {
                cmd.arg(self.keys.version(user))
                    .arg("r")
                    .arg(user)
                    .arg(until.0)
                    .arg(abs)
                    .arg(*version);
            }
        }
        cmd
    }

    /// Sends one write to Redis within the op timeout.
    async fn send(&self, cmd: redis::Cmd) -> Result<String, RevocationError> {
        self.writer.query(cmd).await
    }

    fn apply(&self, fields: &std::collections::HashMap<String, redis::Value>) {
        let get = |k: &str| -> Option<String> {
            fields
                .get(k)
                .and_then(|v| redis::from_redis_value_ref::<String>(v).ok())
        };
        let now = self.now();
        let until = get("until").and_then(|u| u.parse().ok()).map(UnixMillis);
        match (get("k").as_deref(), get("id"), until) {
            (Some("s"), Some(id), Some(until)) => {
                if let Some(sid) = SessionId::parse_hex(&id) {
                    self.local.revoke_session_now(sid, until, now);
                }
            }
            (Some("u"), Some(user), Some(until)) => {
                if let Some(v) = get("v").and_then(|v| v.parse().ok()) {
                    self.local.raise_user_version(&user, v, until, now);
                }
            }
            // An event this build does not understand is skipped, not fatal: a newer node may
            // write kinds an older one ignores.
            _ => {
                tracing::warn!(target: "sealed_sessions::sync", "skipping malformed revocation event")
            }
        }
    }

    /// Re-publishes every live local entry (after Redis lost its data).
    async fn republish(&self, conn: &mut MultiplexedConnection) -> redis::RedisResult<usize> {
        let entries = self.local.live_entries(self.now());
        let n = entries.len();
        for chunk in entries.chunks(500) {
            let mut pipe = redis::pipe();
            for e in chunk {
                let p = match e {
                    LiveEntry::Session { session_id, until } => Pending::Session {
                        id: *session_id,
                        until: *until,
                    },
                    LiveEntry::User {
                        user_id,
                        min_version,
                        until,
                    } => Pending::Version {
                        user: user_id.clone(),
                        version: *min_version,
                        until: *until,
                    },
                };
                pipe.add_command(self.record_cmd(&p)).ignore();
            }
            pipe.query_async::<()>(conn).await?;
        }
        Ok(n)
    }

    /// Keeps a write Redis did not take for the sync task to retry; past `max_pending`, drops
    /// the queue and owes a re-publish of everything live instead (see [`RedisConfig`]).
    fn defer(&self, p: Pending) {
        let mut pending = self.pending.lock();
        if pending.len() < self.config.max_pending {
            pending.push(p);
            return;
        }
        pending.clear();
        if !self.republish_owed.swap(true, Ordering::Relaxed) {
            tracing::warn!(target: "sealed_sessions::sync", max_pending = self.config.max_pending, "too many revocations waiting for Redis; every live entry will be re-published when it is back");
        }
    }

    async fn flush_pending(&self) -> Result<(), RevocationError> {
        let pending: Vec<Pending> = std::mem::take(&mut *self.pending.lock());
        let mut failed = Vec::new();
        let mut err = None;
        for p in pending {
            if err.is_some() {
                failed.push(p);
                continue;
            }
            if let Err(e) = self.send(self.record_cmd(&p)).await {
                err = Some(e);
                failed.push(p);
            }
        }
        if !failed.is_empty() {
            self.pending.lock().extend(failed);
        }
        err.map_or(Ok(()), Err)
    }

    fn set_synced(&self, caught_up: bool) {
        self.caught_up.store(caught_up, Ordering::Relaxed);
        if caught_up {
            self.ready.send_replace(true);
        }
    }
}

/// Why a node re-publishes what it holds: the signal that showed Redis lost data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Loss {
    /// The epoch key is missing or differs from the one adopted (or none was adopted yet).
    Epoch,
    /// The events stream is gone although this node had applied events from it.
    StreamGone,
    /// The stream's last generated id is below the id of the last event applied here.
    IdsWentBack,
}

impl Loss {
    fn signal(self) -> &'static str {
        match self {
            Loss::Epoch => "epoch key missing or changed",
            Loss::StreamGone => "events stream missing",
            Loss::IdsWentBack => "stream ids went backwards",
        }
    }
}

/// A stream id `ms-seq` as a pair, so ids compare numerically (`9-0` < `10-0`).
fn parse_stream_id(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

/// What the stream's state says, given the id of the last event this node applied (`0-0` when
/// none) and the stream's last generated id (`None` when the key does not exist).
fn stream_loss(applied: &str, last_generated: Option<&str>) -> Option<Loss> {
    let applied = parse_stream_id(applied)?;
    if applied == (0, 0) {
        // Nothing applied yet: an absent or empty stream is a fresh deployment.
        return None;
    }
    match last_generated {
        None => Some(Loss::StreamGone),
        // Trimming never lowers the last generated id; only a lost or older copy of the stream
        // does. An id this build cannot parse is not taken as a loss.
        Some(id) => match parse_stream_id(id) {
            Some(generated) if generated < applied => Some(Loss::IdsWentBack),
            _ => None,
        },
    }
}

/// What the sync task keeps across connections.
struct SyncState {
    /// Id of the last stream entry applied (`0-0`: none; the next read replays from the start).
    last_id: String,
    /// The epoch adopted from Redis; `None` until the first connection.
    epoch: Option<String>,
    /// A loss detected whose re-publish has not completed yet; redone after reconnecting.
    owed: Option<Loss>,
    /// The current connection completed a read (then the backoff starts over).
    read_ok: bool,
}

const INITIAL_BACKOFF: Duration = Duration::from_millis(50);

/// Replays, then tails the stream; reconnects with capped exponential backoff, which starts over
/// after a connection that completed a read.
async fn sync_loop(shared: Arc<Shared>) {
    let initial = INITIAL_BACKOFF.min(shared.config.max_backoff);
    let mut backoff = initial;
    let mut state = SyncState {
        last_id: "0-0".to_string(),
        epoch: None,
        owed: None,
        read_ok: false,
    };
    loop {
        state.read_ok = false;
        match sync_session(&shared, &mut state).await {
            Ok(()) => {}
            Err(e) => {
                if shared.connected.swap(false, Ordering::Relaxed) {
                    tracing::warn!(target: "sealed_sessions::sync", error = %e, "lost Redis; validating from the local list");
                }
                shared.caught_up.store(false, Ordering::Relaxed);
            }
        }
        if state.read_ok {
            backoff = initial;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(shared.config.max_backoff);
    }
}

/// One connected stretch of the sync loop; returns when the connection fails.
async fn sync_session(shared: &Shared, state: &mut SyncState) -> redis::RedisResult<()> {
    let cfg = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(shared.config.op_timeout))
        .set_response_timeout(Some(shared.config.block + Duration::from_secs(2)));
    let mut conn = shared
        .client
        .get_multiplexed_async_connection_with_config(&cfg)
        .await?;
    if !shared.connected.swap(true, Ordering::Relaxed) {
        tracing::info!(target: "sealed_sessions::sync", "connected to Redis");
    }
    let block_ms = usize::try_from(duration_ms(shared.config.block)).unwrap_or(1000);
    loop {
        // Detects a Redis that came back without (some of) our data; see the module docs.
        let (current, last_generated): (Option<String>, Option<String>) = redis::cmd("EVAL")
            .arg(PROBE)
            .arg(2)
            .arg(&shared.keys.epoch)
            .arg(&shared.keys.events)
            .query_async(&mut conn)
            .await?;
        let loss = state
            .owed
            .or_else(|| (current.is_none() || current != state.epoch).then_some(Loss::Epoch))
            .or_else(|| stream_loss(&state.last_id, last_generated.as_deref()));
        if let Some(loss) = loss {
            state.owed = Some(loss);
            shared.caught_up.store(false, Ordering::Relaxed);
            let fresh = format!("{:032x}", rand::random::<u128>());
            let _: () = redis::cmd("SET")
                .arg(&shared.keys.epoch)
                .arg(&fresh)
                .arg("NX")
                .query_async(&mut conn)
                .await?;
            let adopted: Option<String> = conn.get(&shared.keys.epoch).await?;
            let republished = shared.republish(&mut conn).await?;
            // The first adoption of an epoch is a start, not a loss.
            if loss != Loss::Epoch || state.epoch.is_some() {
                tracing::warn!(target: "sealed_sessions::sync", republished, signal = loss.signal(), "Redis lost its revocation data; re-published the live entries held here");
            }
            state.epoch = adopted;
            state.last_id = "0-0".into();
            state.owed = None;
        }
        if shared.republish_owed.swap(false, Ordering::Relaxed) {
            match shared.republish(&mut conn).await {
                Ok(republished) => {
                    tracing::info!(target: "sealed_sessions::sync", republished, "re-published the live entries after the retry queue overflowed");
                }
                Err(e) => {
                    shared.republish_owed.store(true, Ordering::Relaxed);
                    return Err(e);
                }
            }
        }
        if !shared.pending.lock().is_empty() && shared.flush_pending().await.is_err() {
            return Err(redis::RedisError::from((
                redis::ErrorKind::Io,
                "pending revocations not accepted",
            )));
        }
        let opts = StreamReadOptions::default().count(1000).block(block_ms);
        let reply: Option<StreamReadReply> = conn
            .xread_options(&[&shared.keys.events], &[state.last_id.as_str()], &opts)
            .await?;
        state.read_ok = true;
        shared
            .last_contact_ms
            .store(shared.now().0, Ordering::Relaxed);
        let mut n = 0;
        for key in reply.map(|r| r.keys).unwrap_or_default() {
            for entry in key.ids {
                shared.apply(&entry.map);
                state.last_id = entry.id;
                n += 1;
            }
        }
        if n < 1000 && !shared.caught_up.load(Ordering::Relaxed) {
            shared.set_synced(true);
        }
    }
}

impl RevocationBackend for RedisRevocations {
    #[inline]
    fn check(
        &self,
        session_id: &SessionId,
        user_id: &str,
        version: u64,
        now: UnixMillis,
    ) -> Result<(), Revoked> {
        self.shared.local.check(session_id, user_id, version, now)
    }

    fn current_version<'a>(
        &'a self,
        user_id: &'a str,
    ) -> BoxFuture<'a, Result<u64, RevocationError>> {
        Box::pin(async move {
            let local = self.shared.local.user_min_version(user_id, UnixMillis(0));
            let mut cmd = redis::cmd("GET");
            cmd.arg(self.shared.keys.version(user_id));
            // Policy: when Redis cannot answer, the local list (which holds every bump this
            // node has seen) decides; login keeps working during an outage.
            match self.shared.writer.query::<Option<u64>>(cmd).await {
                Ok(remote) => Ok(local.max(remote.unwrap_or(0))),
                Err(_) => Ok(local),
            }
        })
    }

    fn revoke_session(
        &self,
        session_id: SessionId,
        until: UnixMillis,
        now: UnixMillis,
    ) -> BoxFuture<'_, Result<(), RevocationError>> {
        self.shared.local.revoke_session_now(session_id, until, now);
        Box::pin(async move {
            let p = Pending::Session {
                id: session_id,
                until,
            };
            match self.shared.send(self.shared.record_cmd(&p)).await {
                Ok(_) => Ok(()),
                Err(e) => {
                    self.shared.defer(p);
                    Err(e)
                }
            }
        })
    }

    fn bump_user_version<'a>(
        &'a self,
        user_id: &'a str,
        now: UnixMillis,
        until: UnixMillis,
    ) -> BoxFuture<'a, Result<u64, RevocationError>> {
        let local = &self.shared.local;
        let proposal = next_version(local.user_min_version(user_id, UnixMillis(0)), now);
        local.raise_user_version(user_id, proposal, until, now);
        Box::pin(async move {
            let abs = duration_ms(self.shared.config.absolute_timeout);
            let mut cmd = redis::cmd("EVAL");
            cmd.arg(RECORD)
                .arg(2)
                .arg(&self.shared.keys.events)
                .arg(self.shared.keys.version(user_id))
                .arg("u")
                .arg(user_id)
                .arg(until.0)
                .arg(abs)
                .arg(proposal);
            match self.shared.send(cmd).await {
                Ok(v) => {
                    let v: u64 = v.parse().unwrap_or(proposal).max(proposal);
                    local.raise_user_version(user_id, v, until, now);
                    Ok(v)
                }
                Err(e) => {
                    self.shared.defer(Pending::Version {
                        user: user_id.to_owned(),
                        version: proposal,
                        until,
                    });
                    Err(e)
                }
            }
        })
    }

    fn stats(&self) -> RevocationStats {
        self.shared.local.stats()
    }

    fn sync_status(&self) -> SyncStatus {
        let s = &self.shared;
        let synced = s.connected.load(Ordering::Relaxed)
            && s.caught_up.load(Ordering::Relaxed)
            && s.pending.lock().is_empty()
            && !s.republish_owed.load(Ordering::Relaxed);
        let last = s.last_contact_ms.load(Ordering::Relaxed).max(s.started_ms);
        SyncStatus {
            backend: "redis",
            synced,
            lag_ms: s.now().0.saturating_sub(last),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Loss, parse_stream_id, stream_loss};

    #[test]
    fn stream_ids_compare_as_numbers() {
        assert_eq!(parse_stream_id("10-0"), Some((10, 0)));
        assert!(parse_stream_id("9-0") < parse_stream_id("10-0"));
        assert!(parse_stream_id("5-10") > parse_stream_id("5-9"));
        assert_eq!(parse_stream_id("oops"), None);
        assert_eq!(parse_stream_id("1-x"), None);
    }

    #[test]
    fn stream_loss_signals() {
        // Nothing applied: neither an absent nor an empty stream is a loss.
        assert_eq!(stream_loss("0-0", None), None);
        assert_eq!(stream_loss("0-0", Some("0-0")), None);
        // Applied something, stream gone.
        assert_eq!(stream_loss("1700000000000-3", None), Some(Loss::StreamGone));
        // Ids went backwards, numerically (as strings, "999-0" > "1000-0").
        assert_eq!(
            stream_loss("1000-0", Some("999-0")),
            Some(Loss::IdsWentBack)
        );
        assert_eq!(
            stream_loss("1000-5", Some("1000-4")),
            Some(Loss::IdsWentBack)
        );
        // Same or later last generated id (including a stream trimmed to no entries).
        assert_eq!(stream_loss("1000-5", Some("1000-5")), None);
        assert_eq!(stream_loss("999-0", Some("1000-0")), None);
        // Unparsable ids are not taken as a loss.
        assert_eq!(stream_loss("1000-0", Some("?")), None);
    }
}
