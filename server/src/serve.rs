//! The `serve` command: everything between the parsed flags and [`super::run_with`].

use std::future::Future;
use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use sealed_sessions::builder::Sessions;
use sealed_sessions::{LayerOptions, TrustedProxies};
use tokio::net::TcpListener;
use tracing::{info, warn};
use tracing_subscriber::EnvFilter;

use super::auth::demo::DEMO_USERS;
use super::auth::throttle::{LoginThrottle, ThrottleConfig};
use super::auth::{PasswordVerifier, UserStore};
use super::config::{LogFormat, ServeConfig};
use super::keys_bootstrap::EnvKeys;
use super::routes::build_router;
use super::state::{AppState, BodyLimits, UserData};
use super::{ServerOptions, keys_bootstrap, report, run_with};

/// Runs the server until SIGTERM or Ctrl-C. `env_keys` is `SEALED_SESSIONS_KEYS`, already taken
/// out of the environment by `main`.
pub fn serve(config: ServeConfig, env_keys: EnvKeys) -> anyhow::Result<()> {
    init_logging(config.log_format)?;
    // Flag problems first: they need no keys, files or runtime.
    config.check()?;
    let engine_config = config.engine_config()?;
    let env_ring = env_keys.ring()?;
    drop(env_keys);
    // Every production problem in one message, rather than one per attempt.
    let mut problems = config.production_problems();
    if config.production {
        problems.extend(keys_bootstrap::production_problem(
            env_ring.is_some(),
            &config.keys.dir,
        )?);
    }
    if !problems.is_empty() {
        anyhow::bail!(
            "refusing to start with --production:\n  - {}",
            problems.join("\n  - ")
        );
    }
    warn_about_production_gaps(&config);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        // Handlers first, so a signal that arrives once the port is announced is not fatal.
        let shutdown = shutdown_signal()?;
        let key_options = config.keys.load_options();
        let (keys, _source) =
            keys_bootstrap::load_with(env_ring, &config.keys.dir, config.production, &key_options)?;
        let users = load_users(&config).await?;
        // The same prefix for the revocation list and the session index (the builder gives
        // both one configuration): the index publishes its evictions on the list's stream.
        let redis = config
            .redis
            .config(engine_config.absolute_timeout())?
            .map(|rc| rc.with_prefix(config.redis_prefix.clone()));
        let mut builder = Sessions::<UserData>::builder()
            .config(engine_config)
            .keys(keys)
            .max_sessions_per_user(Some(config.max_sessions_per_user))
            .layer_options(LayerOptions {
                trusted_proxies: TrustedProxies::new(config.trusted_proxies.0.clone()),
                ..LayerOptions::default()
            });
        if let Some(rc) = redis {
            builder = builder.redis_config(rc);
        }
        let sessions = builder.build().await?;
        let state = AppState::new(
            sessions,
            PasswordVerifier::new(Arc::new(users), config.login_concurrency),
            LoginThrottle::new(ThrottleConfig::default()),
            BodyLimits {
                max_bytes: config.max_body_bytes,
                read_timeout: config.body_read_timeout,
            },
            config.max_staleness,
        );
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let addr = listener.local_addr().context("reading the bound address")?;
        info!(%addr, production = config.production, "listening on {addr}");
        if let Some(path) = &config.port_file {
            write_port_file(path, addr)?;
        }
        let options = ServerOptions {
            header_read_timeout: config.header_read_timeout,
            drain_timeout: Duration::from_secs(10),
        };
        run_with(listener, build_router(state), shutdown, options).await?;
        info!("stopped");
        Ok(())
    })
}

/// Production settings that are allowed but lose something an operator may not expect.
fn warn_about_production_gaps(config: &ServeConfig) {
    if config.production && config.redis.target().is_none() {
        warn!(
            "--production without --redis: revocations (logouts, logout everywhere, the \
             per-user session limit) live in this process only, so a restart forgets them and \
             revoked cookies are valid again until they expire, and other nodes never see \
             them; pass --redis to share and keep them"
        );
    }
}

async fn load_users(config: &ServeConfig) -> anyhow::Result<UserStore> {
    match &config.users {
        Some(path) => {
            let users = UserStore::load(path)?;
            info!(users = users.len(), file = %path.display(), "users loaded");
            Ok(users)
        }
        None => {
            // `serve` refused this in production already; refuse again here so the rule does
            // not depend on call order.
            anyhow::ensure!(
                !config.production,
                "refusing to start with --production: no --users file"
            );
            let users = UserStore::demo().await?;
            let names: Vec<String> = DEMO_USERS
                .iter()
                .map(|(name, password, role)| format!("{name}/{password} ({role})"))
                .collect();
            warn!(
                "no --users file: created demo users {} — development only",
                names.join(", ")
            );
            Ok(users)
        }
    }
}

fn init_logging(format: LogFormat) -> anyhow::Result<()> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("cannot set up logging: {}", report::chain(&*e)))
}

/// Completes on the first SIGTERM or SIGINT (Ctrl-C). The handlers are installed now, not when
/// the future is first polled.
fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("installing a SIGTERM handler")?;
        let mut int = signal(SignalKind::interrupt()).context("installing a SIGINT handler")?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => info!("SIGTERM received"),
                _ = int.recv() => info!("interrupt received"),
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            match tokio::signal::ctrl_c().await {
                Ok(()) => info!("Ctrl-C received"),
                Err(e) => {
                    tracing::error!(error = %report::chain(&e), "cannot listen for Ctrl-C; stop the process another way");
                    std::future::pending::<()>().await;
                }
            }
        })
    }
}

/// Writes `addr` to `path` through a temporary file and a rename, so a reader never sees a
/// partial address.
fn write_port_file(path: &Path, addr: SocketAddr) -> anyhow::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, format!("{addr}\n"))
        .and_then(|()| std::fs::rename(&tmp, path))
        .with_context(|| format!("writing the port file {}", path.display()))
}
