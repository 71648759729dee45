//! One path from settings to a working session stack: [`Sessions::builder`].
//!
//! The builder takes the engine configuration, the key ring (given, or loaded from a key
//! directory or an environment variable), optionally Redis in any topology, and the per-user
//! session limit, and makes the [`SessionEngine`], the session index (in memory, or in the same
//! Redis) and — feature `axum` — the `SessionLayer` with the index attached, so login,
//! logout, regeneration and logout everywhere keep the index current with no handler code.
//!
//! **The absolute timeout is given once**, in the [`EngineConfig`]: the Redis revocation stream
//! keeps events exactly that long. A complete `RedisConfig` passed with
//! `SessionsBuilder::redis_config` must carry the same absolute timeout, or
//! [`SessionsBuilder::build`] fails with `BuildError::RedisHorizon`: the two never silently
//! disagree.
//!
//! # Without Redis (one node)
//! ```
//! use axum::{Router, body::Body, routing::{get, post}};
//! use http::{Request, StatusCode};
//! use sealed_sessions::builder::Sessions;
//! use sealed_sessions::extract::{Session, SessionManager};
//! use sealed_sessions::{EngineConfig, HttpError, Key, KeyId, KeyRing};
//! use std::time::Duration;
//! use tower::ServiceExt;
//!
//! async fn login(sessions: SessionManager<()>) -> Result<&'static str, HttpError> {
//!     sessions.login("alice", ()).await?; // after checking a password
//!     Ok("welcome")
//! }
//!
//! async fn my_sessions(session: Session<()>) -> Result<String, HttpError> {
//!     Ok(format!("{} session(s)", session.list_sessions().await?.len()))
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let config = EngineConfig::builder()
//!     .absolute_timeout(Duration::from_secs(12 * 3600))
//!     .build()
//!     .unwrap();
//! // In production: `.keys_from_dir("keys")` or `.keys_from_env(sealed_sessions::keys::ENV_VAR)`.
//! let keys = KeyRing::single(KeyId::new("k1").unwrap(), Key::generate().unwrap());
//! let sessions = Sessions::<()>::builder()
//!     .config(config)
//!     .keys(keys)
//!     .max_sessions_per_user(Some(10))
//!     .build()
//!     .await
//!     .unwrap();
//! let app = Router::new()
//!     .route("/login", post(login))
//!     .route("/sessions", get(my_sessions))
//!     .layer(sessions.layer());
//!
//! let res = app.clone().oneshot(Request::post("/login").body(Body::empty()).unwrap()).await.unwrap();
//! let cookie = res.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
//! let list = Request::get("/sessions").header("cookie", cookie).body(Body::empty()).unwrap();
//! let res = app.oneshot(list).await.unwrap();
//! assert_eq!(res.status(), StatusCode::OK);
//! let body = axum::body::to_bytes(res.into_body(), 1024).await.unwrap();
//! assert_eq!(&body[..], b"1 session(s)");
//! # });
//! ```
//!
//! # With Redis (several nodes)
//! Feature `redis`. Any topology: `RedisTarget::single` (`redis://`, or `rediss://` with
//! `SessionsBuilder::redis_tls`), `RedisTarget::cluster`, `RedisTarget::sentinel`.
//! ```no_run
//! # #[cfg(feature = "redis")]
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use sealed_sessions::builder::Sessions;
//! use sealed_sessions::redis_topology::RedisTarget;
//! use sealed_sessions::EngineConfig;
//!
//! let sessions = Sessions::<String>::builder()
//!     .config(EngineConfig::default()) // its absolute timeout is the stream's horizon
//!     .keys_from_dir("keys")
//!     .redis(RedisTarget::sentinel(["redis://10.0.0.1:26379"], "sessions"))
//!     .build()
//!     .await?;
//! let app: axum::Router = axum::Router::new().layer(sessions.layer());
//! # Ok(())
//! # }
//! ```

use std::marker::PhantomData;
use std::path::PathBuf;
use std::sync::Arc;
#[cfg(feature = "redis")]
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

