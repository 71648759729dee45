//! Client fingerprints for the HTTP layer: what a session is bound to, per [`FingerprintMode`].
//!
//! Binding is deliberately coarse. The user agent contributes only the browser family and the
//! operating system family, never a version, so a browser update does not log anyone out; the
//! language is the first `Accept-Language` tag; the address (in `ua+ip` mode) is the /24 (IPv4)
//! or /48 (IPv6) network, so a client moving within its provider's block keeps its session.
//! This raises the cost of replaying a stolen cookie from elsewhere; it is not an identity.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use http::HeaderMap;
use http::header::{ACCEPT_LANGUAGE, USER_AGENT};

use crate::claims::Fingerprint;

/// Longest `Accept-Language` tag we keep; anything longer is not a real language tag.
const MAX_LANGUAGE_TAG: usize = 35;

/// What a session is bound to, and what happens on a mismatch: the one fingerprint setting,
/// [`EngineConfig::fingerprint`](crate::EngineConfig::fingerprint). The HTTP layer computes
/// each request's fingerprint by it; the engine compares by it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FingerprintMode {
    /// No binding (default).
    #[default]
    Off,
    /// Compute the `ua+ip` fingerprint and report changes (audit event, anomaly detection), but
    /// accept the request.
    Log,
    /// Reject a session whose browser family, OS family or language changed.
    Ua,
    /// As [`FingerprintMode::Ua`], and also reject when the client's /24 (IPv4) or /48 (IPv6)
    /// network changed.
    UaIp,
}

impl FingerprintMode {
    /// The configuration spelling: `off`, `log`, `ua`, `ua+ip`.
    pub fn as_str(self) -> &'static str {
        match self {
            FingerprintMode::Off => "off",
            FingerprintMode::Log => "log",
            FingerprintMode::Ua => "ua",
            FingerprintMode::UaIp => "ua+ip",
        }
    }
}

impl fmt::Display for FingerprintMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A fingerprint mode name other than `off`, `log`, `ua`, `ua+ip`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown fingerprint mode {0:?} (expected off, log, ua or ua+ip)")]
pub struct UnknownFingerprintMode(pub String);

impl FromStr for FingerprintMode {
    type Err = UnknownFingerprintMode;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "off" => Ok(FingerprintMode::Off),
            "log" => Ok(FingerprintMode::Log),
            "ua" => Ok(FingerprintMode::Ua),
            "ua+ip" => Ok(FingerprintMode::UaIp),
            _ => Err(UnknownFingerprintMode(s.to_string())),
        }
    }
}

/// A user agent reduced to browser family and OS family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CoarseUserAgent {
    /// `Edge`, `Opera`, `Firefox`, `Chrome`, `Safari` or `other`.
    pub browser: &'static str,
    /// `Windows`, `iOS`, `Android`, `ChromeOS`, `macOS`, `Linux` or `other`.
    pub os: &'static str,
}

impl CoarseUserAgent {
    /// Classifies a `User-Agent` value. Order matters: Chromium-based browsers also claim
    /// `Chrome` and `Safari`, iOS claims `Mac OS X`, Android claims `Linux`.
    pub fn parse(ua: &str) -> CoarseUserAgent {
        let has = |needles: &[&str]| needles.iter().any(|n| ua.contains(n));
        let browser = if has(&["Edg/", "Edge/", "EdgA/", "EdgiOS/"]) {
            "Edge"
        } else if has(&["OPR/", "Opera"]) {
            "Opera"
        } else if has(&["Firefox/", "FxiOS/"]) {
            "Firefox"
        } else if has(&["Chrome/", "Chromium/", "CriOS/"]) {
            "Chrome"
        } else if has(&["Safari/"]) {
            "Safari"
        } else {
            "other"
        };
        let os = if has(&["Windows"]) {
            "Windows"
        } else if has(&["iPhone", "iPad", "iPod"]) {
            "iOS"
        } else if has(&["Android"]) {
            "Android"
        } else if has(&["CrOS"]) {
            "ChromeOS"
        } else if has(&["Macintosh", "Mac OS X"]) {
            "macOS"
        } else if has(&["Linux", "X11"]) {
            "Linux"
        } else {
            "other"
        };
        CoarseUserAgent { browser, os }
    }
}

