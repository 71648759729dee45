//! The Redis-synced revocation list: every node keeps a [`MemoryRevocations`] and replicates it
//! through a Redis Stream.
//!
//! # Design
//! - **Events** (`session revoked until T`, `user version raised to V until T`) are appended to one
//!   stream, `<prefix>{<tag>}:events`, trimmed by time on every append
//!   (`XADD … MINID ~ <redis now − horizon>`): everything still in force is in the stream, and
//!   nothing much else is. An event older than the longest session lifetime can only revoke
//!   tokens that have expired anyway.
//! - **The trim horizon** is the longest absolute timeout any node or tool has declared, never
//!   the writer's own: a `revoke` run with 24 h must not trim the revocations of servers running
//!   72 h. Declarations live in the sorted set `<prefix>{<tag>}:horizon` (member: the lifetime in
//!   ms, score: when the declaration lapses, by Redis's clock). Every node declares its
//!   lifetime when it connects and then periodically; every write declares the writer's. A
//!   declaration lapses one lifetime after its last refresh — exactly as long as the tokens of a
//!   decommissioned deployment, and so its revocations, can matter — so a retired 30-day
//!   deployment does not pin the stream forever. The record script drops lapsed declarations
//!   and trims at `now − max(declared)`; a caller's value can raise the horizon, never lower it.
//! - The authoritative per-user version lives beside it in `<prefix>{<tag>}:ver:<user>`, raised
//!   with `max(current + 1, proposal)` by a Lua script that also appends the event, so the two
//!   never disagree. The proposal is the node's `max(local + 1, now_ms)`, which keeps versions
//!   monotonic even when Redis has lost the key (see [`super::next_version`]).
//! - Each node replays the stream at start, then tails it with a blocking `XREAD` on its own
//!   task and connection. Events apply idempotently (max of versions, set insert of ids), so
//!   order and duplicates do not matter. The request path only reads the in-process list.
//! - **Snapshot**: one node at a time writes a compacted copy of its list to Redis, with the
//!   stream id it covers and the epoch it belongs to, once the stream has grown by
//!   [`RedisConfig::snapshot_every`] events (and a tenth of the snapshot's size) since the
//!   last one. A starting node loads the snapshot of the current epoch, if any, then reads the
//!   stream from its id; a snapshot of another epoch or one that fails its checks is ignored
//!   and the stream replayed from the start. Format, locking and why nothing in force is
//!   missed: the module docs of `src/revocation/snapshot.rs`.
//! - **Not ready until replayed**: until the first replay has reached the stream's tail (an
//!   `XREAD` from `0-0` onwards returned fewer than `COUNT` entries) the node knows none of the
//!   revocations made elsewhere, so [`RevocationBackend::ready`] is false — however long the
//!   replay takes, and whether or not Redis is reachable. Staleness (`lag_ms`) counts from the
//!   last read that reached the tail, not from the last reply: a node working through a long
//!   backlog is as far behind as the backlog.
//! - Writes are applied locally first (a node reads its own writes), then recorded in Redis
//!   within `op_timeout`. When Redis does not take a write, the call returns
//!   [`RevocationError::Unavailable`], the revocation stays enforced locally, and the sync task
//!   retries it until Redis accepts it. Writes Redis accepted are kept for
//!   [`RedisConfig::resend_window`] and written again after any reconnect: replication is
//!   asynchronous, and a failover can drop what the old primary took last. Under Sentinel the
//!   loop also asks, once per iteration, whether the sentinels name another primary than the
//!   one it is connected to (a deposed primary takes writes until it is demoted), and
//!   reconnects both connections if so.
//! - **Barrier** ([`RevocationBackend::barrier`]): a change about to mint a cookie reads the
//!   stream's last id and waits (at most `op_timeout`) until this node has applied it, so a
//!   logout made elsewhere a moment ago is seen even when the reader lags.
//! - **Data loss**: once per loop iteration (at most once per `block`), one Lua call (`PROBE`)
//!   reads the two things that can show a loss:
//!   - the **epoch**, `<prefix>{<tag>}:epoch`, a random value: missing or different from the
//!     one this node adopted means Redis lost everything or was replaced (restart without
//!     persistence, `FLUSHALL`, failover to an empty replica), or another node saw a loss;
//!   - the **stream's `last-generated-id`** (`XINFO STREAM`), compared numerically as `ms-seq`
//!     with the id of the last event this node applied. Once a node has applied an event
//!     (its id is above `0-0`), the stream key being gone (`DEL`, eviction under an
//!     `allkeys-*` policy) or its last generated id being below that id (restore from an older
//!     snapshot, failover to a lagging replica that kept the epoch key) is a loss. A stream
//!     trimmed to no entries still exists and keeps its last generated id, so trimming is not
//!     a loss; nor is an absent stream on a node that has applied nothing (fresh deployment).
//!   - the stream's **`entries-added`** (Redis 7+), which only grows while the key lives:
//!     lower than at the previous probe means the stream was deleted and written again in
//!     between, even when the new ids are above what this node applied.
//!
//!   Every loss gives a **new epoch**: the node that sees it replaces the epoch it had adopted
//!   (compare-and-set, so concurrent detectors agree on one), and the others see the epoch
//!   change. A node's first epoch is adopted, not a loss.
//! - **One node re-publishes** after a loss, not all of them. The rule:
//!   1. every node that sees the loss adopts the new epoch and replays the stream from `0-0`;
//!   2. the one that takes `<prefix>{<tag>}:republish-lock` (`SET NX PX`, value: its node id,
//!      refreshed between batches) re-publishes every live entry it holds, then writes
//!      `<prefix>{<tag>}:republished = <epoch>` and releases the lock;
//!   3. every other node remembers, while replaying, what the stream holds; once it has seen the
//!      marker for its epoch *and* its replay has reached the tail after that, it re-publishes
//!      only the live entries it holds that the stream lacks (a revocation only it knew, a
//!      higher version): one copy of everything in force, whoever held what;
//!   4. a non-holder that finds neither the marker nor the lock (the holder died) takes the
//!      lock and re-publishes in full.
//!
//!   A node is not synced until its part is done; a re-publish cut short by a dropped
//!   connection is redone after reconnecting.
//! - The sync task reconnects with exponential backoff capped at `max_backoff`; the backoff
//!   starts over after a connection that completed a read, so each new outage is retried
//!   quickly at first. It logs what is happening: unreachable, wrong topology (a replica, a
//!   Cluster node that does not own the slot), replaying N events, replayed.
//! - All keys share one hash tag, so the Lua scripts' keys and the stream read live in one slot:
//!   on Redis Cluster (see [`crate::redis_topology`]) everything goes to that slot's primary.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
// The topology's connection (one server, TLS, Sentinel's primary or a Cluster).
use crate::redis_topology::RedisConn;
use tokio::sync::watch;

use super::memory::LiveEntry;
use super::snapshot::{self, Due, LoadOutcome, Rejected, SnapshotKeys, Written};
use super::{
    BoxFuture, MemoryRevocations, RevocationBackend, RevocationError, RevocationStats, Revoked,
    StoreError, SyncStatus, next_version, parse_stream_id,
};
use crate::claims::SessionId;
use crate::clock::{Clock, SystemClock, UnixMillis, duration_ms};
use crate::redis_conn::{ConnError, LazyConn};
pub use crate::redis_topology::RedisSetupError;
use crate::redis_topology::{Connector, RedisTarget, RedisTls};

/// Records one event atomically: for users, raises the version key and appends the event with
/// the version actually stored; for sessions, appends the event. Declares the caller's lifetime
/// and trims the stream at Redis's own `now − horizon` (the longest live declaration), so
/// neither node clocks nor a caller's short lifetime decide what is trimmed.
///
/// KEYS: events, version key (any key for sessions, unused), horizon
/// ARGV: kind ('s' session, 'u' bump, 'r' raise to at least), id, until_ms, absolute_ms, proposal
const RECORD: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local declared = tonumber(ARGV[4])
redis.call('ZADD', KEYS[3], 'GT', now + declared, ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. string.format('%d', now))
local horizon = declared
for _, m in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do
  local h = tonumber(m)
  if h and h > horizon then horizon = h end
