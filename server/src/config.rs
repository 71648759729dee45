//! `serve` flags: parsed into typed values by clap, then checked as a whole and turned into the
//! library's [`EngineConfig`].
//!
//! Every flag can also come from an environment variable `SEALED_SESSIONS_<FLAG>`. One exception:
//! the key *directory* is `SEALED_SESSIONS_KEYS_DIR`, because `SEALED_SESSIONS_KEYS` is the
//! library's variable for the key material itself (see `sealed_sessions::keys::ENV_VAR`).

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context as _, bail};
use ipnet::IpNet;
use sealed_sessions::keys::LoadOptions;
use sealed_sessions::redis_topology::{RedisTarget, RedisTls};
use sealed_sessions::revocation::RedisConfig;
use sealed_sessions::session_index::DEFAULT_MAX_SESSIONS_PER_USER;
use sealed_sessions::{CookieSettings, EngineConfig, FingerprintMode};

/// Flags of `sealed-sessions serve`, grouped under the headings `--help` shows.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeConfig {
    /// Address to listen on (port 0 picks a free port, which the log reports).
    #[arg(long, value_name = "ADDR", env = "SEALED_SESSIONS_LISTEN", default_value = "127.0.0.1:3000", help_heading = NETWORK)]
    pub listen: SocketAddr,

    /// Where the session keys are (`--keys`), and whether loose permissions are accepted.
    #[command(flatten)]
    pub keys: KeyDirFlags,

    /// Users file (TOML, `[[user]]` tables). Without it, demo users are created (refused with
    /// --production).
    #[arg(long, value_name = "FILE", env = "SEALED_SESSIONS_USERS", help_heading = USERS)]
    pub users: Option<PathBuf>,

    /// Where the shared revocation list lives (--redis, --redis-cluster or --redis-sentinel,
    /// with TLS settings). Without any, revocations live in this process only (one node).
    #[command(flatten)]
    pub redis: RedisFlags,

    /// Prefix of the Redis keys (keys are `<prefix>{ss}:…`), so several deployments can share
    /// one Redis.
    #[arg(
        long,
        value_name = "PREFIX",
        env = "SEALED_SESSIONS_REDIS_PREFIX",
        default_value = "sealed-sessions",
        help_heading = REDIS
    )]
    pub redis_prefix: String,

    /// Keep at most this many live sessions per user (1 to 10000): a login past the limit
    /// revokes the user's oldest session, and `GET /sessions` lists at most this many. Shared
    /// through Redis with --redis, per node without it.
    #[arg(long, value_name = "N", env = "SEALED_SESSIONS_MAX_SESSIONS_PER_USER", default_value_t = DEFAULT_MAX_SESSIONS_PER_USER, value_parser = parse_max_sessions, help_heading = SESSIONS)]
    pub max_sessions_per_user: usize,

    /// With --redis: once this node's revocation list has been out of sync with Redis longer
    /// than this, session routes answer 503 REVOCATION_STALE (fail closed). Default: never;
    /// the node keeps validating from its local list.
    #[arg(long, value_name = "DURATION", env = "SEALED_SESSIONS_MAX_STALENESS", value_parser = parse_duration, help_heading = REDIS)]
    pub max_staleness: Option<Duration>,

    /// Idle timeout: a session unused this long is rejected.
    #[arg(long, value_name = "DURATION", env = "SEALED_SESSIONS_IDLE_TIMEOUT", default_value = "30m", value_parser = parse_duration, help_heading = SESSIONS)]
    pub idle_timeout: Duration,

    /// Absolute timeout from login.
    #[arg(long, value_name = "DURATION", env = "SEALED_SESSIONS_ABSOLUTE_TIMEOUT", default_value = "24h", value_parser = parse_duration, help_heading = SESSIONS)]
    pub absolute_timeout: Duration,

    /// Re-issue the cookie only when its last renewal is older than this.
    #[arg(long, value_name = "DURATION", env = "SEALED_SESSIONS_RENEW_AFTER", default_value = "60s", value_parser = parse_duration, help_heading = SESSIONS)]
    pub renew_after: Duration,

    /// How recent a password check sensitive routes need.
    #[arg(long, value_name = "DURATION", env = "SEALED_SESSIONS_STEP_UP_WINDOW", default_value = "5m", value_parser = parse_duration, help_heading = SESSIONS)]
    pub step_up_window: Duration,

    /// How far in this node's future a token's times (login, last password check, last
    /// renewal) may lie before the token is refused as invalid: the clock difference allowed
    /// between nodes.
    #[arg(long, value_name = "DURATION", env = "SEALED_SESSIONS_MAX_CLOCK_SKEW", default_value = "2m", value_parser = parse_duration, help_heading = SESSIONS)]
    pub max_clock_skew: Duration,

    /// Client fingerprint binding.
    #[arg(
        long,
        value_enum,
        env = "SEALED_SESSIONS_FINGERPRINT",
        default_value = "off",
        help_heading = SESSIONS
    )]
    pub fingerprint: FingerprintArg,

    /// Cookie name instead of `__Host-session` (or `session` with --insecure-dev-cookies).
    #[arg(long, value_name = "NAME", env = "SEALED_SESSIONS_COOKIE_NAME", help_heading = COOKIES)]
    pub cookie_name: Option<String>,

    /// Plain-http development cookies: `session`, no Secure flag, SameSite=Lax. Refused with
    /// --production.
    #[arg(long, env = "SEALED_SESSIONS_INSECURE_DEV_COOKIES", help_heading = COOKIES)]
    pub insecure_dev_cookies: bool,

    /// Reverse proxies whose X-Forwarded-For is believed: comma-separated CIDRs
    /// (e.g. 10.0.0.0/8,::1/128). A bare address means a single host.
    #[arg(
        long,
        value_name = "CIDRS",
        env = "SEALED_SESSIONS_TRUSTED_PROXIES",
        value_parser = parse_cidrs,
        default_value = "",
        help_heading = NETWORK
    )]
    pub trusted_proxies: CidrList,

    /// Refuse development conveniences: generated keys, demo users, insecure cookies.
    #[arg(long, env = "SEALED_SESSIONS_PRODUCTION")]
    pub production: bool,

    /// Log output format (written to stderr; filter with RUST_LOG).
    #[arg(
        long,
        value_enum,
        env = "SEALED_SESSIONS_LOG_FORMAT",
        default_value = "text"
    )]
    pub log_format: LogFormat,

    /// Largest request body accepted, in bytes (suffixes KiB and MiB allowed).
    #[arg(long, value_name = "BYTES", env = "SEALED_SESSIONS_MAX_BODY_BYTES", default_value = "16KiB", value_parser = parse_bytes, help_heading = LIMITS)]
    pub max_body_bytes: usize,

    /// Time a client has to send a request's headers before the connection is closed.
    #[arg(long, value_name = "DURATION", env = "SEALED_SESSIONS_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = parse_duration, help_heading = LIMITS)]
    pub header_read_timeout: Duration,

    /// Time a client has to send a request's whole body, counted from its head: slower bodies
    /// get 408 and the connection is closed.
    #[arg(long, value_name = "DURATION", env = "SEALED_SESSIONS_BODY_READ_TIMEOUT", default_value = "10s", value_parser = parse_duration, help_heading = LIMITS)]
    pub body_read_timeout: Duration,

    /// Password verifications run in parallel (argon2id uses 19 MiB and one core each); further
    /// logins wait. Default: the number of CPUs.
    #[arg(long, value_name = "N", env = "SEALED_SESSIONS_LOGIN_CONCURRENCY", default_value_t = default_login_concurrency(), value_parser = parse_concurrency, help_heading = LIMITS)]
    pub login_concurrency: usize,

    /// Write the bound address to this file once listening (for tests and scripts using port 0).
    /// Hidden from `--help`, which therefore mentions it nowhere.
    #[arg(long, value_name = "PATH", hide = true)]
    pub port_file: Option<PathBuf>,
}

