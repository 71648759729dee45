//! The compacted snapshot of the revocation list in Redis: a node starting against millions of
//! revocations loads them in bulk, then reads the stream only from the snapshot's stream id.
//!
//! # Why
//! Replaying the stream costs a node about 2.5 µs per event, nearly all of it `redis-rs` parsing
//! the `XREAD` reply (nine values and nine allocations per event): 1,000,000 revocations took
//! 2.7–3.2 s, 10,000,000 took 47 s. A snapshot stores each revoked session in 20 fixed-width
//! bytes, read in place from a few large `GET` replies with no allocation per entry; the
//! README's "Capacity planning" records what loading costs.
//!
//! # Layout (every key carries the stream's hash tag, so it is in the same Cluster slot)
//! - `<base>:snapshot`, a hash, the **header**: format `v`, the `epoch` it belongs to, the
//!   stream `id` it covers, its generation `gen`, the `sessions`/`users` counts, the stream's
//!   `added` (entries-added, Redis 7+) and `length` when it was taken, `seq` (how many
//!   snapshots were ever flipped in), `writer` (node id), `at` (ms), and `digests`: per chunk,
//!   its length (u32 LE) and SHA-256.
//! - `<base>:snapshot:<gen>:<i>`, strings, the **chunks**: magic `SSSNAPC1`, kind (1 sessions,
//!   2 users), count (u32 LE), then the records. A session is its 16-byte id and its expiry in
//!   Unix seconds (u32 LE); a user is its id's length (u32 LE), the id, the minimum version and
//!   the expiry in Unix seconds (u64 LE each). At most 1,000,000 sessions (20 MB) or 16 MB of
//!   users per chunk, far below Redis's 512 MB per value.
//! - `<base>:snapshot-lock`: who is writing one (`SET NX PX` semantics, inside a script).
//!
//! # Writing: one node, never a torn snapshot
//! A synced node asks [`TRY_LOCK`] whether a snapshot is due — the stream received at least
//! `snapshot_every` events since the current one, and at least a tenth as many as it holds
//! entries — and takes the lock in the same step (a second node finds it not due any more).
//! It writes the chunks of a new
//! generation with a TTL (a writer that dies leaves nothing for long), then [`FLIP`] checks it
//! still holds the lock and the epoch is unchanged, makes the chunks permanent, replaces the
//! header, and lets the previous generation expire after [`GRACE_MS`] (a node loading it
//! finishes). A reader sees the old header or the new one, each with all its chunks.
//!
//! Why a tenth: a node loads a snapshot entry in about 0.3–0.5 µs and replays a stream event in
//! 2.5–6 µs (measured, `examples/cold_start.rs`), so a tail of a tenth of the snapshot costs
//! about as much again as the snapshot: a cold start is at most about twice the snapshot's
//! load. The price is at most ten entries written to Redis per event, on one node.
//!
//! # Why the snapshot plus the stream after its id is everything in force
//! - The writer has applied every event up to the header's id before it walks its list (its
//!   sync task applied them before starting the writer). It may also hold later ones — the
//!   sync task keeps applying while the writer walks, and its own writes are applied locally
//!   first — but every entry only adds a restriction (an id revoked, a version raised to the
//!   max), so including more than the id covers never lifts one: reading the stream again
//!   from the id applies the same events twice, which is idempotent.
//! - Trimming: the stream is trimmed from its head at `now − horizon`, the horizon being the
//!   longest lifetime any deployment declared. An event trimmed between the snapshot's id and
//!   the stream's first entry was recorded before `now − horizon`, and its `until` is at most
//!   its record time plus the writer's declared lifetime (bump time + absolute timeout, or a
//!   token's expiry, which is sooner): it has expired. A full replay misses exactly the same
//!   events. So an old snapshot is never a gap of anything in force; its own expired entries
//!   are dropped at load.
//! - Loss: a snapshot is loaded only when its epoch is the epoch Redis holds now. Every data
//!   loss the sync detects moves to a new epoch, and a `FLUSHALL` takes the header with it, so
//!   a snapshot of a lost or replaced stream (whose ids say nothing about the new one) is never
//!   tailed from. A snapshot whose id is above the stream's last id (a rollback nobody has
//!   noticed yet) makes the loading node's next probe see the ids gone backwards: the usual
//!   recovery follows. Between a loss and the first probe that sees it (at most a block
//!   period on the nodes already running) a starting node can take the old epoch's snapshot,
//!   as it can take the old epoch's stream without one; the epoch change then replays it.
//! - A header or chunk that does not parse, whose length or digest does not match, or whose
//!   chunk is gone, is rejected before anything is applied from that chunk; the node replays
//!   the stream from the start. Chunks applied before the bad one stay applied: they are real
//!   revocations of this epoch, and the replay is idempotent.