end
local minid = string.format('%d-0', math.max(0, now - horizon))
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

/// Declares a lifetime in the horizon set (lapsing one lifetime from now, by Redis's clock; a
/// later lapse already there is kept) and drops lapsed declarations.
///
/// KEYS: horizon
/// ARGV: absolute_ms
const DECLARE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], 'GT', now + tonumber(ARGV[1]), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. string.format('%d', now))
return 1
";

/// Reads, in one round trip, what the sync loop needs to detect data loss and follow a
/// re-publish: the epoch (nil when missing), the events stream's last generated id and length
/// (nil and 0 when the stream key does not exist; `pcall` turns the error `XINFO` raises for a
/// missing key into that), the re-publish marker (nil when missing), and the stream's
/// `entries-added` (Redis 7+; nil before, or without the stream).
///
/// KEYS: epoch, events, republished marker
/// ARGV: ids of entries this node applied (`0-0` for none): the last one, and where the read
/// that brought it started. A rollback that happened since the previous probe lost the newer
/// of the two if it lost anything this node applied.
const PROBE: &str = r"
local epoch = redis.call('GET', KEYS[1])
local last = false
local len = 0
local added = false
local ok, info = pcall(redis.call, 'XINFO', 'STREAM', KEYS[2])
if ok then
  for i = 1, #info - 1, 2 do
    if info[i] == 'last-generated-id' then last = info[i + 1] end
    if info[i] == 'length' then len = info[i + 1] end
    if info[i] == 'entries-added' then added = info[i + 1] end
  end
end
-- An entry this node applied (ARGV: the last one, and where its last read started) is gone
-- although an entry before it is still there: trimming removes from the head only, so only a
-- lost or older copy of the stream does that (a failover to a lagging replica, a restore),
-- whatever was written since.
local missing = 0
for _, id in ipairs(ARGV) do
  if ok and id ~= '0-0'
      and #redis.call('XRANGE', KEYS[2], id, id) == 0
      and #redis.call('XRANGE', KEYS[2], '-', id, 'COUNT', 1) > 0 then
    missing = 1
  end
end
return {epoch, last, len, redis.call('GET', KEYS[3]), added, missing}
";

/// Adopts an epoch after a loss, or at a node's first connection: when the key is missing or
/// still holds the epoch this node had adopted (so the loss is news), sets a fresh one;
/// otherwise another node already did, and its epoch is adopted. Returns the epoch adopted.
///
/// KEYS: epoch
/// ARGV: the epoch this node had adopted ('' for none), a fresh random epoch
const ADOPT: &str = r"
local cur = redis.call('GET', KEYS[1])
if cur == false or (ARGV[1] ~= '' and cur == ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[2])
  return ARGV[2]
end
return cur
";

/// Takes the re-publish lock, or extends it when this node holds it already. Returns 1 when
/// this node holds it now, 0 when another node does, 2 when the re-publish for this epoch is
/// done already (checked in the same step, so a node cannot take a lock the finished holder
/// has just released and re-publish everything a second time).
///
/// KEYS: lock, republished marker
/// ARGV: node id, ttl_ms, epoch ('' to only extend)
const LOCK: &str = r"
if ARGV[3] ~= '' and redis.call('GET', KEYS[2]) == ARGV[3] then
  return 2
end
local cur = redis.call('GET', KEYS[1])
if cur == false or cur == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
";

/// Marks the re-publish for an epoch done and releases the lock if this node still holds it.
///
/// KEYS: marker, lock
/// ARGV: epoch, node id
const REPUBLISHED: &str = r"
redis.call('SET', KEYS[1], ARGV[1])
if redis.call('GET', KEYS[2]) == ARGV[2] then redis.call('DEL', KEYS[2]) end
return 1
";

/// How to reach Redis and name the keys.
///
/// One server (TLS with `rediss://`):
/// ```no_run
/// # use std::time::Duration;
/// use sealed_sessions::revocation::RedisConfig;
/// use sealed_sessions::redis_topology::RedisTls;
/// let ca = std::fs::read("/etc/redis/ca.pem")?;
/// let config = RedisConfig::new("rediss://cache.internal:6380", Duration::from_secs(86_400))
///     .with_tls(RedisTls::new().with_ca_pem(ca));
/// # Ok::<(), std::io::Error>(())
/// ```
/// A Redis Cluster, through any of its nodes:
/// ```no_run
/// # use std::time::Duration;
/// use sealed_sessions::revocation::RedisConfig;
/// let config = RedisConfig::cluster(
///     ["redis://10.0.0.1:7000", "redis://10.0.0.2:7000"],
///     Duration::from_secs(86_400),
/// );
/// ```
/// The primary that Sentinel names (asked again at every reconnection, so a failover is
/// followed):
/// ```no_run
/// # use std::time::Duration;
/// use sealed_sessions::revocation::RedisConfig;
/// let config = RedisConfig::sentinel(
///     ["redis://10.0.0.1:26379", "redis://10.0.0.2:26379"],
///     "sessions",
///     Duration::from_secs(86_400),
/// );
/// ```
#[derive(Clone, Debug)]
pub struct RedisConfig {
    /// Where Redis is: one server, a Cluster, or Sentinel's primary.
    pub target: RedisTarget,
    /// TLS settings for `rediss://` URLs (private CA, client certificate).
    pub tls: RedisTls,
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
    /// How long the re-publish lock outlives its holder's last refresh (default 10 s): after a
    /// data loss, the other nodes take over the re-publish this long after its holder died.
    pub republish_lock_ttl: Duration,
    /// How long this node keeps its own revocations to write them again after any reconnect
    /// (default 30 s). Replication is asynchronous: a revocation the old primary took just
    /// before a failover (or after, until Sentinel demoted it and dropped its clients) may be
    /// missing on the new one. Writes are idempotent, so writing the recent ones again after a
    /// reconnect costs little and loses nothing a demotion within this window dropped.
    pub resend_window: Duration,
    /// A node writes a snapshot of its list to Redis (`src/revocation/snapshot.rs`) once the stream
    /// has received this many events since the last snapshot, and at least a tenth as many
    /// as the snapshot holds entries (default 100,000; 0: this node never writes one). One
    /// node at a time writes; every node loads the snapshot when it starts, then reads the
    /// stream only from the snapshot's id. Short-lived tools set 0.
    pub snapshot_every: u64,
}

impl RedisConfig {
    /// Defaults for `url`, with the engine's absolute timeout.
    pub fn new(url: impl Into<String>, absolute_timeout: Duration) -> RedisConfig {
        RedisConfig::for_target(RedisTarget::single(url), absolute_timeout)
    }

    /// Defaults for a Redis Cluster reached through any of `seeds`.
    pub fn cluster<S: Into<String>>(
        seeds: impl IntoIterator<Item = S>,
        absolute_timeout: Duration,
    ) -> RedisConfig {
        RedisConfig::for_target(RedisTarget::cluster(seeds), absolute_timeout)
    }

    /// Defaults for the primary that `sentinels` name `master`.
    pub fn sentinel<S: Into<String>>(
        sentinels: impl IntoIterator<Item = S>,
        master: impl Into<String>,
        absolute_timeout: Duration,
    ) -> RedisConfig {
        RedisConfig::for_target(RedisTarget::sentinel(sentinels, master), absolute_timeout)
    }

    /// Defaults for `target`.
    pub fn for_target(target: RedisTarget, absolute_timeout: Duration) -> RedisConfig {
        RedisConfig {
            resend_window: Duration::from_secs(30),
            target,
            tls: RedisTls::new(),
            prefix: "sealed-sessions".into(),
            hash_tag: "ss".into(),
            absolute_timeout,
            block: Duration::from_secs(1),
            op_timeout: Duration::from_millis(500),
            max_backoff: Duration::from_secs(2),
            startup_wait: Duration::from_secs(3),
            max_pending: 10_000,
            republish_lock_ttl: Duration::from_secs(10),
            snapshot_every: 100_000,
        }
    }

    /// Sets the key prefix.
    #[must_use]
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> RedisConfig {
        self.prefix = prefix.into();
        self
    }

