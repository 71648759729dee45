//! The extractors over a stack from the builder: the session index kept current with no handler
//! code, anonymous (guest) sessions and their upgrade at login, and the wiring errors.
#![allow(clippy::unwrap_used, missing_docs)]

mod support;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Path;
use axum::routing::{get, post};
use http::{Request, StatusCode};
use sealed_sessions::clock::{Clock, ManualClock, SystemClock};
use sealed_sessions::extract::{Fresh, Session, SessionManager};
use sealed_sessions::{
    EngineConfig, HttpError, Key, KeyId, KeyRing, LayerOptions, SessionEngine, SessionId,
    SessionLayer, Sessions,
};
use serde_json::{Value, json};
use support::log_capture::{self, captured};
use tower::ServiceExt;

type Cart = Vec<String>;

// ---------------------------------------------------------------- the app

/// Guests get an anonymous session for their cart; signed-in users keep theirs.
async fn add_to_cart(
    sessions: SessionManager<Cart>,
    Path(item): Path<String>,
) -> Result<axum::Json<Value>, HttpError> {
    let s = match sessions.current().or_else(|| sessions.anonymous()) {
        Some(s) => {
            let mut cart = s.data().clone();
            cart.push(item);
            s.update(cart)?
        }
        None => sessions.start_anonymous(vec![item]).await?,
    };
    Ok(axum::Json(
        json!({ "cart": s.data(), "guest": s.is_anonymous(), "user": s.user_id() }),
    ))
}

/// Carries the guest's cart into the user session.
async fn login(
    sessions: SessionManager<Cart>,
    Path(name): Path<String>,
) -> Result<axum::Json<Value>, HttpError> {
    let cart = sessions
        .anonymous()
        .map(|g| g.data().clone())
        .unwrap_or_default();
    let s = sessions.login(name, cart).await?;
    Ok(axum::Json(json!({ "user": s.user_id(), "cart": s.data() })))
}

async fn me(session: Session<Cart>) -> axum::Json<Value> {
    axum::Json(json!({ "user": session.user_id(), "cart": session.data() }))
}

async fn maybe(session: Option<Session<Cart>>) -> String {
    session.map_or("nobody".into(), |s| s.user_id().to_owned())
}

async fn sensitive(session: Fresh<Cart>) -> String {
    format!("fresh {}", session.user_id())
}

/// A handler that (wrongly) offers step-up to whatever session the request has.
async fn step_up_any(sessions: SessionManager<Cart>) -> Result<&'static str, HttpError> {
    let s = sessions
        .current()
        .or_else(|| sessions.anonymous())
        .ok_or_else(|| HttpError::new(StatusCode::UNAUTHORIZED, "NO_SESSION", "none"))?;
    s.step_up().await?;
    Ok("stepped up")
}

async fn list(session: Session<Cart>) -> Result<axum::Json<Value>, HttpError> {
    let ids: Vec<String> = session
        .list_sessions()
        .await?
        .iter()
        .map(|e| e.session_id.to_string())
        .collect();
    Ok(axum::Json(json!(ids)))
}

async fn list_any(sessions: SessionManager<Cart>) -> Result<axum::Json<Value>, HttpError> {
    let s = sessions.anonymous().unwrap();
    Ok(axum::Json(json!(s.list_sessions().await?.len())))
}

async fn regenerate(session: Session<Cart>) -> Result<String, HttpError> {
    Ok(session.regenerate(None).await?.id().to_string())
}

async fn logout(session: Session<Cart>) -> Result<&'static str, HttpError> {
    session.logout().await?;
    Ok("bye")
}

async fn logout_everywhere(session: Session<Cart>) -> Result<&'static str, HttpError> {
    session.logout_everywhere().await?;
    Ok("bye everywhere")
}

async fn logout_others(session: Session<Cart>) -> Result<String, HttpError> {
    Ok(session.logout_other_sessions().await?.id().to_string())
}

async fn end(session: Session<Cart>, Path(id): Path<String>) -> Result<&'static str, HttpError> {
    session
        .end_session(SessionId::parse_hex(&id).unwrap())
        .await?;
    Ok("ended")
}

fn router(layer: SessionLayer<Cart>) -> Router {
    Router::new()
        .route("/cart/{item}", post(add_to_cart))
        .route("/login/{name}", post(login))
        .route("/me", get(me))
        .route("/maybe", get(maybe))
        .route("/sensitive", get(sensitive))
        .route("/step-up", post(step_up_any))
        .route("/sessions", get(list))
        .route("/guest-sessions", get(list_any))
        .route("/regenerate", post(regenerate))
        .route("/logout", post(logout))
        .route("/logout-everywhere", post(logout_everywhere))
        .route("/logout-others", post(logout_others))
        .route("/end/{id}", post(end))
        .layer(layer)
}

