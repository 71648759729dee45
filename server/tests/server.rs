//! The reference server over real TCP: the `sealed-sessions` binary started as an operator would
//! (fresh key directory, demo users `alice` and `admin`), driven with reqwest.
//!
//! One server per test; each test checks a group of related behaviours on its own server, so
//! throttle counters and revocations never leak between tests. Timing tests use second-scale
//! flags and short sleeps: the server is another process, its clock cannot be injected.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use reqwest::header::{
    CACHE_CONTROL, CONTENT_TYPE, COOKIE, HeaderMap, HeaderValue, ORIGIN, RETRY_AFTER, SET_COOKIE,
    USER_AGENT,
};
use reqwest::{Client, RequestBuilder, StatusCode};
use serde_json::{Value, json};
use support::server::{self, Server};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const DEV: &str = "--insecure-dev-cookies";
const DEV_COOKIE: &str = "session";
const PROD_COOKIE: &str = "__Host-session";
const ALICE_PW: &str = "alice-password";
const ADMIN_PW: &str = "admin-password";
const X_FORWARDED_FOR: &str = "X-Forwarded-For";

/// A client without a cookie store: tests send and read cookies themselves, so a cookie can be
/// saved and replayed after the server told the browser to drop it.
fn client() -> Client {
    Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// A client with a cookie store, as a browser would be.
fn browser_like() -> Client {
    Client::builder()
        .no_proxy()
        .cookie_store(true)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// One `Set-Cookie`, split into name, value and attributes (lowercase names).
#[derive(Clone, Debug)]
struct SetCookie {
    name: String,
    value: String,
    attrs: BTreeMap<String, String>,
}

impl SetCookie {
    fn parse(header: &str) -> SetCookie {
        let mut parts = header.split(';').map(str::trim);
        let (name, value) = parts.next().unwrap().split_once('=').unwrap();
        let attrs = parts
            .filter(|p| !p.is_empty())
            .map(|p| match p.split_once('=') {
                Some((k, v)) => (k.to_ascii_lowercase(), v.to_owned()),
                None => (p.to_ascii_lowercase(), String::new()),
            })
            .collect();
        SetCookie {
            name: name.to_owned(),
            value: value.to_owned(),
            attrs,
        }
    }

    /// The `name=value` pair to send back in a `Cookie` header.
    fn pair(&self) -> String {
        format!("{}={}", self.name, self.value)
    }

    fn max_age(&self) -> i64 {
        self.attrs["max-age"].parse().unwrap()
    }

    /// The attributes a clearing cookie must repeat (all but its lifetime).
    fn scope(&self) -> BTreeMap<String, String> {
        let mut a = self.attrs.clone();
        a.remove("max-age");
        a.remove("expires");
        a
    }
}

/// A response, read whole.
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    text: String,
    /// The body as JSON, `Null` when it is not JSON.
    body: Value,
}

impl Reply {
    fn set_cookies(&self) -> Vec<SetCookie> {
        self.headers
            .get_all(SET_COOKIE)
            .iter()
            .map(|v| SetCookie::parse(v.to_str().unwrap()))
            .collect()
    }

    /// The one Set-Cookie of the response, which must exist.
    fn cookie(&self) -> SetCookie {
        let all = self.set_cookies();
        assert_eq!(all.len(), 1, "want one Set-Cookie: {all:?} ({})", self.text);
        all.into_iter().next().unwrap()
    }

    fn assert_no_cookie(&self) {
        assert!(
            self.set_cookies().is_empty(),
            "unexpected Set-Cookie: {:?}",
            self.set_cookies()
        );
    }

    /// The cookie pair of a successful login or re-issue.
    fn issued(&self, name: &str) -> String {
        let c = self.cookie();
        assert_eq!(c.name, name);
        assert!(!c.value.is_empty(), "{c:?}");
        assert!(c.max_age() > 0, "{c:?}");
        c.pair()
    }

    fn assert_ok(&self) -> &Value {
        assert_eq!(self.status, StatusCode::OK, "{}", self.text);
        &self.body
    }

    /// A JSON error `{"error": ..., "code": code}` with `status`.
    fn assert_error(&self, status: StatusCode, code: &str) {
        assert_eq!(self.status, status, "{}", self.text);
        assert_eq!(self.body["code"], code, "{}", self.text);
        assert!(self.body["error"].is_string(), "{}", self.text);
        assert!(
            self.headers[CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("application/json"),
            "{:?}",
            self.headers
        );
    }

    /// A 401 with `code` whose response also tells the browser to drop the dead cookie.
    fn assert_rejected(&self, code: &str) {
        self.assert_error(StatusCode::UNAUTHORIZED, code);
        let c = self.cookie();
        assert_eq!((c.value.as_str(), c.max_age()), ("", 0), "{c:?}");
    }
}

async fn send(req: RequestBuilder) -> Reply {
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Reply {
        status,
        headers,
        text,
        body,
    }
}

/// `req` with the session cookie pair, if any.
fn with_cookie(req: RequestBuilder, cookie: Option<&str>) -> RequestBuilder {
    match cookie {
        Some(c) => req.header(COOKIE, c),
        None => req,
    }
}

async fn login(c: &Client, srv: &Server, user: &str, password: &str) -> Reply {
    send(
        c.post(srv.url("/login"))
            .json(&json!({"username": user, "password": password})),
    )
    .await
}

/// Logs in (which must succeed) and returns the cookie pair.
async fn login_ok(c: &Client, srv: &Server, user: &str, password: &str, name: &str) -> String {
    let r = login(c, srv, user, password).await;
    r.assert_ok();
    r.issued(name)
}

async fn me(c: &Client, srv: &Server, cookie: Option<&str>) -> Reply {
    send(with_cookie(c.get(srv.url("/me")), cookie)).await
}

/// A POST with a JSON body (the page sends `{}` on bodiless routes too).
async fn post(c: &Client, srv: &Server, path: &str, cookie: Option<&str>, body: Value) -> Reply {
    send(with_cookie(c.post(srv.url(path)).json(&body), cookie)).await
}

async fn healthz(srv: &Server) -> Reply {
    send(client().get(srv.url("/healthz"))).await
}

/// The server still answers `/healthz` 200: nothing a client sent broke it.
async fn assert_healthy(srv: &mut Server) {
    assert!(srv.is_running(), "server process died");
    let r = healthz(srv).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["status"], "ok", "{}", r.text);
}

fn time(v: &Value) -> SystemTime {
    humantime::parse_rfc3339(v.as_str().unwrap()).unwrap()
}

/// Polls `/healthz` until `ready` holds for its reply, for at most `limit`.
async fn wait_for_health(
    srv: &Server,
    limit: Duration,
    what: &str,
    ready: impl Fn(&Reply) -> bool,
) {
    let deadline = Instant::now() + limit;
    loop {
        let r = healthz(srv).await;
        if ready(&r) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {limit:?}; last /healthz {} {}",
            r.status,
            r.text
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sends raw bytes on a new connection (which they must close) and reads the whole response:
/// its status code and body.
async fn raw_request(srv: &Server, bytes: &[u8]) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut resp = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut resp))
        .await
        .expect("no response within 30 s")
        .unwrap();
    let text = String::from_utf8_lossy(&resp).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {text:?}"));
    (code, body.to_owned())
}

