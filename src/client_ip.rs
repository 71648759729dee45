//! The client's address: the socket peer, or what trusted proxies say in `X-Forwarded-For`.
//!
//! `X-Forwarded-For` is a list each proxy appends to, so only its right end is trustworthy: the
//! entry a proxy we trust wrote. We walk it from the right, skipping addresses of our own proxies;
//! the first address that is not one of them is the client. Everything left of that was written
//! by the client itself and is ignored. With no trusted proxies (the default) the header is never
//! read. The standard `Forwarded` header (RFC 7239) is not read: proxies in practice set
//! `X-Forwarded-For`, and reading two headers would let a client pick the one its proxy ignores.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use http::HeaderMap;
use ipnet::IpNet;

/// The `X-Forwarded-For` header name.
const X_FORWARDED_FOR: &str = "x-forwarded-for";

/// Networks whose connections may speak for a client through `X-Forwarded-For`. Default: none.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

/// A trusted-proxy list entry is not an address or a CIDR network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TrustedProxiesError {
    /// This entry is neither an IP address nor `address/prefix`.
    #[error("trusted proxy entry {0:?} is not an IP address or CIDR network")]
    Invalid(String),
}

impl TrustedProxies {
    /// Trust no proxy: the client is always the socket peer.
    pub fn none() -> TrustedProxies {
        TrustedProxies(Vec::new())
    }

    /// Trust these networks.
    pub fn new(nets: impl IntoIterator<Item = IpNet>) -> TrustedProxies {
        TrustedProxies(nets.into_iter().map(|n| n.trunc()).collect())
    }

    /// Parses a comma-separated list of CIDR networks or single addresses
    /// (`"10.0.0.0/8, 192.168.1.7, fd00::/8"`). Blank entries are ignored, so `""` is "none".
    ///
    /// # Errors
    /// [`TrustedProxiesError::Invalid`] naming the first bad entry.
    pub fn parse(list: &str) -> Result<TrustedProxies, TrustedProxiesError> {
        let mut nets = Vec::new();
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let net = match entry.parse::<IpNet>() {
                Ok(n) => n,
                Err(_) => entry
                    .parse::<IpAddr>()
                    .map(|ip| IpNet::from(ip.to_canonical()))
                    .map_err(|_| TrustedProxiesError::Invalid(entry.to_string()))?,
            };
            nets.push(net.trunc());
        }
        Ok(TrustedProxies(nets))
    }

    /// Whether no proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The trusted networks.
    pub fn networks(&self) -> &[IpNet] {
        &self.0
    }

    /// Whether `ip` belongs to a trusted proxy. An IPv4-mapped IPv6 address is compared as
    /// the IPv4 address it carries.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|n| n.contains(&ip))
    }
}

impl FromStr for TrustedProxies {
    type Err = TrustedProxiesError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TrustedProxies::parse(s)
    }
}

/// The client address for a request that arrived from `peer`.
///
/// The peer itself unless it is a trusted proxy; then `X-Forwarded-For` (all header lines, in
/// order) is walked from the right, skipping trusted addresses, and the first untrusted address is
/// the client. A malformed entry stops the walk: the last good address is used (the peer, if the
/// rightmost entry is already bad), since nothing left of a broken entry can be attributed. If
/// every entry is trusted, the leftmost is the client. IPv4-mapped IPv6 addresses come back as
/// IPv4.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &TrustedProxies) -> IpAddr {
    let mut client = peer.to_canonical();
    if !trusted.contains(client) {
        return client;
    }
    // Later header lines were added by later proxies; within a line, later entries too.
    let lines: Vec<_> = headers.get_all(X_FORWARDED_FOR).iter().collect();
    for line in lines.iter().rev() {
        let Ok(line) = line.to_str() else {
            return client;
        };
        for entry in line.rsplit(',') {
            let Some(ip) = parse_entry(entry) else {
                return client;
            };
            client = ip;
            if !trusted.contains(ip) {
                return ip;
            }
        }
    }
    client
}

/// One `X-Forwarded-For` entry: an address, or an address with a port (some proxies add one).
fn parse_entry(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    entry
        .parse::<IpAddr>()
        .or_else(|_| entry.parse::<SocketAddr>().map(|s| s.ip()))
        .ok()
        .map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use http::HeaderValue;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(X_FORWARDED_FOR, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn untrusted_peer_is_the_client_whatever_the_header_says() {
        let trusted = TrustedProxies::parse("10.0.0.0/8").unwrap();
        let h = xff(&["1.2.3.4"]);
        assert_eq!(
            client_ip(ip("203.0.113.9"), &h, &trusted),
            ip("203.0.113.9")
        );
        assert_eq!(
            client_ip(ip("10.0.0.1"), &h, &TrustedProxies::none()),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn trusted_peer_yields_first_untrusted_entry_from_the_right() {
        let trusted = TrustedProxies::parse("10.0.0.0/8, 192.168.0.1").unwrap();
        // The client forged 6.6.6.6; 198.51.100.7 is what our first proxy saw.
        let h = xff(&["6.6.6.6, 198.51.100.7, 10.1.2.3"]);
        assert_eq!(
            client_ip(ip("192.168.0.1"), &h, &trusted),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn multiple_header_lines_are_one_list_in_order() {
        let trusted = TrustedProxies::parse("10.0.0.0/8").unwrap();
        let h = xff(&["6.6.6.6, 198.51.100.7", "10.0.0.2"]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &trusted), ip("198.51.100.7"));
    }

    #[test]
    fn malformed_entry_stops_the_walk_at_the_last_good_address() {
        let trusted = TrustedProxies::parse("10.0.0.0/8").unwrap();
        let h = xff(&["198.51.100.7, not-an-ip, 10.0.0.5"]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &trusted), ip("10.0.0.5"));
        let h = xff(&["198.51.100.7, garbage"]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &trusted), ip("10.0.0.1"));
        let h = xff(&[""]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &trusted), ip("10.0.0.1"));
    }

    #[test]
    fn all_trusted_chain_yields_leftmost_and_missing_header_yields_peer() {
        let trusted = TrustedProxies::parse("10.0.0.0/8").unwrap();
        let h = xff(&["10.9.9.9, 10.0.0.5"]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &trusted), ip("10.9.9.9"));
        assert_eq!(
            client_ip(ip("10.0.0.1"), &HeaderMap::new(), &trusted),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn ports_and_mapped_addresses_are_understood() {
        let trusted = TrustedProxies::parse("10.0.0.0/8").unwrap();
        let h = xff(&["198.51.100.7:4711, [2001:db8::1]:443"]);
        assert_eq!(
            client_ip(ip("::ffff:10.0.0.1"), &h, &trusted),
            ip("2001:db8::1")
        );
        let h = xff(&["::ffff:198.51.100.7"]);
        assert_eq!(client_ip(ip("10.0.0.1"), &h, &trusted), ip("198.51.100.7"));
    }

    #[test]
    fn parse_reports_the_bad_entry() {
        assert_eq!(
            TrustedProxies::parse("10.0.0.0/8, 300.1.1.1"),
            Err(TrustedProxiesError::Invalid("300.1.1.1".into()))
        );
        assert_eq!(
            "10.0.0.0/33".parse::<TrustedProxies>(),
            Err(TrustedProxiesError::Invalid("10.0.0.0/33".into()))
        );
        assert!(TrustedProxies::parse(" , ").unwrap().is_empty());
        let t = TrustedProxies::parse("10.1.2.3/8,::1").unwrap();
        assert_eq!(t.networks().len(), 2);
        assert!(t.contains(ip("10.200.0.1")) && t.contains(ip("::1")));
    }
}
