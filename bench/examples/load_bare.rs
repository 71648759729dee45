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

use axum::Router;
use axum::http::header::CONTENT_TYPE;
use axum::routing::get;
use axum::serve::ListenerExt as _;

/// The same fields, and the same number of bytes, as the reference server's `GET /me` answer for
/// the load test's user, with fixed values: both targets send identical responses, so the kernel
/// work per request is the same and the difference is what the session costs. A constant, so
/// the ceiling does no work of its own at all.
const ME: &str = concat!(
    r#"{"auth_time":"2026-11-27T00:57:24.875Z","created_at":"2026-11-27T00:57:24.875Z","#,
    r#""elevated":false,"expires_at":"2026-11-28T00:57:24.875Z","role":"user","#,
    r#""session_id":"4b3f077d9fb19fa45b3e6d3143111847","user":"alice"}"#
);

async fn me() -> ([(axum::http::HeaderName, &'static str); 1], &'static str) {
    ([(CONTENT_TYPE, "application/json")], ME)
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