// ---------------------------------------------------------------------------------------------
// Login and /me

#[tokio::test]
async fn login_issues_a_new_session_cookie_that_me_describes() {
    let srv = server::start(&[DEV]);
    let c = client();

    let r = login(&c, &srv, "alice", ALICE_PW).await;
    assert_eq!(r.assert_ok(), &json!({"user": "alice", "role": "user"}));
    assert_eq!(r.headers[CACHE_CONTROL], "no-store");
    let cookie = r.cookie();
    assert_eq!(cookie.name, DEV_COOKIE);
    // The development preset: no Secure flag (plain http), everything else as in production.
    assert_eq!(
        cookie.scope(),
        BTreeMap::from([
            ("httponly".into(), String::new()),
            ("samesite".into(), "Lax".into()),
            ("path".into(), "/".into()),
        ]),
        "{cookie:?}"
    );
    // Max-Age is the idle timeout (30 min by default): an unused cookie leaves the browser
    // when the server would refuse it anyway.
    assert_eq!(cookie.max_age(), 30 * 60, "{cookie:?}");

    let r = me(&c, &srv, Some(&cookie.pair())).await;
    let body = r.assert_ok();
    let keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "auth_time",
            "created_at",
            "elevated",
            "expires_at",
            "idle_expires_at",
            "role",
            "session_id",
            "user"
        ]
    );
    assert_eq!(body["user"], "alice");
    assert_eq!(body["role"], "user");
    assert_eq!(body["elevated"], false);
    let sid = body["session_id"].as_str().unwrap().to_owned();
    assert!(
        sid.len() == 32
            && sid
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
        "{sid}"
    );
    assert!(sid.len() >= 16, "{sid}");
    assert_eq!(body["created_at"], body["auth_time"]);
    let lifetime = time(&body["expires_at"])
        .duration_since(time(&body["created_at"]))
        .unwrap();
    assert_eq!(lifetime, Duration::from_secs(24 * 3600));
    // Not renewed since login: the session idles out 30 min (the idle timeout) after it.
    let idle = time(&body["idle_expires_at"])
        .duration_since(time(&body["created_at"]))
        .unwrap();
    assert_eq!(idle, Duration::from_secs(30 * 60));
    // Renewal is not due yet: no cookie on an ordinary response.
    r.assert_no_cookie();

    // Every login is a new session, even for the same user.
    let again = login_ok(&c, &srv, "alice", ALICE_PW, DEV_COOKIE).await;
    let r = me(&c, &srv, Some(&again)).await;
    assert_ne!(r.assert_ok()["session_id"], sid.as_str());

    let r = login(&c, &srv, "admin", ADMIN_PW).await;
    assert_eq!(r.assert_ok(), &json!({"user": "admin", "role": "admin"}));
}

#[tokio::test]
async fn login_refuses_malformed_bodies_with_400_and_bad_credentials_with_401() {
    let srv = server::start(&[DEV]);
    let c = client();
    let url = srv.url("/login");

    let malformed = [
        (
            "not JSON",
            c.post(&url)
                .header(CONTENT_TYPE, "application/json")
                .body("{not json"),
        ),
        (
            "missing password",
            c.post(&url).json(&json!({"username": "alice"})),
        ),
        (
            "missing username",
            c.post(&url).json(&json!({"password": ALICE_PW})),
        ),
        (
            "empty username",
            c.post(&url).json(&json!({"username": "", "password": "x"})),
        ),
        (
            "unknown field",
            c.post(&url)
                .json(&json!({"username": "alice", "password": ALICE_PW, "admin": true})),
        ),
        (
            "username too long",
            c.post(&url)
                .json(&json!({"username": "a".repeat(129), "password": "x"})),
        ),
        (
            "wrong type",
            c.post(&url).json(&json!({"username": 7, "password": "x"})),
        ),
        (
            "not declared as JSON",
            c.post(&url)
                .header(CONTENT_TYPE, "text/plain")
                .body(json!({"username": "alice", "password": ALICE_PW}).to_string()),
        ),
    ];
    for (what, req) in malformed {
        let r = send(req).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{what}: {}", r.text);
        r.assert_error(StatusCode::BAD_REQUEST, "BAD_REQUEST");
        r.assert_no_cookie();
    }

    let wrong_password = login(&c, &srv, "alice", "not-her-password").await;
    wrong_password.assert_error(StatusCode::UNAUTHORIZED, "INVALID_CREDENTIALS");
    wrong_password.assert_no_cookie();
    // An unknown user gets the very same answer: no account enumeration.
    let unknown = login(&c, &srv, "mallory", "whatever").await;
    unknown.assert_error(StatusCode::UNAUTHORIZED, "INVALID_CREDENTIALS");
    assert_eq!(unknown.body, wrong_password.body);
}

#[tokio::test]
async fn fifth_failed_login_locks_the_username_with_429_and_retry_after() {
    let srv = server::start(&[DEV]);
    let c = client();
    for _ in 0..5 {
        login(&c, &srv, "alice", "guess")
            .await
            .assert_error(StatusCode::UNAUTHORIZED, "INVALID_CREDENTIALS");
    }
    // Even the right password is refused now: the guesser cannot tell.
    let r = login(&c, &srv, "alice", ALICE_PW).await;
    r.assert_error(StatusCode::TOO_MANY_REQUESTS, "TOO_MANY_ATTEMPTS");
    r.assert_no_cookie();
    let retry: u64 = r.headers[RETRY_AFTER].to_str().unwrap().parse().unwrap();
    assert!((1..=15 * 60).contains(&retry), "Retry-After {retry}");
    // Another username from the same address is unaffected.
    login_ok(&c, &srv, "admin", ADMIN_PW, DEV_COOKIE).await;
}

#[tokio::test]
async fn parallel_guesses_cannot_outrun_the_login_throttle() {
    // Sent at once, the guesses are all in flight before any password check answers: the
    // throttle must count them as they start, not as they fail.
    let srv = server::start(&[DEV]);
    let c = client();
    let mut guesses = tokio::task::JoinSet::new();
    for i in 0..16 {
        let req = c
            .post(srv.url("/login"))
            .json(&json!({"username": "alice", "password": format!("guess-{i}")}));
        guesses.spawn(send(req));
    }
    let (mut wrong, mut throttled) = (0, 0);
    while let Some(r) = guesses.join_next().await {
        let r = r.unwrap();
        match r.status {
            StatusCode::UNAUTHORIZED => {
                r.assert_error(StatusCode::UNAUTHORIZED, "INVALID_CREDENTIALS");
                wrong += 1;
            }
            StatusCode::TOO_MANY_REQUESTS => {
                r.assert_error(StatusCode::TOO_MANY_REQUESTS, "TOO_MANY_ATTEMPTS");
                throttled += 1;
            }
            other => panic!("unexpected {other}: {:?}", r.body),
        }
    }
    assert!(wrong <= 5, "{wrong} guesses were checked (limit 5)");
    assert_eq!(wrong + throttled, 16);
    // The five failures lock the username for the window, right password included.
    login(&c, &srv, "alice", ALICE_PW)
        .await
        .assert_error(StatusCode::TOO_MANY_REQUESTS, "TOO_MANY_ATTEMPTS");
}

