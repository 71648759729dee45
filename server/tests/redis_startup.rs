//! A node with `--redis` trusts its revocation list only once it has replayed the stream: the
//! real binary over TCP, a test-owned redis-server. Until then session routes and `/login`
//! answer 503 REVOCATION_STALE and `/healthz` 503 `synced: false`, whether Redis is down or the
//! replay is merely long; `/`, `/metrics` and `/healthz` stay up.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use support::http::{eventually, http, login, me};
use support::server::Server;

const DEV: &str = "--insecure-dev-cookies";
const EVENTS: &str = "sealed-sessions{ss}:events";

/// A cookie for alice from a memory-only node on `keys`, and its session id (from `/me`).
fn cookie_from_another_node(keys: &std::path::Path) -> (String, String) {
    let srv = Server::builder().name("issuer").keys(keys).arg(DEV).start();
    let cookie = login(srv.addr, "alice", "alice-password");
    let sid = me(srv.addr, &cookie).json()["session_id"]
        .as_str()
        .unwrap()
        .to_owned();
    srv.stop();
    (cookie, sid)
}

fn login_status(srv: &Server) -> (u16, String) {
    let body = serde_json::json!({"username": "alice", "password": "alice-password"}).to_string();
    let r = http(srv.addr, "POST", "/login", None, Some(&body));
    (r.status, r.code())
}

fn now_ms() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

#[test]
fn a_node_started_while_redis_is_down_fails_closed_until_it_has_replayed() {
    let Some(mut redis) = support::redis::start() else {
        return;
    };
    let keys = tempfile::tempdir().unwrap();
    let (cookie, _) = cookie_from_another_node(keys.path());
    let url = redis.url();
    redis.kill();

    let srv = Server::builder()
        .keys(keys.path())
        .args([DEV, "--redis", &url])
        .start();
    // It knows none of the revocations made elsewhere: no login, no session.
    assert_eq!(login_status(&srv), (503, "REVOCATION_STALE".to_owned()));
    let r = me(srv.addr, &cookie);
    assert_eq!(
        (r.status, r.code().as_str()),
        (503, "REVOCATION_STALE"),
        "{r:?}"
    );
    let h = http(srv.addr, "GET", "/healthz", None, None);
    assert_eq!(h.status, 503, "{h:?}");
    assert_eq!(h.json()["revocation"]["synced"], false, "{h:?}");
    assert_eq!(h.json()["status"], "starting", "{h:?}");
    // What needs no session stays up.
    assert_eq!(http(srv.addr, "GET", "/", None, None).status, 200);
    assert_eq!(http(srv.addr, "GET", "/metrics", None, None).status, 200);
    assert!(srv.logs().contains("Redis unreachable"), "{}", srv.logs());

    redis.restart_empty();
    eventually("healthz 200 once replayed", Duration::from_secs(15), || {
        http(srv.addr, "GET", "/healthz", None, None).status == 200
    });
    assert_eq!(me(srv.addr, &cookie).status, 200);
    assert_eq!(login_status(&srv).0, 200);
}

#[test]
fn a_node_replaying_a_long_stream_never_accepts_a_token_revoked_at_its_end() {
    let Some(redis) = support::redis::start() else {
        return;
    };
    let keys = tempfile::tempdir().unwrap();
    let (cookie, sid) = cookie_from_another_node(keys.path());

    // A long history, with alice's logout last.
    let mut conn = redis.conn();
    let until = now_ms() + 3_600_000;
    let events = 100_000;
    for chunk in 0..events / 10_000 {
        let mut pipe = redis::pipe();
        for i in 0..10_000 {
            let id = format!("{:032x}", chunk * 10_000 + i + 1);
            pipe.cmd("XADD")
                .arg(EVENTS)
                .arg("*")
                .arg(&["k", "s", "id", &id, "until", &until.to_string()])
                .ignore();
        }
        pipe.query::<()>(&mut conn).unwrap();
    }
    let _: String = redis::cmd("XADD")
        .arg(EVENTS)
        .arg("*")
        .arg(&["k", "s", "id", &sid, "until", &until.to_string()])
        .query(&mut conn)
        .unwrap();

    // Replay is fast now: hold Redis still for longer than the node's 3 s start-up wait, so
    // the node starts serving before its replay is done, whatever the machine's speed.
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(5000)
        .arg("ALL")
        .query(&mut conn)
        .unwrap();
    let srv = Server::builder()
        .keys(keys.path())
        .args([DEV, "--redis", &redis.url()])
        .start();
    let mut refused = 0;
    eventually("the logout is enforced", Duration::from_secs(90), || {
        let r = me(srv.addr, &cookie);
        match (r.status, r.code().as_str()) {
            (503, "REVOCATION_STALE") => {
                refused += 1;
                false
            }
            (401, "REVOKED") => true,
            _ => panic!("a revoked token must never pass, nor fail otherwise: {r:?}"),
        }
    });
    let h = http(srv.addr, "GET", "/healthz", None, None);
    assert_eq!(h.status, 200, "{h:?}");
    let logs = srv.logs();
    assert!(logs.contains("replaying the revocation stream"), "{logs}");
    // The guard was exercised (the replay outlasted the start-up wait), not skipped.
    assert!(
        refused > 0,
        "the node was ready at once: the replay is too short to test this"
    );
}