/// `--help` headings of the `serve` flags (the README's flag tables follow them).
const NETWORK: &str = "Network";
const KEYS: &str = "Keys";
const USERS: &str = "Users";
const REDIS: &str = "Redis";
const SESSIONS: &str = "Sessions";
const COOKIES: &str = "Cookies";
const LIMITS: &str = "Limits";

/// The key directory, as `serve`, `inspect` and `keys list` read it: one flag name, `--keys`,
/// for every command (`keygen`, which writes it, takes the same name).
#[derive(Debug, Clone, clap::Args)]
pub struct KeyDirFlags {
    /// Key directory (see keys/README.md). SEALED_SESSIONS_KEYS, when set, holds the keys
    /// themselves and wins over the directory.
    #[arg(
        long = "keys",
        alias = "dir",
        value_name = "DIR",
        env = "SEALED_SESSIONS_KEYS_DIR",
        default_value = "keys/",
        help_heading = KEYS
    )]
    pub dir: PathBuf,

    /// Accept key files that group or others may read or write, and a key directory they may
    /// write to. Anyone who can read a key, or put one in the directory, can forge sessions:
    /// only for setups where the mode cannot be controlled (some secret mounts).
    #[arg(
        long,
        env = "SEALED_SESSIONS_DANGER_ALLOW_LOOSE_KEY_PERMISSIONS",
        help_heading = KEYS
    )]
    pub danger_allow_loose_key_permissions: bool,
}

