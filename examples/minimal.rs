//! The smallest useful app: the session stack from the builder, a login route, a protected
//! route, the user's session list and logout.
//!
//! ```text
//! cargo run --example minimal
//! curl -i -c jar -X POST localhost:3000/login -H 'content-type: application/json' -d '{"name":"alice"}'
//! curl -b jar localhost:3000/me
//! curl -b jar localhost:3000/sessions
//! curl -b jar -c jar -X POST localhost:3000/logout
//! ```
//! A demo: /login takes any name and no password, the key is generated at start (sessions die
//! with the process), and the cookie preset is the insecure one for plain-http localhost.
//! `PORT` chooses another port than 3000.

use std::net::SocketAddr;

use axum::routing::{get, post};
use axum::{Json, Router};
use sealed_sessions::extract::{Session, SessionManager};
use sealed_sessions::{CookieSettings, EngineConfig, HttpError, Key, KeyId, KeyRing, Sessions};

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

/// The user's sessions, from the index the layer keeps current on login and logout.
async fn sessions(session: Session<()>) -> Result<String, HttpError> {
    let mut out = String::new();
    for entry in session.list_sessions().await? {
        let this = if entry.session_id == session.id() {
            " (this one)"
        } else {
            ""
        };
        out.push_str(&format!(
            "{} since {}{this}\n",
            entry.user_agent,
            entry.created_at.rfc3339()
        ));
    }
    Ok(out)
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
    let sessions = Sessions::<()>::builder()
        .config(config)
        .keys(keys)
        .build()
        .await?;
    let app = Router::new()
        .route("/login", post(login))
        .route("/me", get(me))
        .route("/sessions", get(self::sessions))
        .route("/logout", post(logout))
        .layer(sessions.layer());
    let port = std::env::var("PORT").unwrap_or_else(|_| "3000".into());
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await?;
    println!("listening on http://{}", listener.local_addr()?);
    let service = app.into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, service).await?;
    Ok(())
}
