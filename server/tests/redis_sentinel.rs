//! Redis Sentinel (a primary, its replica and one sentinel started by the test): nodes find the
//! primary through the sentinel; after `SENTINEL FAILOVER` they reach the new primary, earlier
//! revocations are still enforced, logouts made during the switch are not lost, and propagation
//! resumes within 5 s. The binary takes `--redis-sentinel`; two mode flags are refused.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use sealed_sessions::revocation::{RedisConfig, RedisRevocations, RevocationBackend};
use support::bin::{cmd, run, text};
use support::http::{http, login, me};
use support::redis::{
    SENTINEL_MASTER, Sentinel, eventually, is_revoked, logouts_until, propagates, quick,
};
use support::server::Server;

fn day() -> Duration {
    Duration::from_secs(86_400)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_follow_a_sentinel_failover_without_losing_revocations() {
    let set = Arc::new(Sentinel::start());
    let config = || {
        quick(RedisConfig::sentinel(
            [set.sentinel_url()],
            SENTINEL_MASTER,
            day(),
        ))
    };
    let a = RedisRevocations::connect(config()).await.unwrap();
    let b = RedisRevocations::connect(config()).await.unwrap();
    assert!(a.ready() && b.ready(), "{} / {}", a.phase(), b.phase());
    let before = propagates(&a, &b).await;
    propagates(&b, &a).await;

    let failing_over = tokio::task::spawn_blocking({
        let set = set.clone();
        move || set.failover()
    });
    let during = logouts_until(&a, || failing_over.is_finished()).await;
    failing_over.await.unwrap();
    eventually(
        "every logout made during the switch reaches B",
        Duration::from_secs(5),
        || during.iter().all(|sid| is_revoked(&b, sid)),
    )
    .await;
    assert!(
        is_revoked(&b, &before),
        "revocations from before the failover"
    );
    propagates(&a, &b).await;
    propagates(&b, &a).await;
    // A node started now learns every logout, including those the old primary took just before
    // or after the replica's promotion (asynchronous replication loses them there): A writes
    // its recent revocations again when it reconnects (`RedisConfig::resend_window`).
    let late = RedisRevocations::connect(config()).await.unwrap();
    eventually(
        "a node started after the failover enforces every logout made during it",
        Duration::from_secs(5),
        || during.iter().all(|sid| is_revoked(&late, sid)) && is_revoked(&late, &before),
    )
    .await;
}

#[test]
fn two_servers_with_redis_sentinel_share_a_logout() {
    let set = Sentinel::start();
    let keys = tempfile::tempdir().unwrap();
    let flags = |name: &str| {
        Server::builder()
            .name(name)
            .keys(keys.path())
            .args([
                "--insecure-dev-cookies",
                "--redis-sentinel",
                &set.sentinel_url(),
                "--redis-sentinel-master",
                SENTINEL_MASTER,
            ])
            .start()
    };
    let a = flags("a");
    let b = flags("b");
    let cookie = login(a.addr, "alice", "alice-password");
    assert_eq!(me(b.addr, &cookie).status, 200);
    let out = http(a.addr, "POST", "/logout", Some(&cookie), Some("{}"));
    assert!(out.status < 300, "{out:?}");
    support::http::eventually(
        "B rejects the logged-out cookie",
        Duration::from_secs(5),
        || me(b.addr, &cookie).code() == "REVOKED",
    );
}

#[test]
fn two_redis_modes_are_refused_naming_both() {
    let sid = "00112233445566778899aabbccddeeff";
    for (first, second) in [
        ("--redis", "--redis-cluster"),
        ("--redis", "--redis-sentinel"),
        ("--redis-cluster", "--redis-sentinel"),
    ] {
        for command in [&["revoke", "--session", sid][..], &["serve"][..]] {
            let out = run(cmd().args(command).args([
                first,
                "redis://127.0.0.1:1",
                second,
                "redis://127.0.0.1:2",
                "--redis-sentinel-master",
                "m",
            ]));
            let err = text(&out.stderr);
            assert!(!out.status.success(), "{command:?} {first} {second}");
            assert!(err.contains(first) && err.contains(second), "{err}");
        }
    }
}
