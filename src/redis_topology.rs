//! Where Redis is and how to reach it: one server (plain or TLS), a Redis Cluster, or a primary
//! found through Sentinel — and the one connection type the revocation list and the session
//! index use whichever it is.
//!
//! - [`RedisTarget::Single`]: `redis://`, `rediss://` (TLS) or `unix://`. A Cluster node given
//!   here is refused at connect with a message that says to use [`RedisTarget::Cluster`]: a
//!   plain client would only ever see `MOVED` for the slot it does not own.
//! - [`RedisTarget::Cluster`]: any nodes, as seeds. `MOVED`/`ASK` are followed and the slot map
//!   refreshed, so a primary failover or a slot migration is followed. All keys share one hash
//!   tag, so every script and the stream read touch one slot.
//! - [`RedisTarget::Sentinel`]: the primary is asked of the sentinels at every (re)connection
//!   and checked with `ROLE`, so after a failover the next reconnect reaches the new primary.
//! - [`RedisTls`]: a private CA (otherwise the system roots) and an optional client certificate
//!   for mutual TLS. A certificate that does not verify is an error that says so; there is no
//!   fallback to plain text.

use std::fmt;
use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster::{ClusterClient, ClusterClientBuilder, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::{
    AsyncConnectionConfig, Client, ClientTlsConfig, Cmd, ConnectionAddr, ConnectionInfo, ErrorKind,
    IntoConnectionInfo, Pipeline, RedisError, RedisFuture, RedisResult, TlsCertificates, Value,
};
use zeroize::Zeroizing;

/// The Redis settings are unusable; found before any connection is tried.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisSetupError {
    /// No URL was given (an empty list of cluster seeds or sentinels).
    #[error("no Redis URL given")]
    NoUrl,
    /// A URL does not parse as a Redis connection URL.
    #[error("invalid Redis URL")]
    Url(#[source] UrlError),
    /// The CA file given for TLS is not PEM.
    #[error("the Redis CA file is not PEM")]
    CaNotPem(#[source] PemError),
    /// The CA file given for TLS holds no certificate.
    #[error("the Redis CA file holds no PEM certificate")]
    CaEmpty,
    /// TLS settings (a CA or a client certificate) were given for a URL without TLS.
    #[error("TLS settings (CA or client certificate) were given but {url} is not a rediss:// URL")]
    TlsWithoutRediss {
        /// The URL, its password redacted.
        url: String,
    },
}

impl RedisSetupError {
    pub(crate) fn url(e: RedisError) -> RedisSetupError {
        RedisSetupError::Url(UrlError(e))
    }
}

/// Why a Redis URL does not parse; its message says.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct UrlError(RedisError);

/// Why a PEM file does not parse; its message says.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct PemError(rustls::pki_types::pem::Error);

/// Where Redis is. Build it with [`RedisTarget::single`], [`RedisTarget::cluster`] or
/// [`RedisTarget::sentinel`]. `Debug` hides passwords in the URLs.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RedisTarget {
    /// One server: `redis://[user:pass@]host[:port][/db]`, `rediss://…` (TLS) or `unix://`.
    Single(String),
    /// A Redis Cluster, reached through any of these nodes (`redis://` or `rediss://`).
    Cluster(Vec<String>),
    /// The primary of the set that these sentinels monitor under `master`.
    Sentinel {
        /// Sentinel URLs (`redis://host:26379`, `rediss://…`). The primary is reached with the
        /// scheme (TLS or not), credentials and database of the sentinel URL that named it.
        sentinels: Vec<String>,
        /// The monitored set's name (`sentinel monitor <name> …`).
        master: String,
    },
}

impl RedisTarget {
    /// One server.
    pub fn single(url: impl Into<String>) -> RedisTarget {
        RedisTarget::Single(url.into())
    }

    /// A Redis Cluster, with any of its nodes as seeds.
    pub fn cluster<S: Into<String>>(seeds: impl IntoIterator<Item = S>) -> RedisTarget {
        RedisTarget::Cluster(seeds.into_iter().map(Into::into).collect())
    }

    /// The primary named `master` by these sentinels.
    pub fn sentinel<S: Into<String>>(
        sentinels: impl IntoIterator<Item = S>,
        master: impl Into<String>,
    ) -> RedisTarget {
        RedisTarget::Sentinel {
            sentinels: sentinels.into_iter().map(Into::into).collect(),
            master: master.into(),
        }
    }

    fn urls(&self) -> &[String] {
        match self {
            RedisTarget::Single(url) => std::slice::from_ref(url),
            RedisTarget::Cluster(seeds) => seeds,
            RedisTarget::Sentinel { sentinels, .. } => sentinels,
        }
    }
}

/// A URL with any `user:pass@` replaced, for logs and `Debug`.
pub(crate) fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "<invalid>".to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://<redacted>@{}", &rest[at + 1..]),
        None => url.to_owned(),
    }
}

