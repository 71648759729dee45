//! # sealed-sessions
//!
//! Session state in an encrypted, authenticated cookie (XChaCha20-Poly1305 over postcard-encoded
//! claims), validated on any node with no network call, plus what stateless tokens cannot do:
//! revocation, through a small in-process list that a shared store keeps in sync.
//!
//! # Layout
//! - [`token`]: the cookie value, byte for byte; seal and open.
//! - `aead`: XChaCha20-Poly1305 from HChaCha20 and ring's ChaCha20-Poly1305.
//! - [`claims`]: what a token carries; [`SessionId`], [`Fingerprint`].
//! - [`keys`]: key ids, keys (zeroized), the key ring and its directory format.
//! - [`engine`]: [`SessionEngine`], the lifecycle (issue, validate, renew, regenerate, logout,
//!   logout everywhere, step-up).
//! - [`config`]: [`EngineConfig`] with production-safe defaults.
//! - [`cookies`]: cookie attributes, `__Host-` preset, building and clearing Set-Cookie.
//! - [`revocation`]: the backend trait and the in-process list ([`MemoryRevocations`]).
//! - [`clock`]: injectable time.
//! - [`client_ip`]: the client address behind trusted proxies (`X-Forwarded-For`).
//! - [`fingerprint`]: [`FingerprintMode`] and the coarse client fingerprint for the HTTP layer.
//! - [`layer`]: [`SessionLayer`], the tower layer: validation once per request, cross-origin
//!   refusal, renewal and clearing cookies.
//! - [`extract`]: axum extractors ([`extract::Session`], [`extract::Fresh`],
//!   [`extract::SessionManager`]) and [`extract::HttpError`], the one status-and-code mapping.
//! - [`audit`]: audit events on the `sealed_sessions::audit` target and the anomaly detector.
//! - [`metrics`]: [`Metrics`], Prometheus text for a `/metrics` route.
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

mod aead;
pub mod audit;
pub mod claims;
pub mod client_ip;
pub mod clock;
pub mod config;
pub mod cookies;
pub mod engine;
pub mod extract;
pub mod fingerprint;
pub mod keys;
pub mod layer;
pub mod metrics;
pub mod revocation;
pub mod token;

pub use claims::{Claims, Fingerprint, SessionId};
pub use config::{ConfigError, EngineConfig, FingerprintPolicy};
pub use cookies::CookieSettings;
pub use engine::{EngineError, Issued, Rejection, Session, SessionEngine};
pub use keys::{Key, KeyError, KeyId, KeyRing};
pub use revocation::{MemoryRevocations, RevocationBackend};

pub use client_ip::TrustedProxies;
pub use fingerprint::FingerprintMode;
pub use layer::{LayerOptions, SessionLayer};
pub use metrics::Metrics;
