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

/// A TCP proxy in front of Redis that forwards every request but, while `swallow` is set,
/// drops Redis's replies: the command runs, its caller never hears back.
struct SwallowingProxy {
    url: String,
    swallow: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SwallowingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn swallowing_proxy(upstream_port: u16) -> SwallowingProxy {
    use std::sync::atomic::Ordering;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("redis://{}/", listener.local_addr().unwrap());
    let swallow = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = swallow.clone();
    let task = tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", upstream_port)).await
            else {
                continue;
            };
            let (mut cr, mut cw) = client.into_split();
            let (mut sr, mut sw) = server.into_split();
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut cr, &mut sw).await;
            });
            let flag = flag.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = match sr.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    if !flag.load(Ordering::SeqCst) && cw.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    SwallowingProxy { url, swallow, task }
}

fn wall_now() -> UnixMillis {
    UnixMillis(
        u64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis(),
        )
        .unwrap(),
    )
}

/// Issue: the limit failed open — the script evicted, but only the node that got the reply
/// revoked. Now the eviction and the revocation events are one script.
#[tokio::test]
async fn an_eviction_whose_reply_is_lost_is_still_revoked_on_other_nodes() {
    use sealed_sessions::RevocationBackend as _;
    use sealed_sessions::revocation::{RedisConfig, RedisRevocations, Revoked};

    let Some(redis) = support::redis::start() else {
        return;
    };
    let hour = std::time::Duration::from_secs(3600);
    let other_node =
        RedisRevocations::connect(RedisConfig::new(redis.url(), hour).with_prefix("p"))
            .await
            .unwrap();
    let proxy = swallowing_proxy(redis.port).await;
    let idx = RedisSessionIndex::new(&proxy.url, "p", "ss", Some(1)).unwrap();
    let (first, second) = (entry(1, T, 1000), entry(2, T + 1, 1000));
    assert!(
        idx.add("dave", first.clone(), UnixMillis(T))
            .await
            .unwrap()
            .is_empty()
    );

    // The login past the limit runs in Redis, but its reply never arrives.
    proxy
        .swallow
        .store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(
        idx.add("dave", second.clone(), UnixMillis(T + 1))
            .await
            .is_err(),
        "the reply was meant to be lost"
    );
    proxy
        .swallow
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let direct = RedisSessionIndex::new(&redis.url(), "p", "ss", Some(1)).unwrap();
    assert_eq!(
        direct.list("dave", UnixMillis(T + 1)).await.unwrap(),
        vec![second.clone()],
        "Redis evicted the first session: it is no longer listed, so no user can DELETE it"
    );

    // So the eviction must reach every node by itself: the other node's tail applies it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while other_node
        .check(&first.session_id, "dave", 0, wall_now())
        .is_ok()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the evicted session is still valid on the other node"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        other_node.check(&first.session_id, "dave", 0, wall_now()),
        Err(Revoked::Session)
    );
    assert_eq!(
        other_node.check(&second.session_id, "dave", 0, wall_now()),
        Ok(())
    );
}

/// Writes `n` live sessions for `user` the way the previous version did (a sorted set by
/// creation and a hash of JSON details, no expiry set), in one server-side loop.
fn prefill_legacy(conn: &mut redis::Connection, prefix: &str, user: &str, tag: u64, n: u64) {
    const FILL: &str = r#"
for i = 1, tonumber(ARGV[1]) do
  local sid = string.format('%016x%016x', tonumber(ARGV[2]), i)
  local created = tonumber(ARGV[3]) + i
  redis.call('ZADD', KEYS[1], created, sid)
  redis.call('HSET', KEYS[2], sid, string.format(
    '{"sid":"%s","created_at":%d,"expires_at":%d,"user_agent":"Firefox on Linux"}',
    sid, created, created + 1000000000))
end
return 1
"#;
    let base = format!("{prefix}{{ss}}");
    let _: i64 = redis::cmd("EVAL")
        .arg(FILL)
        .arg(2)
        .arg(format!("{base}:sessions:{user}"))
        .arg(format!("{base}:sessioninfo:{user}"))
        .arg(n)
        .arg(tag)
        .arg(T)
        .query(conn)
        .unwrap();
}

/// What one command cost Redis, from `INFO commandstats` after a `CONFIG RESETSTAT`: the
/// script's own time (µs) and how many commands it ran (`redis.call`s are counted there too).
struct ScriptCost {
    usec: u64,
    calls: u64,
}