impl fmt::Display for RedisTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let urls: Vec<String> = self.urls().iter().map(|u| redact_url(u)).collect();
        match self {
            RedisTarget::Single(_) => write!(f, "{}", urls.join(",")),
            RedisTarget::Cluster(_) => write!(f, "cluster {}", urls.join(",")),
            RedisTarget::Sentinel { master, .. } => {
                write!(f, "sentinel {} master {master}", urls.join(","))
            }
        }
    }
}

impl fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedisTarget({self})")
    }
}

/// TLS settings for `rediss://` URLs. Without any, `rediss://` verifies the server against the
/// system's root certificates. `Debug` never shows the key.
#[derive(Clone, Default)]
pub struct RedisTls {
    ca_pem: Option<Vec<u8>>,
    client_cert_pem: Option<Vec<u8>>,
    client_key_pem: Option<Zeroizing<Vec<u8>>>,
}

impl fmt::Debug for RedisTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisTls")
            .field("private_ca", &self.ca_pem.is_some())
            .field("client_certificate", &self.client_cert_pem.is_some())
            .finish_non_exhaustive()
    }
}

impl RedisTls {
    /// No private CA, no client certificate: the system roots verify the server.
    pub fn new() -> RedisTls {
        RedisTls::default()
    }

    /// Trusts this CA (PEM, one or more certificates) instead of the system roots.
    #[must_use]
    pub fn with_ca_pem(mut self, pem: impl Into<Vec<u8>>) -> RedisTls {
        self.ca_pem = Some(pem.into());
        self
    }

    /// Presents this client certificate (PEM chain) and key (PEM) for mutual TLS.
    #[must_use]
    pub fn with_client_identity(
        mut self,
        cert_pem: impl Into<Vec<u8>>,
        key_pem: impl Into<Vec<u8>>,
    ) -> RedisTls {
        self.client_cert_pem = Some(cert_pem.into());
        self.client_key_pem = Some(Zeroizing::new(key_pem.into()));
        self
    }

    fn is_empty(&self) -> bool {
        self.ca_pem.is_none() && self.client_cert_pem.is_none()
    }

    /// The certificates for the `redis` crate, after checking the CA holds at least one
    /// certificate (an empty store would reject every server with an obscure error).
    fn certificates(&self) -> Result<Option<TlsCertificates>, RedisSetupError> {
        if self.is_empty() {
            return Ok(None);
        }
        if let Some(ca) = &self.ca_pem {
            use rustls::pki_types::CertificateDer;
            use rustls::pki_types::pem::PemObject as _;
            let certs = CertificateDer::pem_slice_iter(ca)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| RedisSetupError::CaNotPem(PemError(e)))?;
            if certs.is_empty() {
                return Err(RedisSetupError::CaEmpty);
            }
        }
        let client_tls = match (&self.client_cert_pem, &self.client_key_pem) {
            (Some(cert), Some(key)) => Some(ClientTlsConfig {
                client_cert: cert.clone(),
                client_key: key.to_vec(),
            }),
            _ => None,
        };
        Ok(Some(TlsCertificates {
            client_tls,
            root_cert: self.ca_pem.clone(),
        }))
    }
}

/// A connection to whichever topology: commands go through [`ConnectionLike`], so the callers'
/// code is the same for all of them.
#[derive(Clone)]
pub(crate) enum RedisConn {
    /// One server, or the primary Sentinel named.
    Single(MultiplexedConnection),
    /// A cluster connection: routes by key slot, follows `MOVED`/`ASK`.
    Cluster(ClusterConnection),
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConn::Single(c) => c.req_packed_command(cmd),
            RedisConn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            RedisConn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            RedisConn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConn::Single(c) => c.get_db(),
            RedisConn::Cluster(c) => c.get_db(),
        }
    }
}

/// Knows how to open a [`RedisConn`] for a target; built once, validated up front.
pub(crate) struct Connector {
    kind: Kind,
    // Under Sentinel: the primary the last connection went to, to notice a failover while
    // connected (the deposed primary takes writes until Sentinel demotes it).
    primary: parking_lot::Mutex<Option<(String, u16)>>,
}

enum Kind {
    Single(Box<Client>),
    Cluster(Box<ClusterClient>),
    Sentinel {
        sentinels: Vec<Client>,
        master: String,
        certs: Option<TlsCertificates>,
    },
}

