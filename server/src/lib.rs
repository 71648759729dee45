//! The reference server and operator CLI (binary `sealed-sessions`): an application that uses
//! the `sealed-sessions` library, never a part of it.
//!
//! # Layout
//! - `config`: the `serve` flags ([`config::ServeConfig`]) and the engine configuration they make.
//! - `serve`: the `serve` command: logging, keys, users, state, signals, then [`run_with`].
//! - `admin`: the `hash-password`, `keygen` and `keys list` commands.
//! - `inspect`: the `inspect` command: a cookie's claims, or why it does not open.
//! - `revoke`: the `revoke` command: logout everywhere or one session, through Redis.
//! - `keys_bootstrap`: the key ring from the environment or the key directory.
//! - `key_files`: writing the key directory (new key files, `PRIMARY`) for `keygen` and
//!   `keys_bootstrap`.
//! - `auth`: who may log in: the users file and its format (fuzzed), the store, demo users,
//!   argon2id hashing and the password rules, the bounded verifier, the login throttle.
//! - `state`: the application state every handler shares, and `UserData`, what a session
//!   carries.
//! - `handlers`: the session API (login, me, logout, step-up, password change, elevation, the
//!   session list), every error a `sealed_sessions::HttpError`.
//! - `routes`: [`routes::build_router`]: the session routes, the page, `/healthz`, `/metrics`,
//!   the JSON fallbacks, under the session layer and the body limit.
//! - `body_limit`: the request body limit, free for requests without a body.
//! - `prometheus`: the `/metrics` exporter (the library records through the `metrics` facade).
//! - `report`: errors in log lines with their causes.
//! - `page.html`: the browser page served at `/`.
//!
//! Imports inside the HTTP part go one way: `routes` → `handlers`, `state`, `body_limit`;
//! `handlers` → `state`, `auth`, `report`; `state` → `auth`, `prometheus`; `body_limit` → none of
//! ours; `report` → none of ours.
//!
//! [`run`] owns the accept loop (rather than `axum::serve`) to set hyper's header read timeout.

pub mod admin;
pub mod auth;
pub mod body_limit;
pub mod config;
pub mod handlers;
pub mod inspect;
pub mod key_files;
pub mod keys_bootstrap;
pub mod prometheus;
pub mod report;
pub mod revoke;
pub mod routes;
pub mod serve;
pub mod state;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use std::convert::Infallible;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::response::Response;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::ServiceExt as _;
use tracing::{debug, error, info, warn};

/// Connection-level settings of [`run_with`].
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// A client must send a request's complete headers within this time, counted from when the
    /// server starts waiting for them (so an idle keep-alive connection is closed after it too).
    /// Defeats slow-header ("slowloris") clients holding connections open. Default 10 s.
    pub header_read_timeout: Duration,
    /// After shutdown is signalled, how long requests in flight may take before the server stops
    /// anyway. Default 10 s.
    pub drain_timeout: Duration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            header_read_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(10),
        }
    }
}

/// What [`run_with`] serves: an axum [`Router`](axum::Router), or a service wrapped around one.
pub trait AppService:
    tower::Service<http::Request<Body>, Response = Response, Error = Infallible>
    + Clone
    + Send
    + 'static
{
}

impl<S> AppService for S where
    S: tower::Service<http::Request<Body>, Response = Response, Error = Infallible>
        + Clone
        + Send
        + 'static
{
}

