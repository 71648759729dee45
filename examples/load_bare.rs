//! The load harness's ceiling: a bare axum handler on `GET /me`, with no session at all.
//!
//! ```sh
//! cargo run --release --example load_bare -- 127.0.0.1:0
//! ```
//! Prints `listening on http://ADDR` once bound. `loadtest/run.sh` drives it with `wrk` next to
//! the session servers; every other target pays for its session on top of what this costs.
//!
//! The runtime is tokio's multi-thread one with default worker threads, as in the reference
//! server: under `taskset -c 0` that is one worker.

use std::io::Write as _;

use axum::routing::get;
use axum::serve::ListenerExt as _;
use axum::{Json, Router};
use serde_json::{Value, json};

async fn me() -> Json<Value> {
    // About the shape of the reference server's answer, minus anything a session would provide.
    Json(json!({ "user": "alice", "role": "user", "elevated": false }))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    std::io::stdout().flush()?;
    // Nagle off, as the reference server does for every connection.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let app = Router::new().route("/me", get(me));
    axum::serve(listener, app).await?;
    Ok(())
}
