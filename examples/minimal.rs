//! The smallest useful app: a session layer, a login route and a protected route.
//!
//! ```text
//! cargo run --example minimal
//! curl -i -c jar -X POST localhost:3000/login -H 'content-type: application/json' -d '{"name":"alice"}'
//! curl -b jar localhost:3000/me
//! ```
//! A demo: /login takes any name and no password, the key is generated at start (sessions die
//! with the process), and the cookie preset is the insecure one for plain-http localhost.

use std::net::SocketAddr;

use axum::routing::{get, post};
use axum::{Json, Router};
use sealed_sessions::extract::{HttpError, Session, SessionManager};
use sealed_sessions::{CookieSettings, EngineConfig, Key, KeyId, KeyRing};
use sealed_sessions::{LayerOptions, SessionEngine, SessionLayer};

#[derive(serde::Deserialize)]
struct Login {
    name: String,
}

async fn login(sessions: SessionManager<()>, Json(form): Json<Login>) -> Result<String, HttpError> {
    // Demo only: a real login checks a password before this line.
    let session = sessions.login(form.name, ()).await?;
    Ok(format!("logged in as {}\n", session.user_id()))
}

async fn me(session: Session<()>) -> String {
    format!("you are {}\n", session.user_id())
}

async fn logout(session: Session<()>) -> Result<&'static str, HttpError> {
    session.logout().await?;
    Ok("logged out\n")
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let keys = KeyRing::single(KeyId::new("dev")?, Key::generate()?);
    let config = EngineConfig::builder()
        .cookie(CookieSettings::insecure_dev())
        .build()?;
    let engine: SessionEngine<()> = SessionEngine::new(config, keys);
    let app = Router::new()
        .route("/login", post(login))
        .route("/me", get(me))
        .route("/logout", post(logout))
        .layer(SessionLayer::new(engine, LayerOptions::default())?);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("listening on http://127.0.0.1:3000");
    let service = app.into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, service).await?;
    Ok(())
}