    /// Sets the TLS settings (the URLs must be `rediss://`).
    #[must_use]
    pub fn with_tls(mut self, tls: RedisTls) -> RedisConfig {
        self.tls = tls;
        self
    }
}

impl From<ConnError> for RevocationError {
    fn from(e: ConnError) -> RevocationError {
        RevocationError::Unavailable(StoreError::new(e))
    }
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
    snapshot: SnapshotKeys,
    events: String,
    epoch: String,
    horizon: String,
    republish_lock: String,
    republished: String,
    version_prefix: String,
}

impl Keys {
    fn new(prefix: &str, tag: &str) -> Keys {
        let base = format!("{prefix}{{{tag}}}");
        let (events, epoch) = (format!("{base}:events"), format!("{base}:epoch"));
        Keys {
            snapshot: SnapshotKeys::new(&base, &events, &epoch),
            events,
            epoch,
            horizon: format!("{base}:horizon"),
            republish_lock: format!("{base}:republish-lock"),
            republished: format!("{base}:republished"),
            version_prefix: format!("{base}:ver:"),
        }
    }
    fn version(&self, user: &str) -> String {
        format!("{}{user}", self.version_prefix)
    }
}

/// What the sync task is doing, as the start-up log and [`RedisRevocations::phase`] report it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SyncPhase {
    /// No connection attempt has finished yet.
    Connecting,
    /// Redis cannot be reached (the last error).
    Unreachable(String),
    /// Redis answers but refuses what the sync needs because of where it sits: a replica
    /// (`READONLY`), a Cluster node that does not own the keys' slot (`MOVED`, `ASK`,
    /// `CROSSSLOT`), a cluster that is down.
    WrongTopology(String),
    /// Another error from Redis (permissions, a refused script, …).
    Failing(String),
    /// Loading the snapshot of the list that one node keeps in Redis.
    LoadingSnapshot,
    /// Reading the stream: `applied` events so far of the `total` it held when this replay began.
    Replaying {
        /// Events applied since the replay began.
        applied: u64,
        /// The stream's length when the replay began.
        total: u64,
    },
    /// Caught up with the stream's tail.
    Synced,
}

impl std::fmt::Display for SyncPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SyncPhase::Connecting => write!(f, "connecting to Redis"),
            SyncPhase::Unreachable(e) => write!(f, "Redis unreachable: {e}"),
            SyncPhase::WrongTopology(e) => write!(
                f,
                "Redis refuses the sync because of its topology (a replica, or a Cluster node not \
                 owning the keys' slot?): {e}"
            ),
            SyncPhase::Failing(e) => write!(f, "Redis error: {e}"),
            SyncPhase::LoadingSnapshot => write!(f, "loading the revocation snapshot"),
            SyncPhase::Replaying { applied, total } => {
                write!(
                    f,
                    "replaying the revocation stream: {applied} of {total} events"
                )
            }
            SyncPhase::Synced => write!(f, "synced"),
        }
    }
}

impl SyncPhase {
    /// The phase an error of the sync connection puts the node in.
    fn from_error(e: &redis::RedisError) -> SyncPhase {
        let msg = e.to_string();
        match e.code() {
            Some(
                "MOVED" | "ASK" | "TRYAGAIN" | "CROSSSLOT" | "CLUSTERDOWN" | "READONLY"
                | "MASTERDOWN",
            ) => SyncPhase::WrongTopology(msg),
            // A Cluster node given as one server (see `redis_topology`).
            _ if e.kind() == redis::ErrorKind::InvalidClientConfig => SyncPhase::WrongTopology(msg),
            _ if e.is_io_error() || e.is_connection_refusal() || e.is_timeout() => {
                SyncPhase::Unreachable(msg)
            }
            Some(_) => SyncPhase::Failing(msg),
            None => SyncPhase::Unreachable(msg),
        }
    }
}

/// How a node's first load of the shared list went: what came from the snapshot, what from
/// the stream, how long it took. [`RedisRevocations::cold_start`] reports it once the node is
/// ready.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ColdStart {
    /// Entries (revoked sessions and user versions in force) loaded from the snapshot; 0 when
    /// none was used.
    pub snapshot_entries: u64,
    /// Why a snapshot found in Redis was not used (it belongs to another epoch, or is corrupt),
    /// if one was found and not used. The stream was then replayed from its start.
    pub snapshot_rejected: Option<String>,
    /// Stream events applied until the first read reached the tail (after the snapshot's id
    /// when one was loaded).
    pub stream_events: u64,
    /// From [`RedisRevocations::connect`] until ready.
    pub took: Duration,
}