use std::collections::HashMap;

use ring::digest;

use super::memory::MemoryRevocations;
use crate::clock::UnixMillis;
use crate::redis_topology::RedisConn;

/// The header's format version.
const FORMAT: &[u8] = b"1";
const CHUNK_MAGIC: &[u8; 8] = b"SSSNAPC1";
/// Magic, kind, count.
const CHUNK_HEAD: usize = 13;
const KIND_SESSIONS: u8 = 1;
const KIND_USERS: u8 = 2;
/// A revoked session: 16-byte id, expiry in Unix seconds (u32 LE), as the in-process table
/// holds it.
const SESSION_RECORD: usize = 20;
/// Sessions per chunk (20 MB values): the loader applies one while Redis sends the next.
const CHUNK_SESSIONS: usize = 1_000_000;
/// Bytes of user records per chunk.
const CHUNK_USER_BYTES: usize = 16 << 20;
/// Per chunk in the header's `digests`: length (u32 LE) and SHA-256.
const DIGEST_ENTRY: usize = 4 + 32;
/// New chunks expire this long after they are written unless [`FLIP`] keeps them.
const WRITE_TTL_MS: u64 = 10 * 60 * 1000;
/// How long the chunks of a replaced snapshot stay, so a node still loading them finishes.
pub(crate) const GRACE_MS: u64 = 2 * 60 * 1000;

/// Whether a snapshot is due and, if so, takes the lock. Returns `{state, remaining, added,
/// length}`: state 1 this node holds the lock, 0 another node does, 2 not due (`remaining`
/// more events needed), 3 Redis's epoch is not the caller's. `added` is the stream's
/// entries-added (-1 before Redis 7), `length` its length.
///
/// KEYS: header, lock, events, epoch
/// ARGV: node id, lock ttl ms, snapshot_every, epoch
const TRY_LOCK: &str = r"
if redis.call('GET', KEYS[4]) ~= ARGV[4] then return {3, 0, -1, 0} end
local ok, info = pcall(redis.call, 'XINFO', 'STREAM', KEYS[3])
local added, len = false, 0
if ok then
  for i = 1, #info - 1, 2 do
    if info[i] == 'entries-added' then added = info[i + 1] end
    if info[i] == 'length' then len = info[i + 1] end
  end
end
local every = tonumber(ARGV[3])
local grown, need = added or len, every
if redis.call('TYPE', KEYS[1]).ok == 'hash' and redis.call('HGET', KEYS[1], 'epoch') == ARGV[4] then
  local h = redis.call('HMGET', KEYS[1], 'added', 'length', 'sessions', 'users')
  local h_added = tonumber(h[1])
  if added and h_added then grown = added - h_added else grown = len - (tonumber(h[2]) or 0) end
  local entries = (tonumber(h[3]) or 0) + (tonumber(h[4]) or 0)
  need = math.max(every, math.floor(entries / 10))
end
local a = added or -1
if grown < need then return {2, need - grown, a, len} end
local cur = redis.call('GET', KEYS[2])
if cur == false or cur == ARGV[1] then
  redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
  return {1, 0, a, len}
end
return {0, 0, a, len}
";

/// Extends the lock while this node holds it; 1 when it does.
///
/// KEYS: lock
/// ARGV: node id, ttl ms
const EXTEND: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
";

/// Releases the lock if this node holds it.
///
/// KEYS: lock
/// ARGV: node id
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
";

/// Puts a written snapshot in place. Returns the new `seq` (≥ 1), 0 when this node no longer
/// holds the lock, -1 when the epoch changed, -2 when a chunk is missing (expired).
///
/// KEYS: header, lock, epoch, the n new chunks, then the previous snapshot's chunks
/// ARGV: node id, epoch, n, grace ms, then the header's field/value pairs
const FLIP: &str = r"
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
if redis.call('GET', KEYS[3]) ~= ARGV[2] then return -1 end
local n = tonumber(ARGV[3])
for i = 4, 3 + n do
  if redis.call('EXISTS', KEYS[i]) == 0 then return -2 end
