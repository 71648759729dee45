//! `revoke`: record a revocation in Redis, through the same synced list the servers use, so every
//! node connected to that Redis enforces it within moments.
//!
//! The command starts a [`RedisRevocations`] like a node does, makes the one write through the
//! [`RevocationBackend`] trait, and stops. It reports success only once Redis has accepted the
//! write; otherwise it fails, and running it again is harmless.
//!
//! Before writing, it looks for the prefix's keys in that Redis: every server sets an epoch key
//! at its first connection, and the events stream exists from the first revocation. With
//! neither, no server uses this Redis under this prefix (a wrong `--redis-prefix`, or another
//! Redis): the command warns, then records the revocation anyway (it is harmless there, and
//! servers started later with that prefix will enforce it).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, anyhow, bail};
use sealed_sessions::SessionId;
use sealed_sessions::clock::{Clock as _, SystemClock, UnixMillis};
use sealed_sessions::revocation::{RedisRevocations, RevocationBackend};
use serde::Serialize;

use super::config::{RedisFlags, parse_duration};
use super::report;

/// How long the command lets the backend replay the stream before writing. The write does not
/// depend on the replay (Redis computes the new version itself), so this is kept short.
const STARTUP_WAIT: Duration = Duration::from_millis(500);

/// `revoke` flags.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["user", "session"])))]
#[command(group(clap::ArgGroup::new("redis_target").required(true).args(["redis", "redis_cluster", "redis_sentinel"])))]
pub struct RevokeArgs {
    /// Log this user out everywhere: every session issued before now is rejected (REVOKED) by
    /// every node; the user can log in again.
    #[arg(long, value_name = "USER", value_parser = parse_user)]
    pub user: Option<String>,

    /// Revoke one session: its id as 32 hex digits (`session_id` in /me or `inspect` output).
    #[arg(long, value_name = "SID", value_parser = parse_session_id)]
    pub session: Option<SessionId>,

    /// With --session: keep the revocation until this time, an RFC 3339 UTC time
    /// (2025-06-01T12:00:00Z) or a duration from now (12h). The token's `expires_at` is enough.
    /// Default: now + --absolute-timeout, which covers any token.
    #[arg(long, value_name = "TIME|DURATION", requires = "session", conflicts_with = "user", value_parser = parse_until)]
    pub until: Option<Until>,

    /// Where the servers' shared revocation list lives: their --redis, --redis-cluster or
    /// --redis-sentinel (exactly one), with the same TLS files.
    #[command(flatten)]
    pub redis: RedisFlags,

    /// Prefix of the Redis keys: the servers' --redis-prefix.
    #[arg(
        long,
        value_name = "PREFIX",
        env = "SEALED_SESSIONS_REDIS_PREFIX",
        default_value = "sealed-sessions"
    )]
    pub redis_prefix: String,

    /// The servers' --absolute-timeout (at least): how long a logout-everywhere must be kept,
    /// and the default for --until. Never shortens what Redis keeps: the stream is trimmed by the
    /// longest lifetime any server or tool has declared.
    #[arg(long, value_name = "DURATION", env = "SEALED_SESSIONS_ABSOLUTE_TIMEOUT", default_value = "24h", value_parser = parse_duration)]
    pub absolute_timeout: Duration,

    /// How long to wait for Redis to accept the revocation.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// `--until`: a point in time, or a duration from when the command runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Until {
    /// An RFC 3339 time.
    At(SystemTime),
    /// This long from now.
    In(Duration),
}

impl Until {
    fn resolve(self, now: UnixMillis) -> UnixMillis {
        match self {
            Until::At(t) => {
                let ms = t
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
                UnixMillis(ms)
            }
            Until::In(d) => now.saturating_add(d),
        }
    }
}

fn parse_until(s: &str) -> Result<Until, String> {
    let s = s.trim();
    if let Ok(t) = humantime::parse_rfc3339_weak(s) {
        return Ok(Until::At(t));
    }
    humantime::parse_duration(s).map(Until::In).map_err(|_| {
        "expected an RFC 3339 UTC time like 2025-06-01T12:00:00Z or a duration like 12h".to_owned()
    })
}

