//! The compacted snapshot in Redis (a real, test-owned `redis-server`): a node started after a
//! snapshot loads it and reads the stream only after its id, enforcing everything revoked
//! before and after it; a snapshot of another epoch, or a corrupt one, is not used (logged,
//! whole stream replayed); one node writes a snapshot when several could.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use sealed_sessions::SessionId;
use sealed_sessions::revocation::{RedisConfig, RedisRevocations, RevocationBackend};
use support::log_capture::{self, captured};
use support::redis::{RedisServer, eventually, is_revoked, logout, now};

const PREFIX: &str = "snap";
const EVENTS: &str = "snap{ss}:events";
const HEADER: &str = "snap{ss}:snapshot";

/// A node writing a snapshot once `every` events arrived since the last (0: never).
async fn node(redis: &RedisServer, every: u64) -> RedisRevocations {
    log_capture::install();
    let mut c = RedisConfig::new(redis.url(), Duration::from_secs(86_400)).with_prefix(PREFIX);
    c.block = Duration::from_millis(200);
    c.op_timeout = Duration::from_millis(500);
    c.max_backoff = Duration::from_millis(200);
    c.startup_wait = Duration::from_secs(10);
    c.snapshot_every = every;
    let n = RedisRevocations::connect(c).await.unwrap();
    assert!(n.ready(), "{}", n.phase());
    n
}

fn header_field(redis: &RedisServer, field: &str) -> Option<String> {
    redis::cmd("HGET")
        .arg(HEADER)
        .arg(field)
        .query(&mut redis.conn())
        .unwrap()
}

/// How many snapshots were ever put in place.
fn snapshots_written(redis: &RedisServer) -> u64 {
    header_field(redis, "seq").map_or(0, |s| s.parse().unwrap())
}

/// The chunk keys of the current snapshot.
fn chunk_keys(redis: &RedisServer) -> Vec<String> {
    let generation = header_field(redis, "gen").unwrap();
    let digests: Vec<u8> = redis::cmd("HGET")
        .arg(HEADER)
        .arg("digests")
        .query(&mut redis.conn())
        .unwrap();
    (0..digests.len() / 36)
        .map(|i| format!("{HEADER}:{generation}:{i}"))
        .collect()
}

fn day_from_now() -> sealed_sessions::clock::UnixMillis {
    now().saturating_add(Duration::from_secs(86_400))
}

/// Logs `n` sessions out and bumps `user` on `node`; returns the session ids.
async fn revocations(node: &RedisRevocations, n: usize, user: &str) -> Vec<SessionId> {
    let mut sids = Vec::new();
    for _ in 0..n {
        sids.push(logout(node).await);
    }
    node.bump_user_version(user, now(), day_from_now())
        .await
        .unwrap();
    sids
}

fn user_revoked(node: &RedisRevocations, user: &str) -> bool {
    node.check(&support::redis::new_sid(), user, 0, now())
        .is_err()
}