impl KeyDirFlags {
    /// The library's options for loading the directory.
    pub fn load_options(&self) -> LoadOptions {
        LoadOptions {
            danger_allow_loose_permissions: self.danger_allow_loose_key_permissions,
        }
    }
}

impl ServeConfig {
    /// The cookie settings these flags ask for.
    pub fn cookie_settings(&self) -> CookieSettings {
        let base = if self.insecure_dev_cookies {
            CookieSettings::insecure_dev()
        } else {
            CookieSettings::production()
        };
        match &self.cookie_name {
            Some(name) => base.with_name(name.clone()),
            None => base,
        }
    }

    /// The engine configuration, with errors that name the flags involved.
    pub fn engine_config(&self) -> anyhow::Result<EngineConfig> {
        let show = |d: Duration| humantime::format_duration(d).to_string();
        if self.idle_timeout.is_zero() {
            bail!("--idle-timeout must be greater than zero");
        }
        if self.absolute_timeout.is_zero() {
            bail!("--absolute-timeout must be greater than zero");
        }
        if self.idle_timeout > self.absolute_timeout {
            bail!(
                "--idle-timeout ({}) must not exceed --absolute-timeout ({})",
                show(self.idle_timeout),
                show(self.absolute_timeout)
            );
        }
        if self.renew_after >= self.idle_timeout {
            bail!(
                "--renew-after ({}) must be shorter than --idle-timeout ({}), or sessions expire \
                 while in use",
                show(self.renew_after),
                show(self.idle_timeout)
            );
        }
        if self.step_up_window.is_zero() {
            bail!("--step-up-window must be greater than zero");
        }
        let cookie = self.cookie_settings();
        // The library checks again; this gives the flag's name to the operator.
        cookie
            .validate()
            .with_context(|| format!("invalid --cookie-name {:?}", cookie.name()))?;
        EngineConfig::builder()
            .idle_timeout(self.idle_timeout)
            .absolute_timeout(self.absolute_timeout)
            .renew_after(self.renew_after)
            .step_up_window(self.step_up_window)
            .max_clock_skew(self.max_clock_skew)
            .cookie(cookie)
            .fingerprint(self.fingerprint.mode())
            .build()
            .context("invalid session configuration")
    }

    /// Checks the server limits the engine configuration does not cover.
    pub fn check(&self) -> anyhow::Result<()> {
        if self.header_read_timeout.is_zero() {
            bail!("--header-read-timeout must be greater than zero");
        }
        if self.body_read_timeout.is_zero() {
            bail!("--body-read-timeout must be greater than zero");
        }
        Ok(())
    }

    /// With `--production`, the development conveniences the flags ask for (empty otherwise).
    /// The key directory is checked separately, by `keys_bootstrap`.
    pub fn production_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !self.production {
            return problems;
        }
        if self.users.is_none() {
            problems.push(
                "no --users file: demo users with published passwords are not allowed in \
                 production; hash each password with `sealed-sessions hash-password` and list \
                 the users in a TOML file ([[user]] username, role, password_hash)"
                    .to_owned(),
            );
        }
        if self.insecure_dev_cookies {
            problems.push(
                "--insecure-dev-cookies sends the session cookie without the Secure flag; it is \
                 for plain-http localhost development only"
                    .to_owned(),
            );
        }
        if let Some(problem) = self.cookie_name_problem() {
            problems.push(problem);
        }
        problems
    }

    /// A `--cookie-name` without the `__Host-` prefix. Only that prefix makes the browser refuse
    /// the cookie from a sibling subdomain or a plain-http page; without it, such a page can
    /// plant a cookie of the same name, and since the first valid value wins it can log the
    /// victim into the attacker's session.
    fn cookie_name_problem(&self) -> Option<String> {
        let name = self.cookie_name.as_deref()?;
        (!name.starts_with(HOST_PREFIX)).then(|| {
            format!(
                "--cookie-name {name:?} lacks the {HOST_PREFIX} prefix: without it a sibling \
                 subdomain or a plain-http page can set a cookie of that name and plant its own \
                 session; use a name starting with {HOST_PREFIX} (the default is __Host-session)"
            )
        })
    }
}

/// The cookie name prefix `--production` requires (case-sensitive, as older browsers match it).
const HOST_PREFIX: &str = "__Host-";