/// A client for one URL, with the TLS settings when there are any (then the URL must be
/// `rediss://`: settings for a plain-text URL are a mistake, not something to ignore).
fn client_for(info: ConnectionInfo, certs: Option<&TlsCertificates>) -> RedisResult<Client> {
    match certs {
        Some(c) => Client::build_with_tls(info, c.clone()),
        None => Client::open(info),
    }
}

fn parse_info(url: &str, tls: &RedisTls) -> Result<ConnectionInfo, RedisSetupError> {
    let info = url.into_connection_info().map_err(RedisSetupError::url)?;
    if !tls.is_empty() && !matches!(info.addr(), ConnectionAddr::TcpTls { .. }) {
        return Err(RedisSetupError::TlsWithoutRediss {
            url: redact_url(url),
        });
    }
    Ok(info)
}

impl Connector {
    /// Checks the URLs and certificates; connects to nothing.
    pub(crate) fn new(target: &RedisTarget, tls: &RedisTls) -> Result<Connector, RedisSetupError> {
        let certs = tls.certificates()?;
        let infos = target
            .urls()
            .iter()
            .map(|u| parse_info(u, tls))
            .collect::<Result<Vec<_>, _>>()?;
        if infos.is_empty() {
            return Err(RedisSetupError::NoUrl);
        }
        let kind = match target {
            RedisTarget::Single(_) => Kind::Single(Box::new(
                client_for(infos[0].clone(), certs.as_ref()).map_err(RedisSetupError::url)?,
            )),
            RedisTarget::Cluster(_) => {
                let mut builder = ClusterClientBuilder::new(infos);
                if let Some(c) = certs {
                    builder = builder.certs(c);
                }
                Kind::Cluster(Box::new(builder.build().map_err(RedisSetupError::url)?))
            }
            RedisTarget::Sentinel { master, .. } => Kind::Sentinel {
                sentinels: infos
                    .into_iter()
                    .map(|i| client_for(i, certs.as_ref()))
                    .collect::<RedisResult<_>>()
                    .map_err(RedisSetupError::url)?,
                master: master.clone(),
                certs,
            },
        };
        Ok(Connector {
            kind,
            primary: parking_lot::Mutex::new(None),
        })
    }

    /// Under Sentinel: whether the sentinels now name another primary than the one the last
    /// connection went to (always false for the other topologies, and when no sentinel
    /// answers: then the connection's own failure is the signal).
    pub(crate) async fn primary_moved(&self, timeout: Duration) -> bool {
        let Kind::Sentinel {
            sentinels, master, ..
        } = &self.kind
        else {
            return false;
        };
        let Some(connected) = self.primary.lock().clone() else {
            return false;
        };
        let cfg = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout));
        for sentinel in sentinels {
            if let Ok(named) = named_primary(sentinel, master, &cfg).await {
                return named != connected;
            }
        }
        false
    }

    /// Opens a connection: `connect` bounds each connection attempt, `response` each reply
    /// (a blocking read needs more than its block time).
    pub(crate) async fn open(
        &self,
        connect: Duration,
        response: Duration,
    ) -> RedisResult<RedisConn> {
        let cfg = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(connect))
            .set_response_timeout(Some(response));
        let opened = match &self.kind {
            Kind::Single(client) => open_single(client, &cfg).await,
            Kind::Cluster(client) => {
                let cfg = ClusterConfig::new()
                    .set_connection_timeout(connect)
                    .set_response_timeout(response);
                client
                    .get_async_connection_with_config(cfg)
                    .await
                    .map(RedisConn::Cluster)
            }
            Kind::Sentinel {
                sentinels,
                master,
                certs,
            } => open_via_sentinel(sentinels, master, certs.as_ref(), &cfg)
                .await
                .map(|(conn, addr)| {
                    *self.primary.lock() = Some(addr);
                    RedisConn::Single(conn)
                }),
        };
        opened.map_err(explain_tls)
    }
}

/// Connects to one server and refuses a Cluster node, which would answer `MOVED` forever.
async fn open_single(client: &Client, cfg: &AsyncConnectionConfig) -> RedisResult<RedisConn> {
    let mut conn = client
        .get_multiplexed_async_connection_with_config(cfg)
        .await?;
    let info: String = redis::cmd("INFO")
        .arg("cluster")
        .query_async(&mut conn)
        .await?;
    if info.lines().any(|l| l.trim() == "cluster_enabled:1") {
        return Err(RedisError::from((
            ErrorKind::InvalidClientConfig,
            "this is a Redis Cluster node",
            "use --redis-cluster (RedisTarget::Cluster), not --redis".to_owned(),
        )));
    }
    Ok(RedisConn::Single(conn))
}