struct App {
    router: Router,
    sessions: Sessions<Cart>,
    clock: ManualClock,
}

async fn app(limit: Option<usize>) -> App {
    log_capture::install();
    let clock = ManualClock::new(SystemClock.now());
    let keys = KeyRing::single(KeyId::new("k1").unwrap(), Key::generate().unwrap());
    let sessions = Sessions::<Cart>::builder()
        .keys(keys)
        .clock(Arc::new(clock.clone()))
        .max_sessions_per_user(limit)
        .build()
        .await
        .unwrap();
    App {
        router: router(sessions.layer()),
        sessions,
        clock,
    }
}

struct Reply {
    status: StatusCode,
    /// The `name=value` of a Set-Cookie that sets a value (not a clearing one).
    cookie: Option<String>,
    cleared: bool,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

const FIREFOX_LINUX: &str =
    "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0";
const SAFARI_IOS: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Mobile/15E148 Safari/604.1";

impl App {
    async fn call(&self, method: &str, path: &str, cookie: Option<&str>) -> Reply {
        self.call_as(FIREFOX_LINUX, method, path, cookie).await
    }

    async fn call_as(&self, ua: &str, method: &str, path: &str, cookie: Option<&str>) -> Reply {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("user-agent", ua);
        if let Some(c) = cookie {
            req = req.header("cookie", c);
        }
        let resp = self
            .router
            .clone()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let set = resp
            .headers()
            .get("set-cookie")
            .map(|v| v.to_str().unwrap().to_owned());
        let cleared = set.as_deref().is_some_and(|s| s.contains("Max-Age=0"));
        let cookie = set
            .filter(|_| !cleared)
            .map(|s| s.split(';').next().unwrap().to_owned());
        let body = axum::body::to_bytes(resp.into_body(), 1 << 16)
            .await
            .unwrap();
        Reply {
            status,
            cookie,
            cleared,
            body: String::from_utf8(body.to_vec()).unwrap(),
        }
    }

    async fn login(&self, name: &str, cookie: Option<&str>) -> String {
        // Distinct creation times: the index orders (and the limit evicts) by them.
        self.clock.advance(Duration::from_millis(1));
        let r = self.call("POST", &format!("/login/{name}"), cookie).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        r.cookie.unwrap()
    }

    async fn label(&self, user: &str, cookie: &str) -> String {
        let id = self.id_of(cookie);
        let now = self.sessions.engine().now();
        let listed = self.sessions.index().list(user, now).await.unwrap();
        listed
            .into_iter()
            .find(|e| e.session_id == id)
            .unwrap()
            .user_agent
    }

    async fn listed(&self, user: &str) -> HashSet<SessionId> {
        let now = self.sessions.engine().now();
        self.sessions
            .index()
            .list(user, now)
            .await
            .unwrap()
            .iter()
            .map(|e| e.session_id)
            .collect()
    }

    fn ids(&self, cookies: &[&str]) -> HashSet<SessionId> {
        cookies.iter().map(|c| self.id_of(c)).collect()
    }

    /// Validates a `name=value` cookie directly against the engine.
    fn verdict(&self, cookie: &str) -> &'static str {
        let token = cookie.split_once('=').unwrap().1;
        match self.sessions.engine().validate(token, None) {
            Ok(_) => "valid",
            Err(r) => r.code(),
        }
    }

    fn id_of(&self, cookie: &str) -> SessionId {
        let token = cookie.split_once('=').unwrap().1;
        self.sessions.engine().validate(token, None).unwrap().id()
    }
}

/// Sends `GET path` through `router` with `token` in the production session cookie; the status
/// and the JSON body.
async fn get_with_cookie(router: Router, path: &str, token: &str) -> (StatusCode, Value) {
    let req = Request::get(path)
        .header("cookie", format!("__Host-session={token}"))
        .body(Body::empty())
        .unwrap();
    let resp = router.oneshot(req).await.unwrap();
    let status = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 16)
        .await
        .unwrap();
    (status, serde_json::from_slice(&body).unwrap())
}

// ---------------------------------------------------------------- the index, with no handler code