/// The first language tag of an `Accept-Language` value, lowercased (`"en-US,en;q=0.9"` →
/// `"en-us"`); empty when absent or not tag-shaped.
pub fn first_language(accept_language: &str) -> String {
    let tag = accept_language
        .split(',')
        .next()
        .and_then(|t| t.split(';').next())
        .unwrap_or("")
        .trim();
    let tag_shaped = tag.len() <= MAX_LANGUAGE_TAG
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '*');
    if tag_shaped {
        tag.to_ascii_lowercase()
    } else {
        String::new()
    }
}

/// The network part of an address: 3 bytes of IPv4 (/24) or 6 bytes of IPv6 (/48), tagged with
/// the family. IPv4-mapped IPv6 counts as IPv4.
fn ip_prefix(ip: IpAddr) -> Vec<u8> {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            vec![4, o[0], o[1], o[2]]
        }
        IpAddr::V6(v6) => {
            let o = v6.octets();
            let mut p = vec![6];
            p.extend_from_slice(&o[..6]);
            p
        }
    }
}

/// The fingerprint of a request under `mode` (`None` when off).
///
/// `Ua` hashes browser family, OS family and first language; `UaIp` and `Log` add the client's
/// network prefix (`Log` computes the strictest fingerprint so it can report address changes,
/// which the engine then accepts).
pub fn fingerprint_for(
    mode: FingerprintMode,
    headers: &HeaderMap,
    client_ip: IpAddr,
) -> Option<Fingerprint> {
    // Runs on every request: skip the header parsing when nothing is bound.
    if mode == FingerprintMode::Off {
        return None;
    }
    let header = |name| {
        headers
            .get(name)
            .map(|v: &http::HeaderValue| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .unwrap_or_default()
    };
    let ua = CoarseUserAgent::parse(&header(USER_AGENT));
    let lang = first_language(&header(ACCEPT_LANGUAGE));
    let ua_parts: [&[u8]; 3] = [ua.browser.as_bytes(), ua.os.as_bytes(), lang.as_bytes()];
    match mode {
        FingerprintMode::Off => None,
        FingerprintMode::Ua => Some(Fingerprint::from_parts(&ua_parts)),
        FingerprintMode::UaIp | FingerprintMode::Log => {
            let prefix = ip_prefix(client_ip);
            let [b, o, l] = ua_parts;
            Some(Fingerprint::from_parts(&[b, o, l, &prefix]))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use http::HeaderValue;

    const CHROME_WIN_120: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
    const CHROME_WIN_121: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/121.0.6167.85 Safari/537.36";
    const FIREFOX_WIN: &str =
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0";
    const SAFARI_IOS: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Mobile/15E148 Safari/604.1";
    const EDGE_MAC: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.2210.91";
    const CHROME_ANDROID: &str = "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36";

    fn headers(ua: &str, lang: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(USER_AGENT, HeaderValue::from_str(ua).unwrap());
        h.insert(ACCEPT_LANGUAGE, HeaderValue::from_str(lang).unwrap());
        h
    }

    fn fp(mode: FingerprintMode, ua: &str, ip: &str) -> Fingerprint {
        fingerprint_for(mode, &headers(ua, "en-US,en;q=0.9"), ip.parse().unwrap()).unwrap()
    }

    #[test]
    fn user_agents_reduce_to_family_and_os() {
        let cases = [
            (CHROME_WIN_120, "Chrome", "Windows"),
            (FIREFOX_WIN, "Firefox", "Windows"),
            (SAFARI_IOS, "Safari", "iOS"),
            (EDGE_MAC, "Edge", "macOS"),
            (CHROME_ANDROID, "Chrome", "Android"),
            ("curl/8.5.0", "other", "other"),
            ("", "other", "other"),
        ];
        for (ua, browser, os) in cases {
            assert_eq!(
                CoarseUserAgent::parse(ua),
                CoarseUserAgent { browser, os },
                "{ua}"
            );
        }
    }

    #[test]
    fn browser_version_bump_keeps_the_fingerprint() {
        for mode in [FingerprintMode::Ua, FingerprintMode::UaIp] {
            assert_eq!(
                fp(mode, CHROME_WIN_120, "198.51.100.7"),
                fp(mode, CHROME_WIN_121, "198.51.100.7")
            );
        }
    }

    #[test]
    fn browser_family_change_changes_the_fingerprint() {
        for mode in [FingerprintMode::Ua, FingerprintMode::UaIp] {
            assert_ne!(
                fp(mode, CHROME_WIN_120, "198.51.100.7"),
                fp(mode, FIREFOX_WIN, "198.51.100.7")
            );
        }
    }

    #[test]
    fn same_slash_24_same_fingerprint_other_slash_24_differs() {
        let m = FingerprintMode::UaIp;
        assert_eq!(
            fp(m, CHROME_WIN_120, "198.51.100.7"),
            fp(m, CHROME_WIN_120, "198.51.100.250")
        );
        assert_eq!(
            fp(m, CHROME_WIN_120, "198.51.100.7"),
            fp(m, CHROME_WIN_120, "::ffff:198.51.100.9")
        );
        assert_ne!(
            fp(m, CHROME_WIN_120, "198.51.100.7"),
            fp(m, CHROME_WIN_120, "198.51.101.7")
        );
        assert_eq!(
            fp(m, CHROME_WIN_120, "2001:db8:1::1"),
            fp(m, CHROME_WIN_120, "2001:db8:1:ffff::2")
        );
        assert_ne!(
            fp(m, CHROME_WIN_120, "2001:db8:1::1"),
            fp(m, CHROME_WIN_120, "2001:db8:2::1")
        );
        // `ua` ignores the address entirely.
        assert_eq!(
            fp(FingerprintMode::Ua, CHROME_WIN_120, "198.51.100.7"),
            fp(FingerprintMode::Ua, CHROME_WIN_120, "203.0.113.1")
        );
    }

    #[test]
    fn log_mode_computes_the_ua_ip_fingerprint() {
        assert_eq!(
            fp(FingerprintMode::Log, CHROME_WIN_120, "198.51.100.7"),
            fp(FingerprintMode::UaIp, CHROME_WIN_120, "198.51.100.7")
        );
        assert!(
            fingerprint_for(
                FingerprintMode::Off,
                &HeaderMap::new(),
                "1.2.3.4".parse().unwrap()
            )
            .is_none()
        );
    }

    #[test]
    fn language_is_the_first_tag_lowercased() {
        assert_eq!(first_language("en-US,en;q=0.9"), "en-us");
        assert_eq!(first_language("de;q=0.8"), "de");
        assert_eq!(first_language(""), "");
        assert_eq!(first_language("<script>"), "");
        let a = fingerprint_for(
            FingerprintMode::Ua,
            &headers(CHROME_WIN_120, "en-US"),
            "1.2.3.4".parse().unwrap(),
        );
        let b = fingerprint_for(
            FingerprintMode::Ua,
            &headers(CHROME_WIN_120, "fr-FR"),
            "1.2.3.4".parse().unwrap(),
        );
        assert_ne!(a, b);
    }

    #[test]
    fn modes_round_trip_through_strings() {
        for m in [
            FingerprintMode::Off,
            FingerprintMode::Log,
            FingerprintMode::Ua,
            FingerprintMode::UaIp,
        ] {
            assert_eq!(m.to_string().parse::<FingerprintMode>().unwrap(), m);
        }
        assert!("ip".parse::<FingerprintMode>().is_err());
    }
}