/// Node A makes 6 logouts and a user bump (7 events, `snapshot_every` 7) and writes a
/// snapshot; returns A, the revocations and the snapshot's stream id.
async fn snapshot_after_seven_events(
    redis: &RedisServer,
) -> (RedisRevocations, Vec<SessionId>, String) {
    let a = node(redis, 7).await;
    let before = revocations(&a, 6, "bob").await;
    eventually("a snapshot is written", Duration::from_secs(10), || {
        snapshots_written(redis) == 1
    })
    .await;
    let id = header_field(redis, "id").unwrap();
    assert_eq!(header_field(redis, "sessions").as_deref(), Some("6"));
    assert_eq!(header_field(redis, "users").as_deref(), Some("1"));
    (a, before, id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_started_after_a_snapshot_enforces_revocations_made_before_and_after_it() {
    let Some(redis) = support::redis::start() else {
        return;
    };
    let (a, before, id) = snapshot_after_seven_events(&redis).await;
    // After the snapshot: two logouts and another user's bump (fewer than 7: no new snapshot).
    let after = revocations(&a, 2, "carol").await;
    // The stream keeps only what came after the snapshot's id, so what came before can only
    // come from the snapshot, and what came after only from the stream read from its id.
    let (ms, seq) = id.split_once('-').unwrap();
    let next = format!("{ms}-{}", seq.parse::<u64>().unwrap() + 1);
    let _: u64 = redis::cmd("XTRIM")
        .arg(EVENTS)
        .arg("MINID")
        .arg(&next)
        .query(&mut redis.conn())
        .unwrap();
    let len: u64 = redis::cmd("XLEN")
        .arg(EVENTS)
        .query(&mut redis.conn())
        .unwrap();
    // At least the three made after it (the snapshot may cover fewer than all seven before:
    // its id is where its writer had read up to when it took the lock).
    assert!(len >= 3, "{len}");

    let late = node(&redis, 0).await;
    for sid in before.iter().chain(&after) {
        assert!(is_revoked(&late, sid), "{sid}");
    }
    assert!(user_revoked(&late, "bob"), "bump before the snapshot");
    assert!(user_revoked(&late, "carol"), "bump after the snapshot");
    let cold = late.cold_start().unwrap();
    assert_eq!(cold.snapshot_entries, 7, "{cold:?}");
    assert_eq!(cold.stream_events, len, "{cold:?}");
    assert_eq!(cold.snapshot_rejected, None);
    assert_eq!(snapshots_written(&redis), 1);
    // It goes on tailing: a logout on A still reaches it.
    support::redis::propagates(&a, &late).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_from_another_epoch_is_ignored() {
    let Some(redis) = support::redis::start() else {
        return;
    };
    let (a, _, _) = snapshot_after_seven_events(&redis).await;
    drop(a);
    // A loss the snapshot did not see: a new epoch, and a stream whose only event has an id
    // below the snapshot's. Tailing from the snapshot's id would skip it.
    let sid = support::redis::new_sid();
    let until = day_from_now().0.to_string();
    let _: () = redis::pipe()
        .atomic()
        .cmd("SET")
        .arg("snap{ss}:epoch")
        .arg("another-epoch")
        .ignore()
        .cmd("DEL")
        .arg(EVENTS)
        .ignore()
        .cmd("XADD")
        .arg(EVENTS)
        .arg("1-1")
        .arg(&["k", "s", "id", &sid.to_string(), "until", &until])
        .ignore()
        .query(&mut redis.conn())
        .unwrap();
    let late = node(&redis, 0).await;
    assert!(is_revoked(&late, &sid), "the event below the snapshot's id");
    let cold = late.cold_start().unwrap();
    assert_eq!(cold.snapshot_entries, 0, "{cold:?}");
    assert!(
        cold.snapshot_rejected
            .as_deref()
            .is_some_and(|r| r.contains("another epoch")),
        "{cold:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_snapshot_is_rejected_with_a_logged_error_and_the_stream_replayed() {
    let Some(redis) = support::redis::start() else {
        return;
    };
    let (a, before, _) = snapshot_after_seven_events(&redis).await;
    drop(a);
    let chunks = chunk_keys(&redis);
    assert_eq!(chunks.len(), 2, "a sessions chunk, then a users chunk");
    let saved: Vec<(String, Vec<u8>)> = redis::cmd("HGETALL")
        .arg(HEADER)
        .query(&mut redis.conn())
        .unwrap();
    let users_chunk: Vec<u8> = redis::cmd("GET")
        .arg(&chunks[1])
        .query(&mut redis.conn())
        .unwrap();

    // Each case damages the snapshot one way; a fresh node must replay the whole stream (the
    // user bump is only in the users chunk, which comes last: a node that kept the sessions
    // chunk and took the load as complete would miss it).
    type Damage = Box<dyn Fn(&mut redis::Connection)>;
    let (c1, c1b) = (chunks[1].clone(), chunks[1].clone());
    let cases: Vec<(&str, Damage, &str)> = vec![
        (
            "a flipped byte in the last chunk",
            Box::new(move |c| {
                let _: u64 = redis::cmd("SETRANGE")
                    .arg(&c1)
                    .arg(20)
                    .arg(&[0xA5u8][..])
                    .query(c)
                    .unwrap();
            }),
            "does not match its digest",
        ),
        (
            "the last chunk gone",
            Box::new(move |c| {
                let _: u64 = redis::cmd("DEL").arg(&c1b).query(c).unwrap();
            }),
            "missing",
        ),
        (
            "garbage digests",
            Box::new(|c| {
                let _: u64 = redis::cmd("HSET")
                    .arg(HEADER)
                    .arg("digests")
                    .arg("garbage")
                    .query(c)
                    .unwrap();
            }),
            "partial entry",
        ),
        (
            "a string instead of the header",
            Box::new(|c| {
                let _: () = redis::cmd("SET")
                    .arg(HEADER)
                    .arg("garbage")
                    .query(c)
                    .unwrap();
            }),
            "not a hash",
        ),
    ];
    for (case, damage, reason) in cases {
        // Restore the good snapshot, then damage it.
        let mut c = redis.conn();
        let _: () = redis::cmd("DEL").arg(HEADER).query(&mut c).unwrap();
        let _: () = redis::cmd("HSET")
            .arg(HEADER)
            .arg(&saved)
            .query(&mut c)
            .unwrap();
        let _: () = redis::cmd("SET")
            .arg(&chunks[1])
            .arg(&users_chunk)
            .query(&mut c)
            .unwrap();
        damage(&mut c);

        let late = node(&redis, 0).await;
        let cold = late.cold_start().unwrap();
        let rejected = cold.snapshot_rejected.clone().unwrap_or_default();
        assert!(rejected.contains(reason), "{case}: {cold:?}");
        assert_eq!(cold.stream_events, 7, "{case}: the whole stream replayed");
        for sid in &before {
            assert!(is_revoked(&late, sid), "{case}");
        }
        assert!(user_revoked(&late, "bob"), "{case}");
    }
    let logs = captured();
    assert!(
        logs.contains("ERROR") && logs.contains("revocation snapshot rejected"),
        "{logs}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_one_node_writes_a_snapshot_when_several_are_eligible() {
    let Some(redis) = support::redis::start() else {
        return;
    };
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(Arc::new(node(&redis, 40).await));
    }
    let writer = node(&redis, 0).await;
    // 40 logouts at once: every node sees the snapshot become due at about the same time.
    let writer = Arc::new(writer);
    let tasks: Vec<_> = (0..40)
        .map(|_| {
            let w = writer.clone();
            tokio::spawn(async move { logout(&w).await })
        })
        .collect();
    let mut sids = Vec::new();
    for t in tasks {
        sids.push(t.await.unwrap());
    }
    eventually("a snapshot is written", Duration::from_secs(10), || {
        snapshots_written(&redis) >= 1
    })
    .await;
    // Every node has tried by now (each tries after reaching the tail, every 200 ms).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(snapshots_written(&redis), 1, "one snapshot, by one node");
    let generations: Vec<String> = redis::cmd("KEYS")
        .arg("snap{ss}:snapshot:*")
        .query(&mut redis.conn())
        .unwrap();
    assert_eq!(
        generations.len(),
        1,
        "one chunk of one generation: {generations:?}"
    );
    let late = node(&redis, 0).await;
    let cold = late.cold_start().unwrap();
    assert!(cold.snapshot_entries > 0, "{cold:?}");
    assert!(sids.iter().all(|s| is_revoked(&late, s)));
}