fn script_cost(conn: &mut redis::Connection) -> ScriptCost {
    let info: String = redis::cmd("INFO").arg("commandstats").query(conn).unwrap();
    let mut cost = ScriptCost { usec: 0, calls: 0 };
    for line in info.lines() {
        let Some((name, stats)) = line
            .strip_prefix("cmdstat_")
            .and_then(|l| l.split_once(':'))
        else {
            continue;
        };
        let field = |key: &str| -> u64 {
            stats
                .split(',')
                .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
                .map_or(0, |v| v.parse().unwrap())
        };
        match name {
            "eval" | "evalsha" => cost.usec += field("usec"),
            // The connection's own set-up and the measurement itself.
            "config" | "info" | "client" | "hello" | "select" | "ping" => {}
            _ => cost.calls += field("calls"),
        }
    }
    cost
}

/// One login (newer than every prefilled session) and what its script cost Redis; also how many
/// sessions it evicted.
async fn measured_login(
    idx: &RedisSessionIndex,
    conn: &mut redis::Connection,
    user: &str,
    b: u8,
) -> (ScriptCost, usize) {
    let _: () = redis::cmd("CONFIG").arg("RESETSTAT").query(conn).unwrap();
    let new = entry(b, T + 10_000_000, 1_000_000);
    // A script that scans the whole index does not even answer within the op timeout.
    let evicted = idx
        .add(user, new, UnixMillis(T))
        .await
        .unwrap_or_else(|e| panic!("one login on {user}'s index: {e}"));
    (script_cost(conn), evicted.len())
}

/// Issue: the add script ran `HGETALL` and decoded every entry, so a user with a huge index
/// (200k entries: over half a second of Redis per login) stalled Redis for everyone. Now one
/// login's work does not depend on the size of the user's index.
#[tokio::test]
async fn one_login_costs_redis_the_same_for_a_small_and_a_huge_index() {
    let Some(redis) = support::redis::start() else {
        return;
    };
    let mut conn = redis.conn();
    let (small, huge) = (1_000u64, 50_000u64);
    for k in 0..3u64 {
        prefill_legacy(&mut conn, "b", &format!("small{k}"), k, small);
        prefill_legacy(&mut conn, "b", &format!("huge{k}"), 100 + k, huge);
    }
    let idx = RedisSessionIndex::new(&redis.url(), "b", "ss", Some(100)).unwrap();

    // The list is bounded by the limit, whatever Redis holds.
    let listed = idx.list("huge0", UnixMillis(T)).await.unwrap();
    assert_eq!(listed.len(), 100, "the newest 100 of {huge}");
    assert!(listed.windows(2).all(|w| w[0].created_at < w[1].created_at));
    assert_eq!(listed[99].created_at, UnixMillis(T + huge));

    let (mut small_costs, mut huge_costs) = (Vec::new(), Vec::new());
    for k in 0..3u8 {
        small_costs.push(measured_login(&idx, &mut conn, &format!("small{k}"), 200 + k).await);
        huge_costs.push(measured_login(&idx, &mut conn, &format!("huge{k}"), 210 + k).await);
    }
    // Commands run: the same for both (a bounded batch of evictions), not one per entry.
    let calls = |c: &[(ScriptCost, usize)]| c.iter().map(|(c, _)| c.calls).max().unwrap();
    assert!(
        calls(&huge_costs) <= calls(&small_costs),
        "one login ran {} commands on a huge index, {} on a small one",
        calls(&huge_costs),
        calls(&small_costs)
    );
    // Time, as a ratio within this run (the minimum of three, against scheduling noise):
    // proportional to the index size it would be about 50×.
    let usec = |c: &[(ScriptCost, usize)]| c.iter().map(|(c, _)| c.usec).min().unwrap().max(1);
    let ratio = usec(&huge_costs) as f64 / usec(&small_costs) as f64;
    eprintln!(
        "one login: {} commands / {} µs on {small} entries, {} commands / {} µs on {huge}",
        calls(&small_costs),
        usec(&small_costs),
        calls(&huge_costs),
        usec(&huge_costs)
    );
    assert!(
        ratio < 10.0,
        "a login on a {huge}-entry index took {ratio:.1}× one on a {small}-entry index ({} vs {} µs)",
        usec(&huge_costs),
        usec(&small_costs)
    );

    // Each eviction is published as a revocation event in the same script.
    let evicted: usize = small_costs.iter().chain(&huge_costs).map(|(_, n)| n).sum();
    assert!(evicted > 0);
    let events: usize = redis::cmd("XLEN")
        .arg("b{ss}:events")
        .query(&mut conn)
        .unwrap();
    assert_eq!(events, evicted);
}