#[cfg(feature = "axum")]
use crate::audit::Auditor;
use crate::clock::{Clock, SystemClock};
use crate::config::EngineConfig;
use crate::engine::SessionEngine;
use crate::keys::{KeyError, KeyRing, LoadOptions};
#[cfg(feature = "axum")]
use crate::layer::{LayerOptions, SessionLayer};
#[cfg(feature = "redis")]
use crate::redis_topology::{RedisTarget, RedisTls};
#[cfg(feature = "redis")]
use crate::revocation::redis::RedisSetupError;
use crate::revocation::{MemoryRevocations, RevocationBackend};
#[cfg(feature = "redis")]
use crate::revocation::{RedisConfig, RedisRevocations};
#[cfg(feature = "redis")]
use crate::session_index::RedisSessionIndex;
use crate::session_index::{DEFAULT_MAX_SESSIONS_PER_USER, MemorySessionIndex, SessionIndex};

/// The session stack [`SessionsBuilder::build`] makes: the engine, the session index and
/// (feature `axum`) the layer with the index attached. Cheap to clone.
pub struct Sessions<T> {
    engine: SessionEngine<T>,
    index: Arc<dyn SessionIndex>,
    #[cfg(feature = "axum")]
    layer: SessionLayer<T>,
}

impl<T> Clone for Sessions<T> {
    fn clone(&self) -> Self {
        Sessions {
            engine: self.engine.clone(),
            index: self.index.clone(),
            #[cfg(feature = "axum")]
            layer: self.layer.clone(),
        }
    }
}

impl<T> std::fmt::Debug for Sessions<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("engine", &self.engine)
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

impl<T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static> Sessions<T> {
    /// A builder with the defaults: [`EngineConfig::default`], the system clock, in-process
    /// revocations and index, [`DEFAULT_MAX_SESSIONS_PER_USER`] sessions per user, the default
    /// layer options. A key ring must be given.
    pub fn builder() -> SessionsBuilder<T> {
        SessionsBuilder {
            config: EngineConfig::default(),
            keys: KeySource::Missing,
            clock: Arc::new(SystemClock),
            max_sessions_per_user: Some(DEFAULT_MAX_SESSIONS_PER_USER),
            #[cfg(feature = "axum")]
            layer_options: LayerOptions::default(),
            #[cfg(feature = "axum")]
            auditor: None,
            #[cfg(feature = "redis")]
            redis: None,
            _data: PhantomData,
        }
    }

    /// The engine (issue, validate, revoke outside a request).
    pub fn engine(&self) -> &SessionEngine<T> {
        &self.engine
    }

    /// The session index (also attached to the layer).
    pub fn index(&self) -> &Arc<dyn SessionIndex> {
        &self.index
    }

    /// The layer to give `Router::layer` (a clone: layers are cheap to clone).
    #[cfg(feature = "axum")]
    pub fn layer(&self) -> SessionLayer<T> {
        self.layer.clone()
    }
}

/// Where the key ring comes from.
#[derive(Debug)]
enum KeySource {
    Missing,
    Ring(KeyRing),
    Dir(PathBuf, LoadOptions),
    Env(String),
}

/// How Redis was given.
#[cfg(feature = "redis")]
#[derive(Debug)]
enum RedisSetup {
    /// Where it is; the configuration is made at build with the engine's absolute timeout.
    Target {
        target: RedisTarget,
        tls: Option<RedisTls>,
        prefix: Option<String>,
    },
    /// A complete configuration, checked against the engine's absolute timeout.
    Config(Box<RedisConfig>),
}

/// Builds a [`Sessions`]; see the [module docs](self).
#[must_use = "call build() to make the sessions"]
pub struct SessionsBuilder<T> {
    config: EngineConfig,
    keys: KeySource,
    clock: Arc<dyn Clock>,
    max_sessions_per_user: Option<usize>,
    #[cfg(feature = "axum")]
    layer_options: LayerOptions,
    #[cfg(feature = "axum")]
    auditor: Option<Auditor>,
    #[cfg(feature = "redis")]
    redis: Option<RedisSetup>,
    _data: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for SessionsBuilder<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys = match &self.keys {
            KeySource::Missing => "missing".to_owned(),
            KeySource::Ring(ring) => format!("{ring:?}"),
            KeySource::Dir(dir, _) => format!("directory {}", dir.display()),
            KeySource::Env(var) => format!("environment variable {var}"),
        };
        f.debug_struct("SessionsBuilder")
            .field("config", &self.config)
            .field("keys", &keys)
            .field("max_sessions_per_user", &self.max_sessions_per_user)
            .finish_non_exhaustive()
    }
}