/// A login as relayed by a proxy on 127.0.0.1 that reports the client as `forwarded_for`.
async fn login_via_proxy(
    c: &Client,
    srv: &Server,
    forwarded_for: &str,
    user: &str,
    password: &str,
) -> Reply {
    send(
        c.post(srv.url("/login"))
            .header(X_FORWARDED_FOR, forwarded_for)
            .json(&json!({"username": user, "password": password})),
    )
    .await
}

/// The per-IP limit's window (15 min), as `Retry-After` counts it.
const THROTTLE_WINDOW_SECS: u64 = 15 * 60;

#[tokio::test]
async fn twenty_failures_across_usernames_lock_the_client_address_and_spare_other_addresses() {
    // The server trusts the proxy on loopback, so the client address is the rightmost entry of
    // X-Forwarded-For.
    let srv = server::start(&[DEV, "--trusted-proxies", "127.0.0.1/32"]);
    let c = client();
    const SPRAYER: &str = "198.51.100.7";
    let started = Instant::now();
    // One failure per username, so the per-username limit (5) never applies: only the
    // address's count (limit 20) grows. All twenty are let through to the password check.
    for i in 0..20 {
        login_via_proxy(&c, &srv, SPRAYER, &format!("spray-{i}"), "guess")
            .await
            .assert_error(StatusCode::UNAUTHORIZED, "INVALID_CREDENTIALS");
    }
    // The next attempt from that address is refused, whatever the username — even a right
    // password for an account with no failures — and a forged entry left of the proxy's does
    // not change the address.
    for (forwarded_for, user, password) in [
        (SPRAYER, "spray-20", "guess"),
        (SPRAYER, "alice", ALICE_PW),
        ("203.0.113.9, 198.51.100.7", "admin", ADMIN_PW),
    ] {
        let r = login_via_proxy(&c, &srv, forwarded_for, user, password).await;
        r.assert_error(StatusCode::TOO_MANY_REQUESTS, "TOO_MANY_ATTEMPTS");
        r.assert_no_cookie();
        // The window opened at the first failure, within the time this test has run.
        let retry: u64 = r.headers[RETRY_AFTER].to_str().unwrap().parse().unwrap();
        let ran = started.elapsed().as_secs() + 1;
        assert!(
            retry <= THROTTLE_WINDOW_SECS && retry + ran >= THROTTLE_WINDOW_SECS,
            "Retry-After {retry} after {ran} s"
        );
    }
    // Other addresses behind the same proxy are counted on their own: the neighbouring IPv4
    // address (IPv4 is counted per address) is still let through to a password check, and
    // alice logs in from elsewhere.
    login_via_proxy(&c, &srv, "198.51.100.8", "spray-0", "guess")
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "INVALID_CREDENTIALS");
    let r = login_via_proxy(&c, &srv, "203.0.113.9", "alice", ALICE_PW).await;
    r.assert_ok();
    r.issued(DEV_COOKIE);
}

#[tokio::test]
async fn x_forwarded_for_from_an_untrusted_peer_cannot_dodge_the_per_ip_limit() {
    // No --trusted-proxies: the header is never read, so every attempt counts against the
    // socket peer, 127.0.0.1, whatever address it claims.
    let srv = server::start(&[DEV]);
    let c = client();
    for i in 0..20 {
        login_via_proxy(
            &c,
            &srv,
            &format!("203.0.113.{i}"),
            &format!("spray-{i}"),
            "guess",
        )
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "INVALID_CREDENTIALS");
    }
    let r = login_via_proxy(&c, &srv, "192.0.2.1", "alice", ALICE_PW).await;
    r.assert_error(StatusCode::TOO_MANY_REQUESTS, "TOO_MANY_ATTEMPTS");
    r.assert_no_cookie();
    assert!(r.headers.contains_key(RETRY_AFTER), "{:?}", r.headers);
}

#[tokio::test]
async fn session_routes_without_a_valid_cookie_answer_401_with_the_reason() {
    let srv = server::start(&[DEV]);
    let c = client();
    let r = me(&c, &srv, None).await;
    r.assert_error(StatusCode::UNAUTHORIZED, "NO_SESSION");
    // Nothing to clear.
    r.assert_no_cookie();
    for (path, body) in [
        ("/logout", json!({})),
        ("/logout-everywhere", json!({})),
        ("/auth/step-up", json!({"password": ALICE_PW})),
        (
            "/password",
            json!({"current_password": ALICE_PW, "new_password": "a-new-password"}),
        ),
        ("/elevate", json!({})),
    ] {
        let r = post(&c, &srv, path, None, body).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{path}: {}", r.text);
        r.assert_error(StatusCode::UNAUTHORIZED, "NO_SESSION");
    }
    // A cookie that does not open is INVALID, and the browser is told to drop it.
    me(&c, &srv, Some("session=garbage"))
        .await
        .assert_rejected("INVALID");
    // Another cookie name is not a session.
    me(&c, &srv, Some("other=garbage"))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "NO_SESSION");
}

// ---------------------------------------------------------------------------------------------
// Logout, logout everywhere, fixation

#[tokio::test]
async fn replayed_cookie_after_logout_is_revoked() {
    let srv = server::start(&[DEV]);
    let c = client();
    let r = login(&c, &srv, "alice", ALICE_PW).await;
    r.assert_ok();
    let live = r.cookie();

    let r = post(&c, &srv, "/logout", Some(&live.pair()), json!({})).await;
    assert_eq!(r.assert_ok(), &json!({"status": "logged_out"}));
    let clearing = r.cookie();
    assert_eq!(clearing.name, live.name);
    assert_eq!((clearing.value.as_str(), clearing.max_age()), ("", 0));
    // A browser replaces a cookie only when name, path and domain match: same attributes.
    assert_eq!(clearing.scope(), live.scope());

    // A copy of the cookie kept by an attacker (or a careless client) is dead.
    me(&c, &srv, Some(&live.pair()))
        .await
        .assert_rejected("REVOKED");
    post(&c, &srv, "/logout", Some(&live.pair()), json!({}))
        .await
        .assert_rejected("REVOKED");
}