fn parse_session_id(s: &str) -> Result<SessionId, String> {
    let s = s.trim();
    SessionId::parse_hex(s).ok_or_else(|| {
        format!(
            "a session id is 32 hex digits (got {} characters{})",
            s.len(),
            if s.bytes().all(|b| b.is_ascii_hexdigit()) {
                ""
            } else {
                ", not all hex digits"
            }
        )
    })
}

fn parse_user(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Err("the user id is empty".to_owned());
    }
    Ok(s.to_owned())
}

/// What was recorded, printed as JSON.
#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(tag = "revoked", rename_all = "lowercase")]
enum Recorded {
    /// Logout everywhere: tokens of `user` with a version below `version` are revoked.
    User {
        user: String,
        version: u64,
        until: String,
    },
    /// One session id.
    Session { session_id: String, until: String },
}

/// Records the revocation in Redis and prints what was recorded.
pub fn revoke_command(args: RevokeArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let recorded = runtime.block_on(revoke(args))?;
    let json = serde_json::to_string_pretty(&recorded).context("formatting the result")?;
    println!("{json}");
    Ok(())
}

async fn revoke(args: RevokeArgs) -> anyhow::Result<Recorded> {
    let now = SystemClock.now();
    let target = match (args.user, args.session) {
        (Some(user), None) => Target::User(user, now.saturating_add(args.absolute_timeout)),
        (None, Some(sid)) => {
            let until = args
                .until
                .map_or(now.saturating_add(args.absolute_timeout), |u| {
                    u.resolve(now)
                });
            if until <= now {
                bail!(
                    "--until {} is not in the future: the revocation would expire at once",
                    rfc3339(until)
                );
            }
            Target::Session(sid, until)
        }
        // clap's argument group allows exactly one.
        _ => bail!("give exactly one of --user and --session"),
    };
    let mut config = args
        .redis
        .config(args.absolute_timeout)?
        .context("give --redis, --redis-cluster or --redis-sentinel")?
        .with_prefix(args.redis_prefix.clone());
    let shown = config.target.to_string();
    let keys = [
        format!("{}{{{}}}:events", config.prefix, config.hash_tag),
        format!("{}{{{}}}:epoch", config.prefix, config.hash_tag),
    ];
    match prefix_keys_present(&args.redis, &keys, args.timeout).await {
        Ok(0) => eprintln!(
            "warning: Redis at {shown} holds no revocation stream under the prefix {:?}: no \
             server has used this prefix there. Check --redis-prefix and --redis against the \
             servers' flags; servers on another prefix or another Redis will not see this \
             revocation",
            args.redis_prefix
        ),
        Ok(_) => {}
        // The write below reports an unreachable Redis in its own words.
        Err(e) => {
            tracing::debug!(error = %report::chain(e.as_ref()), "could not look for the prefix's keys")
        }
    }
    config.startup_wait = STARTUP_WAIT;
    config.op_timeout = args.timeout;
    // A one-shot command reads a snapshot if there is one, but never writes one.
    config.snapshot_every = 0;
    let backend = RedisRevocations::connect(config).await?;
    let result = record(&backend, target, now).await;
    // Stops the sync task before the runtime goes away.
    drop(backend);
    result.map_err(|e| {
        // `{:#}`: the message and its causes (the library keeps the cause as the source).
        let e = anyhow::Error::from(e);
        anyhow!(
            "Redis at {} (prefix {:?}) did not accept the revocation: {e:#}. It is not known to be \
             recorded, so servers may not enforce it: check --redis and Redis, then run the \
             command again (revoking twice is harmless)",
            shown,
            args.redis_prefix
        )
    })
}

