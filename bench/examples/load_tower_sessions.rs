//! The load harness's server-side-store peer: axum with `tower-sessions` on its Redis store
//! (`tower-sessions-redis-store`, over `fred`). The cookie holds only a session id; every
//! request that carries one loads the record from Redis.
//!
//! ```sh
//! cargo run --release --example load_tower_sessions -- 127.0.0.1:0 redis://127.0.0.1:6379/
//! ```
//! Prints `listening on http://ADDR` once bound. `POST /login {"username": ...}` starts a
//! session (no password check: the load test measures the request path, not login) and
//! `GET /me` reads it: 200 `{"user"}` or 401. Same runtime as the reference server (tokio
//! multi-thread, default worker threads).

use std::io::Write as _;

use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::serve::ListenerExt as _;
use axum::{Json, Router};
use serde_json::{Value, json};
use tower_sessions::cookie::SameSite;
use tower_sessions::cookie::time::Duration;
use tower_sessions::{Expiry, Session, SessionManagerLayer};
use tower_sessions_redis_store::RedisStore;
use tower_sessions_redis_store::fred::prelude::{ClientLike as _, Config, Pool};

const USER_KEY: &str = "user";

#[derive(serde::Deserialize)]
struct Login {
    username: String,
}

type HandlerResult = Result<Json<Value>, (StatusCode, Json<Value>)>;

fn error(status: StatusCode, code: &str) -> (StatusCode, Json<Value>) {
    (
        status,
        Json(json!({ "error": code.to_lowercase(), "code": code })),
    )
}

async fn login(session: Session, Json(form): Json<Login>) -> HandlerResult {
    // A fresh id on login, against fixation.
    session
        .cycle_id()
        .await
        .map_err(|_| error(StatusCode::INTERNAL_SERVER_ERROR, "STORE"))?;
    session
        .insert(USER_KEY, &form.username)
        .await
        .map_err(|_| error(StatusCode::INTERNAL_SERVER_ERROR, "STORE"))?;
    Ok(Json(json!({ "user": form.username })))
}

async fn me(session: Session) -> HandlerResult {
    match session.get::<String>(USER_KEY).await {
        Ok(Some(user)) => Ok(Json(json!({ "user": user }))),
        Ok(None) => Err(error(StatusCode::UNAUTHORIZED, "NO_SESSION")),
        Err(_) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, "STORE")),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:0".to_owned());
    let redis = args
        .next()
        .unwrap_or_else(|| "redis://127.0.0.1:6379/".to_owned());

    // fred pipelines commands on each connection; a small pool is plenty for one core.
    let pool = Pool::new(Config::from_url(&redis)?, None, None, None, 2)?;
    let _connection = pool.connect();
    pool.wait_for_connect().await?;

    // Idle timeout 30 min, as the reference server's default; the cookie is plain-http here.
    let sessions = SessionManagerLayer::new(RedisStore::new(pool))
        .with_name("session")
        .with_secure(false)
        .with_same_site(SameSite::Lax)
        .with_expiry(Expiry::OnInactivity(Duration::minutes(30)));

    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    std::io::stdout().flush()?;
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let app = Router::new()
        .route("/login", post(login))
        .route("/me", get(me))
        .layer(sessions);
    axum::serve(listener, app).await?;
    Ok(())
}
