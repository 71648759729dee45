//! Redis Cluster (3 primaries + 3 replicas started by the test): nodes seeded with a node that
//! does not own the keys' slot share revocations (MOVED followed); a `CLUSTER FAILOVER` of the
//! slot's primary loses nothing and propagation resumes within 5 s; so does a migration of the
//! slot to another primary (its keys moved one by one while both nodes log out); a plain
//! `--redis` pointed at a cluster node says to use `--redis-cluster`.
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
async fn nodes_share_revocations_through_a_slot_migration_with_nothing_lost() {
    let cluster = Cluster::start();
    let slot = cluster.slot("topo{ss}");
    let seed = Cluster::url(cluster.ports[0]);
    // Snapshots every few events: the snapshot's keys (header, chunks) move with the slot too.
    let config = |snapshot_every| {
        let mut c = quick(RedisConfig::cluster([seed.clone()], day()));
        c.snapshot_every = snapshot_every;
        c
    };
    let a = RedisRevocations::connect(config(3)).await.unwrap();
    let b = RedisRevocations::connect(config(3)).await.unwrap();
    assert!(a.ready() && b.ready(), "{} / {}", a.phase(), b.phase());
    let mut before = vec![propagates(&a, &b).await, propagates(&b, &a).await];
    let user_until = support::redis::now().saturating_add(day());
    a.bump_user_version("mallory", support::redis::now(), user_until)
        .await
        .unwrap();
    before.push(propagates(&a, &b).await);
    let old_owner = cluster.owner_and_replica(slot).0;

    // Logouts on both nodes while the slot's keys move one by one (200 ms apart): for a while
    // the stream is on one primary and the epoch or horizon key on the other.
    let cluster = Arc::new(cluster);
    let migrating = tokio::task::spawn_blocking({
        let cluster = cluster.clone();
        move || cluster.migrate_slot(slot, Duration::from_millis(200))
    });
    let done = || migrating.is_finished();
    let (during_a, during_b) = tokio::join!(logouts_until(&a, done), logouts_until(&b, done));
    let new_owner = migrating.await.unwrap();
    assert_ne!(new_owner, old_owner);
    let keys_in_slot = |port: u16| -> u64 {
        redis::cmd("CLUSTER")
            .arg("COUNTKEYSINSLOT")
            .arg(slot)
            .query(&mut support::redis::conn_to(port))
            .unwrap()
    };
    assert_eq!(keys_in_slot(old_owner), 0, "every key moved");
    assert!(
        keys_in_slot(new_owner) >= 6,
        "events, epoch, horizon, version key, snapshot header and chunk"
    );
    eventually(
        "every logout made during the migration reaches the other node",
        Duration::from_secs(5),
        || {
            during_a.iter().all(|sid| is_revoked(&b, sid))
                && during_b.iter().all(|sid| is_revoked(&a, sid))
        },
    )
    .await;
    for sid in &before {
        assert!(is_revoked(&a, sid) && is_revoked(&b, sid));
    }
    // Propagation goes on, both ways, within 5 s.
    propagates(&a, &b).await;
    propagates(&b, &a).await;
    // The stream lives on the new owner.
    let len = |port: u16| -> Option<u64> {
        redis::cmd("XLEN")
            .arg("topo{ss}:events")
            .query(&mut support::redis::conn_to(port))
            .ok()
    };
    assert!(
        len(new_owner).is_some_and(|n| n as usize >= before.len() + during_a.len()),
        "{:?}",
        len(new_owner)
    );
    // A node started after the migration enforces all of it.
    let late = RedisRevocations::connect(config(0)).await.unwrap();
    assert!(late.ready(), "{}", late.phase());
    let cold = late.cold_start().unwrap();
    assert!(cold.snapshot_entries > 0, "{cold:?}");
    for sid in before.iter().chain(&during_a).chain(&during_b) {
        assert!(is_revoked(&late, sid), "{sid}");
    }
    assert!(
        late.check(
            &support::redis::new_sid(),
            "mallory",
            0,
            support::redis::now()
        )
        .is_err(),
        "the user bump made before the migration"
    );
    assert_eq!(a.phase(), SyncPhase::Synced);
    assert_eq!(b.phase(), SyncPhase::Synced);
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