end
for i = 4, 3 + n do redis.call('PERSIST', KEYS[i]) end
for i = 4 + n, #KEYS do
  if redis.call('PTTL', KEYS[i]) == -1 then redis.call('PEXPIRE', KEYS[i], ARGV[4]) end
end
local seq = 0
if redis.call('TYPE', KEYS[1]).ok == 'hash' then
  seq = tonumber(redis.call('HGET', KEYS[1], 'seq')) or 0
end
redis.call('DEL', KEYS[1])
local fields = {}
for i = 5, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], 'seq', string.format('%d', seq + 1), unpack(fields))
redis.call('DEL', KEYS[2])
return seq + 1
";

/// The snapshot's key names, and the keys of the stream and epoch it goes with.
pub(crate) struct SnapshotKeys {
    header: String,
    lock: String,
    chunk_prefix: String,
    events: String,
    epoch: String,
}

impl SnapshotKeys {
    /// The keys beside the stream `events` and the epoch key `epoch`, for `base` =
    /// `<prefix>{<tag>}`.
    pub(crate) fn new(base: &str, events: &str, epoch: &str) -> SnapshotKeys {
        SnapshotKeys {
            header: format!("{base}:snapshot"),
            lock: format!("{base}:snapshot-lock"),
            chunk_prefix: format!("{base}:snapshot:"),
            events: events.to_owned(),
            epoch: epoch.to_owned(),
        }
    }

    /// The header's key, for logs.
    pub(crate) fn header(&self) -> &str {
        &self.header
    }

    fn chunk(&self, generation: &str, i: usize) -> String {
        format!("{}{generation}:{i}", self.chunk_prefix)
    }
}

/// Why a snapshot in Redis was not used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Rejected {
    /// It belongs to another epoch (written before a data loss): its stream id says nothing
    /// about the stream Redis holds now.
    #[error("the snapshot belongs to another epoch")]
    OtherEpoch,
    /// It does not parse or does not match its digests.
    #[error("corrupt snapshot: {0}")]
    Corrupt(String),
    /// A chunk it names is gone (replaced twice while this node was loading).
    #[error("snapshot chunk {0} is missing")]
    ChunkMissing(usize),
}

/// What [`load`] did.
#[derive(Debug)]
pub(crate) enum LoadOutcome {
    /// No snapshot in Redis.
    Absent,
    /// Loaded: the stream id to read on from, and how many entries came from it.
    Loaded {
        id: String,
        sessions: u64,
        users: u64,
    },
    /// A snapshot is there but was not used; the caller replays the stream from the start.
    Rejected(Rejected),
}

/// The header, as read from Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Header {
    epoch: String,
    id: String,
    generation: String,
    chunks: Vec<(u32, [u8; 32])>,
    sessions: u64,
    users: u64,
}

fn corrupt(what: impl Into<String>) -> Rejected {
    Rejected::Corrupt(what.into())
}

impl Header {
    fn parse(fields: &HashMap<String, Vec<u8>>) -> Result<Header, Rejected> {
        let text = |name: &str| -> Result<&str, Rejected> {
            let v = fields
                .get(name)
                .ok_or_else(|| corrupt(format!("header field {name} missing")))?;
            std::str::from_utf8(v).map_err(|_| corrupt(format!("header field {name} not text")))
        };
        let number = |name: &str| -> Result<u64, Rejected> {
            text(name)?
                .parse()
                .map_err(|_| corrupt(format!("header field {name} not a number")))
        };
        if fields.get("v").map(Vec::as_slice) != Some(FORMAT) {
            return Err(corrupt("unknown header format"));
        }
        let id = text("id")?;
        if super::parse_stream_id(id).is_none() {
            return Err(corrupt("header stream id does not parse"));
        }
        let generation = text("gen")?;
        if generation.is_empty() || !generation.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(corrupt("header generation is not hex"));
        }
        let digests = fields
            .get("digests")
            .ok_or_else(|| corrupt("header field digests missing"))?;
        if digests.len() % DIGEST_ENTRY != 0 {
            return Err(corrupt("header digests have a partial entry"));
        }
        let chunks = digests
            .chunks_exact(DIGEST_ENTRY)
            .map(|d| {
                let (len, sha) = d.split_at(4);
                let mut l = [0u8; 4];
                l.copy_from_slice(len);
                let mut s = [0u8; 32];
                s.copy_from_slice(sha);
                (u32::from_le_bytes(l), s)
            })
            .collect();
        Ok(Header {
            epoch: text("epoch")?.to_owned(),
            id: id.to_owned(),
            generation: generation.to_owned(),
            chunks,
            sessions: number("sessions")?,
            users: number("users")?,
        })
    }
}