#[tokio::test]
async fn logout_everywhere_revokes_every_session_of_the_user_only() {
    let srv = server::start(&[DEV]);
    let c = client();
    let laptop = login_ok(&c, &srv, "alice", ALICE_PW, DEV_COOKIE).await;
    let phone = login_ok(&c, &srv, "alice", ALICE_PW, DEV_COOKIE).await;
    let admin = login_ok(&c, &srv, "admin", ADMIN_PW, DEV_COOKIE).await;

    let r = post(&c, &srv, "/logout-everywhere", Some(&laptop), json!({})).await;
    assert_eq!(r.assert_ok(), &json!({"status": "logged_out_everywhere"}));
    let clearing = r.cookie();
    assert_eq!((clearing.value.as_str(), clearing.max_age()), ("", 0));

    me(&c, &srv, Some(&laptop)).await.assert_rejected("REVOKED");
    me(&c, &srv, Some(&phone)).await.assert_rejected("REVOKED");
    post(&c, &srv, "/logout-everywhere", Some(&phone), json!({}))
        .await
        .assert_rejected("REVOKED");
    // Other users keep their sessions.
    assert_eq!(
        me(&c, &srv, Some(&admin)).await.assert_ok()["user"],
        "admin"
    );
    // And alice can sign in again afterwards.
    let fresh = login_ok(&c, &srv, "alice", ALICE_PW, DEV_COOKIE).await;
    assert_eq!(
        me(&c, &srv, Some(&fresh)).await.assert_ok()["user"],
        "alice"
    );
}

#[tokio::test]
async fn login_never_keeps_a_planted_cookie() {
    let srv = server::start(&[DEV]);
    let c = client();
    // The attacker's own valid session, planted in the victim's browser.
    let planted = login_ok(&c, &srv, "alice", ALICE_PW, DEV_COOKIE).await;
    let planted_sid = me(&c, &srv, Some(&planted)).await.assert_ok()["session_id"].clone();

    let r = send(
        c.post(srv.url("/login"))
            .header(COOKIE, &planted)
            .json(&json!({"username": "admin", "password": ADMIN_PW})),
    )
    .await;
    assert_eq!(r.assert_ok()["user"], "admin");
    let issued = r.issued(DEV_COOKIE);
    assert_ne!(issued, planted);
    let body = me(&c, &srv, Some(&issued)).await;
    assert_eq!(body.assert_ok()["user"], "admin");
    assert_ne!(body.body["session_id"], planted_sid);
    // The planted session itself is dead after the login it was sent with.
    me(&c, &srv, Some(&planted))
        .await
        .assert_rejected("REVOKED");

    // A garbage planted cookie does not stop the login and is replaced.
    let r = send(
        c.post(srv.url("/login"))
            .header(COOKIE, "session=planted-garbage")
            .json(&json!({"username": "alice", "password": ALICE_PW})),
    )
    .await;
    r.assert_ok();
    let issued = r.issued(DEV_COOKIE);
    assert_ne!(issued, "session=planted-garbage");
    assert_eq!(
        me(&c, &srv, Some(&issued)).await.assert_ok()["user"],
        "alice"
    );
}

// ---------------------------------------------------------------------------------------------
// Step-up, password change, elevation

#[tokio::test]
async fn step_up_checks_the_password_and_reissues_the_cookie_with_a_fresh_auth_time() {
    let srv = server::start(&[DEV, "--step-up-window", "1s"]);
    let c = client();
    let cookie = login_ok(&c, &srv, "alice", ALICE_PW, DEV_COOKIE).await;
    let before = me(&c, &srv, Some(&cookie)).await.assert_ok().clone();
    // Let the login's password check fall out of the step-up window.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let r = post(
        &c,
        &srv,
        "/auth/step-up",
        Some(&cookie),
        json!({"password": "wrong"}),
    )
    .await;
    r.assert_error(StatusCode::UNAUTHORIZED, "INVALID_CREDENTIALS");
    r.assert_no_cookie();

    let r = post(
        &c,
        &srv,
        "/auth/step-up",
        Some(&cookie),
        json!({"password": ALICE_PW}),
    )
    .await;
    let stepped_body = r.assert_ok().clone();
    assert_eq!(stepped_body["user"], "alice");
    let stepped = r.issued(DEV_COOKIE);
    assert_ne!(stepped, cookie);
    let after = me(&c, &srv, Some(&stepped)).await.assert_ok().clone();
    // The same session, with a newer password check.
    assert_eq!(after["session_id"], before["session_id"]);
    assert_eq!(after["created_at"], before["created_at"]);
    assert_eq!(after["auth_time"], stepped_body["auth_time"]);
    let gained = time(&after["auth_time"])
        .duration_since(time(&before["auth_time"]))
        .unwrap();
    assert!(gained >= Duration::from_millis(1500), "{gained:?}");
}

#[tokio::test]
async fn password_change_revokes_the_other_sessions_and_replaces_the_password() {
    let srv = server::start(&[DEV]);
    let c = client();
    let here = login_ok(&c, &srv, "alice", ALICE_PW, DEV_COOKIE).await;
    let elsewhere = login_ok(&c, &srv, "alice", ALICE_PW, DEV_COOKIE).await;
    let admin = login_ok(&c, &srv, "admin", ADMIN_PW, DEV_COOKIE).await;
    let sid = me(&c, &srv, Some(&here)).await.assert_ok()["session_id"].clone();

    // Too short: refused, nothing changes.
    post(
        &c,
        &srv,
        "/password",
        Some(&here),
        json!({"current_password": ALICE_PW, "new_password": "short"}),
    )
    .await
    .assert_error(StatusCode::BAD_REQUEST, "BAD_REQUEST");
    me(&c, &srv, Some(&elsewhere)).await.assert_ok();

    // The current password is the re-authentication: no step-up window involved.
    let r = post(
        &c,
        &srv,
        "/password",
        Some(&here),
        json!({"current_password": ALICE_PW, "new_password": "alice-new-password"}),
    )
    .await;
    assert_eq!(
        r.assert_ok(),
        &json!({"user": "alice", "status": "password_changed"})
    );
    let reissued = r.issued(DEV_COOKIE);
    // This device continues under a new session id.
    let now = me(&c, &srv, Some(&reissued)).await;
    assert_eq!(now.assert_ok()["user"], "alice");
    assert_ne!(now.body["session_id"], sid);
    // Every other session of alice is dead, including this device's previous cookie.
    me(&c, &srv, Some(&elsewhere))
        .await
        .assert_rejected("REVOKED");
    me(&c, &srv, Some(&here)).await.assert_rejected("REVOKED");
    me(&c, &srv, Some(&admin)).await.assert_ok();

    login(&c, &srv, "alice", ALICE_PW)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "INVALID_CREDENTIALS");
    login_ok(&c, &srv, "alice", "alice-new-password", DEV_COOKIE).await;
}