struct Shared {
    local: MemoryRevocations,
    // The id of the last stream entry applied (`ms-seq`), what `barrier` compares with the
    // stream's last id. Two atomics, written so a reader never sees a later id than applied.
    applied_ms: AtomicU64,
    applied_seq: AtomicU64,
    keys: Keys,
    // Blocking reads use their own connection; this one carries writes and version reads.
    client: Arc<Connector>,
    writer: LazyConn,
    config: RedisConfig,
    clock: Arc<dyn Clock>,
    // Random, per process: the value of the re-publish lock while this node holds it.
    node_id: String,
    // Writes Redis has not accepted yet, retried by the sync task (at most `max_pending`).
    pending: Mutex<Vec<Pending>>,
    // Writes Redis accepted within `resend_window`, with when (ms): written again after a
    // reconnect, in case a failover lost them.
    recent: Mutex<std::collections::VecDeque<(u64, Pending)>>,
    // The pending queue overflowed and was dropped: re-publish everything live instead.
    republish_owed: AtomicBool,
    connected: AtomicBool,
    caught_up: AtomicBool,
    // The first replay reached the tail. Never goes back to false: later replays (after a data
    // loss) start from a list that already holds everything this node knew.
    replayed: AtomicBool,
    // When a read last reached the stream's tail (0: never).
    last_caught_up_ms: AtomicU64,
    started_ms: u64,
    phase: Mutex<SyncPhase>,
    ready: watch::Sender<bool>,
    started: std::time::Instant,
    // Set once, just before the node becomes ready.
    cold_start: Mutex<Option<ColdStart>>,
    // The task writing a snapshot, if one runs (at most one per node); aborted on drop.
    snapshot_task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// The Redis-synced revocation backend. Drop it to stop its sync task.
pub struct RedisRevocations {
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RedisRevocations {
    fn drop(&mut self) {
        self.task.abort();
        if let Some(t) = self.shared.snapshot_task.lock().take() {
            t.abort();
        }
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
    /// `startup_wait` for it to replay the stream. If Redis cannot be reached, or the replay
    /// takes longer, the node still starts — not [`ready`](RevocationBackend::ready) — and the
    /// sync task keeps going (retrying with capped exponential backoff).
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
        let client = Arc::new(Connector::new(&config.target, &config.tls)?);
        let (ready, mut ready_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            local: MemoryRevocations::new(),
            keys: Keys::new(&config.prefix, &config.hash_tag),
            writer: LazyConn::new(client.clone(), config.op_timeout),
            client,
            started_ms: clock.now().0,
            clock,
            config,
            node_id: format!("{:032x}", rand::random::<u128>()),
            pending: Mutex::new(Vec::new()),
            recent: Mutex::new(std::collections::VecDeque::new()),
            republish_owed: AtomicBool::new(false),
            connected: AtomicBool::new(false),
            caught_up: AtomicBool::new(false),
            replayed: AtomicBool::new(false),
            last_caught_up_ms: AtomicU64::new(0),
            applied_ms: AtomicU64::new(0),
            applied_seq: AtomicU64::new(0),
            phase: Mutex::new(SyncPhase::Connecting),
            ready,
            started: std::time::Instant::now(),
            cold_start: Mutex::new(None),
            snapshot_task: Mutex::new(None),
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

    /// What the sync task is doing now (for logs: unreachable, replaying, synced…).
    pub fn phase(&self) -> SyncPhase {
        self.shared.phase.lock().clone()
    }

    /// How the first load went (snapshot entries, stream events, time); `None` until the node
    /// is [`ready`](RevocationBackend::ready).
    pub fn cold_start(&self) -> Option<ColdStart> {
        self.shared.cold_start.lock().clone()
    }
}

/// One event of the stream, borrowing the reply it was read from (no allocation per event:
/// a replay reads millions).
#[derive(Debug, PartialEq, Eq)]
enum Event<'a> {
    /// `k=s id=<hex> until=<ms>`.
    Session { id: SessionId, until: UnixMillis },
    /// `k=u id=<user> v=<version> until=<ms>`.
    User {
        user: &'a str,
        version: u64,
        until: UnixMillis,
    },
}

/// The bytes of a string reply.
fn value_bytes(v: &redis::Value) -> Option<&[u8]> {
    match v {
        redis::Value::BulkString(b) => Some(b),
        redis::Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

/// A decimal `u64` without allocating (`str::parse` would need a `&str` first, and accepts `+`).
fn parse_u64(b: &[u8]) -> Option<u64> {
    if b.is_empty() || b.len() > 20 {
        return None;
    }
    b.iter().try_fold(0u64, |n, &c| {
        let d = c.checked_sub(b'0').filter(|d| *d < 10)?;
        n.checked_mul(10)?.checked_add(u64::from(d))
    })
}

/// Reads an event from an entry's fields `[name, value, …]`; `None` when malformed or of a kind
/// this build does not know.
fn parse_event(fields: &[redis::Value]) -> Option<Event<'_>> {
    let (mut kind, mut id, mut version, mut until) = (None, None, None, None);
    for pair in fields.chunks_exact(2) {
        let value = value_bytes(&pair[1]);
        match value_bytes(&pair[0])? {
            b"k" => kind = value,
            b"id" => id = value,
            b"v" => version = value,
            b"until" => until = value,
            _ => {}
        }
    }
    let until = UnixMillis(parse_u64(until?)?);
    let id = std::str::from_utf8(id?).ok()?;
    match kind? {
        b"s" => Some(Event::Session {
            id: SessionId::parse_hex(id)?,
            until,
        }),
        b"u" => Some(Event::User {
            user: id,
            version: parse_u64(version?)?,
            until,
        }),
        _ => None,
    }
}

/// The entries of an `XREAD` reply for one stream: RESP2 `[[key, entries]]`, RESP3
/// `{key: entries}`, or nil (nothing new).
fn reply_entries(reply: &redis::Value) -> &[redis::Value] {
    use redis::Value;
    let entries = match reply {
        Value::Array(streams) => match streams.first() {
            Some(Value::Array(stream)) => stream.get(1),
            _ => None,
        },
        Value::Map(streams) => streams.first().map(|(_, entries)| entries),
        _ => None,
    };
    match entries {
        Some(Value::Array(entries)) => entries,
        _ => &[],
    }
}

/// A stream entry `[id, [field, value, …]]` as its id and fields.
fn entry_parts(entry: &redis::Value) -> Option<(&str, &[redis::Value])> {
    let redis::Value::Array(parts) = entry else {
        return None;
    };
    let id = std::str::from_utf8(value_bytes(parts.first()?)?).ok()?;
    match parts.get(1)? {
        redis::Value::Array(fields) => Some((id, fields)),
        _ => None,
    }
}

/// What a replay found in the stream: the sessions revoked there and each user's highest
/// version there.
#[derive(Default)]
struct Seen {
    sessions: HashSet<SessionId>,
    users: HashMap<String, u64>,
}

impl Seen {
    /// Records what an entry's fields revoke (nothing for a malformed one).
    fn add_fields(&mut self, fields: &[redis::Value]) {
        match parse_event(fields) {
            Some(Event::Session { id, .. }) => {
                self.sessions.insert(id);
            }
            Some(Event::User { user, version, .. }) => {
                let e = self.users.entry(user.to_owned()).or_insert(0);
                *e = (*e).max(version);
            }
            None => {}
        }
    }

    /// Whether the stream already carries `entry` (or something that revokes at least as much).
    fn covers(&self, entry: &LiveEntry) -> bool {
        match entry {
            LiveEntry::Session { session_id, .. } => self.sessions.contains(session_id),
            LiveEntry::User {
                user_id,
                min_version,
                ..
            } => self.users.get(user_id).is_some_and(|v| v >= min_version),
        }
    }
}

impl Shared {
    fn now(&self) -> UnixMillis {
        self.clock.now()
    }

    fn set_phase(&self, phase: SyncPhase) {
        *self.phase.lock() = phase;
    }

    fn record_cmd(&self, p: &Pending) -> redis::Cmd {
        let abs = duration_ms(self.config.absolute_timeout);
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(RECORD).arg(3).arg(&self.keys.events);
        match p {
            Pending::Session { id, until } => {
                cmd.arg(&self.keys.epoch)
                    .arg(&self.keys.horizon)
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
                    .arg(&self.keys.horizon)
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
        Ok(self.writer.query(cmd).await?)
    }

    /// Remembers a write Redis acknowledged, for [`Shared::resend_recent`].
    fn remember(&self, p: Pending) {
        let now = self.now().0;
        let horizon = now.saturating_sub(duration_ms(self.config.resend_window));
        let mut recent = self.recent.lock();
        while recent.front().is_some_and(|(at, _)| *at < horizon) {
            recent.pop_front();
        }
        // Bounded like the retry queue; past it the oldest are dropped (they are the ones a
        // failover is least likely to have lost).
        if recent.len() >= self.config.max_pending {
            recent.pop_front();
        }
        recent.push_back((now, p));
    }

    /// Writes this node's recent revocations again (see [`RedisConfig::resend_window`]).
    async fn resend_recent(&self, conn: &mut RedisConn) -> redis::RedisResult<usize> {
        let horizon = self
            .now()
            .0
            .saturating_sub(duration_ms(self.config.resend_window));
        let recent: Vec<Pending> = {
            let mut recent = self.recent.lock();
            while recent.front().is_some_and(|(at, _)| *at < horizon) {
                recent.pop_front();
            }
            recent.iter().map(|(_, p)| p.clone()).collect()
        };
        for chunk in recent.chunks(500) {
            let mut pipe = redis::pipe();
            for p in chunk {
                pipe.add_command(self.record_cmd(p)).ignore();
            }
            pipe.query_async::<()>(conn).await?;
        }
        Ok(recent.len())
    }

    /// Declares this node's lifetime in the horizon set (see the module docs).
    async fn declare_horizon(&self, conn: &mut RedisConn) -> redis::RedisResult<()> {
        redis::cmd("EVAL")
            .arg(DECLARE)
            .arg(1)
            .arg(&self.keys.horizon)
            .arg(duration_ms(self.config.absolute_timeout))
            .query_async::<i64>(conn)
            .await
            .map(|_| ())
    }

    /// Applies a batch of stream entries (as [`reply_entries`] returns them), all sessions under
    /// one lock, and records what they revoked in `seen` when a recovery wants it. Returns the
    /// id of the last entry, applied or not (`None` for an empty batch).
    fn apply_entries<'r>(
        &self,
        entries: &'r [redis::Value],
        mut seen: Option<&mut Seen>,
    ) -> Option<&'r str> {
        let now = self.now();
        let mut sessions = Vec::with_capacity(entries.len());
        let mut malformed = 0usize;
        let mut last = None;
        for entry in entries {
            let Some((id, fields)) = entry_parts(entry) else {
                malformed += 1;
                continue;
            };
            last = Some(id);
            match parse_event(fields) {
                Some(Event::Session { id, until }) => sessions.push((id, until)),
                Some(Event::User {
                    user,
                    version,
                    until,
                }) => self.local.raise_user_version(user, version, until, now),
                // An event this build does not understand is skipped, not fatal: a newer node
                // may write kinds an older one ignores.
                None => malformed += 1,
            }
            if let Some(seen) = seen.as_deref_mut() {
                seen.add_fields(fields);
            }
        }
        self.local
            .revoke_sessions_now(sessions.iter().copied(), now);
        if malformed > 0 {
            tracing::warn!(target: "sealed_sessions::sync", malformed, "skipping malformed revocation events");
        }
        last
    }

    /// Re-publishes `entries`; with `lock`, extends the re-publish lock before each batch (so a
    /// holder that is still working keeps it, and one that died loses it).
    async fn republish(
        &self,
        conn: &mut RedisConn,
        entries: &[LiveEntry],
        lock: bool,
    ) -> redis::RedisResult<usize> {
        for chunk in entries.chunks(500) {
            if lock {
                self.take_lock(conn, "").await?;
            }
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
        Ok(entries.len())
    }

    /// Takes or extends the re-publish lock; true when this node holds it.
    async fn take_lock(&self, conn: &mut RedisConn, epoch: &str) -> redis::RedisResult<LockState> {
        let got: i64 = redis::cmd("EVAL")
            .arg(LOCK)
            .arg(2)
            .arg(&self.keys.republish_lock)
            .arg(&self.keys.republished)
            .arg(&self.node_id)
            .arg(duration_ms(self.config.republish_lock_ttl).max(1))
            .arg(epoch)
            .query_async(conn)
            .await?;
        Ok(match got {
            1 => LockState::Held,
            2 => LockState::Done,
            _ => LockState::Busy,
        })
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
            match self.send(self.record_cmd(&p)).await {
                Ok(_) => self.remember(p),
                Err(e) => {
                    err = Some(e);
                    failed.push(p);
                }
            }
        }
        if !failed.is_empty() {
            self.pending.lock().extend(failed);
        }
        err.map_or(Ok(()), Err)
    }

    /// Records the id of the last entry applied (`0-0` after a loss restarts the replay).
    fn set_applied(&self, id: &str) {
        let (ms, seq) = parse_stream_id(id).unwrap_or((0, 0));
        // Any mix of the old and new halves a reader may see is at most the new id, so
        // `barrier` may wait a little longer, never less. Ids move back only on a loss.
        self.applied_seq.store(seq, Ordering::Relaxed);
        self.applied_ms.store(ms, Ordering::Release);
    }

    fn applied(&self) -> (u64, u64) {
        let ms = self.applied_ms.load(Ordering::Acquire);
        (ms, self.applied_seq.load(Ordering::Relaxed))
    }

    /// A read reached the stream's tail: the node is caught up as of now.
    fn reached_tail(&self) {
        self.last_caught_up_ms
            .store(self.now().0, Ordering::Relaxed);
        if !self.replayed.swap(true, Ordering::Release) {
            self.ready.send_replace(true);
        }
    }
}

/// The re-publish lock as [`Shared::take_lock`] found it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LockState {
    /// This node holds it.
    Held,
    /// Another node holds it.
    Busy,
    /// The re-publish for this epoch is done.
    Done,
}

/// Why a node re-publishes what it holds: the signal that showed Redis lost data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Loss {
    /// The epoch key is missing or differs from the one adopted.
    Epoch,
    /// The events stream is gone although this node had applied events from it.
    StreamGone,
    /// The stream's last generated id is below the id of the last event applied here.
    IdsWentBack,
    /// The stream's `entries-added` went down: the key was deleted and written again since the
    /// last probe (its new ids may well be above what this node applied).
    StreamRecreated,
    /// The last entry applied here is gone while older ones are still in the stream: an older
    /// copy of the stream, even if newer entries were written to it since.
    AppliedEntryMissing,
}

impl Loss {
    fn signal(self) -> &'static str {
        match self {
            Loss::Epoch => "epoch key missing or changed",
            Loss::StreamGone => "events stream missing",
            Loss::IdsWentBack => "stream ids went backwards",
            Loss::StreamRecreated => "events stream deleted and written again",
            Loss::AppliedEntryMissing => {
                "last applied event missing from an older copy of the stream"
            }
        }
    }
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

/// Whether the stream was deleted and written again between two probes: `entries-added` counts
/// every entry the key ever received and never goes down while the key lives (trimming keeps
/// it), so a lower count than last time is a new key. This catches what [`stream_loss`] cannot:
/// a new stream whose ids are above what this node applied. (A new key that received more
/// entries within one probe interval than the old one ever had would still pass; `None` on
/// Redis before 7, which does not report the count.)
fn stream_recreated(had: Option<u64>, now: Option<u64>) -> Option<Loss> {
    match (had, now) {
        (Some(had), Some(now)) if now < had => Some(Loss::StreamRecreated),
        _ => None,
    }
}

/// A node's part in the recovery from a data loss that is not done yet (see the module docs).
struct Recovery {
    loss: Loss,
    /// What the replay since the loss found in the stream.
    seen: Seen,
    /// The holder's marker for the adopted epoch has been read: once a read after it reaches the
    /// tail, the stream holds everything the holder re-published.
    marker_seen: bool,
}

/// What the sync task keeps across connections.
struct SyncState {
    /// Id of the last stream entry applied (`0-0`: none; the next read replays from the start).
    last_id: String,
    /// Where the last read started (the last entry applied before it). With `last_id`, the
    /// newest entry applied before any rollback that happened since the previous probe.
    read_from: String,
    /// The epoch adopted from Redis; `None` until the first connection.
    epoch: Option<String>,
    /// A recovery from a data loss in progress; carried over a dropped connection.
    recovery: Option<Recovery>,
    /// The current connection completed a read (then the backoff starts over).
    read_ok: bool,
    /// When this node last declared its lifetime in the horizon set.
    declared_ms: Option<u64>,
    /// The stream's `entries-added` at the last probe (see [`stream_recreated`]).
    entries_added: Option<u64>,
    /// The first load so far (snapshot, stream events), reported once the node is ready.
    first: ColdStart,
    /// The snapshot was tried (loaded, absent or rejected) at this node's first load.
    snapshot_tried: bool,
    /// Events this node still has to apply before asking again whether a snapshot is due.
    snapshot_due_in: u64,
    /// Not before then: another node was writing one, or the epoch was not this node's.
    snapshot_retry_at: Option<std::time::Instant>,
}

const INITIAL_BACKOFF: Duration = Duration::from_millis(50);

/// Entries per `XREAD`; a shorter reply means the read reached the tail. Large, so a replay of
/// millions of events takes few round trips (each reply is a few MB).
const READ_COUNT: usize = 10_000;

/// `XREAD COUNT READ_COUNT [BLOCK ms] STREAMS key from`, as a raw reply (see [`reply_entries`]):
/// converting millions of entries into `StreamReadReply`'s maps of strings was most of a
/// replay's time.
async fn xread<C: redis::aio::ConnectionLike>(
    conn: &mut C,
    key: &str,
    from: &str,
    block_ms: Option<usize>,
) -> redis::RedisResult<redis::Value> {
    let mut cmd = redis::cmd("XREAD");
    cmd.arg("COUNT").arg(READ_COUNT);
    if let Some(ms) = block_ms {
        cmd.arg("BLOCK").arg(ms);
    }
    cmd.arg("STREAMS").arg(key).arg(from);
    cmd.query_async(conn).await
}

/// The next batch of a backlog, read while the current one is applied: Redis serves it and the
/// connection parses it on the other core. Non-blocking, so at the tail it comes back empty at
/// once and the loop goes on to its probe and a blocking read.
struct Prefetch {
    /// The id it reads after.
    from: String,
    reply: tokio::task::JoinHandle<redis::RedisResult<redis::Value>>,
}

impl Prefetch {
    fn spawn<C>(conn: &C, key: &str, from: &str) -> Prefetch
    where
        C: redis::aio::ConnectionLike + Clone + Send + 'static,
    {
        let (mut conn, key, from) = (conn.clone(), key.to_owned(), from.to_owned());
        let reply = {
            let from = from.clone();
            tokio::spawn(async move { xread(&mut conn, &key, &from, None).await })
        };
        Prefetch { from, reply }
    }
}

/// Replays, then tails the stream; reconnects with capped exponential backoff, which starts over
/// after a connection that completed a read.
async fn sync_loop(shared: Arc<Shared>) {
    let initial = INITIAL_BACKOFF.min(shared.config.max_backoff);
    let mut backoff = initial;
    let mut state = SyncState {
        last_id: "0-0".to_string(),
        read_from: "0-0".to_string(),
        epoch: None,
        recovery: None,
        read_ok: false,
        declared_ms: None,
        entries_added: None,
        first: ColdStart::default(),
        snapshot_tried: false,
        snapshot_due_in: 0,
        snapshot_retry_at: None,
    };
    loop {
        state.read_ok = false;
        if let Err(e) = sync_session(&shared, &mut state).await {
            let phase = SyncPhase::from_error(&e);
            let was_connected = shared.connected.swap(false, Ordering::Relaxed);
            // One line per change of state, not one per retry.
            if was_connected || *shared.phase.lock() != phase {
                let replayed = shared.replayed.load(Ordering::Relaxed);
                if replayed {
                    tracing::warn!(target: "sealed_sessions::sync", "{phase}; validating from the local list");
                } else {
                    tracing::warn!(target: "sealed_sessions::sync", "{phase}; session routes answer 503 until the first replay is done");
                }
            }
            shared.set_phase(phase);
            shared.caught_up.store(false, Ordering::Relaxed);
        }
        if state.read_ok {
            backoff = initial;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(shared.config.max_backoff);
    }
}

/// What [`PROBE`] returns.
struct Probe {
    epoch: Option<String>,
    last_generated: Option<String>,
    length: u64,
    marker: Option<String>,
    /// How many entries the stream key has ever received (Redis 7+): only grows while the key
    /// lives, trims included.
    entries_added: Option<u64>,
    /// The entry this node applied last is missing from a stream that still holds older ones.
    applied_missing: bool,
}

async fn probe(
    shared: &Shared,
    conn: &mut RedisConn,
    applied: [&str; 2],
) -> redis::RedisResult<Probe> {
    let (epoch, last_generated, length, marker, entries_added, missing): (
        Option<String>,
        Option<String>,
        u64,
        Option<String>,
        Option<u64>,
        u8,
    ) = redis::cmd("EVAL")
        .arg(PROBE)
        .arg(3)
        .arg(&shared.keys.epoch)
        .arg(&shared.keys.events)
        .arg(&shared.keys.republished)
        .arg(&applied[..])
        .query_async(conn)
        .await?;
    Ok(Probe {
        epoch,
        last_generated,
        length,
        marker,
        entries_added,
        applied_missing: missing == 1,
    })
}

/// Adopts an epoch (see [`ADOPT`]): the first at a node's first connection, a new one after a
/// loss. Returns the epoch adopted.
async fn adopt_epoch(
    shared: &Shared,
    conn: &mut RedisConn,
    had: Option<&str>,
) -> redis::RedisResult<String> {
    redis::cmd("EVAL")
        .arg(ADOPT)
        .arg(1)
        .arg(&shared.keys.epoch)
        .arg(had.unwrap_or(""))
        .arg(format!("{:032x}", rand::random::<u128>()))
        .query_async(conn)
        .await
}

/// Declares this node's lifetime at each connection and then every quarter lifetime (at most
/// every minute), so its declaration never lapses while it runs.
async fn keep_declared(
    shared: &Shared,
    state: &mut SyncState,
    conn: &mut RedisConn,
    fresh_connection: bool,
) -> redis::RedisResult<()> {
    let now = shared.now().0;
    let every = (duration_ms(shared.config.absolute_timeout) / 4).min(60_000);
    let due = fresh_connection
        || state
            .declared_ms
            .is_none_or(|at| now.saturating_sub(at) >= every);
    if due {
        shared.declare_horizon(conn).await?;
        state.declared_ms = Some(now);
    }
    Ok(())
}

/// Starts a recovery from `loss`: a new epoch, a replay from the start, and this node's part
/// in the re-publish still to do.
async fn begin_recovery(
    shared: &Shared,
    state: &mut SyncState,
    conn: &mut RedisConn,
    loss: Loss,
) -> redis::RedisResult<()> {
    shared.caught_up.store(false, Ordering::Relaxed);
    let adopted = adopt_epoch(shared, conn, state.epoch.as_deref()).await?;
    tracing::warn!(target: "sealed_sessions::sync", signal = loss.signal(), "Redis lost revocation data; replaying, and re-publishing what the stream lacks");
    state.epoch = Some(adopted);
    state.last_id = "0-0".into();
    state.read_from = "0-0".into();
    shared.set_applied("0-0");
    state.recovery = Some(Recovery {
        loss,
        seen: Seen::default(),
        marker_seen: false,
    });
    Ok(())
}

/// This node's turn in a recovery, before a read: when the holder's marker is there, wait for
/// the replay to reach the tail; otherwise try the lock, and re-publish in full if taken.
async fn recovery_step(
    shared: &Shared,
    state: &mut SyncState,
    conn: &mut RedisConn,
    marker: Option<&str>,
) -> redis::RedisResult<()> {
    let Some(rec) = state.recovery.as_mut() else {
        return Ok(());
    };
    if rec.marker_seen {
        return Ok(());
    }
    if marker.is_some() && marker == state.epoch.as_deref() {
        rec.marker_seen = true;
        return Ok(());
    }
    match shared
        .take_lock(conn, state.epoch.as_deref().unwrap_or(""))
        .await?
    {
        LockState::Held => {}
        // Another node holds the lock: it re-publishes, this node replays.
        LockState::Busy => return Ok(()),
        // The holder finished since the probe: this node re-publishes only what it lacks.
        LockState::Done => {
            rec.marker_seen = true;
            return Ok(());
        }
    }
    let entries = shared.local.live_entries(shared.now());
    let republished = shared.republish(conn, &entries, true).await?;
    let _: i64 = redis::cmd("EVAL")
        .arg(REPUBLISHED)
        .arg(2)
        .arg(&shared.keys.republished)
        .arg(&shared.keys.republish_lock)
        .arg(state.epoch.as_deref().unwrap_or(""))
        .arg(&shared.node_id)
        .query_async(conn)
        .await?;
    tracing::warn!(target: "sealed_sessions::sync", republished, signal = rec.loss.signal(), "re-published every live entry held here (this node took the re-publish lock)");
    state.recovery = None;
    Ok(())
}

/// This node's turn in a recovery, after a read that reached the tail past the holder's
/// marker: re-publishes only what the stream lacks.
async fn finish_recovery(
    shared: &Shared,
    state: &mut SyncState,
    conn: &mut RedisConn,
) -> redis::RedisResult<()> {
    let Some(rec) = state.recovery.as_ref().filter(|r| r.marker_seen) else {
        return Ok(());
    };
    let missing: Vec<LiveEntry> = shared
        .local
        .live_entries(shared.now())
        .into_iter()
        .filter(|e| !rec.seen.covers(e))
        .collect();
    let republished = shared.republish(conn, &missing, false).await?;
    tracing::info!(target: "sealed_sessions::sync", republished, signal = rec.loss.signal(), "another node re-published after the data loss; re-published only the live entries the stream lacked");
    state.recovery = None;
    Ok(())
}

/// Re-publishes every live entry after the retry queue overflowed.
async fn pay_republish_owed(shared: &Shared, conn: &mut RedisConn) -> redis::RedisResult<()> {
    if !shared.republish_owed.swap(false, Ordering::Relaxed) {
        return Ok(());
    }
    let entries = shared.local.live_entries(shared.now());
    match shared.republish(conn, &entries, false).await {
        Ok(republished) => {
            tracing::info!(target: "sealed_sessions::sync", republished, "re-published the live entries after the retry queue overflowed");
            Ok(())
        }
        Err(e) => {
            shared.republish_owed.store(true, Ordering::Relaxed);
            Err(e)
        }
    }
}

/// One connected stretch of the sync loop; returns when the connection fails.
async fn sync_session(shared: &Arc<Shared>, state: &mut SyncState) -> redis::RedisResult<()> {
    let mut conn = shared
        .client
        .open(
            shared.config.op_timeout,
            shared.config.block + Duration::from_secs(2),
        )
        .await?;
    keep_declared(shared, state, &mut conn, true).await?;
    // A reconnect may follow a failover that lost what the old primary took last.
    let resent = shared.resend_recent(&mut conn).await?;
    if resent > 0 {
        tracing::debug!(target: "sealed_sessions::sync", resent, "wrote this node's recent revocations again after reconnecting");
    }
    if !shared.connected.swap(true, Ordering::Relaxed) {
        tracing::info!(target: "sealed_sessions::sync", "connected to Redis");
    }
    let block_ms = usize::try_from(duration_ms(shared.config.block)).unwrap_or(1000);
    // Set when a read from `0-0` begins, for the progress log.
    let mut replay: Option<(u64, u64, std::time::Instant)> = None;
    let mut prefetch: Option<Prefetch> = None;
    // A read blocks only once the previous one reached the tail: the first read after a
    // connect or a snapshot load returns at once, so a node whose snapshot has nothing after
    // it is ready without waiting out a block.
    let mut at_tail = false;
    loop {
        keep_declared(shared, state, &mut conn, false).await?;
        // Sentinel failed over while this node stayed connected to the deposed primary, which
        // takes writes until Sentinel demotes it: reconnect both connections to the new one
        // (and write the recent revocations again there, see `resend_window`).
        if shared.client.primary_moved(shared.config.op_timeout).await {
            shared.writer.reset();
            tracing::warn!(target: "sealed_sessions::sync", "Sentinel names a new primary; reconnecting");
            return Err(redis::RedisError::from((
                redis::ErrorKind::Io,
                "Sentinel names a new primary",
            )));
        }
        // Detects a Redis that came back without (some of) our data; see the module docs.
        let p = probe(shared, &mut conn, [&state.last_id, &state.read_from]).await?;
        match &state.epoch {
            // A node's first epoch is adopted, not a loss: all it holds are its own writes,
            // which the retry queue (or an owed re-publish) brings to Redis.
            None => state.epoch = Some(adopt_epoch(shared, &mut conn, None).await?),
            Some(had) => {
                let loss = (p.epoch.as_deref() != Some(had.as_str()))
                    .then_some(Loss::Epoch)
                    .or_else(|| stream_loss(&state.last_id, p.last_generated.as_deref()))
                    .or_else(|| stream_recreated(state.entries_added, p.entries_added))
                    .or_else(|| p.applied_missing.then_some(Loss::AppliedEntryMissing));
                if let Some(loss) = loss {
                    begin_recovery(shared, state, &mut conn, loss).await?;
                }
            }
        }
        state.entries_added = p.entries_added;
        recovery_step(shared, state, &mut conn, p.marker.as_deref()).await?;
        pay_republish_owed(shared, &mut conn).await?;
        if !shared.pending.lock().is_empty() && shared.flush_pending().await.is_err() {
            return Err(redis::RedisError::from((
                redis::ErrorKind::Io,
                "pending revocations not accepted",
            )));
        }
        let from_snapshot = load_snapshot_once(shared, state, &mut conn).await?;
        if (state.last_id == "0-0" || from_snapshot) && replay.is_none() {
            replay = Some((0, p.length, std::time::Instant::now()));
            if p.length > 0 && !from_snapshot {
                tracing::info!(target: "sealed_sessions::sync", events = p.length, "replaying the revocation stream: {} events", p.length);
            }
        }
        // The read prefetched while the previous batch was applied, if it still continues from
        // where this node is (a loss just found restarts the replay from `0-0`).
        let reply = match prefetch.take() {
            Some(p) if p.from == state.last_id => p.reply.await.map_err(|e| {
                redis::RedisError::from((redis::ErrorKind::Io, "stream read task", e.to_string()))
            })??,
            Some(p) => {
                p.reply.abort();
                xread(
                    &mut conn,
                    &shared.keys.events,
                    &state.last_id,
                    at_tail.then_some(block_ms),
                )
                .await?
            }
            None => {
                xread(
                    &mut conn,
                    &shared.keys.events,
                    &state.last_id,
                    at_tail.then_some(block_ms),
                )
                .await?
            }
        };
        state.read_ok = true;
        state.read_from.clone_from(&state.last_id);
        let entries = reply_entries(&reply);
        let n = entries.len();
        at_tail = n < READ_COUNT;
        let last = entries.last().and_then(entry_parts).map(|(id, _)| id);
        if let (true, Some(last)) = (n >= READ_COUNT, last) {
            // A backlog: Redis reads the next batch while this one is applied.
            prefetch = Some(Prefetch::spawn(&conn, &shared.keys.events, last));
        }
        if let Some(last) =
            shared.apply_entries(entries, state.recovery.as_mut().map(|r| &mut r.seen))
        {
            state.last_id = last.to_owned();
            shared.set_applied(&state.last_id);
        }
        if !shared.replayed.load(Ordering::Relaxed) {
            state.first.stream_events += n as u64;
        }
        state.snapshot_due_in = state.snapshot_due_in.saturating_sub(n as u64);
        if n >= READ_COUNT {
            // Still working through a backlog: not caught up, and not counted as contact.
            if let Some((applied, total, _)) = replay.as_mut() {
                *applied += n as u64;
                shared.set_phase(SyncPhase::Replaying {
                    applied: *applied,
                    total: *total,
                });
            }
            continue;
        }
        finish_recovery(shared, state, &mut conn).await?;
        if let Some((applied, _, began)) = replay.take().filter(|(a, _, _)| a + n as u64 > 0) {
            let applied = applied + n as u64;
            tracing::info!(target: "sealed_sessions::sync", events = applied, took_ms = u64::try_from(began.elapsed().as_millis()).unwrap_or(u64::MAX), "replayed the revocation stream");
        }
        if state.recovery.is_none() && !shared.caught_up.swap(true, Ordering::Relaxed) {
            shared.set_phase(SyncPhase::Synced);
        }
        if !shared.replayed.load(Ordering::Relaxed) {
            let first = ColdStart {
                took: shared.started.elapsed(),
                ..state.first.clone()
            };
            tracing::info!(target: "sealed_sessions::sync", snapshot_entries = first.snapshot_entries, stream_events = first.stream_events, took_ms = u64::try_from(first.took.as_millis()).unwrap_or(u64::MAX), "revocation list loaded");
            *shared.cold_start.lock() = Some(first);
        }
        // This wakes `connect`, whose caller may ask `sync_status` at once.
        shared.reached_tail();
        maybe_write_snapshot(shared, state, &mut conn).await?;
    }
}

/// At a node's first load, before its first read: loads the snapshot of the current epoch if
/// Redis holds one, and moves the read position to the snapshot's stream id. Returns whether it
/// did. A snapshot that cannot be used is logged and left alone: the stream is replayed from
/// its start, as without one.
async fn load_snapshot_once(
    shared: &Shared,
    state: &mut SyncState,
    conn: &mut RedisConn,
) -> redis::RedisResult<bool> {
    if state.snapshot_tried
        || state.last_id != "0-0"
        || state.recovery.is_some()
        || shared.replayed.load(Ordering::Relaxed)
    {
        return Ok(false);
    }
    let Some(epoch) = state.epoch.clone() else {
        return Ok(false);
    };
    shared.set_phase(SyncPhase::LoadingSnapshot);
    let began = std::time::Instant::now();
    let loaded = snapshot::load(
        conn,
        &shared.keys.snapshot,
        &epoch,
        &shared.local,
        shared.now(),
    )
    .await?;
    state.snapshot_tried = true;
    let took_ms = u64::try_from(began.elapsed().as_millis()).unwrap_or(u64::MAX);
    match loaded {
        LoadOutcome::Absent => Ok(false),
        LoadOutcome::Loaded {
            id,
            sessions,
            users,
        } => {
            tracing::info!(target: "sealed_sessions::sync", sessions, users, stream_id = %id, took_ms, "loaded the revocation snapshot; reading the stream after it");
            state.first.snapshot_entries = sessions + users;
            state.read_from.clone_from(&id);
            shared.set_applied(&id);
            state.last_id = id;
            Ok(true)
        }
        LoadOutcome::Rejected(why) => {
            match &why {
                Rejected::OtherEpoch => {
                    tracing::info!(target: "sealed_sessions::sync", key = %shared.keys.snapshot.header(), "the revocation snapshot in Redis belongs to another epoch (written before a data loss); replaying the whole stream");
                }
                _ => {
                    tracing::error!(target: "sealed_sessions::sync", key = %shared.keys.snapshot.header(), "revocation snapshot rejected: {why}; replaying the whole stream");
                }
            }
            state.first.snapshot_rejected = Some(why.to_string());
            Ok(false)
        }
    }
}

/// After a read that reached the tail: when this node may write a snapshot and one may be due,
/// asks Redis (one script: due, and the lock) and starts the writer if this node got the lock.
async fn maybe_write_snapshot(
    shared: &Arc<Shared>,
    state: &mut SyncState,
    conn: &mut RedisConn,
) -> redis::RedisResult<()> {
    let every = shared.config.snapshot_every;
    if every == 0
        || state.recovery.is_some()
        || state.snapshot_due_in > 0
        || state.last_id == "0-0"
        || !shared.caught_up.load(Ordering::Relaxed)
        || state
            .snapshot_retry_at
            .is_some_and(|t| std::time::Instant::now() < t)
        || shared
            .snapshot_task
            .lock()
            .as_ref()
            .is_some_and(|t| !t.is_finished())
    {
        return Ok(());
    }
    let Some(epoch) = state.epoch.clone() else {
        return Ok(());
    };
    let lock_ttl_ms = duration_ms(shared.config.republish_lock_ttl).max(1);
    let who = snapshot::Writer {
        node_id: &shared.node_id,
        epoch: &epoch,
        lock_ttl_ms,
    };
    state.snapshot_retry_at = None;
    match snapshot::try_lock(conn, &shared.keys.snapshot, &who, every).await? {
        Due::NotYet(remaining) => state.snapshot_due_in = remaining,
        Due::Busy | Due::OtherEpoch => {
            state.snapshot_retry_at =
                Some(std::time::Instant::now() + shared.config.block.max(Duration::from_secs(1)));
        }
        Due::Held { added, length } => {
            // Every event up to `last_id` is applied: the snapshot covers it (see the
            // snapshot module on why entries applied later may be included).
            let task = tokio::spawn(write_snapshot(
                shared.clone(),
                epoch,
                state.last_id.clone(),
                (added, length),
            ));
            *shared.snapshot_task.lock() = Some(task);
        }
    }
    Ok(())
}

/// Writes a snapshot on a connection of its own (the sync connection spends its time in
/// blocking reads, which would hold the writes up), while the sync task goes on.
async fn write_snapshot(
    shared: Arc<Shared>,
    epoch: String,
    id: String,
    stream: (Option<u64>, u64),
) {
    let began = std::time::Instant::now();
    let lock_ttl_ms = duration_ms(shared.config.republish_lock_ttl).max(1);
    let who = snapshot::Writer {
        node_id: &shared.node_id,
        epoch: &epoch,
        lock_ttl_ms,
    };
    let keys = &shared.keys.snapshot;
    let result = async {
        let mut conn = shared
            .client
            .open(shared.config.op_timeout, shared.config.republish_lock_ttl)
            .await?;
        let written = snapshot::write(
            &mut conn,
            keys,
            &who,
            &id,
            stream,
            &shared.local,
            shared.now(),
        )
        .await;
        if !matches!(written, Ok(Written::Flipped { .. })) {
            let _ = snapshot::release(&mut conn, keys, &shared.node_id).await;
        }
        written
    }
    .await;
    let took_ms = u64::try_from(began.elapsed().as_millis()).unwrap_or(u64::MAX);
    match result {
        Ok(Written::Flipped {
            sessions,
            users,
            chunks,
            seq,
        }) => {
            tracing::info!(target: "sealed_sessions::sync", sessions, users, chunks, seq, stream_id = %id, took_ms, "wrote a revocation snapshot");
        }
        Ok(Written::Abandoned(why)) => {
            tracing::warn!(target: "sealed_sessions::sync", took_ms, "revocation snapshot abandoned: {why}");
        }
        Err(e) => {
            tracing::warn!(target: "sealed_sessions::sync", took_ms, "writing the revocation snapshot failed: {e}");
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
                Ok(_) => {
                    self.shared.remember(p);
                    Ok(())
                }
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
                .arg(3)
                .arg(&self.shared.keys.events)
                .arg(self.shared.keys.version(user_id))
                .arg(&self.shared.keys.horizon)
                .arg("u")
                .arg(user_id)
                .arg(until.0)
                .arg(abs)
                .arg(proposal);
            match self.shared.send(cmd).await {
                Ok(v) => {
                    let v: u64 = v.parse().unwrap_or(proposal).max(proposal);
                    local.raise_user_version(user_id, v, until, now);
                    self.shared.remember(Pending::Version {
                        user: user_id.to_owned(),
                        version: v,
                        until,
                    });
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
        // Counted from the last read that reached the tail: a node replaying a backlog is as far
        // behind as the backlog, however often Redis answers.
        let last = s
            .last_caught_up_ms
            .load(Ordering::Relaxed)
            .max(s.started_ms);
        SyncStatus {
            backend: "redis",
            synced,
            replayed: s.replayed.load(Ordering::Relaxed),
            lag_ms: s.now().0.saturating_sub(last),
        }
    }

    #[inline]
    fn ready(&self) -> bool {
        self.shared.replayed.load(Ordering::Acquire)
    }

    fn barrier(&self) -> BoxFuture<'_, Result<(), RevocationError>> {
        Box::pin(async move {
            let s = &self.shared;
            let mut cmd = redis::cmd("XREVRANGE");
            cmd.arg(&s.keys.events)
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(1);
            // Policy, as for `current_version`: when Redis cannot answer, the local list decides
            // (`--max-staleness` bounds how long a node may run on it).
            let Ok(last) = s.writer.query::<Vec<(String, redis::Value)>>(cmd).await else {
                return Ok(());
            };
            let Some(target) = last.first().and_then(|(id, _)| parse_stream_id(id)) else {
                return Ok(());
            };
            let deadline = tokio::time::Instant::now() + s.config.op_timeout;
            while s.applied() < target {
                if tokio::time::Instant::now() >= deadline {
                    return Err(RevocationError::Unavailable(StoreError::behind()));
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{
        Event, Loss, parse_event, parse_stream_id, parse_u64, stream_loss, stream_recreated,
    };
    use crate::claims::SessionId;
    use crate::clock::UnixMillis;
    use redis::Value;

    fn fields(kv: &[&str]) -> Vec<Value> {
        kv.iter()
            .map(|s| Value::BulkString(s.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn events_parse_from_raw_fields() {
        let sid = SessionId::from_bytes([0xab; 16]);
        let hex = sid.to_string();
        let f = fields(&["k", "s", "id", &hex, "until", "1700000000000"]);
        assert_eq!(
            parse_event(&f),
            Some(Event::Session {
                id: sid,
                until: UnixMillis(1_700_000_000_000)
            })
        );
        let f = fields(&["k", "u", "id", "alice", "v", "42", "until", "5"]);
        assert_eq!(
            parse_event(&f),
            Some(Event::User {
                user: "alice",
                version: 42,
                until: UnixMillis(5)
            })
        );
        // Unknown kinds, missing fields, bad numbers and bad ids are skipped, not a panic.
        for bad in [
            vec!["k", "x", "id", "a", "until", "1"],
            vec!["k", "s", "id", "zz", "until", "1"],
            vec!["k", "s", "id", hex.as_str(), "until", "+1"],
            vec!["k", "u", "id", "alice", "until", "1"],
            vec![
                "k",
                "u",
                "id",
                "alice",
                "v",
                "99999999999999999999999",
                "until",
                "1",
            ],
            vec!["k", "s", "id"],
        ] {
            assert_eq!(parse_event(&fields(&bad)), None, "{bad:?}");
        }
        assert_eq!(parse_u64(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_u64(b"18446744073709551616"), None);
        assert_eq!(parse_u64(b""), None);
    }

    #[test]
    fn a_lower_entries_added_is_a_recreated_stream() {
        assert_eq!(
            stream_recreated(Some(5), Some(1)),
            Some(Loss::StreamRecreated)
        );
        assert_eq!(stream_recreated(Some(5), Some(5)), None);
        assert_eq!(stream_recreated(Some(5), Some(9)), None);
        // Redis before 7, or no stream: nothing to compare.
        assert_eq!(stream_recreated(None, Some(1)), None);
        assert_eq!(stream_recreated(Some(5), None), None);
    }

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