/// How many of `keys` exist in the Redis the flags name (one round trip; the keys share a hash
/// tag, so a Cluster answers it from one node).
async fn prefix_keys_present(
    flags: &RedisFlags,
    keys: &[String],
    timeout: Duration,
) -> anyhow::Result<u64> {
    let certs = flags.redis_certificates()?;
    let client = |url: &str| match &certs {
        Some(c) => redis::Client::build_with_tls(url, c.clone()),
        None => redis::Client::open(url),
    };
    let cfg = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout));
    let mut exists = redis::cmd("EXISTS");
    exists.arg(keys);
    if let Some(url) = &flags.redis {
        let mut conn = client(url.expose())?
            .get_multiplexed_async_connection_with_config(&cfg)
            .await?;
        return Ok(exists.query_async(&mut conn).await?);
    }
    if !flags.redis_cluster.is_empty() {
        let seeds: Vec<&str> = flags.redis_cluster.iter().map(|u| u.expose()).collect();
        let mut builder = redis::cluster::ClusterClientBuilder::new(seeds);
        if let Some(c) = certs.clone() {
            builder = builder.certs(c);
        }
        let cluster_cfg = redis::cluster::ClusterConfig::new()
            .set_connection_timeout(timeout)
            .set_response_timeout(timeout);
        let mut conn = builder
            .build()?
            .get_async_connection_with_config(cluster_cfg)
            .await?;
        return Ok(exists.query_async(&mut conn).await?);
    }
    let master = flags
        .redis_sentinel_master
        .as_deref()
        .context("--redis-sentinel needs --redis-sentinel-master")?;
    let mut last = anyhow::anyhow!("no sentinel given");
    for sentinel in &flags.redis_sentinel {
        let primary = async {
            let sentinel = client(sentinel.expose())?;
            let mut s = sentinel
                .get_multiplexed_async_connection_with_config(&cfg)
                .await?;
            let (host, port): (String, u16) = redis::cmd("SENTINEL")
                .arg("get-master-addr-by-name")
                .arg(master)
                .query_async(&mut s)
                .await?;
            // The primary is reached with the sentinel URL's scheme, credentials and database.
            let base = sentinel.get_connection_info().clone();
            let addr = match base.addr() {
                redis::ConnectionAddr::TcpTls { .. } => redis::ConnectionAddr::TcpTls {
                    host,
                    port,
                    insecure: false,
                    tls_params: None,
                },
                _ => redis::ConnectionAddr::Tcp(host, port),
            };
            let info = base.set_addr(addr);
            let primary = match &certs {
                Some(c) => redis::Client::build_with_tls(info, c.clone())?,
                None => redis::Client::open(info)?,
            };
            let mut conn = primary
                .get_multiplexed_async_connection_with_config(&cfg)
                .await?;
            anyhow::Ok(exists.clone().query_async::<u64>(&mut conn).await?)
        };
        match primary.await {
            Ok(n) => return Ok(n),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// What to revoke, and until when.
enum Target {
    User(String, UnixMillis),
    Session(SessionId, UnixMillis),
}

async fn record(
    backend: &dyn RevocationBackend,
    target: Target,
    now: UnixMillis,
) -> Result<Recorded, sealed_sessions::revocation::RevocationError> {
    match target {
        Target::User(user, until) => {
            let version = backend.bump_user_version(&user, now, until).await?;
            Ok(Recorded::User {
                user,
                version,
                until: rfc3339(until),
            })
        }
        Target::Session(sid, until) => {
            backend.revoke_session(sid, until, now).await?;
            Ok(Recorded::Session {
                session_id: sid.to_string(),
                until: rfc3339(until),
            })
        }
    }
}

fn rfc3339(t: UnixMillis) -> String {
    humantime::format_rfc3339_millis(t.to_system_time()).to_string()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use clap::Parser;
    use sealed_sessions::MemoryRevocations;
    use sealed_sessions::revocation::Revoked;

    #[derive(Parser)]
    struct Wrap {
        #[command(flatten)]
        revoke: RevokeArgs,
    }

    fn parse(args: &[&str]) -> Result<RevokeArgs, clap::Error> {
        Wrap::try_parse_from(std::iter::once("revoke").chain(args.iter().copied()))
            .map(|w| w.revoke)
    }

    const SID: &str = "00112233445566778899aabbccddeeff";

    #[test]
    fn exactly_one_target_and_a_redis_url_are_required() {
        let redis = ["--redis", "redis://127.0.0.1:1"];
        assert!(parse(&redis).is_err());
        assert!(parse(&["--user", "alice"]).is_err());
        let both = [&redis[..], &["--user", "alice", "--session", SID]].concat();
        assert!(parse(&both).is_err());
        let a = parse(&[&redis[..], &["--user", "alice"]].concat()).unwrap();
        assert_eq!(a.user.as_deref(), Some("alice"));
        assert_eq!(a.redis_prefix, "sealed-sessions");
        assert_eq!(a.absolute_timeout, Duration::from_secs(24 * 3600));
        let a = parse(&[&redis[..], &["--session", SID]].concat()).unwrap();
        assert_eq!(a.session.unwrap().to_string(), SID);
    }

    #[test]
    fn until_needs_a_session_and_takes_a_time_or_a_duration() {
        let redis = ["--redis", "redis://127.0.0.1:1"];
        let with = |extra: &[&str]| parse(&[&redis[..], extra].concat());
        let err = with(&["--user", "a", "--until", "1h"]).err().unwrap();
        let err = err.to_string();
        assert!(
            err.contains("cannot be used with") && err.contains("--until"),
            "{err}"
        );
        let a = with(&["--session", SID, "--until", "2026-01-02T00:00:00Z"]).unwrap();
        assert_eq!(
            a.until.unwrap().resolve(UnixMillis(0)),
            UnixMillis(1_767_312_000_000)
        );
        let a = with(&["--session", SID, "--until", "90s"]).unwrap();
        assert_eq!(a.until.unwrap().resolve(UnixMillis(10)), UnixMillis(90_010));
        let err = with(&["--session", SID, "--until", "tomorrow"])
            .err()
            .unwrap();
        assert!(err.to_string().contains("RFC 3339"), "{err}");
    }

    #[test]
    fn malformed_session_ids_are_refused_with_the_rule() {
        for bad in ["abc", &"g".repeat(32), &format!("{SID}00")] {
            let err = parse_session_id(bad).unwrap_err();
            assert!(err.contains("32 hex digits"), "{bad}: {err}");
        }
        assert!(
            parse_session_id(&"g".repeat(32))
                .unwrap_err()
                .contains("not all hex")
        );
        assert_eq!(
            parse_session_id(&SID.to_uppercase()).unwrap().to_string(),
            SID
        );
    }

    #[tokio::test]
    async fn record_reports_what_the_backend_took() {
        let backend = MemoryRevocations::new();
        let now = UnixMillis(1_767_225_600_000);
        let until = now.saturating_add(Duration::from_secs(3600));
        let got = record(&backend, Target::User("alice".into(), until), now)
            .await
            .unwrap();
        let v = serde_json::to_value(&got).unwrap();
        assert_eq!(v["revoked"], "user");
        assert_eq!(v["user"], "alice");
        assert_eq!(v["until"], "2026-01-01T01:00:00.000Z");
        let version = v["version"].as_u64().unwrap();
        assert!(version >= now.0, "{v}");
        let sid = SessionId::parse_hex(SID).unwrap();
        assert_eq!(
            backend.check(&sid, "alice", version - 1, now),
            Err(Revoked::UserVersion)
        );

        let got = record(&backend, Target::Session(sid, until), now)
            .await
            .unwrap();
        assert_eq!(
            serde_json::to_value(&got).unwrap(),
            serde_json::json!({
                "revoked": "session",
                "session_id": SID,
                "until": "2026-01-01T01:00:00.000Z",
            })
        );
        assert_eq!(backend.check(&sid, "bob", 0, now), Err(Revoked::Session));
    }
}
