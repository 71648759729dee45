//! One conformance suite for every session index backend (memory, Redis), plus the cross-node
//! behaviour of the Redis index.
#![allow(clippy::unwrap_used)]

mod support;

use sealed_sessions::SessionId;
use sealed_sessions::clock::UnixMillis;
use sealed_sessions::session_index::{
    MemorySessionIndex, RedisSessionIndex, SessionEntry, SessionIndex,
};

fn entry(b: u8, created: u64, ttl: u64) -> SessionEntry {
    SessionEntry {
        session_id: SessionId::from_bytes([b; 16]),
        created_at: UnixMillis(created),
        expires_at: UnixMillis(created + ttl),
        user_agent: format!("Browser{b} on Linux"),
    }
}

// Times in the far future so Redis's own key expiry (PEXPIREAT) never fires during a test.
const T: u64 = 4_000_000_000_000;

async fn conformance(limited: &dyn SessionIndex, unlimited: &dyn SessionIndex, user: &str) {
    // The limit evicts the oldest, and reports it.
    assert!(
        limited
            .add(user, entry(1, T, 1000), UnixMillis(T))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        limited
            .add(user, entry(2, T + 10, 1000), UnixMillis(T + 10))
            .await
            .unwrap()
            .is_empty()
    );
    let evicted = limited
        .add(user, entry(3, T + 20, 1000), UnixMillis(T + 20))
        .await
        .unwrap();
    assert_eq!(evicted, vec![entry(1, T, 1000)]);
    assert_eq!(
        limited.list(user, UnixMillis(T + 20)).await.unwrap(),
        vec![entry(2, T + 10, 1000), entry(3, T + 20, 1000)]
    );
    // Removal and clearing.
    limited
        .remove(user, entry(2, 0, 0).session_id)
        .await
        .unwrap();
    assert_eq!(
        limited.list(user, UnixMillis(T + 20)).await.unwrap(),
        vec![entry(3, T + 20, 1000)]
    );
    limited.clear(user).await.unwrap();
    assert!(
        limited
            .list(user, UnixMillis(T + 20))
            .await
            .unwrap()
            .is_empty()
    );

    // Without a limit nothing is evicted; expired sessions drop out of the list and are swept
    // on the next add.
    for i in 0..5u8 {
        let e = entry(10 + i, T + u64::from(i) * 100, 250);
        assert!(
            unlimited
                .add(user, e, UnixMillis(T))
                .await
                .unwrap()
                .is_empty()
        );
    }
    let live = unlimited.list(user, UnixMillis(T + 300)).await.unwrap();
    let ids: Vec<u8> = live.iter().map(|e| e.session_id.as_bytes()[0]).collect();
    assert_eq!(ids, vec![11, 12, 13, 14], "session 10 expired at T+250");
    // Other users are untouched.
    assert!(
        unlimited
            .list("someone-else", UnixMillis(T))
            .await
            .unwrap()
            .is_empty()
    );
    unlimited.clear(user).await.unwrap();
}

#[tokio::test]
async fn memory_index_conforms() {
    conformance(
        &MemorySessionIndex::new(Some(2)),
        &MemorySessionIndex::new(None),
        "alice",
    )
    .await;
}

#[tokio::test]
async fn redis_index_conforms_and_is_shared_between_nodes() {
    let Some(redis) = support::redis::start() else {
        return;
    };
    let url = redis.url();
    let limited = RedisSessionIndex::new(&url, "t", "ss", Some(2)).unwrap();
    let unlimited = RedisSessionIndex::new(&url, "t2", "ss", None).unwrap();
    conformance(&limited, &unlimited, "alice").await;

    // Two nodes share one index: the limit counts logins on both.
    let a = RedisSessionIndex::new(&url, "shared", "ss", Some(2)).unwrap();
    let b = RedisSessionIndex::new(&url, "shared", "ss", Some(2)).unwrap();
    a.add("bob", entry(1, T, 1000), UnixMillis(T))
        .await
        .unwrap();
    b.add("bob", entry(2, T + 1, 1000), UnixMillis(T + 1))
        .await
        .unwrap();
    let evicted = a
        .add("bob", entry(3, T + 2, 1000), UnixMillis(T + 2))
        .await
        .unwrap();
    assert_eq!(evicted, vec![entry(1, T, 1000)]);
    assert_eq!(b.list("bob", UnixMillis(T + 2)).await.unwrap().len(), 2);
}

#[tokio::test]
async fn redis_index_reports_an_outage_as_an_error_not_a_hang() {
    let Some(mut redis) = support::redis::start() else {
        return;
    };
    let idx = RedisSessionIndex::new(&redis.url(), "t", "ss", Some(2)).unwrap();
    idx.add("carol", entry(1, T, 1000), UnixMillis(T))
        .await
        .unwrap();
    redis.kill();
    let started = std::time::Instant::now();
    assert!(idx.list("carol", UnixMillis(T)).await.is_err());
    assert!(
        idx.add("carol", entry(2, T, 1000), UnixMillis(T))
            .await
            .is_err()
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}