/// `--fingerprint`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FingerprintArg {
    /// No binding.
    Off,
    /// Compare as ua+ip; log a mismatch, accept the request.
    Log,
    /// Bind to the browser family, OS and first Accept-Language tag; reject a mismatch.
    Ua,
    /// As ua, and to the client's address prefix (/24 IPv4, /48 IPv6); reject a mismatch.
    #[value(name = "ua+ip")]
    UaIp,
}

impl FingerprintArg {
    /// The engine's fingerprint mode (what is bound, and whether a mismatch is logged or
    /// rejected).
    pub fn mode(self) -> FingerprintMode {
        match self {
            FingerprintArg::Off => FingerprintMode::Off,
            FingerprintArg::Log => FingerprintMode::Log,
            FingerprintArg::Ua => FingerprintMode::Ua,
            FingerprintArg::UaIp => FingerprintMode::UaIp,
        }
    }
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `--trusted-proxies`: a newtype so clap treats the whole comma-separated value as one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CidrList(pub Vec<IpNet>);

fn parse_cidrs(s: &str) -> Result<CidrList, String> {
    let mut nets = Vec::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let net = match item.parse::<IpNet>() {
            Ok(net) => net,
            // A bare address is the one-host network.
            Err(_) => match item.parse::<std::net::IpAddr>() {
                Ok(ip) => IpNet::from(ip),
                Err(_) => {
                    return Err(format!(
                        "{item:?} is not a CIDR (like 10.0.0.0/8 or fd00::/8) or an IP address"
                    ));
                }
            },
        };
        if net.network() != net.addr() {
            return Err(format!(
                "{item:?} has host bits set; did you mean {}?",
                net.trunc()
            ));
        }
        nets.push(net);
    }
    Ok(CidrList(nets))
}

/// A human duration (`500ms`, `2s`, `30m`, `24h`, `1h 30m`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("{e}; expected a number with a unit, like 500ms, 2s, 30m or 24h"))
}

/// A byte count with an optional `KiB` / `MiB` suffix; zero is refused.
fn parse_bytes(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let (digits, unit) = if let Some(d) = s.strip_suffix("KiB") {
        (d, 1024)
    } else if let Some(d) = s.strip_suffix("MiB") {
        (d, 1024 * 1024)
    } else {
        (s, 1)
    };
    let n: usize = digits
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a byte count like 16384, 16KiB or 1MiB"))?;
    let bytes = n
        .checked_mul(unit)
        .ok_or_else(|| format!("{s:?} is too large"))?;
    if bytes == 0 {
        return Err("must be greater than zero".to_owned());
    }
    Ok(bytes)
}

fn default_login_concurrency() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn parse_concurrency(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("{s:?} is not a whole number of at least 1")),
    }
}

/// Upper bound of `--max-sessions-per-user`: the index, one login's eviction and the
/// `GET /sessions` body all grow with the limit, so it stays bounded too.
const MAX_SESSIONS_PER_USER_CEILING: usize = 10_000;

fn parse_max_sessions(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n) if (1..=MAX_SESSIONS_PER_USER_CEILING).contains(&n) => Ok(n),
        _ => Err(format!(
            "{s:?} is not a whole number from 1 to {MAX_SESSIONS_PER_USER_CEILING}"
        )),
    }
}

/// A validated Redis URL: `redis://[user:pass@]host[:port][/db]`, `rediss://…` (TLS) or
/// `unix:///path/to/socket`. `Debug` and `Display` hide the password.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl(String);

impl RedisUrl {
    /// The URL as given, password included (for the Redis client only).
    pub fn expose(&self) -> &str {
        &self.0
    }

    fn redacted(&self) -> String {
        let Some((scheme, rest)) = self.0.split_once("://") else {
            return "<invalid>".to_owned();
        };
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        match rest[..authority_end].rfind('@') {
            Some(at) => format!("{scheme}://<redacted>@{}", &rest[at + 1..]),
            None => self.0.clone(),
        }
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RedisUrl").field(&self.redacted()).finish()
    }
}

impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl FromStr for RedisUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<RedisUrl, String> {
        let s = s.trim();
        let Some((scheme, rest)) = s.split_once("://") else {
            return Err("expected a URL like redis://host:6379, rediss://host or \
                        unix:///path/to/redis.sock"
                .to_owned());
        };
        match scheme.to_ascii_lowercase().as_str() {
            "redis" | "rediss" => check_tcp_url(rest)?,
            "unix" | "redis+unix" => {
                let path = rest.split(['?', '#']).next().unwrap_or_default();
                if !path.starts_with('/') || path.len() < 2 {
                    return Err(
                        "a unix:// URL needs an absolute socket path, like unix:///run/redis.sock"
                            .to_owned(),
                    );
                }
            }
            other => {
                return Err(format!(
                    "unsupported scheme {other:?}: use redis://, rediss:// or unix://"
                ));
            }
        }
        Ok(RedisUrl(s.to_owned()))
    }
}

