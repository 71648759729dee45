//! Redis Cluster (3 primaries + 3 replicas started by the test): nodes seeded with a node that
//! does not own the keys' slot share revocations (MOVED followed); a `CLUSTER FAILOVER` of the
//! slot's primary loses nothing and propagation resumes within 5 s; a plain `--redis` pointed at
//! a cluster node says to use `--redis-cluster`.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use sealed_sessions::revocation::{RedisConfig, RedisRevocations, RevocationBackend, SyncPhase};
use sealed_sessions::session_index::{RedisSessionIndex, SessionEntry, SessionIndex};
use support::bin::{cmd, run, text};
use support::redis::{Cluster, eventually, is_revoked, logouts_until, propagates, quick};

fn day() -> Duration {
    Duration::from_secs(86_400)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_share_revocations_through_a_cluster_and_survive_a_primary_failover() {
    let cluster = Cluster::start();
    let slot = cluster.slot("topo{ss}");
    // Seeded with a node that does not own the slot: everything is redirected.
    let seed = Cluster::url(cluster.other_primary(slot));
    let config = || quick(RedisConfig::cluster([seed.clone()], day()));
    let a = RedisRevocations::connect(config()).await.unwrap();
    let b = RedisRevocations::connect(config()).await.unwrap();
    assert!(a.ready() && b.ready(), "{} / {}", a.phase(), b.phase());
    let before = propagates(&a, &b).await;
    propagates(&b, &a).await;

    // Logouts racing the failover: made while the switch happens, none may be lost.
    let cluster = Arc::new(cluster);
    let failing_over = tokio::task::spawn_blocking({
        let cluster = cluster.clone();
        move || cluster.failover(slot)
    });
    let during = logouts_until(&a, || failing_over.is_finished()).await;
    let new_primary = failing_over.await.unwrap();
    eventually(
        "every logout made at the switch reaches B",
        Duration::from_secs(5),
        || during.iter().all(|sid| is_revoked(&b, sid)),
    )
    .await;
    assert!(
        is_revoked(&b, &before),
        "revocations from before the failover still enforced"
    );
    // Propagation resumes within 5 s, both ways.
    propagates(&a, &b).await;
    propagates(&b, &a).await;
    // The stream now lives on the promoted replica.
    let mut c = support::redis::conn_to(new_primary);
    let len: u64 = redis::cmd("XLEN")
        .arg("topo{ss}:events")
        .query(&mut c)
        .unwrap();
    assert!(len >= 5, "{len}");
    assert_eq!(a.phase(), SyncPhase::Synced);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_index_works_on_a_cluster() {
    let cluster = Cluster::start();
    let slot = cluster.slot("topo{ss}");
    let seed = Cluster::url(cluster.other_primary(slot));
    let config = quick(RedisConfig::cluster([seed], day()));
    let index = RedisSessionIndex::for_config(&config, Some(2)).unwrap();
    let now = support::redis::now();
    let entry = |n: u64| SessionEntry {
        session_id: support::redis::new_sid(),
        created_at: sealed_sessions::clock::UnixMillis(now.0 + n),
        expires_at: now.saturating_add(day()),
        user_agent: "test".into(),
    };
    let first = entry(0);
    index.add("alice", first.clone(), now).await.unwrap();
    index.add("alice", entry(1), now).await.unwrap();
    let evicted = index.add("alice", entry(2), now).await.unwrap();
    assert_eq!(evicted, vec![first], "the oldest is evicted past the limit");
    assert_eq!(index.list("alice", now).await.unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_redis_url_at_a_cluster_node_says_to_use_redis_cluster() {
    let cluster = Cluster::start();
    let url = Cluster::url(cluster.ports[0]);
    let mut config = quick(RedisConfig::new(url.clone(), day()));
    config.startup_wait = Duration::from_millis(500);
    let node = RedisRevocations::connect(config).await.unwrap();
    eventually("the phase names the fix", Duration::from_secs(5), || {
        matches!(node.phase(), SyncPhase::WrongTopology(ref e) if e.contains("use --redis-cluster"))
    })
    .await;
    assert!(!node.ready());
    // The command says the same, and fails.
    let sid = support::redis::new_sid().to_string();
    let out = run(cmd().args([
        "revoke",
        "--redis",
        &url,
        "--session",
        &sid,
        "--timeout",
        "1s",
    ]));
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("use --redis-cluster"),
        "{}",
        text(&out.stderr)
    );
    // With --redis-cluster the same node works.
    let out = run(cmd().args(["revoke", "--redis-cluster", &url, "--session", &sid]));
    assert!(out.status.success(), "{}", text(&out.stderr));
}