/// The session stack could not be built. `Debug` shows the message and its causes, so a `main`
/// that returns this with `?` prints what to fix.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// No key ring was given ([`SessionsBuilder::keys`], [`SessionsBuilder::keys_from_dir`],
    /// [`SessionsBuilder::keys_from_env`]).
    #[error("no key ring: call keys, keys_from_dir or keys_from_env")]
    NoKeys,
    /// The environment variable named in [`SessionsBuilder::keys_from_env`] is unset or blank.
    #[error("environment variable {var} holds no keys")]
    KeysEnvUnset {
        /// The variable.
        var: String,
    },
    /// The key directory or variable is unusable.
    #[error("loading the key ring")]
    Keys(#[source] KeyError),
    /// The Redis settings are unusable (a URL that does not parse, TLS settings).
    #[cfg(feature = "redis")]
    #[error("Redis settings")]
    Redis(#[source] RedisSetupError),
    /// The Redis session index could not be set up.
    #[cfg(feature = "redis")]
    #[error("Redis session index")]
    Index(#[source] RedisSetupError),
    /// The [`RedisConfig`] keeps revocations for another time than the engine's absolute
    /// timeout. Shorter would trim revocations of sessions still alive; longer is not wrong but
    /// says two things: build the config with `config.absolute_timeout()`, or give the builder
    /// the target ([`SessionsBuilder::redis`]) and let it.
    #[cfg(feature = "redis")]
    #[error(
        "the Redis config's absolute timeout ({redis:?}) differs from the engine's ({engine:?}): \
         give the absolute timeout once, in the engine config"
    )]
    RedisHorizon {
        /// The engine's absolute timeout.
        engine: Duration,
        /// The Redis config's.
        redis: Duration,
    },
}

crate::report::debug_as_chain!(BuildError);

impl<T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static> SessionsBuilder<T> {
    /// The engine configuration (default [`EngineConfig::default`]). Its absolute timeout is
    /// also the Redis stream's horizon.
    pub fn config(mut self, config: EngineConfig) -> Self {
        self.config = config;
        self
    }

    /// This key ring.
    pub fn keys(mut self, keys: KeyRing) -> Self {
        self.keys = KeySource::Ring(keys);
        self
    }