/// Parses a Redis URL flag without echoing the value in errors, as clap's default message
/// would: the URL may hold a password. Holds the flag's name for the message.
#[derive(Clone, Copy, Debug)]
pub struct RedisUrlParser(pub &'static str);

impl clap::builder::TypedValueParser for RedisUrlParser {
    type Value = RedisUrl;

    fn parse_ref(
        &self,
        _cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<RedisUrl, clap::Error> {
        let invalid = |why: &str| {
            clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                format!("invalid {} URL: {why}\n", self.0),
            )
        };
        value
            .to_str()
            .ok_or_else(|| invalid("not valid UTF-8"))?
            .parse()
            .map_err(|e: String| invalid(&e))
    }
}

/// Where Redis is, as `serve`, `revoke` and every command that talks to Redis take it: exactly
/// one of `--redis`, `--redis-cluster` and `--redis-sentinel` (clap names both flags when two
/// are given), and the TLS files for `rediss://` URLs.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RedisFlags {
    /// Redis URL of one server: redis://, rediss:// (TLS) or unix://. A Redis Cluster node is
    /// refused: use --redis-cluster.
    #[arg(long, value_name = "URL", env = "SEALED_SESSIONS_REDIS", value_parser = RedisUrlParser("--redis"), conflicts_with_all = ["redis_cluster", "redis_sentinel"], help_heading = REDIS)]
    pub redis: Option<RedisUrl>,

    /// Redis Cluster: any of its nodes as seeds, comma-separated (redis:// or rediss://).
    #[arg(long, value_name = "URL[,URL...]", env = "SEALED_SESSIONS_REDIS_CLUSTER", value_delimiter = ',', value_parser = RedisUrlParser("--redis-cluster"), conflicts_with = "redis_sentinel", help_heading = REDIS)]
    pub redis_cluster: Vec<RedisUrl>,

    /// Redis Sentinel: sentinel URLs, comma-separated. The primary (named by
    /// --redis-sentinel-master) is asked of them at every reconnection, so a failover is
    /// followed; it is reached with the scheme, credentials and database of the sentinel URL.
    #[arg(long, value_name = "URL[,URL...]", env = "SEALED_SESSIONS_REDIS_SENTINEL", value_delimiter = ',', value_parser = RedisUrlParser("--redis-sentinel"), requires = "redis_sentinel_master", help_heading = REDIS)]
    pub redis_sentinel: Vec<RedisUrl>,

    /// With --redis-sentinel: the monitored primary's name.
    #[arg(
        long,
        value_name = "NAME",
        env = "SEALED_SESSIONS_REDIS_SENTINEL_MASTER",
        requires = "redis_sentinel",
        help_heading = REDIS
    )]
    pub redis_sentinel_master: Option<String>,

    /// PEM file of the CA that signed Redis's certificate (rediss:// URLs). Default: the
    /// system's root certificates.
    #[arg(long, value_name = "FILE", env = "SEALED_SESSIONS_REDIS_CA", help_heading = REDIS)]
    pub redis_ca: Option<PathBuf>,

    /// PEM client certificate for mutual TLS (with --redis-client-key).
    #[arg(
        long,
        value_name = "FILE",
        env = "SEALED_SESSIONS_REDIS_CLIENT_CERT",
        requires = "redis_client_key",
        help_heading = REDIS
    )]
    pub redis_client_cert: Option<PathBuf>,

    /// PEM private key of --redis-client-cert.
    #[arg(
        long,
        value_name = "FILE",
        env = "SEALED_SESSIONS_REDIS_CLIENT_KEY",
        requires = "redis_client_cert",
        help_heading = REDIS
    )]
    pub redis_client_key: Option<PathBuf>,
}

impl RedisFlags {
    /// Where Redis is, or `None` when no Redis flag was given.
    pub fn target(&self) -> Option<RedisTarget> {
        let urls = |v: &[RedisUrl]| v.iter().map(|u| u.expose().to_owned()).collect::<Vec<_>>();
        if let Some(url) = &self.redis {
            return Some(RedisTarget::single(url.expose()));
        }
        if !self.redis_cluster.is_empty() {
            return Some(RedisTarget::cluster(urls(&self.redis_cluster)));
        }
        let master = self.redis_sentinel_master.as_ref()?;
        (!self.redis_sentinel.is_empty())
            .then(|| RedisTarget::sentinel(urls(&self.redis_sentinel), master.clone()))
    }

