//! Revocation synced through a real Redis (started by the test): several nodes, outages, data
//! loss and stream trimming.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use sealed_sessions::engine::Rejection;
use sealed_sessions::revocation::{RedisConfig, RedisRevocations, RevocationBackend};
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
    let backend = Arc::new(
        RedisRevocations::connect(config(url, absolute))
            .await
            .unwrap(),
    );
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
async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
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
    let s = a.engine.issue("alice", String::new(), None).await.unwrap();
    let u = a.engine.issue("bob", String::new(), None).await.unwrap();
    a.engine.logout(&s.session).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2)).await;
    a.engine.logout_everywhere("bob").await.unwrap();

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
    let late = node(&redis.url()).await;
    eventually("late node rejects the logged-out session", || {
        revoked(&late, &s.token)
    })
    .await;
    eventually("late node rejects the bumped user", || {
        revoked(&late, &u.token)
    })
    .await;
    // And a login on the late node carries the re-published version.
    let v = late.engine.issue("bob", String::new(), None).await.unwrap();
    assert!(v.session.claims().version > u.session.claims().version);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_and_the_local_lists_stay_bounded_under_a_long_run_of_logouts() {
    let Some(redis) = support::redis::start() else {
        return;
    };
    // A 2-second session lifetime makes trimming observable.
    let a = node_with(&redis.url(), Duration::from_secs(2)).await;
    for round in 0..4 {
        for _ in 0..200 {
            let s = a.engine.issue("alice", String::new(), None).await.unwrap();
            a.engine.logout(&s.session).await.unwrap();
        }
        if round < 3 {
            tokio::time::sleep(Duration::from_millis(1100)).await;
        }
    }
    let mut conn = redis.conn();
    let len: u64 = redis::cmd("XLEN")
        .arg("test{ss}:events")
        .query(&mut conn)
        .unwrap();
    // 800 events written over ~3.3 s; only the last ~2 s (plus `~` trimming slack of one
    // stream node, 100 entries) may remain.
    assert!(len < 700, "stream holds {len} events");
    // The local list forgets expired ids when it sweeps.
    let purged = a
        .backend
        .local()
        .purge_expired(sealed_sessions::clock::UnixMillis(u64::MAX / 2));
    assert!(purged > 0);
    assert_eq!(a.backend.stats().revoked_sessions, 0);
}