/// A chunk's records, checked against their count.
enum Records<'a> {
    Sessions(&'a [u8]),
    Users(Vec<(&'a str, u64, u64)>),
}

/// Parses a chunk whose digest matched. Users are parsed in full before any is applied.
fn parse_chunk(b: &[u8]) -> Result<Records<'_>, Rejected> {
    if b.len() < CHUNK_HEAD || &b[..8] != CHUNK_MAGIC {
        return Err(corrupt("chunk magic"));
    }
    let mut count = [0u8; 4];
    count.copy_from_slice(&b[9..13]);
    let count = u32::from_le_bytes(count) as usize;
    let records = &b[CHUNK_HEAD..];
    match b[8] {
        KIND_SESSIONS => {
            if Some(records.len()) != count.checked_mul(SESSION_RECORD) {
                return Err(corrupt("session chunk length does not match its count"));
            }
            Ok(Records::Sessions(records))
        }
        KIND_USERS => {
            let mut users = Vec::with_capacity(count.min(records.len() / 20));
            let mut rest = records;
            for _ in 0..count {
                let (len, r) = rest
                    .split_first_chunk::<4>()
                    .ok_or_else(|| corrupt("user record cut short"))?;
                let len = u32::from_le_bytes(*len) as usize;
                if r.len() < len.saturating_add(16) {
                    return Err(corrupt("user record cut short"));
                }
                let (name, r) = r.split_at(len);
                let name = std::str::from_utf8(name).map_err(|_| corrupt("user id not UTF-8"))?;
                let (version, r) = r
                    .split_first_chunk::<8>()
                    .ok_or_else(|| corrupt("user record cut short"))?;
                let (until, r) = r
                    .split_first_chunk::<8>()
                    .ok_or_else(|| corrupt("user record cut short"))?;
                users.push((
                    name,
                    u64::from_le_bytes(*version),
                    u64::from_le_bytes(*until),
                ));
                rest = r;
            }
            if !rest.is_empty() {
                return Err(corrupt("user chunk longer than its count"));
            }
            Ok(Records::Users(users))
        }
        _ => Err(corrupt("unknown chunk kind")),
    }
}

/// Applies a checked chunk; returns (sessions, users) applied, expired entries dropped.
fn apply(records: Records<'_>, local: &MemoryRevocations, now: UnixMillis) -> (u64, u64) {
    let now_secs = now.0 / 1000;
    match records {
        Records::Sessions(r) => {
            let mut n = 0u64;
            let live = r.chunks_exact(SESSION_RECORD).filter_map(|rec| {
                let (id, until) = rec.split_first_chunk::<16>()?;
                let until = u32::from_le_bytes(until.try_into().ok()?);
                (u64::from(until) >= now_secs).then_some((*id, until))
            });
            local.revoke_session_keys(live.inspect(|_| n += 1), now);
            (n, 0)
        }
        Records::Users(users) => {
            let mut n = 0u64;
            for (user, version, until_secs) in users {
                if until_secs >= now_secs {
                    let until = UnixMillis(until_secs.saturating_mul(1000));
                    local.raise_user_version(user, version, until, now);
                    n += 1;
                }
            }
            (0, n)
        }
    }
}

/// Checks a chunk's length and digest against the header's.
fn check_digest(i: usize, bytes: &[u8], expect: &(u32, [u8; 32])) -> Result<(), Rejected> {
    if u32::try_from(bytes.len()).ok() != Some(expect.0) {
        return Err(corrupt(format!("chunk {i} has the wrong length")));
    }
    if digest::digest(&digest::SHA256, bytes).as_ref() != expect.1 {
        return Err(corrupt(format!("chunk {i} does not match its digest")));
    }
    Ok(())
}

/// A `GET` of one chunk, on its own task: Redis sends the next chunk while this one is applied.
fn fetch(
    conn: &RedisConn,
    key: String,
) -> tokio::task::JoinHandle<redis::RedisResult<Option<Vec<u8>>>> {
    let mut conn = conn.clone();
    tokio::spawn(async move { redis::cmd("GET").arg(key).query_async(&mut conn).await })
}

fn task_error(e: tokio::task::JoinError) -> redis::RedisError {
    redis::RedisError::from((redis::ErrorKind::Io, "snapshot read task", e.to_string()))
}

/// Loads the snapshot of `epoch` into `local`. Redis errors (the connection) are returned;
/// an unusable snapshot is [`LoadOutcome::Rejected`], never a panic, and nothing from a chunk that
/// failed its checks is applied.
pub(crate) async fn load(
    conn: &mut RedisConn,
    keys: &SnapshotKeys,
    epoch: &str,
    local: &MemoryRevocations,
    now: UnixMillis,
) -> redis::RedisResult<LoadOutcome> {
    // A second try when a chunk vanished: the header was replaced meanwhile (twice, given the
    // grace period), and the new one is complete.
    for attempt in 0..2 {
        let fields: HashMap<String, Vec<u8>> = match redis::cmd("HGETALL")
            .arg(&keys.header)
            .query_async(conn)
            .await
        {
            Ok(f) => f,
            Err(e) if e.code() == Some("WRONGTYPE") => {
                return Ok(LoadOutcome::Rejected(corrupt("the header is not a hash")));
            }
            Err(e) => return Err(e),
        };
        if fields.is_empty() {
            return Ok(LoadOutcome::Absent);
        }
        let header = match Header::parse(&fields) {
            Ok(h) => h,
            Err(r) => return Ok(LoadOutcome::Rejected(r)),
        };
        if header.epoch != epoch {
            return Ok(LoadOutcome::Rejected(Rejected::OtherEpoch));
        }
        let (sessions, users) = (header.sessions, header.users);
        local.reserve(
            usize::try_from(sessions).unwrap_or(0),
            usize::try_from(users).unwrap_or(0),
        );
        let mut applied = (0u64, 0u64);
        let mut next =
            (!header.chunks.is_empty()).then(|| fetch(conn, keys.chunk(&header.generation, 0)));
        let mut missing = None;
        for (i, expect) in header.chunks.iter().enumerate() {
            let Some(current) = next.take() else { break };
            let bytes = current.await.map_err(task_error)??;
            if i + 1 < header.chunks.len() {
                next = Some(fetch(conn, keys.chunk(&header.generation, i + 1)));
            }
            let Some(bytes) = bytes else {
                missing = Some(i);
                break;
            };
            let records = check_digest(i, &bytes, expect).and_then(|()| parse_chunk(&bytes));
            match records {
                Ok(records) => {
                    let (s, u) = apply(records, local, now);
                    applied = (applied.0 + s, applied.1 + u);
                }
                Err(r) => {
                    if let Some(n) = next.take() {
                        n.abort();
                    }
                    return Ok(LoadOutcome::Rejected(r));
                }
            }
        }
        match missing {
            None => {
                return Ok(LoadOutcome::Loaded {
                    id: header.id,
                    sessions: applied.0,
                    users: applied.1,
                });
            }
            Some(i) if attempt == 1 => return Ok(LoadOutcome::Rejected(Rejected::ChunkMissing(i))),
            Some(_) => {}
        }
    }
    Ok(LoadOutcome::Rejected(Rejected::ChunkMissing(0)))
}

/// What [`try_lock`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Due {
    /// This node holds the lock: write one now. The stream's entries-added (Redis 7+) and
    /// length, for the header.
    Held { added: Option<u64>, length: u64 },
    /// Another node is writing one.
    Busy,
    /// Not due until this many more events.
    NotYet(u64),
    /// Redis's epoch is not this node's (its probe will find out).
    OtherEpoch,
}