    /// The key ring of a key directory, loaded at build ([`KeyRing::load_dir`] with its safe
    /// defaults: key files readable by their owner only, a directory others cannot write to).
    pub fn keys_from_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.keys = KeySource::Dir(dir.into(), LoadOptions::default());
        self
    }

    /// The key ring of an environment variable (`id1:BASE64,id2:BASE64`, the first primary; see
    /// [`crate::keys::ENV_VAR`]), read at build.
    pub fn keys_from_env(mut self, var: impl Into<String>) -> Self {
        self.keys = KeySource::Env(var.into());
        self
    }

    /// The clock (default the system clock): tests inject a manual one.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Most sessions a user keeps at once (default [`DEFAULT_MAX_SESSIONS_PER_USER`]); a login
    /// past it revokes the user's oldest session. `None` or `Some(0)`: no limit.
    pub fn max_sessions_per_user(mut self, limit: Option<usize>) -> Self {
        self.max_sessions_per_user = limit;
        self
    }

    /// The layer's options (default [`LayerOptions::default`]).
    #[cfg(feature = "axum")]
    pub fn layer_options(mut self, options: LayerOptions) -> Self {
        self.layer_options = options;
        self
    }

    /// The layer's auditor (default [`Auditor::default`]).
    #[cfg(feature = "axum")]
    pub fn auditor(mut self, auditor: Auditor) -> Self {
        self.auditor = Some(auditor);
        self
    }

    /// Redis at `target`, for the revocation list and the session index: one server, a Cluster
    /// or Sentinel's primary. The stream keeps events for the engine's absolute timeout.
    #[cfg(feature = "redis")]
    pub fn redis(mut self, target: RedisTarget) -> Self {
        let (tls, prefix) = match self.redis.take() {
            Some(RedisSetup::Target { tls, prefix, .. }) => (tls, prefix),
            _ => (None, None),
        };
        self.redis = Some(RedisSetup::Target {
            target,
            tls,
            prefix,
        });
        self
    }

    /// TLS settings for the `rediss://` URLs given to [`SessionsBuilder::redis`] (a private CA,
    /// a client certificate). Without them, `rediss://` verifies against the system roots.
    #[cfg(feature = "redis")]
    pub fn redis_tls(mut self, tls: RedisTls) -> Self {
        if let Some(RedisSetup::Target { tls: t, .. }) = &mut self.redis {
            *t = Some(tls);
        }
        self
    }

    /// The key prefix in Redis for [`SessionsBuilder::redis`] (default `sealed-sessions`), so
    /// several applications can share one Redis.
    #[cfg(feature = "redis")]
    pub fn redis_prefix(mut self, prefix: impl Into<String>) -> Self {
        if let Some(RedisSetup::Target { prefix: p, .. }) = &mut self.redis {
            *p = Some(prefix.into());
        }
        self
    }

    /// A complete Redis configuration, for the knobs [`SessionsBuilder::redis`] leaves at their
    /// defaults (timeouts, backoff, resend window). Its absolute timeout must equal the engine
    /// config's, else [`BuildError::RedisHorizon`].
    #[cfg(feature = "redis")]
    pub fn redis_config(mut self, config: RedisConfig) -> Self {
        self.redis = Some(RedisSetup::Config(Box::new(config)));
        self
    }

    /// Loads the keys, connects to Redis when given and assembles the stack.
    ///
    /// With Redis it waits up to the config's `startup_wait` (3 s by default) for the first
    /// replay of the stream, and logs whether the list was loaded. A node that cannot reach
    /// Redis yet still starts, failing closed until it has replayed: validation answers 503
    /// `REVOCATION_STALE`, and so do logins and guest sessions, whose cookies would be refused
    /// anyway.
    ///
    /// # Errors
    /// A [`BuildError`] naming what is missing or unusable.
    pub async fn build(self) -> Result<Sessions<T>, BuildError> {
        let keys = match self.keys {
            KeySource::Missing => return Err(BuildError::NoKeys),
            KeySource::Ring(ring) => ring,
            KeySource::Dir(dir, options) => {
                KeyRing::load_dir(&dir, &options).map_err(BuildError::Keys)?
            }
            KeySource::Env(var) => KeyRing::from_env(&var)
                .map_err(BuildError::Keys)?
                .ok_or(BuildError::KeysEnvUnset { var })?,
        };
        let limit = self.max_sessions_per_user;
        #[cfg(feature = "redis")]
        let (revocations, index) = match self.redis {
            Some(setup) => {
                let config = redis_config(setup, &self.config)?;
                let index: Arc<dyn SessionIndex> = Arc::new(
                    RedisSessionIndex::for_config(&config, limit).map_err(BuildError::Index)?,
                );
                let target = config.target.clone();
                let backend = RedisRevocations::connect_with_clock(config, self.clock.clone())
                    .await
                    .map_err(BuildError::Redis)?;
                if backend.ready() {
                    tracing::info!(redis = %target, "revocation list synced from Redis");
                } else {
                    let phase = backend.phase();
                    tracing::warn!(
                        redis = %target,
                        "revocation list not loaded yet ({phase}): sessions are refused with \
                         503 REVOCATION_STALE until the first replay is done"
                    );
                }
                let revocations: Arc<dyn RevocationBackend> = Arc::new(backend);
                (revocations, index)
            }
            None => in_process(limit),
        };
        #[cfg(not(feature = "redis"))]
        let (revocations, index) = in_process(limit);
        let engine = SessionEngine::with_parts(self.config, keys, revocations, self.clock);
        #[cfg(feature = "axum")]
        let layer = {
            let layer = SessionLayer::new(engine.clone(), self.layer_options);
            let layer = match self.auditor {
                Some(auditor) => layer.with_auditor(auditor),
                None => layer,
            };
            layer.with_index(index.clone())
        };
        Ok(Sessions {
            engine,
            index,
            #[cfg(feature = "axum")]
            layer,
        })
    }
}

fn in_process(limit: Option<usize>) -> (Arc<dyn RevocationBackend>, Arc<dyn SessionIndex>) {
    (
        Arc::new(MemoryRevocations::new()),
        Arc::new(MemorySessionIndex::new(limit)),
    )
}