#[tokio::test]
async fn logins_logouts_and_regeneration_keep_the_index_current_without_handler_code() {
    let app = app(Some(10)).await;
    let a = app.login("ann", None).await;
    app.clock.advance(Duration::from_millis(1));
    let r = app.call_as(SAFARI_IOS, "POST", "/login/ann", None).await;
    let b = r.cookie.unwrap();
    assert_eq!(app.listed("ann").await, app.ids(&[&a, &b]));
    let r = app.call("GET", "/sessions", Some(&a)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json().as_array().unwrap().len(), 2);
    assert_eq!(app.label("ann", &a).await, "Firefox on Linux");
    assert_eq!(app.label("ann", &b).await, "Safari on iOS");

    // Regeneration: the new id is listed in place of the old one, labelled as the old one was
    // (the same client), whatever the regenerating request's own User-Agent.
    let r = app
        .call_as(SAFARI_IOS, "POST", "/regenerate", Some(&a))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let a2 = r.cookie.unwrap();
    assert_eq!(app.verdict(&a), "REVOKED");
    assert_eq!(app.listed("ann").await, app.ids(&[&b, &a2]));
    assert_eq!(app.label("ann", &a2).await, "Firefox on Linux");

    // Logout removes it.
    let r = app.call("POST", "/logout", Some(&b)).await;
    assert!(r.status.is_success() && r.cleared);
    assert_eq!(app.listed("ann").await, app.ids(&[&a2]));

    // A login over a live session of another user revokes and unlists it.
    let c = app.login("cid", Some(&a2)).await;
    assert_eq!(app.verdict(&a2), "REVOKED");
    assert!(app.listed("ann").await.is_empty());
    assert_eq!(app.listed("cid").await, app.ids(&[&c]));

    // Logout everywhere clears the list.
    let d = app.login("cid", None).await;
    assert_eq!(app.listed("cid").await.len(), 2);
    let r = app.call("POST", "/logout-everywhere", Some(&d)).await;
    assert!(r.status.is_success());
    assert!(app.listed("cid").await.is_empty());
    assert_eq!(app.verdict(&c), "REVOKED");
}

#[tokio::test]
async fn the_per_user_limit_revokes_the_oldest_session_at_login() {
    let app = app(Some(2)).await;
    let first = app.login("lim", None).await;
    let second = app.login("lim", None).await;
    let third = app.login("lim", None).await;
    assert_eq!(app.verdict(&first), "REVOKED");
    assert_eq!(app.verdict(&second), "valid");
    assert_eq!(app.listed("lim").await, app.ids(&[&second, &third]));
    let r = app.call("GET", "/me", Some(&first)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.json()["code"], "REVOKED");
}

#[tokio::test]
async fn logging_out_other_sessions_leaves_only_the_continued_one_listed() {
    let app = app(None).await;
    let a = app.login("oth", None).await;
    let b = app.login("oth", None).await;
    let r = app.call("POST", "/logout-others", Some(&a)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let continued = r.cookie.unwrap();
    assert_eq!(app.verdict(&b), "REVOKED");
    assert_eq!(app.listed("oth").await, app.ids(&[&continued]));
}

#[tokio::test]
async fn a_user_ends_one_of_their_sessions_but_not_another_users() {
    let app = app(None).await;
    let phone = app.login("eve", None).await;
    let laptop = app.login("eve", None).await;
    let other = app.login("fay", None).await;
    let other_id = app.id_of(&other).to_string();
    let r = app
        .call("POST", &format!("/end/{other_id}"), Some(&laptop))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.json()["code"], "NOT_FOUND");
    assert_eq!(app.verdict(&other), "valid");

    let phone_id = app.id_of(&phone).to_string();
    let r = app
        .call("POST", &format!("/end/{phone_id}"), Some(&laptop))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(!r.cleared, "ending another session keeps this cookie");
    assert_eq!(app.verdict(&phone), "REVOKED");
    assert_eq!(app.listed("eve").await, app.ids(&[&laptop]));
}

#[tokio::test]
async fn listing_without_an_index_is_a_wiring_error() {
    let keys = KeyRing::single(KeyId::new("k1").unwrap(), Key::generate().unwrap());
    let engine: SessionEngine<Cart> = SessionEngine::new(EngineConfig::default(), keys);
    let issued = engine.issue("gus", vec![], None).await.unwrap();
    let router = router(SessionLayer::new(engine, LayerOptions::default()));
    let (status, v) = get_with_cookie(router, "/sessions", &issued.token).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(v["code"], "SESSION_INDEX_MISSING");
}

// ---------------------------------------------------------------- anonymous sessions

#[tokio::test]
async fn an_anonymous_session_carries_a_cart_through_the_layer() {
    let app = app(Some(10)).await;
    let r = app.call("POST", "/cart/book", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.json(),
        json!({ "cart": ["book"], "guest": true, "user": "" })
    );
    let guest = r.cookie.unwrap();

    let r = app.call("POST", "/cart/pen", Some(&guest)).await;
    assert_eq!(r.json()["cart"], json!(["book", "pen"]));
    let guest = r.cookie.unwrap();
    assert_eq!(app.verdict(&guest), "valid");

    // Not a signed-in session: `Session` refuses it, `Option<Session>` is `None`, and the
    // layer keeps the cookie (it is not a bad one).
    let r = app.call("GET", "/me", Some(&guest)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.json()["code"], "NO_SESSION");
    assert!(!r.cleared);
    let r = app.call("GET", "/maybe", Some(&guest)).await;
    assert_eq!(r.body, "nobody");
    assert!(!r.cleared);
}