#[tokio::test]
async fn password_change_needs_the_current_password_not_a_step_up_and_counts_wrong_ones() {
    // A step-up window of 1 s that has long passed: the current password is what counts.
    let srv = server::start(&[DEV, "--step-up-window", "1s"]);
    let c = client();
    let cookie = login_ok(&c, &srv, "alice", ALICE_PW, DEV_COOKIE).await;
    let other = login_ok(&c, &srv, "alice", ALICE_PW, DEV_COOKIE).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    // Missing, or not a string: 400, nothing changes.
    for body in [
        json!({"new_password": "alice-new-password"}),
        json!({"current_password": 12345678, "new_password": "alice-new-password"}),
        json!({"current_password": null, "new_password": "alice-new-password"}),
        json!({"current_password": ALICE_PW}),
    ] {
        let r = post(&c, &srv, "/password", Some(&cookie), body.clone()).await;
        r.assert_error(StatusCode::BAD_REQUEST, "BAD_REQUEST");
        r.assert_no_cookie();
    }
    // A stolen cookie alone cannot change the password: a wrong current password is 401 and
    // is counted by the login throttle (five wrong ones lock the username).
    for _ in 0..5 {
        let r = post(
            &c,
            &srv,
            "/password",
            Some(&cookie),
            json!({"current_password": "guess-guess", "new_password": "attacker-password"}),
        )
        .await;
        r.assert_error(StatusCode::UNAUTHORIZED, "INVALID_CREDENTIALS");
        r.assert_no_cookie();
    }
    post(
        &c,
        &srv,
        "/password",
        Some(&cookie),
        json!({"current_password": ALICE_PW, "new_password": "attacker-password"}),
    )
    .await
    .assert_error(StatusCode::TOO_MANY_REQUESTS, "TOO_MANY_ATTEMPTS");
    // Nothing changed: both sessions live, the password is the old one (the lock is on the
    // username, so the login is refused for now; the sessions tell).
    me(&c, &srv, Some(&cookie)).await.assert_ok();
    me(&c, &srv, Some(&other)).await.assert_ok();

    // On a fresh server: the right current password, long after the login, is enough.
    let srv = server::start(&[DEV, "--step-up-window", "1s"]);
    let cookie = login_ok(&c, &srv, "alice", ALICE_PW, DEV_COOKIE).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let r = post(
        &c,
        &srv,
        "/password",
        Some(&cookie),
        json!({"current_password": ALICE_PW, "new_password": "alice-new-password"}),
    )
    .await;
    assert_eq!(r.assert_ok()["status"], "password_changed");
    login_ok(&c, &srv, "alice", "alice-new-password", DEV_COOKIE).await;
}

#[tokio::test]
async fn password_change_reaches_the_users_file_a_second_node_and_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let hash = support::bin::hash_password(ALICE_PW);
    let users = support::bin::users_file(tmp.path(), &[("alice", "user", &hash)]);
    let node = |name: &str| {
        Server::builder()
            .name(name)
            .args([DEV, "--users"])
            .arg(&users)
            .start()
    };
    let (a, b) = (node("a"), node("b"));
    let c = client();
    let cookie = login_ok(&c, &a, "alice", ALICE_PW, DEV_COOKIE).await;
    let change = json!({"current_password": ALICE_PW, "new_password": "alice-new-password"});
    post(&c, &a, "/password", Some(&cookie), change)
        .await
        .assert_ok();

    // The other node, sharing the users file, takes the new password and refuses the old.
    login(&c, &b, "alice", ALICE_PW)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "INVALID_CREDENTIALS");
    login_ok(&c, &b, "alice", "alice-new-password", DEV_COOKIE).await;

    // So does the first node after a restart.
    drop(a);
    let a = node("a-restarted");
    login(&c, &a, "alice", ALICE_PW)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "INVALID_CREDENTIALS");
    login_ok(&c, &a, "alice", "alice-new-password", DEV_COOKIE).await;
    let text = std::fs::read_to_string(&users).unwrap();
    assert!(!text.contains(&hash), "the old hash is gone from the file");
}

#[tokio::test]
async fn elevate_regenerates_the_session_id_and_revokes_the_old_cookie() {
    let srv = server::start(&[DEV]);
    let c = client();
    let old = login_ok(&c, &srv, "admin", ADMIN_PW, DEV_COOKIE).await;
    let old_sid = me(&c, &srv, Some(&old)).await.assert_ok()["session_id"].clone();

    let r = post(&c, &srv, "/elevate", Some(&old), json!({})).await;
    let body = r.assert_ok().clone();
    assert_eq!(body["elevated"], true);
    assert_ne!(body["session_id"], old_sid);
    let new = r.issued(DEV_COOKIE);
    let now = me(&c, &srv, Some(&new)).await;
    assert_eq!(now.assert_ok()["session_id"], body["session_id"]);
    assert_eq!(now.body["elevated"], true);
    assert_eq!(now.body["role"], "admin");
    me(&c, &srv, Some(&old)).await.assert_rejected("REVOKED");

    // An ordinary account cannot elevate, and keeps its session.
    let alice = login_ok(&c, &srv, "alice", ALICE_PW, DEV_COOKIE).await;
    let r = post(&c, &srv, "/elevate", Some(&alice), json!({})).await;
    r.assert_error(StatusCode::FORBIDDEN, "FORBIDDEN");
    r.assert_no_cookie();
    assert_eq!(
        me(&c, &srv, Some(&alice)).await.assert_ok()["elevated"],
        false
    );
}

#[tokio::test]
async fn elevate_needs_a_recent_password_check_and_refuses_other_accounts_first() {
    let srv = server::start(&[DEV, "--step-up-window", "1s"]);
    let c = client();
    let admin = login_ok(&c, &srv, "admin", ADMIN_PW, DEV_COOKIE).await;
    let alice = login_ok(&c, &srv, "alice", ALICE_PW, DEV_COOKIE).await;
    // Let both logins' password checks fall out of the step-up window.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // An account that may never elevate hears so, not "step up" (which would not help).
    post(&c, &srv, "/elevate", Some(&alice), json!({}))
        .await
        .assert_error(StatusCode::FORBIDDEN, "FORBIDDEN");

    // A stale admin session (a stolen cookie, say) gets nothing: no new cookie, no admin rights.
    let sid = me(&c, &srv, Some(&admin)).await.assert_ok()["session_id"].clone();
    let r = post(&c, &srv, "/elevate", Some(&admin), json!({})).await;
    r.assert_error(StatusCode::UNAUTHORIZED, "STEP_UP_REQUIRED");
    r.assert_no_cookie();
    let still = me(&c, &srv, Some(&admin)).await.assert_ok().clone();
    assert_eq!(still["elevated"], false);
    assert_eq!(still["session_id"], sid);

    // After the password is entered again, elevation goes through.
    let r = post(
        &c,
        &srv,
        "/auth/step-up",
        Some(&admin),
        json!({"password": ADMIN_PW}),
    )
    .await;
    r.assert_ok();
    let stepped = r.issued(DEV_COOKIE);
    let r = post(&c, &srv, "/elevate", Some(&stepped), json!({})).await;
    assert_eq!(r.assert_ok()["elevated"], true);
    let elevated = r.issued(DEV_COOKIE);
    assert_eq!(
        me(&c, &srv, Some(&elevated)).await.assert_ok()["role"],
        "admin"
    );
}

// ---------------------------------------------------------------------------------------------
// Caching

