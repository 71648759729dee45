//! Revocation synced through a real Redis (started by the test): several nodes, outages, data
//! loss (epoch, stream deleted, stream ids gone backwards) and stream trimming, reconnect
//! backoff.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use sealed_sessions::clock::UnixMillis;
use sealed_sessions::engine::Rejection;
use sealed_sessions::revocation::{RedisConfig, RedisRevocations, RevocationBackend, Revoked};
use sealed_sessions::{EngineConfig, EngineError, Key, KeyId, KeyRing, SessionEngine};

struct Node {
    engine: SessionEngine<String>,
    backend: Arc<RedisRevocations>,
}

fn ring() -> KeyRing {
    KeyRing::single(KeyId::new("k1").unwrap(), Key::from_bytes([5; 32]))
}

fn config(url: &str, absolute: Duration) -> RedisConfig {
    let mut c = RedisConfig::new(url, absolute).with_prefix("test");
    c.block = Duration::from_millis(200);
    c.op_timeout = Duration::from_millis(300);
    c.max_backoff = Duration::from_millis(200);
    c
}

async fn node(url: &str) -> Node {
    node_with(url, Duration::from_secs(24 * 3600)).await
}

async fn node_with(url: &str, absolute: Duration) -> Node {
    node_from(config(url, absolute)).await
}

async fn node_from(config: RedisConfig) -> Node {
    let absolute = config.absolute_timeout;
    let backend = Arc::new(RedisRevocations::connect(config).await.unwrap());
    let engine_config = EngineConfig::builder()
        .absolute_timeout(absolute)
        .idle_timeout(absolute.min(Duration::from_secs(1800)))
        .renew_after(Duration::from_millis(100).min(absolute / 2))
        .build()
        .unwrap();
    let engine = SessionEngine::with_parts(
        engine_config,
        ring(),
        backend.clone(),
        Arc::new(sealed_sessions::clock::SystemClock),
    );
    Node { engine, backend }
}

/// Polls until `f` holds, for at most 5 s.
async fn eventually(what: &str, f: impl FnMut() -> bool) {
    eventually_within(what, Duration::from_secs(5), f).await;
}

/// Polls until `f` holds, for at most `limit`.
async fn eventually_within(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for: {what}");
}