    /// The TLS files, read; errors name the flag and file.
    fn tls(&self) -> anyhow::Result<RedisTls> {
        let read = |flag: &str, path: &PathBuf| {
            std::fs::read(path).with_context(|| format!("reading {flag} {}", path.display()))
        };
        let mut tls = RedisTls::new();
        if let Some(ca) = &self.redis_ca {
            tls = tls.with_ca_pem(read("--redis-ca", ca)?);
        }
        if let (Some(cert), Some(key)) = (&self.redis_client_cert, &self.redis_client_key) {
            tls = tls.with_client_identity(
                read("--redis-client-cert", cert)?,
                read("--redis-client-key", key)?,
            );
        }
        Ok(tls)
    }

    /// The TLS files as the `redis` crate takes them, for a connection made outside the library
    /// (`revoke`'s look at the prefix); `None` without TLS files.
    ///
    /// # Errors
    /// A file that cannot be read.
    pub fn redis_certificates(&self) -> anyhow::Result<Option<redis::TlsCertificates>> {
        let read = |flag: &str, path: &PathBuf| {
            std::fs::read(path).with_context(|| format!("reading {flag} {}", path.display()))
        };
        if self.redis_ca.is_none() && self.redis_client_cert.is_none() {
            return Ok(None);
        }
        let root_cert = self
            .redis_ca
            .as_ref()
            .map(|ca| read("--redis-ca", ca))
            .transpose()?;
        let client_tls = match (&self.redis_client_cert, &self.redis_client_key) {
            (Some(cert), Some(key)) => Some(redis::ClientTlsConfig {
                client_cert: read("--redis-client-cert", cert)?,
                client_key: read("--redis-client-key", key)?,
            }),
            _ => None,
        };
        Ok(Some(redis::TlsCertificates {
            client_tls,
            root_cert,
        }))
    }

    /// The library's Redis configuration for these flags (default key prefix), or `None`
    /// without a Redis flag.
    ///
    /// # Errors
    /// A TLS file that cannot be read, or TLS files without a Redis flag.
    pub fn config(&self, absolute_timeout: Duration) -> anyhow::Result<Option<RedisConfig>> {
        let Some(target) = self.target() else {
            if self.redis_ca.is_some() || self.redis_client_cert.is_some() {
                bail!(
                    "--redis-ca and --redis-client-cert need --redis, --redis-cluster or --redis-sentinel"
                );
            }
            return Ok(None);
        };
        Ok(Some(
            RedisConfig::for_target(target, absolute_timeout).with_tls(self.tls()?),
        ))
    }
}