/// Serves `app` on `listener` until `shutdown` completes, with default [`ServerOptions`].
#[allow(dead_code)] // the binary uses `run_with`; tests and other embedders use this
pub async fn run<S>(
    listener: TcpListener,
    app: S,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()>
where
    S: AppService,
    S::Future: Send + 'static,
{
    run_with(listener, app, shutdown, ServerOptions::default()).await
}

/// Serves `app` on `listener` until `shutdown` completes, then stops accepting, lets requests in
/// flight finish (up to `drain_timeout`) and returns.
///
/// `app` is a [`Router`](axum::Router) or any service around one (such as [`routes::build_router`]'s).
/// Handlers can extract `ConnectInfo<SocketAddr>`: the peer address is put in each request's
/// extensions.
pub async fn run_with<S>(
    listener: TcpListener,
    app: S,
    shutdown: impl Future<Output = ()>,
    options: ServerOptions,
) -> anyhow::Result<()>
where
    S: AppService,
    S::Future: Send + 'static,
{
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout)
        .keep_alive(true);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) if is_per_connection(&e) => {
                    debug!(error = %report::chain(&e), "accept failed for one connection");
                    continue;
                }
                Err(e) => {
                    // Usually out of file descriptors: back off instead of spinning.
                    error!(error = %report::chain(&e), "accept failed; retrying in 1s");
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                        () = &mut shutdown => break,
                    }
                }
            },
            () = &mut shutdown => break,
        };
        if let Err(e) = stream.set_nodelay(true) {
            debug!(error = %report::chain(&e), "set_nodelay failed");
        }
        let service = app
            .clone()
            .map_request(move |req: http::Request<Incoming>| {
                let mut req = req.map(Body::new);
                req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
                req
            });
        let conn = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                // Clients that disconnect or time out mid-request are routine.
                debug!(%peer, error = %report::chain(&e), "connection ended with an error");
            }
        });
    }
    // Stop accepting before draining so new clients are refused, not left waiting.
    drop(listener);
    info!("shutting down: finishing requests in flight");
    tokio::select! {
        () = graceful.shutdown() => info!("all connections closed"),
        () = tokio::time::sleep(options.drain_timeout) => {
            warn!(timeout = ?options.drain_timeout, "connections still open after the drain timeout; stopping anyway");
        }
    }
    Ok(())
}

/// Accept errors that concern one connection only (the client went away before we took it).
fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::routing::get;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpStream;

    async fn start(
        app: Router,
        options: ServerOptions,
    ) -> (
        SocketAddr,
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<anyhow::Result<()>>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(run_with(
            listener,
            app,
            async {
                let _ = rx.await;
            },
            options,
        ));
        (addr, tx, task)
    }

    async fn raw_request(addr: SocketAddr, request: &str) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn handlers_see_the_peer_address() {
        let app = Router::new().route(
            "/peer",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.ip().to_string() }),
        );
        let (addr, stop, task) = start(app, ServerOptions::default()).await;
        let resp = raw_request(
            addr,
            "GET /peer HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
        assert!(resp.ends_with("127.0.0.1"), "{resp}");
        stop.send(()).unwrap();
        task.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_client_that_never_finishes_its_headers_is_disconnected() {
        let app = Router::new().route("/", get(|| async { "hi" }));
        let options = ServerOptions {
            header_read_timeout: Duration::from_millis(200),
            ..ServerOptions::default()
        };
        let (addr, stop, task) = start(app, options).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        let mut buf = Vec::new();
        // The server closes the connection; reading hits EOF well before this bound.
        let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
        assert!(read.is_ok(), "connection still open");
        stop.send(()).unwrap();
        task.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn shutdown_lets_a_request_in_flight_finish() {
        let started = std::sync::Arc::new(tokio::sync::Notify::new());
        let release = std::sync::Arc::new(tokio::sync::Notify::new());
        let (s, r) = (started.clone(), release.clone());
        let app = Router::new().route(
            "/slow",
            get(move || async move {
                s.notify_one();
                r.notified().await;
                "done"
            }),
        );
        let (addr, stop, task) = start(app, ServerOptions::default()).await;
        let client = tokio::spawn(raw_request(
            addr,
            "GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        ));
        started.notified().await;
        stop.send(()).unwrap();
        // Shutdown has begun while the handler is still running; now let it answer.
        tokio::task::yield_now().await;
        release.notify_one();
        let resp = client.await.unwrap();
        assert!(
            resp.starts_with("HTTP/1.1 200") && resp.ends_with("done"),
            "{resp}"
        );
        task.await.unwrap().unwrap();
        // The listener is closed.
        assert!(TcpStream::connect(addr).await.is_err());
    }
}
