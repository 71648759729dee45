//! Typed session data with the revocation list and session index in Redis, wired by the
//! builder: run it twice on two ports against one Redis, with the same keys, and a logout on one
//! node is in force on the other.
//!
//! ```text
//! redis-server --port 6390 --save '' &
//! export SEALED_SESSIONS_KEYS="k1:$(head -c 32 /dev/urandom | base64)"   # shared by the nodes
//! REDIS_URL=redis://127.0.0.1:6390 cargo run --example typed_redis --features redis
//! # or: PORT=3001 cargo run --example typed_redis --features redis -- redis://127.0.0.1:6390
//!
//! curl -c jar -b jar -X POST localhost:3000/cart -H 'content-type: application/json' -d '{"item":"book"}'
//! curl -c jar -b jar -X POST localhost:3000/login -H 'content-type: application/json' -d '{"name":"alice"}'
//! curl -b jar localhost:3000/me
//! curl -b jar localhost:3000/sessions
//! curl -c jar -b jar -X POST localhost:3000/logout-everywhere
//! ```
//! A demo: /login takes any name and no password, and the cookie preset is the insecure one for
//! plain-http localhost. Without `SEALED_SESSIONS_KEYS` a key is generated at start (its
//! cookies open on this node only). `PORT` chooses another port than 3000.

use std::net::SocketAddr;
use std::process::ExitCode;

use axum::routing::{get, post};
use axum::{Json, Router};
use sealed_sessions::extract::{Session, SessionManager};
use sealed_sessions::keys::ENV_VAR;
use sealed_sessions::redis_topology::RedisTarget;
use sealed_sessions::{CookieSettings, EngineConfig, HttpError, Key, KeyId, KeyRing, Sessions};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// What each session carries, sealed in the cookie: typed, no lookup per request.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Visit {
    /// Set at login.
    display_name: Option<String>,
    /// Filled as a guest or signed in; kept across the login.
    cart: Vec<String>,
}

#[derive(Deserialize)]
struct Item {
    item: String,
}

#[derive(Deserialize)]
struct Login {
    name: String,
}

/// Guests get an anonymous session for their cart.
async fn add_to_cart(
    sessions: SessionManager<Visit>,
    Json(Item { item }): Json<Item>,
) -> Result<Json<Value>, HttpError> {
    let session = match sessions.current().or_else(|| sessions.anonymous()) {
        Some(s) => {
            let mut visit = s.data().clone();
            visit.cart.push(item);
            s.update(visit)?
        }
        None => {
            let visit = Visit {
                display_name: None,
                cart: vec![item],
            };
            sessions.start_anonymous(visit).await?
        }
    };
    Ok(Json(
        json!({ "cart": session.data().cart, "guest": session.is_anonymous() }),
    ))
}

/// The guest session is revoked and a user session with a new id carries its cart.
async fn login(
    sessions: SessionManager<Visit>,
    Json(Login { name }): Json<Login>,
) -> Result<Json<Value>, HttpError> {
    // Demo only: a real login checks a password before this line.
    let cart = sessions
        .anonymous()
        .map(|guest| guest.data().cart.clone())
        .unwrap_or_default();
    let visit = Visit {
        display_name: Some(name.clone()),
        cart,
    };
    let session = sessions.login(name, visit).await?;
    Ok(Json(
        json!({ "user": session.user_id(), "cart": session.data().cart }),
    ))
}

async fn me(session: Session<Visit>) -> Json<Value> {
    let visit = session.data();
    Json(json!({
        "user": session.user_id(),
        "display_name": visit.display_name,
        "cart": visit.cart,
        "expires_at": session.claims().expires_at.rfc3339().to_string(),
    }))
}

/// The user's sessions on every node: the index lives in Redis.
async fn list_sessions(session: Session<Visit>) -> Result<Json<Value>, HttpError> {
    let list: Vec<Value> = session
        .list_sessions()
        .await?
        .iter()
        .map(|e| {
            json!({
                "client": e.user_agent,
                "since": e.created_at.rfc3339().to_string(),
                "current": e.session_id == session.id(),
            })
        })
        .collect();
    Ok(Json(json!({ "sessions": list })))
}

async fn logout_everywhere(session: Session<Visit>) -> Result<&'static str, HttpError> {
    session.logout_everywhere().await?;
    Ok("logged out everywhere\n")
}

#[tokio::main]
async fn main() -> ExitCode {
    let Some(url) = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("REDIS_URL").ok())
    else {
        eprintln!(
            "usage: typed_redis REDIS_URL (or set REDIS_URL), e.g. redis://127.0.0.1:6390\n\
             start a throwaway Redis with: redis-server --port 6390 --save ''"
        );
        return ExitCode::from(2);
    };
    match run(&url).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprint!("error: {e}");
            let mut cause = e.source();
            while let Some(c) = cause {
                eprint!(": {c}");
                cause = c.source();
            }
            eprintln!();
            ExitCode::FAILURE
        }
    }
}

async fn run(url: &str) -> Result<(), Box<dyn std::error::Error>> {
    let config = EngineConfig::builder()
        .cookie(CookieSettings::insecure_dev())
        .build()?;
    let builder = Sessions::<Visit>::builder().config(config);
    let builder = if std::env::var_os(ENV_VAR).is_some() {
        builder.keys_from_env(ENV_VAR)
    } else {
        println!("{ENV_VAR} is not set: sealing with a key of this process only");
        builder.keys(KeyRing::single(KeyId::new("demo")?, Key::generate()?))
    };
    // A target displays its URL with any password redacted.
    let target = RedisTarget::single(url);
    let shown = target.to_string();
    let sessions = builder
        .redis(target)
        .max_sessions_per_user(Some(5))
        .build()
        .await?;
    // The node starts even when Redis is down, and then fails closed (503 REVOCATION_STALE)
    // until it has replayed the revocation stream. For a demo, say so and stop.
    if !sessions.engine().revocations().ready() {
        return Err(format!(
            "Redis at {} is not reachable (or still replaying) after the start-up wait; \
             is redis-server running there?",
            shown
        )
        .into());
    }
    let app = Router::new()
        .route("/cart", post(add_to_cart))
        .route("/login", post(login))
        .route("/me", get(me))
        .route("/sessions", get(list_sessions))
        .route("/logout-everywhere", post(logout_everywhere))
        .layer(sessions.layer());
    let port = std::env::var("PORT").unwrap_or_else(|_| "3000".into());
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await?;
    println!(
        "listening on http://{}, revocations and session index in {}",
        listener.local_addr()?,
        shown
    );
    let service = app.into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, service).await?;
    Ok(())
}