fn revoked(n: &Node, token: &str) -> bool {
    matches!(n.engine.validate(token, None), Err(Rejection::Revoked(_)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_on_one_node_is_enforced_on_the_others() {
    let Some(redis) = support::redis::start() else {
        return;
    };
    let (a, b, c) = (
        node(&redis.url()).await,
        node(&redis.url()).await,
        node(&redis.url()).await,
    );
    let issued = a.engine.issue("alice", "user".into(), None).await.unwrap();
    assert!(b.engine.validate(&issued.token, None).is_ok());
    a.engine.logout(&issued.session).await.unwrap();
    assert!(
        revoked(&a, &issued.token),
        "a node reads its own writes at once"
    );
    eventually("B rejects", || revoked(&b, &issued.token)).await;
    eventually("C rejects", || revoked(&c, &issued.token)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_everywhere_regenerate_and_password_change_reach_every_node() {
    let Some(redis) = support::redis::start() else {
        return;
    };
    let (a, b, c) = (
        node(&redis.url()).await,
        node(&redis.url()).await,
        node(&redis.url()).await,
    );

    // Logout everywhere on B kills sessions issued on A and C.
    let s1 = a.engine.issue("alice", String::new(), None).await.unwrap();
    let s2 = c.engine.issue("alice", String::new(), None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2)).await;
    b.engine.logout_everywhere("alice").await.unwrap();
    for n in [&a, &b, &c] {
        eventually("s1 dead", || revoked(n, &s1.token)).await;
        eventually("s2 dead", || revoked(n, &s2.token)).await;
    }
    // Login afterwards on any node reads the new version and works everywhere.
    let fresh = c.engine.issue("alice", String::new(), None).await.unwrap();
    for n in [&a, &b, &c] {
        assert!(n.engine.validate(&fresh.token, None).is_ok());
    }

    // Regenerate on A: the old id dies on B.
    let s = a.engine.validate(&fresh.token, None).unwrap();
    let elevated = a.engine.regenerate(&s, Some("admin".into())).await.unwrap();
    eventually("old id dead on B", || revoked(&b, &fresh.token)).await;
    assert!(b.engine.validate(&elevated.token, None).is_ok());

    // Password change on C: the elevated session (other device) dies, the changer's continues.
    let other = b.engine.issue("alice", String::new(), None).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2)).await;
    let here = c.engine.validate(&other.token, None).unwrap();
    let kept = c.engine.logout_other_sessions(&here).await.unwrap();
    for n in [&a, &b, &c] {
        eventually("other sessions dead", || revoked(n, &elevated.token)).await;
        assert!(n.engine.validate(&kept.token, None).is_ok());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_keep_validating_through_an_outage_and_catch_up_after() {
    let Some(mut redis) = support::redis::start() else {
        return;
    };
    let (a, b) = (node(&redis.url()).await, node(&redis.url()).await);
    let keep = a.engine.issue("bob", String::new(), None).await.unwrap();
    let doomed = a.engine.issue("carol", String::new(), None).await.unwrap();
    let doomed_user = a.engine.issue("dave", String::new(), None).await.unwrap();
    assert!(b.backend.sync_status().synced);

    redis.kill();
    // Validation goes on from the local list, with no Redis.
    for _ in 0..100 {
        assert!(a.engine.validate(&keep.token, None).is_ok());
        assert!(b.engine.validate(&keep.token, None).is_ok());
    }
    // Revocations during the outage: enforced locally at once, reported unavailable.
    let err = a.engine.logout(&doomed.session).await.unwrap_err();
    assert!(matches!(err, EngineError::Revocation(_)));
    assert!(revoked(&a, &doomed.token));
    tokio::time::sleep(Duration::from_millis(2)).await;
    assert!(a.engine.logout_everywhere("dave").await.is_err());
    assert!(revoked(&a, &doomed_user.token));
    assert!(a.backend.pending_writes() >= 2);
    eventually("B notices", || !b.backend.sync_status().synced).await;
    // Login still works during the outage.
    assert!(b.engine.issue("erin", String::new(), None).await.is_ok());

    redis.restart_empty();
    eventually("B learns the logout", || revoked(&b, &doomed.token)).await;
    eventually("B learns the bump", || revoked(&b, &doomed_user.token)).await;
    eventually("A flushed", || a.backend.pending_writes() == 0).await;
    eventually("both synced", || {
        a.backend.sync_status().synced && b.backend.sync_status().synced
    })
    .await;
    assert!(b.engine.validate(&keep.token, None).is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_started_after_redis_came_back_empty_enforces_earlier_revocations() {
    let Some(mut redis) = support::redis::start() else {
        return;
    };
    let a = node(&redis.url()).await;
    let (s, u) = two_revocations(&a).await;

    redis.restart_empty();
    // A notices the lost epoch and re-publishes what it holds.
    eventually("A re-published", || {
        let mut conn = redis.conn();
        redis::cmd("XLEN")
            .arg("test{ss}:events")
            .query::<u64>(&mut conn)
            .map(|n| n >= 2)
            .unwrap_or(false)
    })
    .await;
    let late = late_node_rejecting(&redis.url(), Duration::from_secs(5), &s, &u).await;
    // And a login on the late node carries the re-published version.
    let v = late.engine.issue("bob", String::new(), None).await.unwrap();
    assert!(v.session.claims().version > u.session.claims().version);
}

/// Milliseconds since the epoch on the system clock (the one Redis and the engine use).
fn now_ms() -> u64 {
    u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

/// The millisecond part of a stream id (`ms-seq`).
fn id_ms(id: &str) -> u64 {
    id.split_once('-').unwrap().0.parse().unwrap()
}

/// Four rounds of 200 logouts, 1.1 s apart, then a logout everywhere, under a 2-second absolute
/// timeout. Redis trims the events stream by its own clock on every append (`MINID ~ now −
/// absolute`): what is left is the newest events, in order, with every event still in force and
/// at most one stream node of older ones. The per-user version key expires with its event. The
/// node's local list, purged at a second between the expiries of rounds 1 and 2, drops exactly
/// rounds 0 and 1 and still revokes rounds 2 and 3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_trims_expired_events_and_the_local_purge_drops_exactly_the_expired() {
    let Some(redis) = support::redis::start() else {
        return;
    };
    let absolute = Duration::from_secs(2);
    let absolute_ms: u64 = 2000;
    small_stream_nodes(&redis);
    let a = node_with(&redis.url(), absolute).await;
    // Per round, each logged-out session and when its logout returned (Redis had its event).
    let mut rounds: Vec<Vec<(Issued, u64)>> = Vec::new();
    for round in 0..4 {
        let mut this = Vec::new();
        for _ in 0..200 {
            let s = a.engine.issue("alice", String::new(), None).await.unwrap();
            a.engine.logout(&s.session).await.unwrap();
            this.push((s, now_ms()));
        }
        rounds.push(this);
        if round < 3 {
            tokio::time::sleep(Duration::from_millis(1100)).await;
        }
    }
    a.engine.logout_everywhere("bob").await.unwrap();

    let mut conn = redis.conn();
    // The version key expires when its bump stops mattering: within the absolute timeout.
    let pttl: i64 = redis::cmd("PTTL")
        .arg("test{ss}:ver:bob")
        .query(&mut conn)
        .unwrap();
    assert!(
        pttl > 0 && pttl.unsigned_abs() <= absolute_ms,
        "PTTL of bob's version key: {pttl}"
    );

    let stream: Vec<(String, Vec<String>)> = redis::cmd("XRANGE")
        .arg(EVENTS)
        .arg("-")
        .arg("+")
        .query(&mut conn)
        .unwrap();
    let field = |fields: &[String], name: &str| -> String {
        fields
            .chunks(2)
            .find(|kv| kv[0] == name)
            .map(|kv| kv[1].clone())
            .unwrap_or_default()
    };
    let (last_id, last_fields) = stream.last().unwrap();
    assert_eq!(
        (field(last_fields, "k"), field(last_fields, "id")),
        ("u".to_owned(), "bob".to_owned())
    );
    // The last append trimmed at its own time minus the absolute timeout (a few ms of margin:
    // the script reads TIME, the id is stamped by XADD).
    let cutoff = id_ms(last_id) - absolute_ms;
    let margin = 5;
    let logouts: Vec<&(Issued, u64)> = rounds.iter().flatten().collect();
    let kept: Vec<String> = stream
        .iter()
        .filter(|(_, f)| field(f, "k") == "s")
        .map(|(_, f)| field(f, "id"))
        .collect();
    // Trimmed from the head only: the session events left are the latest logouts, in order.
    let latest: Vec<String> = logouts[logouts.len() - kept.len()..]
        .iter()
        .map(|(s, _)| s.session.id().to_string())
        .collect();
    assert_eq!(kept, latest, "the stream is not a suffix of the logouts");
    // Trimmed: at least rounds 0 and 1 were recorded before the cut-off, and at most one
    // stream node's worth of events older than it is left.
    let recorded_before = logouts
        .iter()
        .filter(|(_, done)| *done + margin < cutoff)
        .count();
    assert!(
        recorded_before >= 400,
        "{recorded_before} before the cut-off"
    );
    let stale = stream
        .iter()
        .filter(|(id, _)| id_ms(id) + margin < cutoff)
        .count();
    assert!(
        stale < 10,
        "{stale} events older than the absolute timeout left of {} ({} written)",
        stream.len(),
        logouts.len() + 1
    );
    // Not over-trimmed: every logout of a session created after the cut-off (so recorded after
    // it) is still there. The kept events are the newest logouts, so there must be at least as
    // many of them.
    let in_force = logouts
        .iter()
        .filter(|(s, _)| s.session.claims().created_at.0 >= cutoff + margin)
        .count();
    assert!(
        in_force > 0,
        "no logout after the cut-off: the rounds ran too slowly"
    );
    assert!(
        kept.len() >= in_force,
        "{} kept, {in_force} in force",
        kept.len()
    );

    // The local list holds all 800 until swept (its lazy sweep runs at most once a minute).
    let local = a.backend.local();
    assert_eq!(a.backend.stats().revoked_sessions, 800);
    // It keeps an entry while its expiry second (rounded up) is not past. Purge at the second
    // after round 1's last expiry: round 2 started more than a second later, so its entries
    // all expire at that second or after.
    let until_secs = |(s, _): &(Issued, u64)| s.session.claims().expires_at.as_secs_ceil();
    let purge_secs = rounds[1].iter().map(until_secs).max().unwrap() + 1;
    assert!(rounds[2].iter().all(|s| until_secs(s) >= purge_secs));
    let at = UnixMillis(purge_secs * 1000);
    assert_eq!(local.purge_expired(at), 400);
    let stats = a.backend.stats();
    assert_eq!((stats.revoked_sessions, stats.user_versions), (400, 1));
    for (round, sessions) in rounds.iter().enumerate() {
        for (s, _) in sessions {
            let held = local.check(&s.session.id(), "alice", u64::MAX, at);
            if round < 2 {
                assert_eq!(held, Ok(()), "round {round}: an expired entry was kept");
            } else {
                assert_eq!(
                    held,
                    Err(Revoked::Session),
                    "round {round}: a live entry was dropped"
                );
            }
        }
    }
}

const EVENTS: &str = "test{ss}:events";

/// Stream nodes of 10 entries (the default is 100). `MINID ~` removes whole stream nodes only,
/// so entries older than the cut-off may stay in the first node; small nodes make it trim close
/// to its cut-off.
fn small_stream_nodes(redis: &support::redis::RedisServer) {
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("stream-node-max-entries")
        .arg(10)
        .query(&mut redis.conn())
        .unwrap();
}

/// The events stream's length (0 when the key does not exist).
fn xlen(redis: &support::redis::RedisServer) -> u64 {
    redis::cmd("XLEN")
        .arg(EVENTS)
        .query(&mut redis.conn())
        .unwrap()
}

/// Two nodes that applied three revocations, and the stream as it was after the first one
/// (the "older snapshot" a restore or a lagging replica brings back).
struct History {
    a: Node,
    b: Node,
    snapshot: Vec<(String, Vec<String>)>,
    old: Issued,
    s: Issued,
    u: Issued,
}

async fn history_with_a_snapshot(redis: &support::redis::RedisServer) -> History {
    let (a, b) = (node(&redis.url()).await, node(&redis.url()).await);
    let old = a.engine.issue("carol", String::new(), None).await.unwrap();
    a.engine.logout(&old.session).await.unwrap();
    let snapshot: Vec<(String, Vec<String>)> = redis::cmd("XRANGE")
        .arg(EVENTS)
        .arg("-")
        .arg("+")
        .query(&mut redis.conn())
        .unwrap();
    assert_eq!(snapshot.len(), 1);
    let (s, u) = two_revocations(&a).await;
    eventually("B learns all three", || {
        revoked(&b, &old.token) && revoked(&b, &s.token) && revoked(&b, &u.token)
    })
    .await;
    History {
        a,
        b,
        snapshot,
        old,
        s,
        u,
    }
}

/// Issues a session for alice and one for bob on `n`, logs alice's out and bob out everywhere.
async fn two_revocations(n: &Node) -> (Issued, Issued) {
    let s = n.engine.issue("alice", String::new(), None).await.unwrap();
    let u = n.engine.issue("bob", String::new(), None).await.unwrap();
    n.engine.logout(&s.session).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2)).await;
    n.engine.logout_everywhere("bob").await.unwrap();
    (s, u)
}

type Issued = sealed_sessions::engine::Issued<String>;

/// Nodes A and B on `url`, after A revoked a session and bumped a user and B applied both.
async fn two_nodes_after_two_revocations(url: &str) -> (Node, Node, Issued, Issued) {
    let (a, b) = (node(url).await, node(url).await);
    let (s, u) = two_revocations(&a).await;
    eventually("B learns both", || {
        revoked(&b, &s.token) && revoked(&b, &u.token)
    })
    .await;
    (a, b, s, u)
}

/// A node started after a loss, once it rejects `s` (a logged-out session) and `u` (a session
/// of a user logged out everywhere), each waited for at most `limit`.
async fn late_node_rejecting(url: &str, limit: Duration, s: &Issued, u: &Issued) -> Node {
    let late = node(url).await;
    eventually_within("late node rejects the logged-out session", limit, || {
        revoked(&late, &s.token)
    })
    .await;
    eventually_within("late node rejects the bumped user", limit, || {
        revoked(&late, &u.token)
    })
    .await;
    late
}

/// Waits until every one of `nodes` reports itself synced.
async fn all_synced(nodes: &[&Node]) {
    eventually("all synced", || {
        nodes.iter().all(|n| n.backend.sync_status().synced)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_started_after_the_stream_was_deleted_enforces_earlier_revocations() {
    let Some(redis) = support::redis::start() else {
        return;
    };
    // B has applied both events from the stream (its last applied id is above 0-0).
    let (a, b, s, u) = two_nodes_after_two_revocations(&redis.url()).await;

    // The stream goes (DEL, or eviction under allkeys-*); the epoch key stays.
    let deleted: u64 = redis::cmd("DEL")
        .arg(EVENTS)
        .query(&mut redis.conn())
        .unwrap();
    assert_eq!(deleted, 1);
    eventually("the live entries are re-published", || xlen(&redis) >= 2).await;

    let late = late_node_rejecting(&redis.url(), Duration::from_secs(5), &s, &u).await;
    all_synced(&[&a, &b, &late]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_started_after_the_stream_ids_went_backwards_enforces_earlier_revocations() {
    let Some(redis) = support::redis::start() else {
        return;
    };
    let History {
        a,
        b,
        snapshot,
        old,
        s,
        u,
    } = history_with_a_snapshot(&redis).await;

    // Restore the snapshot (or fail over to a replica that lags): the epoch key stays, the stream
    // holds the old event under its old id, and its last generated id is below what A and B
    // applied.
    let mut conn = redis.conn();
    let _: u64 = redis::cmd("DEL").arg(EVENTS).query(&mut conn).unwrap();
    let (id, fields) = &snapshot[0];
    let _: String = redis::cmd("XADD")
        .arg(EVENTS)
        .arg(id)
        .arg(fields)
        .query(&mut conn)
        .unwrap();
    assert_eq!(xlen(&redis), 1);
    eventually("the live entries are re-published", || xlen(&redis) >= 3).await;

    let late = late_node_rejecting(&redis.url(), Duration::from_secs(5), &s, &u).await;
    eventually("late node rejects the session in the snapshot", || {
        revoked(&late, &old.token)
    })
    .await;
    all_synced(&[&a, &b, &late]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_deleted_and_written_again_between_two_probes_is_a_loss() {
    let Some(redis) = support::redis::start() else {
        return;
    };
    // A and B have applied both events.
    let (a, b, s, u) = two_nodes_after_two_revocations(&redis.url()).await;

    // In one transaction, so no probe falls in between: the stream goes and a new event is
    // written, under an id above everything A and B applied. The stream exists, its last
    // generated id is not below theirs, the epoch key stays: only `entries-added` (now 1, was
    // 2) shows it is a new stream.
    let other = sealed_sessions::SessionId::from_bytes(rand::random());
    let until = (now_ms() + 3_600_000).to_string();
    let _: () = redis::pipe()
        .atomic()
        .cmd("DEL")
        .arg(EVENTS)
        .ignore()
        .cmd("XADD")
        .arg(EVENTS)
        .arg("*")
        .arg(&["k", "s", "id", &other.to_string(), "until", &until])
        .ignore()
        .query(&mut redis.conn())
        .unwrap();
    eventually("the live entries are re-published", || xlen(&redis) >= 3).await;

    let late = late_node_rejecting(&redis.url(), Duration::from_secs(5), &s, &u).await;
    assert!(revokes_all(&*late.backend, &[other]), "and the new event");
    all_synced(&[&a, &b, &late]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_trimmed_to_empty_is_not_taken_for_data_loss() {
    let Some(redis) = support::redis::start() else {
        return;
    };
    let (a, b, _, _) = two_nodes_after_two_revocations(&redis.url()).await;

    let trimmed: u64 = redis::cmd("XTRIM")
        .arg(EVENTS)
        .arg("MAXLEN")
        .arg(0)
        .query(&mut redis.conn())
        .unwrap();
    assert_eq!(trimmed, 2);
    // The stream now exists with no entries and its last generated id unchanged. A node that
    // took this for a loss would re-publish the two live entries it holds, and the stream would
    // grow again; nothing else writes to it here. Each node probes at least once per blocking
    // read (200 ms here), so 1 s covers several probes by both.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(xlen(&redis), 0, "a node re-published after a trim");
    assert!(a.backend.sync_status().synced && b.backend.sync_status().synced);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_reconnect_the_next_outage_is_retried_quickly_again() {
    let Some(mut redis) = support::redis::start() else {
        return;
    };
    let mut c = config(&redis.url(), Duration::from_secs(3600));
    c.max_backoff = Duration::from_secs(3);
    let a = RedisRevocations::connect(c).await.unwrap();
    assert!(a.sync_status().synced);

    // A first outage long enough for the backoff to reach its cap: attempts at 50, 150, 350,
    // 750 and 1550 ms fail, and the next sleep is already 1.6 s (then 3 s).
    redis.kill();
    eventually("A notices", || !a.sync_status().synced).await;
    tokio::time::sleep(Duration::from_millis(1600)).await;
    redis.restart_empty();
    eventually("A reconnects", || a.sync_status().synced).await;

    // A second, short outage: after a connection that worked, the backoff starts over at
    // 50 ms, so A is back within a few hundred ms. Without the reset it would first sleep the
    // whole 3 s cap.
    redis.kill();
    eventually("A notices again", || !a.sync_status().synced).await;
    redis.restart_empty();
    let restarted = Instant::now();
    eventually("A reconnects again", || a.sync_status().synced).await;
    let took = restarted.elapsed();
    assert!(
        took < Duration::from_millis(1500),
        "reconnected {took:?} after the restart"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overflowing_retry_queue_is_bounded_and_replaced_by_a_republish() {
    let Some(redis) = support::redis::start() else {
        return;
    };
    let mut c = config(&redis.url(), Duration::from_secs(3600));
    c.max_pending = 3;
    let a = node_from(c).await;
    let sessions = [
        a.engine.issue("u1", String::new(), None).await.unwrap(),
        a.engine.issue("u2", String::new(), None).await.unwrap(),
        a.engine.issue("u3", String::new(), None).await.unwrap(),
        a.engine.issue("u4", String::new(), None).await.unwrap(),
        a.engine.issue("u5", String::new(), None).await.unwrap(),
    ];
    // Redis stays up with its data but takes no writes for a while (no restart, so no epoch
    // change: only the retry path can bring these revocations to Redis).
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(2500)
        .arg("WRITE")
        .query(&mut redis.conn())
        .unwrap();
    for s in &sessions {
        assert!(a.engine.logout(&s.session).await.is_err());
        assert!(revoked(&a, &s.token));
        assert!(
            a.backend.pending_writes() <= 3,
            "{}",
            a.backend.pending_writes()
        );
    }
    assert!(!a.backend.sync_status().synced);
    // Once writes are taken again, a node started afterwards learns all five.
    eventually_within("A synced", Duration::from_secs(10), || {
        a.backend.sync_status().synced
    })
    .await;
    let late = node(&redis.url()).await;
    for s in &sessions {
        eventually("the late node learns each logout", || {
            revoked(&late, &s.token)
        })
        .await;
    }
}

/// Revokes `n` session ids straight in the stream (as nodes would have), each until `until`;
/// returns them.
fn stream_revocations(
    redis: &support::redis::RedisServer,
    n: usize,
    until: u64,
) -> Vec<sealed_sessions::SessionId> {
    let sids: Vec<_> = (0..n)
        .map(|_| sealed_sessions::SessionId::from_bytes(rand::random()))
        .collect();
    let mut conn = redis.conn();
    for chunk in sids.chunks(5000) {
        let mut pipe = redis::pipe();
        for sid in chunk {
            pipe.cmd("XADD")
                .arg(EVENTS)
                .arg("*")
                .arg(&[
                    "k",
                    "s",
                    "id",
                    &sid.to_string(),
                    "until",
                    &until.to_string(),
                ])
                .ignore();
        }
        pipe.query::<()>(&mut conn).unwrap();
    }
    sids
}

/// Whether `n`'s list revokes every id in `sids`.
fn revokes_all(n: &dyn RevocationBackend, sids: &[sealed_sessions::SessionId]) -> bool {
    let now = UnixMillis(now_ms());
    sids.iter()
        .all(|sid| n.check(sid, "nobody", u64::MAX, now) == Err(Revoked::Session))
}

/// Two nodes holding the same 20,000 revocations, one of them also one only it knows (its write
/// never reached Redis), then Redis loses everything. Returns the nodes and every id in force.
async fn two_nodes_before_a_flush(
    redis: &support::redis::RedisServer,
    lock_ttl: Duration,
) -> (Node, Node, Vec<sealed_sessions::SessionId>) {
    let until = now_ms() + 3_600_000;
    let mut sids = stream_revocations(redis, 20_000, until);
    let mut c = config(&redis.url(), Duration::from_secs(3600));
    c.republish_lock_ttl = lock_ttl;
    c.startup_wait = Duration::from_secs(30);
    let (a, b) = (node_from(c.clone()).await, node_from(c).await);
    assert!(revokes_all(&*a.backend, &sids) && revokes_all(&*b.backend, &sids));
    let only_b = sealed_sessions::SessionId::from_bytes(rand::random());
    b.backend
        .local()
        .revoke_session_now(only_b, UnixMillis(until), UnixMillis(now_ms()));
    sids.push(only_b);
    (a, b, sids)
}

/// After the loss: both nodes synced again, the stream holds every revocation in force about
/// once, and both nodes and a node started afterwards enforce every one.
async fn one_copy_enforced_everywhere(
    redis: &support::redis::RedisServer,
    a: &Node,
    b: &Node,
    sids: &[sealed_sessions::SessionId],
) {
    let live = sids.len() as u64;
    eventually_within("re-published and synced", Duration::from_secs(60), || {
        xlen(redis) >= live && a.backend.sync_status().synced && b.backend.sync_status().synced
    })
    .await;
    let mut c = config(&redis.url(), Duration::from_secs(3600));
    c.startup_wait = Duration::from_secs(30);
    let late = node_from(c).await;
    for (name, n) in [("A", a), ("B", b), ("late", &late)] {
        eventually_within(name, Duration::from_secs(30), || {
            revokes_all(&*n.backend, sids)
        })
        .await;
    }
    // Seconds after the loss, many probes later for both nodes: whatever each would re-publish
    // is in the stream by now.
    let len = xlen(redis);
    assert!(
        len * 2 <= live * 3,
        "{len} events for {live} live revocations: re-published more than once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_flushall_one_node_republishes_and_the_other_only_what_the_stream_lacks() {
    let Some(redis) = support::redis::start() else {
        return;
    };
    let (a, b, sids) = two_nodes_before_a_flush(&redis, Duration::from_secs(10)).await;
    let _: () = redis::cmd("FLUSHALL").query(&mut redis.conn()).unwrap();
    one_copy_enforced_everywhere(&redis, &a, &b, &sids).await;
    let marker: Option<String> = redis::cmd("GET")
        .arg("test{ss}:republished")
        .query(&mut redis.conn())
        .unwrap();
    let epoch: Option<String> = redis::cmd("GET")
        .arg("test{ss}:epoch")
        .query(&mut redis.conn())
        .unwrap();
    assert!(marker.is_some() && marker == epoch, "{marker:?} {epoch:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_republish_lock_whose_holder_died_is_taken_over() {
    let Some(redis) = support::redis::start() else {
        return;
    };
    let (a, b, sids) = two_nodes_before_a_flush(&redis, Duration::from_secs(1)).await;
    // Redis loses everything, and a node that took the lock dies before re-publishing anything:
    // in one transaction, so neither live node can take the lock first.
    let mut conn = redis.conn();
    let ((), ()): ((), ()) = redis::pipe()
        .atomic()
        .cmd("FLUSHALL")
        .cmd("SET")
        .arg("test{ss}:republish-lock")
        .arg("a-node-that-died")
        .arg("PX")
        .arg(1500)
        .query(&mut conn)
        .unwrap();
    // While the dead node's lock lasts nobody re-publishes in full; the stream stays empty.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(xlen(&redis), 0);
    one_copy_enforced_everywhere(&redis, &a, &b, &sids).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_lived_writer_does_not_trim_the_revocations_of_longer_lived_nodes() {
    let Some(redis) = support::redis::start() else {
        return;
    };
    small_stream_nodes(&redis);
    let hour = Duration::from_secs(3600);
    // A server running --absolute-timeout 72h declares it when it connects.
    let _server = node_with(&redis.url(), 72 * hour).await;
    // 300 of its revocations, recorded 30 h ago and in force for another 42 h.
    let recorded = now_ms() - 30 * 3_600_000;
    let until = (now_ms() + 42 * 3_600_000).to_string();
    let old: Vec<_> = (0..300)
        .map(|_| sealed_sessions::SessionId::from_bytes(rand::random()))
        .collect();
    let mut conn = redis.conn();
    for (i, sid) in old.iter().enumerate() {
        let _: String = redis::cmd("XADD")
            .arg(EVENTS)
            .arg(format!("{}-0", recorded + i as u64))
            .arg(&["k", "s", "id", &sid.to_string(), "until", &until])
            .query(&mut conn)
            .unwrap();
    }
    // A tool with the default 24 h (the `revoke` CLI) records a revocation.
    let tool = node_with(&redis.url(), 24 * hour).await;
    let s = tool
        .engine
        .issue("alice", String::new(), None)
        .await
        .unwrap();
    tool.engine.logout(&s.session).await.unwrap();
    assert_eq!(
        xlen(&redis),
        301,
        "the 72 h node's revocations were trimmed"
    );
    let late = node_with(&redis.url(), 72 * hour).await;
    eventually("a late node enforces them", || {
        revokes_all(&*late.backend, &old)
    })
    .await;
}

/// The "ids went backwards" signal alone is masked by any write that lands before a node's
/// next probe. Stream ids are Redis milliseconds, so the first `XADD` on a promoted
/// replica that lagged (or on a restored snapshot) gets an id above everything the nodes
/// applied: the lost events are never re-published and a node started afterwards lacks them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_followed_by_a_write_before_the_next_probe_is_still_a_loss() {
    rollback_then_writes_before_the_next_probe(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_followed_by_many_writes_before_the_next_probe_is_still_a_loss() {
    rollback_then_writes_before_the_next_probe(true).await;
}

/// A failover to a lagging replica (the stream loses its newest entries) followed, before the
/// nodes' next probe, by one write or by `many_writes`.
async fn rollback_then_writes_before_the_next_probe(many_writes: bool) {
    let Some(redis) = support::redis::start() else {
        return;
    };
    // The nodes stay up (bound) for the whole test: they are the ones that must re-publish.
    let History {
        a: _a,
        b: _b,
        snapshot,
        s,
        u,
        ..
    } = history_with_a_snapshot(&redis).await;
    // Failover to the lagging replica, and the first ordinary write after it (some node's
    // logout), before either node's next probe: one transaction here, a few ms in production.
    let mut conn = redis.conn();
    let (id, fields) = &snapshot[0];
    let until = (now_ms() + 3_600_000).to_string();
    let mut rollback = redis::pipe();
    rollback
        .atomic()
        .cmd("DEL")
        .arg(EVENTS)
        .ignore()
        .cmd("XADD")
        .arg(EVENTS)
        .arg(id)
        .arg(fields)
        .ignore();
    // One new write; with `many_writes`, more than the stream the nodes read ever received, so
    // `entries-added` does not go down and only the missing applied entries show the loss.
    for i in 0..if many_writes { 9u8 } else { 1 } {
        let sid = sealed_sessions::SessionId::from_bytes([i + 10; 16]).to_string();
        rollback
            .cmd("XADD")
            .arg(EVENTS)
            .arg("*")
            .arg(&["k", "s", "id", &sid, "until", &until])
            .ignore();
    }
    let _: () = rollback.query(&mut conn).unwrap();
    // Plenty of probes.
    tokio::time::sleep(Duration::from_secs(2)).await;
    late_node_rejecting(&redis.url(), Duration::from_secs(3), &s, &u).await;
}

/// A logout made on node B while node A's stream reader is down (its connection killed; it
/// reconnects after a backoff): a change committed on A right after must still see it, so A
/// does not mint a new id for a session B logged out. Repeated, since the window is short.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_on_one_node_sees_a_logout_just_made_on_another_even_when_its_reader_lags() {
    let Some(redis) = support::redis::start() else {
        return;
    };
    let (a, b) = (node(&redis.url()).await, node(&redis.url()).await);
    for round in 0..5 {
        let issued = a.engine.issue("dora", String::new(), None).await.unwrap();
        let on_a = a.engine.validate(&issued.token, None).unwrap();
        let on_b = b.engine.validate(&issued.token, None).unwrap();
        // Kill A's blocking reader (the connection in XREAD); its writer stays up.
        let clients: String = redis::cmd("CLIENT")
            .arg("LIST")
            .query(&mut redis.conn())
            .unwrap();
        let readers: Vec<&str> = clients
            .lines()
            .filter(|l| l.contains("cmd=xread"))
            .filter_map(|l| l.split(' ').find_map(|f| f.strip_prefix("id=")))
            .collect();
        for id in &readers {
            let _: redis::Value = redis::cmd("CLIENT")
                .arg("KILL")
                .arg("ID")
                .arg(*id)
                .query(&mut redis.conn())
                .unwrap();
        }
        b.engine.logout(&on_b).await.unwrap();
        let result = a.engine.regenerate(&on_a, None).await;
        assert!(
            matches!(result, Err(EngineError::Revoked(Revoked::Session))),
            "round {round}: {:?}",
            result.map(|i| i.session.id())
        );
    }
}

/// `Sessions::builder().build()` says at startup whether the revocation list is loaded: synced
/// from a Redis that answers; not loaded yet, naming the phase, from one that does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_builder_logs_whether_the_revocation_list_was_loaded_at_start() {
    let Some(redis) = support::redis::start() else {
        return;
    };
    support::log_capture::install();
    let build = |url: String, wait: Duration| async move {
        let engine = EngineConfig::default();
        let mut c = config(&url, engine.absolute_timeout());
        c.startup_wait = wait;
        sealed_sessions::Sessions::<()>::builder()
            .config(engine)
            .keys(ring())
            .redis_config(c)
            .build()
            .await
            .unwrap()
    };
    let up = build(redis.url(), Duration::from_secs(10)).await;
    assert!(up.engine().revocations().ready());
    let nobody = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let down_url = format!("redis://{}", nobody.local_addr().unwrap());
    drop(nobody);
    let down = build(down_url.clone(), Duration::from_millis(300)).await;
    assert!(!down.engine().revocations().ready());

    let logs = support::log_capture::captured();
    let line =
        |needle: &str, url: &str| logs.lines().any(|l| l.contains(needle) && l.contains(url));
    assert!(
        line("revocation list synced from Redis", &redis.url()),
        "{logs}"
    );
    assert!(
        line("revocation list not loaded yet (", &down_url)
            && line("503 REVOCATION_STALE", &down_url),
        "{logs}"
    );
}