#[tokio::test]
async fn every_response_carrying_session_data_says_no_store() {
    // Two nodes sharing two keys with different primaries: a cookie from `a` is sealed under a
    // key that is not `b`'s primary, so `b` renews it on first use (no waiting for
    // --renew-after).
    const K1: &str = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const K2: &str = "k2:Hx4dHBsaGRgXFhUUExIREA8ODQwLCgkIBwYFBAMCAQA=";
    let a = server::start_with_env(&[DEV], &[("SEALED_SESSIONS_KEYS", &format!("{K1},{K2}"))]);
    let b = server::start_with_env(&[DEV], &[("SEALED_SESSIONS_KEYS", &format!("{K2},{K1}"))]);
    let c = client();
    let no_store = |what: &str, r: &Reply| {
        assert_eq!(
            r.headers.get_all(CACHE_CONTROL).iter().collect::<Vec<_>>(),
            ["no-store"],
            "{what}: {:?}",
            r.headers
        );
    };

    let r = login(&c, &a, "alice", "wrong-password").await;
    r.assert_error(StatusCode::UNAUTHORIZED, "INVALID_CREDENTIALS");
    no_store("failed login", &r);
    let r = login(&c, &a, "alice", ALICE_PW).await;
    no_store("login", &r);
    let cookie = r.issued(DEV_COOKIE);

    // No Set-Cookie on these: the session data in the body is reason enough.
    let r = me(&c, &a, Some(&cookie)).await;
    r.assert_ok();
    r.assert_no_cookie();
    no_store("/me", &r);
    let r = send(with_cookie(c.get(a.url("/sessions")), Some(&cookie))).await;
    r.assert_ok();
    r.assert_no_cookie();
    no_store("/sessions", &r);

    let r = me(&c, &b, Some(&cookie)).await;
    r.assert_ok();
    assert_ne!(r.issued(DEV_COOKIE), cookie);
    no_store("renewal", &r);

    let r = post(&c, &a, "/logout", Some(&cookie), json!({})).await;
    r.assert_ok();
    no_store("logout", &r);
}

// ---------------------------------------------------------------------------------------------
// Timeouts, renewal, fingerprint

#[tokio::test]
async fn renewal_reissues_the_cookie_only_after_renew_after_and_keeps_it_past_idle_timeout() {
    let srv = server::start(&[DEV, "--renew-after", "1s", "--idle-timeout", "3s"]);
    let c = client();
    let first = login_ok(&c, &srv, "alice", ALICE_PW, DEV_COOKIE).await;
    let r = me(&c, &srv, Some(&first)).await;
    let sid = r.assert_ok()["session_id"].clone();
    r.assert_no_cookie();

    tokio::time::sleep(Duration::from_millis(1500)).await;
    let r = me(&c, &srv, Some(&first)).await;
    assert_eq!(r.assert_ok()["session_id"], sid);
    let mut current = r.issued(DEV_COOKIE);
    assert_ne!(current, first);
    // The renewed cookie is not renewed again at once.
    me(&c, &srv, Some(&current)).await.assert_no_cookie();

    // Keep using the session, following renewals, past the idle timeout.
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let r = me(&c, &srv, Some(&current)).await;
        assert_eq!(r.assert_ok()["session_id"], sid);
        if let Some(renewed) = r.set_cookies().first() {
            current = renewed.pair();
        }
    }
    // More than 4.5 s since login: the session in use lives, the unrenewed copy idled out.
    assert_eq!(
        me(&c, &srv, Some(&current)).await.assert_ok()["session_id"],
        sid
    );
    me(&c, &srv, Some(&first))
        .await
        .assert_rejected("IDLE_TIMEOUT");
}

#[tokio::test]
async fn session_past_its_absolute_timeout_is_expired() {
    let srv = server::start(&[
        DEV,
        "--absolute-timeout",
        "2s",
        "--idle-timeout",
        "2s",
        "--renew-after",
        "1s",
    ]);
    let c = client();
    let cookie = login_ok(&c, &srv, "alice", ALICE_PW, DEV_COOKIE).await;
    me(&c, &srv, Some(&cookie)).await.assert_ok();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    // Absolute expiry is checked first.
    me(&c, &srv, Some(&cookie)).await.assert_rejected("EXPIRED");
}

const CHROME_LINUX_120: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
const CHROME_LINUX_121: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/121.0.6167.85 Safari/537.36";
const FIREFOX_LINUX: &str =
    "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0";

#[tokio::test]
async fn fingerprint_ua_rejects_the_cookie_in_another_browser_family() {
    let srv = server::start(&[DEV, "--fingerprint", "ua"]);
    let c = client();
    let r = send(
        c.post(srv.url("/login"))
            .header(USER_AGENT, CHROME_LINUX_120)
            .json(&json!({"username": "alice", "password": ALICE_PW})),
    )
    .await;
    r.assert_ok();
    let cookie = r.issued(DEV_COOKIE);
    let me_as = |ua: &'static str| {
        send(
            c.get(srv.url("/me"))
                .header(COOKIE, &cookie)
                .header(USER_AGENT, ua),
        )
    };
    // A browser update keeps the session.
    assert_eq!(me_as(CHROME_LINUX_121).await.assert_ok()["user"], "alice");
    // The cookie copied into another browser does not work.
    me_as(FIREFOX_LINUX)
        .await
        .assert_rejected("FINGERPRINT_MISMATCH");
}

/// `GET /me` with the session cookie, a Chrome-on-Linux user agent and the client address a
/// trusted proxy on 127.0.0.1 reports.
async fn me_via_proxy(c: &Client, srv: &Server, cookie: &str, forwarded_for: &str) -> Reply {
    send(
        c.get(srv.url("/me"))
            .header(COOKIE, cookie)
            .header(USER_AGENT, CHROME_LINUX_120)
            .header(X_FORWARDED_FOR, forwarded_for),
    )
    .await
}

#[tokio::test]
async fn fingerprint_ua_ip_rejects_the_cookie_from_another_network_and_keeps_it_within_one() {
    let srv = server::start(&[
        DEV,
        "--fingerprint",
        "ua+ip",
        "--trusted-proxies",
        "127.0.0.1/32",
    ]);
    let c = client();
    // (login address, same network, another network): a /24 for IPv4, a /48 for IPv6.
    for (home, neighbour, elsewhere) in [
        ("198.51.100.7", "198.51.100.250", "198.51.101.7"),
        ("2001:db8:1:2::1", "2001:db8:1:ffff::9", "2001:db8:2::1"),
    ] {
        let r = send(
            c.post(srv.url("/login"))
                .header(USER_AGENT, CHROME_LINUX_120)
                .header(X_FORWARDED_FOR, home)
                .json(&json!({"username": "alice", "password": ALICE_PW})),
        )
        .await;
        r.assert_ok();
        let cookie = r.issued(DEV_COOKIE);
        for ip in [home, neighbour] {
            let r = me_via_proxy(&c, &srv, &cookie, ip).await;
            assert_eq!(r.assert_ok()["user"], "alice", "from {ip}");
        }
        // The same browser on another network: rejected, and told to drop the cookie.
        me_via_proxy(&c, &srv, &cookie, elsewhere)
            .await
            .assert_rejected("FINGERPRINT_MISMATCH");
    }
}

// ---------------------------------------------------------------------------------------------
// Production cookie preset