#[tokio::test]
async fn login_upgrades_a_guest_to_a_new_id_and_the_guest_cookie_stops_working() {
    let app = app(Some(10)).await;
    let guest = app.call("POST", "/cart/book", None).await.cookie.unwrap();
    let guest_id = app.id_of(&guest);

    let r = app.call("POST", "/login/hal", Some(&guest)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json(), json!({ "user": "hal", "cart": ["book"] }));
    let user = r.cookie.unwrap();
    assert_ne!(app.id_of(&user), guest_id, "a new id at login");

    // The guest cookie (say, planted by an attacker before the login) is revoked.
    assert_eq!(app.verdict(&guest), "REVOKED");
    let r = app.call("POST", "/cart/pen", Some(&guest)).await;
    assert_eq!(r.json()["user"], "", "a replayed guest cookie starts over");
    assert_eq!(r.json()["cart"], json!(["pen"]));
    let r = app.call("GET", "/me", Some(&user)).await;
    assert_eq!(r.json(), json!({ "user": "hal", "cart": ["book"] }));
}

#[tokio::test]
async fn an_anonymous_session_passes_no_fresh_or_step_up_route_and_is_never_listed() {
    let app = app(Some(10)).await;
    let guest = app.call("POST", "/cart/book", None).await.cookie.unwrap();
    // Issued this instant, yet no password was ever checked.
    let r = app.call("GET", "/sensitive", Some(&guest)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.json()["code"], "NO_SESSION");
    let engine = app.sessions.engine();
    let session = engine
        .validate(guest.split_once('=').unwrap().1, None)
        .unwrap();
    assert!(session.is_anonymous());
    assert_eq!(
        engine.require_fresh(&session, None).unwrap_err().code(),
        "STEP_UP_REQUIRED"
    );
    let r = app.call("POST", "/step-up", Some(&guest)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.json()["code"], "NO_SESSION");
    assert_eq!(
        app.verdict(&guest),
        "valid",
        "a refused step-up changes nothing"
    );

    // In no user's list, and its own list is empty.
    assert!(app.listed("").await.is_empty());
    let r = app.call("GET", "/guest-sessions", Some(&guest)).await;
    assert_eq!(r.json(), json!(0));
}

#[tokio::test]
async fn anonymous_sessions_ignore_user_versions_and_cannot_log_out_everyone() {
    let app = app(None).await;
    let engine = app.sessions.engine();
    let guest = engine.issue_anonymous(vec![], None).unwrap();
    // Nothing can raise a version for the empty user id through the engine …
    let err = engine.logout_everywhere("").await.unwrap_err();
    assert!(matches!(err, sealed_sessions::EngineError::EmptyUserId));
    // … and a version raised behind its back (a shared store written by another tool) does not
    // revoke anonymous sessions: they have no user.
    let now = engine.now();
    engine
        .revocations()
        .bump_user_version("", now, now.saturating_add(Duration::from_secs(60)))
        .await
        .unwrap();
    assert!(engine.validate(&guest.token, None).is_ok());
    // A user session cannot have the empty id.
    let err = engine.issue("", vec![], None).await.unwrap_err();
    assert!(matches!(err, sealed_sessions::EngineError::EmptyUserId));
    // Its own logout works as for any session.
    engine.logout(&guest.session).await.unwrap();
    assert_eq!(
        engine.validate(&guest.token, None).unwrap_err().code(),
        "REVOKED"
    );
}

// ---------------------------------------------------------------- wiring errors

#[tokio::test]
async fn a_layer_of_another_data_type_answers_500_naming_both_types() {
    log_capture::install();
    let keys = KeyRing::single(KeyId::new("k1").unwrap(), Key::generate().unwrap());
    let engine: SessionEngine<()> = SessionEngine::new(EngineConfig::default(), keys);
    let issued = engine.issue("ivy", (), None).await.unwrap();
    let router = Router::new()
        .route("/me", get(me))
        .layer(SessionLayer::new(engine, LayerOptions::default()));
    let (status, v) = get_with_cookie(router, "/me", &issued.token).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(v["code"], "SESSION_TYPE_MISMATCH");
    let message = v["error"].as_str().unwrap();
    let asked = std::any::type_name::<Cart>();
    assert!(message.contains("`()`"), "{message}");
    assert!(message.contains(&format!("`{asked}`")), "{message}");
    assert!(
        !message.contains(&issued.token),
        "no secrets in the message"
    );
    let logged = captured();
    assert!(
        logged
            .lines()
            .any(|l| l.contains("another data type") && l.contains(asked)),
        "{logged}"
    );
}