/// Checks `[user[:pass]@]host[:port][/db][?query]`. The error never quotes the input, which may
/// hold a password.
fn check_tcp_url(rest: &str) -> Result<(), String> {
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or("unclosed '[' in the URL's IPv6 host")?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or("unexpected text after ']'")?),
        };
        host.parse::<std::net::Ipv6Addr>()
            .map_err(|_| "the URL's bracketed host is not an IPv6 address")?;
        (host, port)
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return Err("the URL has no host, like redis://localhost:6379".to_owned());
    }
    if !host
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'))
    {
        return Err("the URL's host has characters a host name cannot have".to_owned());
    }
    if let Some(p) = port {
        p.parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or("the URL's port is not a number from 1 to 65535")?;
    }
    let db = tail.split(['?', '#']).next().unwrap_or_default();
    let db = db.strip_prefix('/').unwrap_or(db);
    if !db.is_empty() && db.parse::<u32>().is_err() {
        return Err("the URL's path must be a database number, like /0".to_owned());
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrap {
        #[command(flatten)]
        serve: ServeConfig,
    }

    fn parse(args: &[&str]) -> Result<ServeConfig, clap::Error> {
        Wrap::try_parse_from(std::iter::once("serve").chain(args.iter().copied())).map(|w| w.serve)
    }

    #[test]
    fn help_mentions_no_hidden_flag() {
        use clap::CommandFactory as _;
        let mut cmd = Wrap::command();
        let hidden: Vec<String> = cmd
            .get_arguments()
            .filter(|a| a.is_hide_set())
            .filter_map(|a| a.get_long().map(|l| format!("--{l}")))
            .collect();
        assert!(hidden.contains(&"--port-file".to_owned()), "{hidden:?}");
        let help = cmd.render_long_help().to_string();
        for flag in &hidden {
            assert!(
                !help.contains(flag.as_str()),
                "--help mentions {flag}:\n{help}"
            );
        }
    }

    #[test]
    fn defaults_build_the_library_defaults() {
        // Environment variables would change the defaults; none are set under `cargo test`.
        let c = parse(&[]).unwrap();
        assert_eq!(c.listen, "127.0.0.1:3000".parse().unwrap());
        assert_eq!(c.max_body_bytes, 16 * 1024);
        assert_eq!(c.header_read_timeout, Duration::from_secs(10));
        assert_eq!(c.body_read_timeout, Duration::from_secs(10));
        assert!(c.login_concurrency >= 1);
        let e = c.engine_config().unwrap();
        assert_eq!(e.idle_timeout(), Duration::from_secs(30 * 60));
        assert_eq!(e.absolute_timeout(), Duration::from_secs(24 * 3600));
        assert_eq!(e.renew_after(), Duration::from_secs(60));
        assert_eq!(e.step_up_window(), Duration::from_secs(300));
        assert_eq!(e.cookie().name(), "__Host-session");
        assert_eq!(e.fingerprint(), FingerprintMode::Off);
    }

    #[test]
    fn renew_after_not_shorter_than_idle_timeout_is_refused_naming_both_flags() {
        let c = parse(&["--idle-timeout", "1m", "--renew-after", "1m"]).unwrap();
        let msg = format!("{:#}", c.engine_config().unwrap_err());
        assert!(
            msg.contains("--renew-after (1m)") && msg.contains("--idle-timeout (1m)"),
            "{msg}"
        );
    }

    #[test]
    fn idle_longer_than_absolute_is_refused() {
        let c = parse(&["--idle-timeout", "2h", "--absolute-timeout", "1h"]).unwrap();
        let msg = format!("{:#}", c.engine_config().unwrap_err());
        assert!(msg.contains("must not exceed --absolute-timeout"), "{msg}");
    }

    #[test]
    fn durations_accept_units_and_refuse_nonsense() {
        let c = parse(&["--renew-after", "500ms", "--step-up-window", "2s"]).unwrap();
        assert_eq!(c.renew_after, Duration::from_millis(500));
        assert_eq!(c.step_up_window, Duration::from_secs(2));
        let err = parse(&["--idle-timeout", "nonsense"])
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("--idle-timeout") && err.contains("like 500ms"),
            "{err}"
        );
    }

    #[test]
    fn fingerprint_values_map_to_modes() {
        for (arg, mode) in [
            ("off", FingerprintMode::Off),
            ("log", FingerprintMode::Log),
            ("ua", FingerprintMode::Ua),
            ("ua+ip", FingerprintMode::UaIp),
        ] {
            let c = parse(&["--fingerprint", arg]).unwrap();
            assert_eq!(c.engine_config().unwrap().fingerprint(), mode, "{arg}");
        }
        assert!(parse(&["--fingerprint", "strict"]).is_err());
    }

    #[test]
    fn trusted_proxies_parse_cidrs_and_bare_addresses() {
        let c = parse(&["--trusted-proxies", "10.0.0.0/8, ::1,192.168.1.7"]).unwrap();
        let want: Vec<IpNet> = ["10.0.0.0/8", "::1/128", "192.168.1.7/32"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(c.trusted_proxies.0, want);
        assert!(parse(&[]).unwrap().trusted_proxies.0.is_empty());
    }

    #[test]
    fn bad_trusted_proxies_are_refused_with_the_item() {
        let err = parse(&["--trusted-proxies", "10.0.0.0/8,bogus"])
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("\"bogus\" is not a CIDR"), "{err}");
        let err = parse(&["--trusted-proxies", "10.1.2.3/8"])
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("did you mean 10.0.0.0/8"), "{err}");
    }

    #[test]
    fn insecure_dev_cookies_and_cookie_name_override() {
        let c = parse(&["--insecure-dev-cookies", "--cookie-name", "sid"]).unwrap();
        let e = c.engine_config().unwrap();
        assert_eq!(e.cookie().name(), "sid");
        assert!(!e.cookie().secure());
        let c = parse(&["--cookie-name", "a b"]).unwrap();
        let msg = format!("{:#}", c.engine_config().unwrap_err());
        assert!(msg.contains("--cookie-name"), "{msg}");
    }

    #[test]
    fn production_refuses_demo_users_and_insecure_cookies_together() {
        let c = parse(&["--production", "--insecure-dev-cookies"]).unwrap();
        let problems = c.production_problems();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("no --users file"), "{problems:?}");
        assert!(
            problems[1].contains("--insecure-dev-cookies"),
            "{problems:?}"
        );
        let c = parse(&["--production", "--users", "u.toml"]).unwrap();
        assert!(c.production_problems().is_empty());
        let c = parse(&[
            "--production",
            "--users",
            "u.toml",
            "--cookie-name",
            "__Host-x",
        ])
        .unwrap();
        assert!(c.production_problems().is_empty());
        // Without --production the same flags are fine.
        let c = parse(&["--insecure-dev-cookies"]).unwrap();
        assert!(c.production_problems().is_empty());
    }

    #[test]
    fn production_refuses_a_cookie_name_without_the_host_prefix() {
        for name in ["sid", "__Secure-sid", "__host-sid", "x__Host-sid"] {
            let c = parse(&["--production", "--users", "u.toml", "--cookie-name", name]).unwrap();
            let problems = c.production_problems();
            assert_eq!(problems.len(), 1, "{name}: {problems:?}");
            assert!(
                problems[0].contains(&format!("--cookie-name {name:?}"))
                    && problems[0].contains("__Host-"),
                "{problems:?}"
            );
            // Development keeps any valid name.
            let c = parse(&["--cookie-name", name]).unwrap();
            assert!(c.production_problems().is_empty());
        }
    }

    #[test]
    fn zero_read_timeouts_are_refused() {
        for flag in ["--header-read-timeout", "--body-read-timeout"] {
            let c = parse(&[flag, "0s"]).unwrap();
            let err = c.check().unwrap_err().to_string();
            assert!(err.contains(flag), "{err}");
        }
        parse(&[]).unwrap().check().unwrap();
        assert_eq!(
            parse(&["--body-read-timeout", "500ms"])
                .unwrap()
                .body_read_timeout,
            Duration::from_millis(500)
        );
    }

    #[test]
    fn max_sessions_per_user_defaults_to_100_and_is_bounded() {
        assert_eq!(parse(&[]).unwrap().max_sessions_per_user, 100);
        assert_eq!(
            parse(&["--max-sessions-per-user", "2"])
                .unwrap()
                .max_sessions_per_user,
            2
        );
        assert_eq!(
            parse(&["--max-sessions-per-user", "10000"])
                .unwrap()
                .max_sessions_per_user,
            10_000
        );
        // No way back to an unbounded index.
        for bad in ["0", "10001", "-1", "lots"] {
            assert!(parse(&["--max-sessions-per-user", bad]).is_err(), "{bad}");
        }
    }

    #[test]
    fn body_limit_and_concurrency_are_checked() {
        assert_eq!(
            parse(&["--max-body-bytes", "1MiB"]).unwrap().max_body_bytes,
            1 << 20
        );
        assert_eq!(
            parse(&["--max-body-bytes", "100"]).unwrap().max_body_bytes,
            100
        );
        assert!(parse(&["--max-body-bytes", "0"]).is_err());
        assert!(parse(&["--max-body-bytes", "lots"]).is_err());
        assert!(parse(&["--login-concurrency", "0"]).is_err());
        assert_eq!(
            parse(&["--login-concurrency", "3"])
                .unwrap()
                .login_concurrency,
            3
        );
    }

    #[test]
    fn redis_urls_are_validated() {
        for good in [
            "redis://localhost",
            "redis://localhost:6379/0",
            "rediss://user:secret@cache.example.com:6380",
            "redis://[::1]:6379",
            "unix:///run/redis.sock",
        ] {
            assert!(good.parse::<RedisUrl>().is_ok(), "{good}");
        }
        for bad in [
            "localhost:6379",
            "http://localhost",
            "redis://",
            "redis://:6379",
            "redis://host:99999",
            "redis://host/abc",
            "unix://relative.sock",
        ] {
            assert!(bad.parse::<RedisUrl>().is_err(), "{bad}");
        }
    }

    #[test]
    fn redis_password_never_shows_in_debug_or_errors() {
        let url: RedisUrl = "rediss://user:hunter2@cache:6380/1".parse().unwrap();
        assert_eq!(url.to_string(), "rediss://<redacted>@cache:6380/1");
        assert!(!format!("{url:?}").contains("hunter2"));
        let err = "redis://user:hunter2@/".parse::<RedisUrl>().unwrap_err();
        assert!(!err.contains("hunter2"), "{err}");
        let c = parse(&["--redis", "redis://u:hunter2@h"]).unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
        let err = parse(&["--redis", "redis://u:hunter2@"])
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("invalid --redis URL") && !err.contains("hunter2"),
            "{err}"
        );
    }
}