#[tokio::test]
async fn production_cookie_is_host_prefixed_secure_httponly_strict_and_cleared_alike() {
    // Default flags: the production cookie preset (demo users and generated keys are fine
    // without --production).
    let srv = server::start(&[]);
    // reqwest's store would not send a Secure cookie over http: cookies are handled by hand.
    let c = client();
    let r = login(&c, &srv, "alice", ALICE_PW).await;
    r.assert_ok();
    let raw = r.headers[SET_COOKIE].to_str().unwrap().to_owned();
    let live = r.cookie();
    assert_eq!(live.name, PROD_COOKIE, "{raw}");
    assert_eq!(
        live.scope(),
        BTreeMap::from([
            ("httponly".into(), String::new()),
            ("secure".into(), String::new()),
            ("samesite".into(), "Strict".into()),
            ("path".into(), "/".into()),
        ]),
        "{raw}"
    );
    assert!(!raw.to_ascii_lowercase().contains("domain"), "{raw}");
    assert!(live.max_age() > 0, "{raw}");

    assert_eq!(
        me(&c, &srv, Some(&live.pair())).await.assert_ok()["user"],
        "alice"
    );
    // The same token under the development name is no session at all.
    me(&c, &srv, Some(&format!("session={}", live.value)))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "NO_SESSION");

    let r = post(&c, &srv, "/logout", Some(&live.pair()), json!({})).await;
    r.assert_ok();
    let clearing = r.cookie();
    assert_eq!(clearing.name, PROD_COOKIE);
    assert_eq!((clearing.value.as_str(), clearing.max_age()), ("", 0));
    assert_eq!(clearing.scope(), live.scope());
    me(&c, &srv, Some(&live.pair()))
        .await
        .assert_rejected("REVOKED");
}

// ---------------------------------------------------------------------------------------------
// Cross-origin protection

#[tokio::test]
async fn cross_origin_unsafe_requests_are_refused_with_403() {
    let srv = server::start(&[DEV]);
    let c = client();
    let cookie = login_ok(&c, &srv, "alice", ALICE_PW, DEV_COOKIE).await;
    let logout = || {
        c.post(srv.url("/logout"))
            .header(COOKIE, &cookie)
            .json(&json!({}))
    };

    let r = send(logout().header("Sec-Fetch-Site", "cross-site")).await;
    r.assert_error(StatusCode::FORBIDDEN, "CROSS_ORIGIN");
    r.assert_no_cookie();
    for origin in ["http://evil.example", "null", "http://127.0.0.1:1"] {
        let r = send(logout().header(ORIGIN, origin)).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{origin}: {}", r.text);
        r.assert_error(StatusCode::FORBIDDEN, "CROSS_ORIGIN");
    }
    // Login CSRF is refused the same way.
    let r = send(
        c.post(srv.url("/login"))
            .header(ORIGIN, "http://evil.example")
            .json(&json!({"username": "admin", "password": ADMIN_PW})),
    )
    .await;
    r.assert_error(StatusCode::FORBIDDEN, "CROSS_ORIGIN");
    r.assert_no_cookie();
    // Safe methods pass, and none of the refused requests logged alice out.
    let r = send(
        c.get(srv.url("/me"))
            .header(COOKIE, &cookie)
            .header("Sec-Fetch-Site", "cross-site"),
    )
    .await;
    assert_eq!(r.assert_ok()["user"], "alice");

    // The page's own origin passes.
    let r = send(
        logout()
            .header(ORIGIN, srv.origin())
            .header("Sec-Fetch-Site", "same-origin"),
    )
    .await;
    assert_eq!(r.assert_ok(), &json!({"status": "logged_out"}));
    me(&c, &srv, Some(&cookie)).await.assert_rejected("REVOKED");

    let metrics = send(c.get(srv.url("/metrics"))).await.text;
    assert!(
        metrics.contains("sealed_sessions_cross_origin_refused_total 5"),
        "{metrics}"
    );
}

// ---------------------------------------------------------------------------------------------
// Hostile input

#[tokio::test]
async fn hostile_cookie_headers_never_cause_a_server_error() {
    let mut srv = server::start(&[DEV]);
    let c = client();
    let valid = login_ok(&c, &srv, "alice", ALICE_PW, DEV_COOKIE).await;
    let token = valid.strip_prefix("session=").unwrap().to_owned();

    let invalid = [
        ("garbage", "session=%%%not-a-token%%%".to_owned()),
        (
            "truncated",
            format!("session={}", &token[..token.len() - 7]),
        ),
        (
            "one byte short",
            format!("session={}", &token[..token.len() - 1]),
        ),
        ("5 KB", format!("session={}", "A".repeat(5 * 1024))),
        ("64 KB", format!("session={}", "A".repeat(64 * 1024))),
        (
            "50 duplicates",
            (0..50)
                .map(|i| format!("session=junk{i}"))
                .collect::<Vec<_>>()
                .join("; "),
        ),
        ("quoted garbage", "session=\"abc\"".to_owned()),
    ];
    for (what, header) in invalid {
        let r = me(&c, &srv, Some(&header)).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{what}: {}", r.text);
        r.assert_rejected("INVALID");
        assert_healthy(&mut srv).await;
    }

    // The real cookie first, then 49 planted copies: the first valid value wins.
    let header = std::iter::once(valid.clone())
        .chain((0..49).map(|i| format!("session=junk{i}")))
        .collect::<Vec<_>>()
        .join("; ");
    assert_eq!(
        me(&c, &srv, Some(&header)).await.assert_ok()["user"],
        "alice"
    );
    // A planted copy before the real one does not mask it.
    let header = format!("session=planted; {valid}");
    assert_eq!(
        me(&c, &srv, Some(&header)).await.assert_ok()["user"],
        "alice"
    );
    assert_healthy(&mut srv).await;

    // 50 separate Cookie header lines.
    let mut lines = c.get(srv.url("/me"));
    for i in 0..50 {
        lines = lines.header(COOKIE, format!("session=junk{i}"));
    }
    send(lines).await.assert_rejected("INVALID");
    assert_healthy(&mut srv).await;

    // Bytes that are not UTF-8 (legal obs-text in a header).
    let r = send(c.get(srv.url("/me")).header(
        COOKIE,
        HeaderValue::from_bytes(b"session=\xff\xfe\xc3\x28").unwrap(),
    ))
    .await;
    r.assert_rejected("INVALID");
    assert_healthy(&mut srv).await;
    // They spoil only their own pair, not the real cookie beside them.
    let mut bytes = b"junk=\xff\xfe; ".to_vec();
    bytes.extend_from_slice(valid.as_bytes());
    let r = send(
        c.get(srv.url("/me"))
            .header(COOKIE, HeaderValue::from_bytes(&bytes).unwrap()),
    )
    .await;
    assert_eq!(r.assert_ok()["user"], "alice");

    // 1 MB of header: hyper refuses it (431) or drops the connection; never a 5xx.
    let huge = format!("session={}", "A".repeat(1024 * 1024));
    match c.get(srv.url("/me")).header(COOKIE, huge).send().await {
        Ok(resp) => assert!(
            resp.status().is_client_error(),
            "1 MB cookie header: {}",
            resp.status()
        ),
        Err(e) => eprintln!("1 MB cookie header: connection ended ({e}), as allowed"),
    }
    assert_healthy(&mut srv).await;
    // The valid session still works after all of it.
    assert_eq!(
        me(&c, &srv, Some(&valid)).await.assert_ok()["user"],
        "alice"
    );
}