/// Who asks [`try_lock`] and [`write`], and how long the lock lives.
pub(crate) struct Writer<'a> {
    pub(crate) node_id: &'a str,
    pub(crate) epoch: &'a str,
    pub(crate) lock_ttl_ms: u64,
}

/// Asks whether a snapshot is due (see [`TRY_LOCK`]) and takes the lock if it is.
pub(crate) async fn try_lock(
    conn: &mut RedisConn,
    keys: &SnapshotKeys,
    who: &Writer<'_>,
    every: u64,
) -> redis::RedisResult<Due> {
    let (state, remaining, added, length): (i64, i64, i64, i64) = redis::cmd("EVAL")
        .arg(TRY_LOCK)
        .arg(4)
        .arg(&keys.header)
        .arg(&keys.lock)
        .arg(&keys.events)
        .arg(&keys.epoch)
        .arg(who.node_id)
        .arg(who.lock_ttl_ms)
        .arg(every)
        .arg(who.epoch)
        .query_async(conn)
        .await?;
    Ok(match state {
        1 => Due::Held {
            added: u64::try_from(added).ok(),
            length: u64::try_from(length).unwrap_or(0),
        },
        2 => Due::NotYet(u64::try_from(remaining).unwrap_or(1).max(1)),
        3 => Due::OtherEpoch,
        _ => Due::Busy,
    })
}