/// The Redis configuration, with the engine's absolute timeout as its horizon.
#[cfg(feature = "redis")]
fn redis_config(setup: RedisSetup, engine: &EngineConfig) -> Result<RedisConfig, BuildError> {
    let absolute = engine.absolute_timeout();
    match setup {
        RedisSetup::Target {
            target,
            tls,
            prefix,
        } => {
            let mut config = RedisConfig::for_target(target, absolute);
            if let Some(tls) = tls {
                config = config.with_tls(tls);
            }
            if let Some(prefix) = prefix {
                config = config.with_prefix(prefix);
            }
            Ok(config)
        }
        RedisSetup::Config(config) if config.absolute_timeout == absolute => Ok(*config),
        RedisSetup::Config(config) => Err(BuildError::RedisHorizon {
            engine: absolute,
            redis: config.absolute_timeout,
        }),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::keys::{Key, KeyId};

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[cfg(feature = "redis")]
    #[test]
    fn build_waits_three_seconds_for_the_first_replay_by_default() {
        let c = RedisConfig::new("redis://127.0.0.1:1", Duration::from_secs(60));
        assert_eq!(c.startup_wait, Duration::from_secs(3));
    }

    #[test]
    fn debug_of_a_startup_error_is_its_message_with_the_fix() {
        // What `fn main() -> Result<(), Box<dyn Error>>` prints when `build()?` fails.
        let err: Box<dyn std::error::Error> =
            Box::new(BuildError::Keys(KeyError::LoosePermissions {
                path: PathBuf::from("keys/a.key"),
                mode: 0o640,
            }));
        let shown = format!("{err:?}");
        assert!(
            shown.starts_with("loading the key ring: key file keys/a.key has mode 0640"),
            "{shown}"
        );
        assert!(shown.contains("run `chmod 600 keys/a.key`"), "{shown}");
    }

    #[test]
    fn building_without_keys_is_an_error_that_says_so() {
        let err = block_on(Sessions::<()>::builder().build()).unwrap_err();
        assert!(matches!(err, BuildError::NoKeys), "{err}");
    }

    #[test]
    fn an_unset_key_variable_is_named_in_the_error() {
        let var = "SEALED_SESSIONS_BUILDER_TEST_UNSET_VARIABLE";
        let err = block_on(Sessions::<()>::builder().keys_from_env(var).build()).unwrap_err();
        assert!(
            matches!(&err, BuildError::KeysEnvUnset { var: v } if v == var),
            "{err}"
        );
    }

    #[test]
    fn the_built_stack_shares_one_index_and_one_engine() {
        let keys = KeyRing::single(KeyId::new("k1").unwrap(), Key::generate().unwrap());
        let sessions = block_on(
            Sessions::<u32>::builder()
                .keys(keys)
                .max_sessions_per_user(Some(1))
                .build(),
        )
        .unwrap();
        #[cfg(feature = "axum")]
        {
            let layer = sessions.layer();
            assert!(Arc::ptr_eq(layer.index().unwrap(), sessions.index()));
            assert_eq!(
                layer.engine().keys().primary_id(),
                sessions.engine().keys().primary_id()
            );
        }
        let issued = block_on(sessions.engine().issue("alice", 7, None)).unwrap();
        assert_eq!(
            sessions
                .engine()
                .validate(&issued.token, None)
                .unwrap()
                .data(),
            &7
        );
    }

    #[cfg(feature = "redis")]
    #[test]
    fn a_redis_config_with_another_absolute_timeout_is_refused() {
        let keys = KeyRing::single(KeyId::new("k1").unwrap(), Key::generate().unwrap());
        let engine_config = EngineConfig::default();
        let other = engine_config.absolute_timeout() * 2;
        let err = block_on(
            Sessions::<()>::builder()
                .config(engine_config.clone())
                .keys(keys)
                .redis_config(RedisConfig::new("redis://127.0.0.1:1", other))
                .build(),
        )
        .unwrap_err();
        match err {
            BuildError::RedisHorizon { engine, redis } => {
                assert_eq!(engine, engine_config.absolute_timeout());
                assert_eq!(redis, other);
            }
            e => panic!("{e}"),
        }
    }

    #[cfg(feature = "redis")]
    #[test]
    fn a_redis_target_gets_the_engine_absolute_timeout() {
        let engine_config = EngineConfig::builder()
            .absolute_timeout(Duration::from_secs(7200))
            .build()
            .unwrap();
        let setup = RedisSetup::Target {
            target: RedisTarget::single("redis://127.0.0.1:1"),
            tls: None,
            prefix: Some("app".into()),
        };
        let config = redis_config(setup, &engine_config).unwrap();
        assert_eq!(config.absolute_timeout, Duration::from_secs(7200));
        assert_eq!(config.prefix, "app");
    }
}
