//! # sealed-sessions
//!
//! Session state in an encrypted, authenticated cookie (XChaCha20-Poly1305 over postcard-encoded
//! claims), validated on any node with no network call, plus what stateless tokens cannot do:
//! revocation, through a small in-process list that a shared store keeps in sync.
//!
//! # Layout
//! - [`token`]: the cookie value, byte for byte; seal and open.
//! - `aead` (internal): XChaCha20-Poly1305 from HChaCha20 and ring's ChaCha20-Poly1305.
//! - [`claims`]: what a token carries; [`SessionId`], [`Fingerprint`], [`RawData`] (undecoded data).
//! - [`keys`]: key ids, keys (zeroized), the key ring and its directory format.
//! - [`engine`]: [`SessionEngine`], the lifecycle (issue, validate, renew, regenerate, logout,
//!   logout everywhere, step-up, anonymous sessions); [`ValidSession`], what validation
//!   returns; [`Rejection`] and its one list of codes.
//! - [`config`]: [`EngineConfig`] with production-safe defaults (the one fingerprint setting).
//! - [`builder`]: [`Sessions::builder`](builder::Sessions::builder), the one path from
//!   settings, keys and Redis to the engine, the session index and the layer.
//! - [`error`]: [`HttpError`], the one status-and-code mapping of session failures.
//! - [`cookies`]: cookie attributes, `__Host-` preset, building and clearing Set-Cookie.
//! - [`revocation`]: the backend trait, the in-process list ([`MemoryRevocations`]) and the
//!   Redis-synced list (`revocation::RedisRevocations`, feature `redis`).
//! - [`clock`]: injectable time.
//! - [`session_index`]: each user's live sessions (listing, concurrent-session limit), in
//!   memory or in Redis.
//! - [`client_ip`]: the client address behind trusted proxies (`X-Forwarded-For`).
//! - [`fingerprint`]: [`FingerprintMode`] and the coarse client fingerprint for the HTTP layer.
//! - [`layer`]: [`SessionLayer`], the tower layer: validation once per request, cross-origin
//!   refusal, renewal and clearing cookies, the session index kept current.
//! - [`extract`]: axum extractors ([`extract::Session`], [`extract::Fresh`],
//!   [`extract::SessionManager`]).
//! - [`audit`]: audit events on the `sealed_sessions::audit` target and the anomaly detector.
//! - [`metrics`]: series recorded through the `metrics` facade (feature `metrics`); exporting
//!   is the application's.
//!
//! # Example
//! ```
//! use sealed_sessions::{EngineConfig, Key, KeyId, KeyRing, SessionEngine};
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let keys = KeyRing::single(KeyId::new("k1").unwrap(), Key::generate().unwrap());
//! let engine: SessionEngine<String> = SessionEngine::new(EngineConfig::default(), keys);
//! let issued = engine.issue("alice", "user".to_string(), None).await.unwrap();
//! let cookie = engine.set_cookie(&issued).to_string();
//! assert!(cookie.starts_with("__Host-session="));
//! let session = engine.validate(&issued.token, None).unwrap();
//! assert_eq!(session.data(), "user");
//! # });
//! ```

// The library has no unsafe code; only the binary's `main` may (see Cargo.toml's lints).
#![forbid(unsafe_code)]
// docs.rs builds with `--cfg docsrs` (Cargo.toml's `[package.metadata.docs.rs]`): each
// feature-gated item then says which feature it needs.
#![cfg_attr(docsrs, feature(doc_cfg))]
//!
//! # Logging
//! The library logs through `tracing`: whether the revocation list was loaded from Redis at
//! start and each change of its sync state, audit events on the `sealed_sessions::audit`
//! target, and warnings such as a server without `ConnectInfo`. Nothing is printed until the
//! application installs a subscriber, e.g. `tracing_subscriber::fmt::init()`.
//!
//! # HTTP
//! [`SessionLayer`] validates the cookie once per request; the [`extract`] types hand the result
//! to handlers and record cookie changes (`examples/minimal.rs` is a whole app):
//! ```
//! use axum::{Router, body::Body, routing::{get, post}};
//! use http::{Request, StatusCode};
//! use sealed_sessions::extract::{Session, SessionManager};
//! use sealed_sessions::HttpError;
//! use sealed_sessions::{EngineConfig, Key, KeyId, KeyRing, LayerOptions, SessionEngine, SessionLayer};
//! use tower::ServiceExt;
//!
//! async fn login(sessions: SessionManager<()>) -> Result<&'static str, HttpError> {
//!     // A real handler checks a password first.
//!     sessions.login("alice", ()).await?;
//!     Ok("welcome")
//! }
//!
//! async fn me(session: Session<()>) -> String {
//!     session.user_id().to_string()
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let keys = KeyRing::single(KeyId::new("k1").unwrap(), Key::generate().unwrap());
//! let engine: SessionEngine<()> = SessionEngine::new(EngineConfig::default(), keys);
//! let app = Router::new()
//!     .route("/login", post(login))
//!     .route("/me", get(me))
//!     .layer(SessionLayer::new(engine, LayerOptions::default()));
//!
//! let login = Request::post("/login").body(Body::empty()).unwrap();
//! let res = app.clone().oneshot(login).await.unwrap();
//! let set_cookie = res.headers()["set-cookie"].to_str().unwrap();
//! let cookie = set_cookie.split(';').next().unwrap().to_owned();
//!
//! let me = Request::get("/me").header("cookie", cookie).body(Body::empty()).unwrap();
//! assert_eq!(app.oneshot(me).await.unwrap().status(), StatusCode::OK);
//! # });
//! ```
//!
//! [`builder`] wires the same with keys from a directory, Redis and the session index.