/// Releases the lock if this node holds it (after a failed write).
pub(crate) async fn release(
    conn: &mut RedisConn,
    keys: &SnapshotKeys,
    node_id: &str,
) -> redis::RedisResult<()> {
    redis::cmd("EVAL")
        .arg(RELEASE)
        .arg(1)
        .arg(&keys.lock)
        .arg(node_id)
        .query_async::<i64>(conn)
        .await
        .map(|_| ())
}

/// What [`write`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Written {
    /// The new snapshot is in place.
    Flipped {
        sessions: u64,
        users: u64,
        chunks: usize,
        seq: i64,
    },
    /// The lock was lost (this node stalled past its TTL) or the epoch changed: nothing was
    /// put in place; the chunks written expire.
    Abandoned(&'static str),
}

/// Builds chunks of one kind and sends each to Redis once full.
struct ChunkSink<'a> {
    conn: &'a mut RedisConn,
    keys: &'a SnapshotKeys,
    node_id: &'a str,
    lock_ttl_ms: u64,
    generation: String,
    digests: Vec<u8>,
    chunks: usize,
}

impl ChunkSink<'_> {
    /// Sends one chunk (after extending the lock); false when the lock is lost.
    async fn send(&mut self, kind: u8, count: usize, records: &[u8]) -> redis::RedisResult<bool> {
        let mut value = Vec::with_capacity(CHUNK_HEAD + records.len());
        value.extend_from_slice(CHUNK_MAGIC);
        value.push(kind);
        value.extend_from_slice(&u32::try_from(count).unwrap_or(u32::MAX).to_le_bytes());
        value.extend_from_slice(records);
        let (held,): (i64,) = redis::pipe()
            .cmd("EVAL")
            .arg(EXTEND)
            .arg(1)
            .arg(&self.keys.lock)
            .arg(self.node_id)
            .arg(self.lock_ttl_ms)
            .cmd("SET")
            .arg(self.keys.chunk(&self.generation, self.chunks))
            .arg(&value)
            .arg("PX")
            .arg(WRITE_TTL_MS)
            .ignore()
            .query_async(self.conn)
            .await?;
        self.digests
            .extend_from_slice(&u32::try_from(value.len()).unwrap_or(u32::MAX).to_le_bytes());
        self.digests
            .extend_from_slice(digest::digest(&digest::SHA256, &value).as_ref());
        self.chunks += 1;
        Ok(held == 1)
    }
}

