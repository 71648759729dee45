//! Session listing, per-session revocation and the concurrent-session limit, over real HTTP —
//! on one node in memory, and across two nodes of the binary sharing one Redis.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

const KEYS: &str = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

fn client(ua: &str) -> Client {
    Client::builder()
        .cookie_store(true)
        .user_agent(ua)
        .build()
        .unwrap()
}

const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0";
const SAFARI: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.0 Mobile/15E148 Safari/604.1";

async fn login(c: &Client, base: &str, user: &str, pw: &str) {
    let r = c
        .post(format!("{base}/login"))
        .json(&json!({"username": user, "password": pw}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

async fn me(c: &Client, base: &str) -> (StatusCode, Value) {
    let r = c.get(format!("{base}/me")).send().await.unwrap();
    (r.status(), r.json().await.unwrap())
}

async fn sessions(c: &Client, base: &str) -> Vec<Value> {
    let r = c.get(format!("{base}/sessions")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    v["sessions"].as_array().unwrap().clone()
}

#[tokio::test]
async fn users_list_their_sessions_and_revoke_one_and_the_limit_evicts_the_oldest() {
    let server =
        support::server::start(&["--insecure-dev-cookies", "--max-sessions-per-user", "2"]);
    let base = server.origin();
    let (laptop, phone) = (client(FIREFOX), client(SAFARI));
    login(&laptop, &base, "alice", "alice-password").await;
    login(&phone, &base, "alice", "alice-password").await;

    let list = sessions(&phone, &base).await;
    assert_eq!(list.len(), 2);
    let agents: Vec<&str> = list
        .iter()
        .map(|s| s["user_agent"].as_str().unwrap())
        .collect();
    assert_eq!(agents, vec!["Firefox on Linux", "Safari on iOS"]);
    let current: Vec<bool> = list
        .iter()
        .map(|s| s["current"].as_bool().unwrap())
        .collect();
    assert_eq!(
        current,
        vec![false, true],
        "the phone's own session is marked current"
    );

    // The phone revokes the laptop's session.
    let laptop_sid = list[0]["session_id"].as_str().unwrap().to_owned();
    let r = phone
        .delete(format!("{base}/sessions/{laptop_sid}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let (status, body) = me(&laptop, &base).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("REVOKED"))
    );
    assert_eq!(sessions(&phone, &base).await.len(), 1);

    // Another user's session id, or garbage, cannot be revoked through this route.
    let bob = client(FIREFOX);
    login(&bob, &base, "admin", "admin-password").await;
    let (_, bob_me) = me(&bob, &base).await;
    let bob_sid = bob_me["session_id"].as_str().unwrap();
    let r = phone
        .delete(format!("{base}/sessions/{bob_sid}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(me(&bob, &base).await.0, StatusCode::OK);
    let r = phone
        .delete(format!("{base}/sessions/not-hex"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    // Limit 2: a third and fourth login evict the oldest sessions.
    let (c3, c4) = (client(FIREFOX), client(FIREFOX));
    login(&c3, &base, "alice", "alice-password").await;
    assert_eq!(
        me(&phone, &base).await.0,
        StatusCode::OK,
        "two sessions: within the limit"
    );
    login(&c4, &base, "alice", "alice-password").await;
    let (status, body) = me(&phone, &base).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("REVOKED"))
    );
    assert_eq!(me(&c3, &base).await.0, StatusCode::OK);
    assert_eq!(me(&c4, &base).await.0, StatusCode::OK);
    assert_eq!(sessions(&c4, &base).await.len(), 2);

    // Revoking one's own current session logs this client out.
    let own = sessions(&c4, &base)
        .await
        .into_iter()
        .find(|s| s["current"] == true)
        .unwrap();
    let r = c4
        .delete(format!(
            "{base}/sessions/{}",
            own["session_id"].as_str().unwrap()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(me(&c4, &base).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn two_nodes_on_one_redis_share_revocations_the_limit_and_the_list() {
    let Some(redis) = support::redis::start() else {
        return;
    };
    let url = redis.url();
    let args = [
        "--insecure-dev-cookies",
        "--redis",
        &url,
        "--max-sessions-per-user",
        "2",
    ];
    let a = support::server::start_with_env(&args, &[("SEALED_SESSIONS_KEYS", KEYS)]);
    let b = support::server::start_with_env(&args, &[("SEALED_SESSIONS_KEYS", KEYS)]);
    let (base_a, base_b) = (a.origin(), b.origin());

    // A cookie from node A works on node B (shared keys), and a logout on A is enforced on B.
    let c = client(FIREFOX);
    login(&c, &base_a, "alice", "alice-password").await;
    assert_eq!(me(&c, &base_b).await.0, StatusCode::OK);
    let saved = {
        let r = c.get(format!("{base_b}/sessions")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let v: Value = r.json().await.unwrap();
        assert_eq!(
            v["sessions"].as_array().unwrap().len(),
            1,
            "B lists A's login"
        );
        v
    };
    assert!(saved["sessions"][0]["current"].as_bool().unwrap());

    // Limit across nodes: logins on A, B, B — the first (on A) is evicted and B... and A reject it.
    let (c2, c3) = (client(SAFARI), client(SAFARI));
    login(&c2, &base_b, "alice", "alice-password").await;
    login(&c3, &base_b, "alice", "alice-password").await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (sa, ba) = me(&c, &base_a).await;
        if sa == StatusCode::UNAUTHORIZED {
            assert_eq!(ba["code"], "REVOKED");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "node A never learned of the eviction on B"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(me(&c2, &base_a).await.0, StatusCode::OK);

    // Logout on B is enforced on A.
    let r = c2.post(format!("{base_b}/logout")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let c3_cookie_check = Instant::now() + Duration::from_secs(5);
    let _ = c3_cookie_check;
    assert_eq!(sessions(&c3, &base_a).await.len(), 1, "A lists what B left");
}

/// Logs in 101 times with the default limit: the first 100 sessions are all valid and listed,
/// the 101st login revokes the oldest, and the list stays at 100.
async fn the_default_limit_is_100(base: &str) {
    let oldest = client(FIREFOX);
    login(&oldest, base, "alice", "alice-password").await;
    let (_, body) = me(&oldest, base).await;
    let oldest_sid = body["session_id"].as_str().unwrap().to_owned();
    for _ in 1..100 {
        login(&client(SAFARI), base, "alice", "alice-password").await;
    }
    assert_eq!(me(&oldest, base).await.0, StatusCode::OK, "100: within");
    let newest = client(SAFARI);
    login(&newest, base, "alice", "alice-password").await;
    let (status, body) = me(&oldest, base).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("REVOKED"))
    );
    assert_eq!(me(&newest, base).await.0, StatusCode::OK);
    let list = sessions(&newest, base).await;
    assert_eq!(list.len(), 100);
    assert!(list.iter().all(|s| s["session_id"] != oldest_sid.as_str()));
}

#[tokio::test]
async fn by_default_the_101st_login_revokes_the_oldest_session() {
    let server = support::server::start(&["--insecure-dev-cookies"]);
    the_default_limit_is_100(&server.origin()).await;
}

#[tokio::test]
async fn by_default_the_101st_login_revokes_the_oldest_session_with_redis() {
    let Some(redis) = support::redis::start() else {
        return;
    };
    let server = support::server::start(&["--insecure-dev-cookies", "--redis", &redis.url()]);
    the_default_limit_is_100(&server.origin()).await;
}