mod aead;
pub mod audit;
pub mod builder;
pub mod claims;
pub mod client_ip;
pub mod clock;
pub mod config;
pub mod cookies;
pub mod engine;
pub mod error;
mod events;
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod extract;
pub mod fingerprint;
pub mod keys;
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod layer;
pub mod metrics;
#[cfg(feature = "redis")]
mod redis_conn;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod redis_topology;
mod report;
pub mod revocation;
mod rng;
pub mod session_index;
pub mod token;

pub use builder::{BuildError, Sessions, SessionsBuilder};
pub use claims::{Claims, Fingerprint, RawData, SessionId};
pub use config::{ConfigError, EngineConfig};
pub use cookies::CookieSettings;
pub use engine::{
    EngineError, Issued, LoginTicket, PasswordChangeError, Rejection, SessionEngine, ValidSession,
};
pub use error::HttpError;
pub use keys::{Key, KeyError, KeyId, KeyRing};
pub use revocation::{MemoryRevocations, RevocationBackend};
pub use rng::RandomError;

pub use client_ip::TrustedProxies;

pub use fingerprint::FingerprintMode;
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub use layer::{LayerOptions, SessionLayer};

/// The README's Rust blocks, compiled by `cargo test --doc` (they are `no_run`: they bind ports
/// and read key files).
#[cfg(all(doctest, feature = "axum", feature = "redis"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

/// Internals that the fuzz targets (`fuzz/`) and the measurement examples (`bench/examples/`)
/// drive directly. Not part of the API: anything here may change or go in any release.
#[doc(hidden)]
pub mod __fuzz {
    /// Reads the fixed claims (everything before `data`) from the start of postcard-encoded
    /// claims the way validation does, with the hand-written reader; returns the length of what
    /// follows (the encoding of `data`), or `None` where postcard would refuse the bytes.
    ///
    /// ```
    /// assert_eq!(sealed_sessions::__fuzz::fixed_claims_rest_len(&[1, 2]), None);
    /// ```
    pub fn fixed_claims_rest_len(bytes: &[u8]) -> Option<usize> {
        crate::claims::ClaimsHead::take_from(bytes)
            .ok()
            .map(|(_, rest)| rest.len())
    }

    #[cfg(feature = "axum")]
    use crate::{Fingerprint, Rejection, SessionEngine, ValidSession, layer::SessionData};

    /// The session in a request's `Cookie` headers (raw bytes), exactly as the session layer
    /// finds it: `None` when no value of the session cookie is present, else the first value
    /// that validates or the first rejection. Never panics, whatever the bytes.
    ///
    /// ```
    /// use sealed_sessions::__fuzz::session_from_cookie_headers;
    /// use sealed_sessions::{EngineConfig, Key, KeyId, KeyRing, SessionEngine};
    /// let keys = KeyRing::single(KeyId::new("k1").unwrap(), Key::generate().unwrap());
    /// let engine: SessionEngine<()> = SessionEngine::new(EngineConfig::default(), keys);
    /// let headers: [&[u8]; 1] = [b"theme=dark; __Host-session=garbage"];
    /// let outcome = session_from_cookie_headers(&engine, headers, None);
    /// assert_eq!(outcome.unwrap().unwrap_err().code(), "INVALID");
    /// assert!(session_from_cookie_headers(&engine, [&b"theme=dark"[..]], None).is_none());
    /// ```
    #[cfg(feature = "axum")]
    pub fn session_from_cookie_headers<'h, T: SessionData>(
        engine: &SessionEngine<T>,
        headers: impl IntoIterator<Item = &'h [u8]>,
        fingerprint: Option<&Fingerprint>,
    ) -> Option<Result<ValidSession<T>, Rejection>> {
        crate::layer::session_from_cookie_headers(engine, headers, fingerprint)
    }
}