/// Writes a snapshot of `local` covering stream id `id` (every event up to it has been applied
/// to `local`), for the epoch in `who`, and flips it in. The caller holds the lock
/// ([`try_lock`] returned [`Due::Held`]).
pub(crate) async fn write(
    conn: &mut RedisConn,
    keys: &SnapshotKeys,
    who: &Writer<'_>,
    id: &str,
    stream: (Option<u64>, u64),
    local: &MemoryRevocations,
    now: UnixMillis,
) -> redis::RedisResult<Written> {
    // The chunks of the snapshot this one replaces, to let them expire after the flip.
    let previous: (Option<String>, Option<u64>) = match redis::cmd("HMGET")
        .arg(&keys.header)
        .arg("gen")
        .arg("digests")
        .query_async::<(Option<String>, Option<Vec<u8>>)>(conn)
        .await
    {
        Ok((generation, digests)) => (
            generation.filter(|g| g.bytes().all(|b| b.is_ascii_hexdigit())),
            digests.map(|d| (d.len() / DIGEST_ENTRY) as u64),
        ),
        Err(e) if e.code() == Some("WRONGTYPE") => (None, None),
        Err(e) => return Err(e),
    };
    let mut sink = ChunkSink {
        conn,
        keys,
        node_id: who.node_id,
        lock_ttl_ms: who.lock_ttl_ms,
        generation: format!("{:016x}", rand::random::<u64>()),
        digests: Vec::new(),
        chunks: 0,
    };
    let (mut sessions, mut users) = (0u64, 0u64);
    // Sessions: one shard at a time into `pending`, sent in chunks of CHUNK_SESSIONS.
    let mut pending: Vec<u8> = Vec::new();
    let full = CHUNK_SESSIONS * SESSION_RECORD;
    for shard in 0..local.shard_count() {
        local.for_each_live_session_in(shard, now, |k, until| {
            pending.extend_from_slice(k);
            pending.extend_from_slice(&until.to_le_bytes());
        });
        while pending.len() >= full {
            if !sink
                .send(KIND_SESSIONS, CHUNK_SESSIONS, &pending[..full])
                .await?
            {
                return Ok(Written::Abandoned("lost the snapshot lock"));
            }
            sessions += CHUNK_SESSIONS as u64;
            pending.drain(..full);
        }
    }
    if !pending.is_empty() {
        let n = pending.len() / SESSION_RECORD;
        if !sink.send(KIND_SESSIONS, n, &pending).await? {
            return Ok(Written::Abandoned("lost the snapshot lock"));
        }
        sessions += n as u64;
    }
    // Users: variable length, sent by size.
    pending.clear();
    let mut count = 0usize;
    for shard in 0..local.shard_count() {
        local.for_each_live_user_in(shard, now, |user, version, until| {
            // A user id is far below 4 GiB (it sits in a cookie).
            let len = u32::try_from(user.len()).unwrap_or(u32::MAX);
            pending.extend_from_slice(&len.to_le_bytes());
            pending.extend_from_slice(user.as_bytes());
            pending.extend_from_slice(&version.to_le_bytes());
            pending.extend_from_slice(&until.to_le_bytes());
            count += 1;
        });
        if pending.len() >= CHUNK_USER_BYTES {
            if !sink.send(KIND_USERS, count, &pending).await? {
                return Ok(Written::Abandoned("lost the snapshot lock"));
            }
            users += count as u64;
            pending.clear();
            count = 0;
        }
    }
    if count > 0 {
        if !sink.send(KIND_USERS, count, &pending).await? {
            return Ok(Written::Abandoned("lost the snapshot lock"));
        }
        users += count as u64;
    }
    let ChunkSink {
        conn,
        generation,
        digests,
        chunks,
        ..
    } = sink;
    let mut flip = redis::cmd("EVAL");
    let old_chunks = match previous {
        (Some(ref g), Some(n)) if *g != generation => n as usize,
        _ => 0,
    };
    flip.arg(FLIP)
        .arg(3 + chunks + old_chunks)
        .arg(&keys.header)
        .arg(&keys.lock)
        .arg(&keys.epoch);
    for i in 0..chunks {
        flip.arg(keys.chunk(&generation, i));
    }
    if let (Some(g), _) = &previous {
        for i in 0..old_chunks {
            flip.arg(keys.chunk(g, i));
        }
    }
    flip.arg(who.node_id)
        .arg(who.epoch)
        .arg(chunks)
        .arg(GRACE_MS)
        .arg("v")
        .arg(FORMAT)
        .arg("epoch")
        .arg(who.epoch)
        .arg("id")
        .arg(id)
        .arg("gen")
        .arg(&generation)
        .arg("sessions")
        .arg(sessions)
        .arg("users")
        .arg(users)
        .arg("length")
        .arg(stream.1)
        .arg("writer")
        .arg(who.node_id)
        .arg("at")
        .arg(now.0)
        .arg("digests")
        .arg(digests);
    if let Some(added) = stream.0 {
        flip.arg("added").arg(added);
    }
    let seq: i64 = flip.query_async(conn).await?;
    Ok(match seq {
        s if s > 0 => Written::Flipped {
            sessions,
            users,
            chunks,
            seq: s,
        },
        -1 => Written::Abandoned("the epoch changed"),
        -2 => Written::Abandoned("a chunk expired before the flip"),
        _ => Written::Abandoned("lost the snapshot lock"),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn chunk(kind: u8, count: u32, records: &[u8]) -> Vec<u8> {
        let mut v = CHUNK_MAGIC.to_vec();
        v.push(kind);
        v.extend_from_slice(&count.to_le_bytes());
        v.extend_from_slice(records);
        v
    }

    fn user(name: &str, version: u64, until: u64) -> Vec<u8> {
        let mut v = u32::try_from(name.len()).unwrap().to_le_bytes().to_vec();
        v.extend_from_slice(name.as_bytes());
        v.extend_from_slice(&version.to_le_bytes());
        v.extend_from_slice(&until.to_le_bytes());
        v
    }

    #[test]
    fn chunks_parse_and_apply_and_drop_expired_entries() {
        let local = MemoryRevocations::new();
        let now = UnixMillis(1_000_000);
        let mut records = [7u8; 16].to_vec();
        records.extend_from_slice(&2_000u32.to_le_bytes());
        records.extend_from_slice(&[8u8; 16]);
        records.extend_from_slice(&999u32.to_le_bytes()); // expired at 1,000 s
        let sessions = chunk(KIND_SESSIONS, 2, &records);
        let (s, u) = apply(parse_chunk(&sessions).unwrap(), &local, now);
        assert_eq!((s, u), (1, 0));
        let mut users = user("alice", 42, 2_000);
        users.extend(user("bob", 7, 10));
        let users = chunk(KIND_USERS, 2, &users);
        assert_eq!(apply(parse_chunk(&users).unwrap(), &local, now), (0, 1));
        assert_eq!(local.user_min_version("alice", now), 42);
        assert_eq!(local.user_min_version("bob", now), 0);
        let sid = crate::claims::SessionId::from_bytes([7; 16]);
        use crate::revocation::RevocationBackend as _;
        assert!(local.check(&sid, "x", 0, now).is_err());
    }

    #[test]
    fn malformed_chunks_are_rejected_not_a_panic() {
        let ok_user = user("alice", 1, 2);
        for bad in [
            Vec::new(),
            b"SSSNAPC1".to_vec(),
            chunk(KIND_SESSIONS, 2, &[0; 20]),
            chunk(KIND_SESSIONS, u32::MAX, &[0; 20]),
            chunk(KIND_USERS, 2, &ok_user),
            chunk(KIND_USERS, 1, &ok_user[..ok_user.len() - 1]),
            chunk(KIND_USERS, 1, &[ok_user.as_slice(), &[0]].concat()),
            chunk(KIND_USERS, 1, &[0xff, 0xff, 0xff, 0xff, 1, 2]),
            chunk(9, 0, &[]),
        ] {
            assert!(parse_chunk(&bad).is_err(), "{bad:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_chunk_bytes_parse_or_are_rejected_never_a_panic(
            kind in 0u8..4,
            count in proptest::prelude::any::<u32>(),
            records in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
        ) {
            let _ = parse_chunk(&chunk(kind, count, &records));
            let _ = parse_chunk(&records);
        }
    }

    #[test]
    fn a_digest_mismatch_is_rejected() {
        let c = chunk(KIND_SESSIONS, 0, &[]);
        let mut sha = [0u8; 32];
        sha.copy_from_slice(digest::digest(&digest::SHA256, &c).as_ref());
        let len = u32::try_from(c.len()).unwrap();
        assert!(check_digest(0, &c, &(len, sha)).is_ok());
        let mut flipped = c.clone();
        flipped[12] ^= 1;
        assert!(check_digest(0, &flipped, &(len, sha)).is_err());
        assert!(check_digest(0, &c[..c.len() - 1], &(len, sha)).is_err());
    }

    #[test]
    fn headers_missing_or_garbled_fields_are_rejected() {
        let good: HashMap<String, Vec<u8>> = [
            ("v", b"1".to_vec()),
            ("epoch", b"e".to_vec()),
            ("id", b"5-1".to_vec()),
            ("gen", b"00ab".to_vec()),
            ("sessions", b"3".to_vec()),
            ("users", b"0".to_vec()),
            ("digests", vec![0; DIGEST_ENTRY * 2]),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let h = Header::parse(&good).unwrap();
        assert_eq!((h.id.as_str(), h.chunks.len(), h.sessions), ("5-1", 2, 3));
        for (field, value) in [
            ("v", b"2".to_vec()),
            ("id", b"5".to_vec()),
            ("gen", b"../x".to_vec()),
            ("sessions", b"-1".to_vec()),
            ("digests", vec![0; DIGEST_ENTRY + 1]),
            ("epoch", vec![0xff]),
        ] {
            let mut bad = good.clone();
            bad.insert(field.to_owned(), value);
            assert!(Header::parse(&bad).is_err(), "{field}");
            bad.remove(field);
            assert!(Header::parse(&bad).is_err(), "{field} missing");
        }
    }
}