#[tokio::test]
async fn oversized_request_bodies_are_refused_with_413() {
    let mut srv = server::start(&[DEV]);
    let c = client();
    // Over the 16 KiB default, declared up front.
    let big = json!({"username": "alice", "password": "x".repeat(20 * 1024)});
    let r = send(c.post(srv.url("/login")).json(&big)).await;
    r.assert_error(StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE");
    r.assert_no_cookie();
    assert_healthy(&mut srv).await;

    // The same body streamed in chunks, with no Content-Length.
    let body = big.to_string();
    let mut req = format!(
        "POST /login HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        srv.addr
    )
    .into_bytes();
    for chunk in body.as_bytes().chunks(1000) {
        req.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        req.extend_from_slice(chunk);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let (code, body) = raw_request(&srv, &req).await;
    assert_eq!(code, 413, "{body}");
    // Identity encoding and Content-Length: the JSON error is the whole body.
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["code"], "PAYLOAD_TOO_LARGE");
    assert_healthy(&mut srv).await;

    // Under the limit, an over-long field is an ordinary 400.
    let r = login(&c, &srv, "alice", &"x".repeat(8 * 1024)).await;
    r.assert_error(StatusCode::BAD_REQUEST, "BAD_REQUEST");
    assert_healthy(&mut srv).await;
}

// ---------------------------------------------------------------------------------------------
// Page, health, metrics

#[tokio::test]
async fn page_health_and_metrics_are_served_without_a_session() {
    let srv = server::start(&[DEV]);
    let c = browser_like();

    let r = send(c.get(srv.url("/"))).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.headers[CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html"),
        "{:?}",
        r.headers
    );
    assert!(r.text.contains("<title>sealed-sessions demo</title>"));
    for id in [
        "login-button",
        "whoami",
        "status",
        "logout-everywhere-button",
    ] {
        assert!(r.text.contains(&format!("id=\"{id}\"")), "{id}");
    }
    let csp = r.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");

    let r = healthz(&srv).await;
    assert_eq!(
        r.assert_ok(),
        &json!({"status": "ok", "revocation": {"backend": "memory", "synced": true, "lag_ms": 0}})
    );
    assert_eq!(r.headers[CACHE_CONTROL], "no-store");

    // Some traffic for the counters, through a cookie-keeping client as a browser would.
    login(&c, &srv, "alice", ALICE_PW).await.assert_ok();
    assert_eq!(me(&c, &srv, None).await.assert_ok()["user"], "alice");
    me(&client(), &srv, Some("session=garbage"))
        .await
        .assert_rejected("INVALID");

    let r = send(c.get(srv.url("/metrics"))).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.headers[CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/plain"),
        "{:?}",
        r.headers
    );
    for line in [
        "# TYPE sealed_sessions_audit_events_total counter",
        "sealed_sessions_audit_events_total{event=\"created\"} 1",
        "sealed_sessions_rejections_total{reason=\"INVALID\"} 1",
        "sealed_sessions_validation_seconds_count",
        "sealed_sessions_revocation_synced 1",
    ] {
        assert!(r.text.contains(line), "{line} missing from:\n{}", r.text);
    }

    send(c.get(srv.url("/no-such-route")))
        .await
        .assert_error(StatusCode::NOT_FOUND, "NOT_FOUND");
}

// ---------------------------------------------------------------------------------------------
// Redis outages (test-owned redis-server)

#[tokio::test]
async fn logout_everywhere_answers_503_while_redis_is_down_and_sync_recovers() {
    let Some(mut redis) = support::redis::start() else {
        return;
    };
    let srv = server::start(&[DEV, "--redis", &redis.url()]);
    let c = client();
    let r = healthz(&srv).await;
    assert_eq!(
        r.assert_ok(),
        &json!({"status": "ok", "revocation": {"backend": "redis", "synced": true, "lag_ms": r.body["revocation"]["lag_ms"]}})
    );
    let laptop = login_ok(&c, &srv, "alice", ALICE_PW, DEV_COOKIE).await;
    let phone = login_ok(&c, &srv, "alice", ALICE_PW, DEV_COOKIE).await;

    redis.kill();
    wait_for_health(&srv, Duration::from_secs(20), "sync lost", |r| {
        r.body["revocation"]["synced"] == false
    })
    .await;
    // Without --max-staleness the node keeps serving from its local list.
    let r = healthz(&srv).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["status"], "degraded");

    let r = post(&c, &srv, "/logout-everywhere", Some(&laptop), json!({})).await;
    r.assert_error(StatusCode::SERVICE_UNAVAILABLE, "REVOCATION_UNAVAILABLE");
    // The client is told to retry, yet the revocation is in force on this node already.
    me(&c, &srv, Some(&phone)).await.assert_rejected("REVOKED");

    redis.restart_empty();
    wait_for_health(&srv, Duration::from_secs(30), "sync recovered", |r| {
        r.body["revocation"]["synced"] == true
    })
    .await;
    let r = healthz(&srv).await;
    assert_eq!(r.assert_ok()["status"], "ok");
    // The revocation survived the outage and the empty restart.
    me(&c, &srv, Some(&phone)).await.assert_rejected("REVOKED");
    login_ok(&c, &srv, "alice", ALICE_PW, DEV_COOKIE).await;
}

#[tokio::test]
async fn max_staleness_fails_closed_with_503_once_redis_is_gone_too_long() {
    let Some(mut redis) = support::redis::start() else {
        return;
    };
    let srv = server::start(&[DEV, "--redis", &redis.url(), "--max-staleness", "1s"]);
    let c = client();
    let cookie = login_ok(&c, &srv, "alice", ALICE_PW, DEV_COOKIE).await;
    healthz(&srv).await.assert_ok();

    redis.kill();
    wait_for_health(&srv, Duration::from_secs(20), "health 503", |r| {
        r.status == StatusCode::SERVICE_UNAVAILABLE
    })
    .await;
    // Staleness counts from the last contact with Redis (not from the kill): lag_ms says how
    // long ago that was.
    let r = healthz(&srv).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.body["status"], "stale", "{}", r.text);
    assert_eq!(r.body["revocation"]["synced"], false, "{}", r.text);
    assert!(
        r.body["revocation"]["lag_ms"].as_u64().unwrap() > 1000,
        "{}",
        r.text
    );

    // Session routes fail closed rather than trust a list that may miss revocations.
    me(&c, &srv, Some(&cookie))
        .await
        .assert_error(StatusCode::SERVICE_UNAVAILABLE, "REVOCATION_STALE");
    login(&c, &srv, "admin", ADMIN_PW)
        .await
        .assert_error(StatusCode::SERVICE_UNAVAILABLE, "REVOCATION_STALE");
    // The page needs no session.
    assert_eq!(send(c.get(srv.url("/"))).await.status, StatusCode::OK);

    redis.restart_empty();
    wait_for_health(&srv, Duration::from_secs(30), "health back to 200", |r| {
        r.status == StatusCode::OK && r.body["status"] == "ok"
    })
    .await;
    assert_eq!(
        me(&c, &srv, Some(&cookie)).await.assert_ok()["user"],
        "alice"
    );
}