/// Asks each sentinel in turn for the primary and connects to the first that is one.
async fn open_via_sentinel(
    sentinels: &[Client],
    master: &str,
    certs: Option<&TlsCertificates>,
    cfg: &AsyncConnectionConfig,
) -> RedisResult<(MultiplexedConnection, (String, u16))> {
    let mut last = None;
    for sentinel in sentinels {
        match primary_from(sentinel, master, certs, cfg).await {
            Ok(conn) => return Ok(conn),
            Err(e) => last = Some(e),
        }
    }
    Err(last
        .unwrap_or_else(|| RedisError::from((ErrorKind::EmptySentinelList, "no sentinel given"))))
}

/// The primary `sentinel` names for `master`.
async fn named_primary(
    sentinel: &Client,
    master: &str,
    cfg: &AsyncConnectionConfig,
) -> RedisResult<(String, u16)> {
    let mut s = sentinel
        .get_multiplexed_async_connection_with_config(cfg)
        .await?;
    let addr: Option<(String, u16)> = redis::cmd("SENTINEL")
        .arg("get-master-addr-by-name")
        .arg(master)
        .query_async(&mut s)
        .await?;
    addr.ok_or_else(|| {
        RedisError::from((
            ErrorKind::MasterNameNotFoundBySentinel,
            "the sentinel monitors no primary by that name",
            master.to_owned(),
        ))
    })
}

async fn primary_from(
    sentinel: &Client,
    master: &str,
    certs: Option<&TlsCertificates>,
    cfg: &AsyncConnectionConfig,
) -> RedisResult<(MultiplexedConnection, (String, u16))> {
    let (host, port) = named_primary(sentinel, master, cfg).await?;
    let named = (host.clone(), port);
    let base = sentinel.get_connection_info();
    let addr = match base.addr() {
        ConnectionAddr::TcpTls { .. } => ConnectionAddr::TcpTls {
            host,
            port,
            insecure: false,
            tls_params: None,
        },
        _ => ConnectionAddr::Tcp(host, port),
    };
    let info = base.clone().set_addr(addr);
    let mut conn = client_for(info, certs)?
        .get_multiplexed_async_connection_with_config(cfg)
        .await?;
    // A sentinel can name the old primary for a moment during a failover.
    let role: Vec<Value> = redis::cmd("ROLE").query_async(&mut conn).await?;
    match role.first().map(redis::from_redis_value_ref::<String>) {
        Some(Ok(r)) if r == "master" => Ok((conn, named)),
        _ => Err(RedisError::from((
            ErrorKind::MasterNameNotFoundBySentinel,
            "the server the sentinel named is not a primary (failover in progress?)",
            master.to_owned(),
        ))),
    }
}

/// Says plainly when a TLS handshake failed on the certificate, which rustls reports as an
/// I/O error that reads like a network problem.
fn explain_tls(e: RedisError) -> RedisError {
    let text = e.to_string();
    if text.contains("certificate") || text.contains("Certificate") {
        return RedisError::from((
            ErrorKind::Io,
            "TLS: Redis's certificate did not verify (check --redis-ca, the host name, and \
             the client certificate); not falling back to plain text",
            text,
        ));
    }
    e
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn target_display_and_debug_hide_passwords() {
        let t = RedisTarget::cluster(["redis://u:hunter2@a:7000", "redis://b:7001"]);
        assert_eq!(
            t.to_string(),
            "cluster redis://<redacted>@a:7000,redis://b:7001"
        );
        assert!(!format!("{t:?}").contains("hunter2"));
        let tls = RedisTls::new().with_client_identity(b"CERT".to_vec(), b"SECRETKEY".to_vec());
        assert!(!format!("{tls:?}").contains("SECRETKEY"));
    }

    #[test]
    fn tls_settings_need_rediss_and_a_real_ca() {
        let ca = RedisTls::new().with_ca_pem(b"not pem".to_vec());
        let err = Connector::new(&RedisTarget::single("rediss://h:1"), &ca)
            .err()
            .unwrap();
        assert!(err.to_string().contains("no PEM certificate"), "{err}");
        let err = Connector::new(
            &RedisTarget::single("redis://h:1"),
            &RedisTls::new().with_client_identity(b"c".to_vec(), b"k".to_vec()),
        )
        .err()
        .unwrap();
        assert!(err.to_string().contains("not a rediss:// URL"), "{err}");
    }
}
