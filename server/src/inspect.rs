//! `inspect`: open a session cookie with the key ring and print its claims, or say precisely why
//! it does not open. For operators answering "whose session is this, and why was it refused?".
//!
//! The tool only reads: it prints the claims whatever their times say (an expired token is still
//! shown) and never checks the revocation list, which lives in the servers and Redis.

use std::io::{BufRead as _, IsTerminal as _, Read as _};

use anyhow::{Context as _, bail};
use sealed_sessions::claims::RawData;
use sealed_sessions::clock::UnixMillis;
use sealed_sessions::token::{FORMAT_VERSION, TokenError, UntrustedToken};
use sealed_sessions::{Claims, KeyRing, keys};
use serde::Serialize;

use super::config::KeyDirFlags;
use super::keys_bootstrap::{self, KeySource};
use super::state::UserData;

/// The cookie name `serve` uses unless told otherwise.
pub const DEFAULT_COOKIE_NAME: &str = "__Host-session";
/// The cookie name of `serve --insecure-dev-cookies`.
const DEV_COOKIE_NAME: &str = "session";
/// Most input read from standard input: a long `Cookie:` header line, with room to spare.
const MAX_STDIN_BYTES: u64 = 64 * 1024;

/// `inspect` flags.
#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// The key directory, read as `serve` reads it.
    #[command(flatten)]
    pub keys: KeyDirFlags,

    /// The cookie's name: it is bound into the token (as AEAD associated data), so it must be the
    /// one the server used. Default `__Host-session`, or the name in a pasted `name=value` pair
    /// or Cookie header; servers run with --insecure-dev-cookies use `--cookie-name session`.
    #[arg(long, value_name = "NAME", env = "SEALED_SESSIONS_COOKIE_NAME")]
    pub cookie_name: Option<String>,

    /// How to show the session data. `auto`: decoded as the reference server's data when the
    /// bytes are exactly that (a role and an elevated flag), otherwise only as hex, as the
    /// application's. `server`: decode as the reference server's, or fail. `app`: never decode
    /// (the cookie comes from another application, whose data may happen to look like the
    /// server's).
    #[arg(long, value_enum, value_name = "HOW", default_value = "auto")]
    pub data: DataMode,

    /// The cookie value, a `name=value` pair, or a `Cookie:` header line; `-` reads it from
    /// standard input (better: a token on the command line stays in the shell history).
    #[arg(value_name = "TOKEN|-", allow_hyphen_values = true)]
    pub token: String,
}

/// `inspect --data`: whose data the session carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DataMode {
    /// The reference server's when it decodes exactly as that, the application's otherwise.
    Auto,
    /// The reference server's: decoded, or an error.
    Server,
    /// The application's: shown as bytes only.
    App,
}

/// Whose data a report shows (`data_owner` in the JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
enum DataOwner {
    /// The reference server's `UserData`, decoded in `data`.
    ReferenceServer,
    /// Another application's: only `data_hex`.
    Application,
}

/// What `inspect` prints: the claims, with times as RFC 3339 and bytes as hex.
#[derive(Debug, Serialize)]
struct Report {
    key_id: String,
    cookie_name: String,
    session_id: String,
    user: String,
    version: u64,
    created_at: String,
    auth_time: String,
    last_seen: String,
    expires_at: String,
    fingerprint: Option<String>,
    /// Whose data this is: the reference server's (decoded in `data`) or the application's.
    data_owner: DataOwner,
    /// The data decoded as the reference server's `UserData` (only when it is that).
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<UserData>,
    /// The data's postcard bytes, always.
    data_hex: String,
}

/// Opens the token given on the command line (or standard input) and prints its claims.
pub fn inspect_command(args: InspectArgs) -> anyhow::Result<()> {
    let input = if args.token == "-" {
        read_stdin()?
    } else {
        args.token.clone()
    };
    let pasted = extract(&input, args.cookie_name.as_deref()).map_err(anyhow::Error::msg)?;
    let cookie_name = args
        .cookie_name
        .as_deref()
        .or(pasted.name)
        .unwrap_or(DEFAULT_COOKIE_NAME);
    let (ring, source) = keys_bootstrap::load_existing(&args.keys.dir, &args.keys.load_options())?;
    let report = match open(&ring, cookie_name, pasted.value, args.data) {
        Ok(report) => report,
        Err(e) => {
            let from = match source {
                KeySource::Env => keys::ENV_VAR.to_owned(),
                KeySource::Dir | KeySource::Generated(_) => args.keys.dir.display().to_string(),
            };
            bail!(
                "cannot open the token: {}",
                explain(&e, &ring, &from, cookie_name, &pasted)
            );
        }
    };
    match (report.data_owner, args.data) {
        (DataOwner::ReferenceServer, _) => {}
        (DataOwner::Application, DataMode::App) => {
            eprintln!("note: the data is the application's: shown as postcard bytes in data_hex");
        }
        (DataOwner::Application, DataMode::Server) => bail!(
            "the data ({} bytes) does not decode as the reference server's session data \
             (--data server); it is the application's: inspect with --data app",
            report.data_hex.len() / 2
        ),
        (DataOwner::Application, DataMode::Auto) => eprintln!(
            "note: the data is the application's, not the reference server's session data: \
             shown as postcard bytes in data_hex"
        ),
    }
    let json = serde_json::to_string_pretty(&report).context("formatting the claims")?;
    println!("{json}");
    Ok(())
}

/// Reads the token from standard input: one line from a terminal, all of a pipe (bounded).
fn read_stdin() -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    let mut input = String::new();
    if stdin.is_terminal() {
        eprintln!("Paste the cookie value, a name=value pair or a Cookie: header line:");
        stdin
            .lock()
            .take(MAX_STDIN_BYTES + 1)
            .read_line(&mut input)
            .context("reading the token from standard input")?;
    } else {
        stdin
            .lock()
            .take(MAX_STDIN_BYTES + 1)
            .read_to_string(&mut input)
            .context("reading the token from standard input (is it text?)")?;
    }
    if input.len() as u64 > MAX_STDIN_BYTES {
        bail!("standard input is longer than {MAX_STDIN_BYTES} bytes; that is no cookie");
    }
    Ok(input)
}

/// The cookie value found in what the operator pasted.
#[derive(Debug, PartialEq, Eq)]
struct Pasted<'a> {
    /// The cookie value: the token.
    value: &'a str,
    /// The cookie's name, when the input was a pair or a header.
    name: Option<&'a str>,
}

/// Finds the token in a bare value, a `name=value` pair, a `Cookie:` header line (several pairs
/// separated by `;`) or a `Set-Cookie:` line (its first pair; the rest are attributes).
///
/// A bare token is unpadded base64url, which never contains `=`, so any `=` means a pair.
fn extract<'a>(input: &'a str, wanted: Option<&str>) -> Result<Pasted<'a>, String> {
    let s = input.trim();
    if s.is_empty() {
        return Err("no token given: the input is empty".to_owned());
    }
    let (rest, set_cookie) = match s.split_once(':') {
        Some((h, rest)) if h.trim().eq_ignore_ascii_case("cookie") => (rest, false),
        Some((h, rest)) if h.trim().eq_ignore_ascii_case("set-cookie") => (rest, true),
        _ => (s, false),
    };
    if !rest.contains('=') {
        return Ok(Pasted {
            value: rest.trim(),
            name: None,
        });
    }
    let parts = rest
        .split(';')
        .take(if set_cookie { 1 } else { usize::MAX });
    let pairs: Vec<(&str, &str)> = parts
        .filter_map(|p| p.split_once('='))
        .map(|(n, v)| (n.trim(), unquote(v.trim())))
        .collect();
    let by_name = |name: &str| pairs.iter().find(|(n, _)| *n == name);
    let chosen = match wanted {
        Some(name) => by_name(name),
        None => by_name(DEFAULT_COOKIE_NAME).or_else(|| by_name(DEV_COOKIE_NAME)),
    }
    .or(match pairs.as_slice() {
        [only] => Some(only),
        _ => None,
    });
    let names = || {
        pairs
            .iter()
            .map(|(n, _)| format!("{n:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match (chosen, wanted) {
        (Some((name, value)), _) => Ok(Pasted {
            value,
            name: Some(name),
        }),
        (None, Some(name)) => Err(format!(
            "the pasted cookies ({}) include none named {name:?}",
            names()
        )),
        (None, None) => Err(format!(
            "the pasted cookies ({}) include neither {DEFAULT_COOKIE_NAME:?} nor \
             {DEV_COOKIE_NAME:?}; say which one is the session with --cookie-name",
            names()
        )),
    }
}

/// A cookie value may be wrapped in double quotes (RFC 6265); the quotes are not part of it.
fn unquote(v: &str) -> &str {
    v.strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(v)
}

/// Opens `token` and builds the report.
fn open(
    ring: &KeyRing,
    cookie_name: &str,
    token: &str,
    mode: DataMode,
) -> Result<Report, TokenError> {
    let untrusted = UntrustedToken::parse(token)?;
    let key_id = untrusted.key_id().to_owned();
    let claims = untrusted.open_raw(ring, cookie_name)?;
    Ok(report(key_id, cookie_name, claims, mode))
}

/// The data as the reference server's, when the bytes are exactly its encoding of a value
/// (decoding refuses leftover bytes; encoding again must give the same bytes back).
fn server_data(raw: &RawData) -> Option<UserData> {
    let data = raw.decode::<UserData>().ok()?;
    let again = postcard::to_allocvec(&data).ok()?;
    (again == raw.as_bytes()).then_some(data)
}

fn report(key_id: String, cookie_name: &str, c: Claims<RawData>, mode: DataMode) -> Report {
    let data = match mode {
        DataMode::Auto | DataMode::Server => server_data(&c.data),
        DataMode::App => None,
    };
    Report {
        key_id,
        cookie_name: cookie_name.to_owned(),
        session_id: c.session_id.to_string(),
        user: c.user_id,
        version: c.version,
        created_at: rfc3339(c.created_at),
        auth_time: rfc3339(c.auth_time),
        last_seen: rfc3339(c.last_seen),
        expires_at: rfc3339(c.expires_at),
        fingerprint: c.fingerprint.map(|f| hex(f.as_bytes())),
        data_owner: if data.is_some() {
            DataOwner::ReferenceServer
        } else {
            DataOwner::Application
        },
        data,
        data_hex: hex(c.data.as_bytes()),
    }
}

fn rfc3339(t: UnixMillis) -> String {
    humantime::format_rfc3339_millis(t.to_system_time()).to_string()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Why the token does not open, in an operator's terms: what is wrong and what to try.
/// `from` says where the ring came from.
fn explain(
    e: &TokenError,
    ring: &KeyRing,
    from: &str,
    cookie_name: &str,
    pasted: &Pasted<'_>,
) -> String {
    match e {
        TokenError::TooLong { len, max } => format!(
            "it is {len} bytes, longer than any session cookie value (at most {max}); paste only \
             the session cookie's value"
        ),
        TokenError::BadEncoding => "bad encoding: not unpadded base64url (A-Z a-z 0-9 - _), so \
             not a session token; paste the cookie value, a name=value pair or a Cookie: header \
             line"
            .to_owned(),
        TokenError::Truncated => "truncated: too short to hold a header, a nonce and a tag; was \
             the value cut off when it was copied?"
            .to_owned(),
        TokenError::UnknownVersion(v) => format!(
            "unknown token format version {v} (this build reads version {FORMAT_VERSION}): sealed \
             by a newer release, or not a session token"
        ),
        TokenError::BadKeyId => {
            "malformed key id in the token header: corrupted, or not a session token".to_owned()
        }
        TokenError::UnknownKey(id) => {
            let ids: Vec<String> = ring
                .ids()
                .map(|k| {
                    if k == ring.primary_id() {
                        format!("{k} (primary)")
                    } else {
                        k.to_string()
                    }
                })
                .collect();
            format!(
                "unknown key id {id:?}: it is not in the key ring from {from}, which holds {}; \
                 the key was retired, or the token comes from another deployment",
                ids.join(", ")
            )
        }
        TokenError::Unauthentic => {
            let mut msg = format!(
                "failed authentication: tampered, sealed under a different key with this id, or \
                 for another cookie name (try --cookie-name); opened as cookie {cookie_name:?}"
            );
            if let Some(name) = pasted.name.filter(|n| *n != cookie_name) {
                msg.push_str(&format!(", but the pasted cookie is named {name:?}"));
            } else if cookie_name == DEFAULT_COOKIE_NAME {
                msg.push_str(&format!(
                    "; servers run with --insecure-dev-cookies use --cookie-name \
                     {DEV_COOKIE_NAME}"
                ));
            }
            msg
        }
        TokenError::Claims(why) => format!(
            "the token authenticated, but its claims do not decode ({why}): sealed by an \
             incompatible release?"
        ),
        // TokenError is non-exhaustive: a future variant still gets its own message.
        other => other.to_string(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::auth::Role;
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use sealed_sessions::token::seal_token;
    use sealed_sessions::{Fingerprint, Key, KeyId, SessionId};

    fn ring(ids: &[(&str, u8)]) -> KeyRing {
        let mut keys = ids
            .iter()
            .map(|(id, b)| (KeyId::new(id).unwrap(), Key::from_bytes([*b; 32])));
        let primary = keys.next().unwrap();
        KeyRing::new(primary, keys).unwrap()
    }

    fn claims<T>(data: T) -> Claims<T> {
        Claims {
            session_id: SessionId::from_bytes([0xab; 16]),
            user_id: "alice".into(),
            version: 7,
            created_at: UnixMillis(1_767_225_600_000),
            auth_time: UnixMillis(1_767_225_600_250),
            last_seen: UnixMillis(1_767_225_660_000),
            expires_at: UnixMillis(1_767_312_000_000),
            fingerprint: Some(Fingerprint::from_bytes([1, 2, 3, 4, 5, 6, 7, 8])),
            data,
        }
    }

    fn bare(value: &str) -> Pasted<'_> {
        Pasted { value, name: None }
    }

    #[test]
    fn a_server_token_is_shown_with_times_hex_and_its_session_data() {
        let r = ring(&[("k1", 1)]);
        let data = UserData {
            role: Role::Admin,
            elevated: true,
        };
        let token = seal_token(&r, DEFAULT_COOKIE_NAME, &claims(data)).unwrap();
        let report = open(&r, DEFAULT_COOKIE_NAME, &token, DataMode::Auto).unwrap();
        let v = serde_json::to_value(&report).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "key_id": "k1",
                "cookie_name": "__Host-session",
                "session_id": "ab".repeat(16),
                "user": "alice",
                "version": 7,
                "created_at": "2026-01-01T00:00:00.000Z",
                "auth_time": "2026-01-01T00:00:00.250Z",
                "last_seen": "2026-01-01T00:01:00.000Z",
                "expires_at": "2026-01-02T00:00:00.000Z",
                "fingerprint": "0102030405060708",
                "data_owner": "reference-server",
                "data": {"role": "admin", "elevated": true},
                "data_hex": "0101",
            })
        );
    }

    #[test]
    fn data_of_another_type_is_shown_as_hex_only_as_the_applications() {
        let r = ring(&[("k1", 1)]);
        let token = seal_token(&r, "sid", &claims(("tenant-9".to_owned(), 3u8))).unwrap();
        let report = open(&r, "sid", &token, DataMode::Auto).unwrap();
        assert!(report.data.is_none());
        assert_eq!(report.data_owner, DataOwner::Application);
        assert_eq!(report.data_hex, format!("08{}03", hex(b"tenant-9")));
        let mut c = claims(());
        c.fingerprint = None;
        let token = seal_token(&r, "sid", &c).unwrap();
        let v = serde_json::to_value(open(&r, "sid", &token, DataMode::Auto).unwrap()).unwrap();
        assert!(v["fingerprint"].is_null() && v.get("data").is_none(), "{v}");
        assert_eq!(v["data_owner"], "application");
        assert_eq!(v["data_hex"], "");
    }

    #[test]
    fn data_that_starts_like_the_servers_but_goes_on_is_the_applications() {
        let r = ring(&[("k1", 1)]);
        // A role byte and a flag byte, as the server's data, then more.
        let token = seal_token(&r, "sid", &claims((1u8, true, 7u8))).unwrap();
        let report = open(&r, "sid", &token, DataMode::Auto).unwrap();
        assert_eq!(report.data_owner, DataOwner::Application);
        assert_eq!(report.data_hex, "010107");
    }

    #[test]
    fn data_mode_app_never_decodes_even_data_shaped_like_the_servers() {
        let r = ring(&[("k1", 1)]);
        // Another application's (bool, bool) has the server's bytes exactly.
        let token = seal_token(&r, "sid", &claims((true, true))).unwrap();
        let auto = open(&r, "sid", &token, DataMode::Auto).unwrap();
        assert_eq!(auto.data_owner, DataOwner::ReferenceServer);
        let app = open(&r, "sid", &token, DataMode::App).unwrap();
        assert_eq!(app.data_owner, DataOwner::Application);
        assert!(app.data.is_none());
        assert_eq!(app.data_hex, "0101");
    }

    #[test]
    fn every_failure_is_explained_in_its_own_words() {
        let r = ring(&[("k2", 2), ("k1", 1)]);
        let other = ring(&[("k1", 9)]);
        let good = seal_token(&r, DEFAULT_COOKIE_NAME, &claims(())).unwrap();
        let forged = seal_token(&other, DEFAULT_COOKIE_NAME, &claims(())).unwrap();
        let retired = seal_token(&ring(&[("k0", 1)]), DEFAULT_COOKIE_NAME, &claims(())).unwrap();
        let mut raw = URL_SAFE_NO_PAD.decode(&good).unwrap();
        raw[0] = 2;
        let future = URL_SAFE_NO_PAD.encode(&raw);
        let why = |token: &str, name: &str| {
            let e = open(&r, name, token, DataMode::Auto).unwrap_err();
            explain(&e, &r, "keys/", name, &bare(token))
        };
        let cases = [
            (why("a+b/c", DEFAULT_COOKIE_NAME), "bad encoding"),
            (why("AQJrMQ", DEFAULT_COOKIE_NAME), "truncated"),
            (
                why(&future, DEFAULT_COOKIE_NAME),
                "unknown token format version 2",
            ),
            (why(&"A".repeat(5000), DEFAULT_COOKIE_NAME), "5000 bytes"),
            (
                why(&retired, DEFAULT_COOKIE_NAME),
                "unknown key id \"k0\": it is not in the key ring from keys/, which holds k2 \
                 (primary), k1",
            ),
            (
                why(&forged, DEFAULT_COOKIE_NAME),
                "failed authentication: tampered, sealed under a different key with this id, or \
                 for another cookie name (try --cookie-name)",
            ),
            (why(&good, "session"), "failed authentication"),
        ];
        for (msg, want) in cases {
            assert!(msg.contains(want), "{want:?} not in {msg:?}");
        }
        // The default name's failure points at the dev cookie name.
        assert!(why(&forged, DEFAULT_COOKIE_NAME).contains("--cookie-name session"));
        assert!(open(&r, DEFAULT_COOKIE_NAME, &good, DataMode::Auto).is_ok());
    }

    #[test]
    fn authentication_failure_names_the_pasted_cookie_when_it_differs() {
        let r = ring(&[("k1", 1)]);
        let token = seal_token(&r, "session", &claims(())).unwrap();
        let e = open(&r, "other", &token, DataMode::Auto).unwrap_err();
        let pasted = Pasted {
            value: &token,
            name: Some("session"),
        };
        let msg = explain(&e, &r, "keys/", "other", &pasted);
        assert!(
            msg.contains("the pasted cookie is named \"session\""),
            "{msg}"
        );
    }

    #[test]
    fn tokens_are_found_in_pairs_and_cookie_headers() {
        let t = "AQJrMXh4eHh4";
        assert_eq!(extract(&format!("  {t}\n"), None).unwrap(), bare(t));
        let cases = [
            (format!("session={t}"), None, "session"),
            (format!("__Host-session=\"{t}\""), None, "__Host-session"),
            (
                format!("Cookie: theme=dark; __Host-session={t}; lang=en\r\n"),
                None,
                "__Host-session",
            ),
            (format!("cookie:a=1;session={t}"), None, "session"),
            (format!("Cookie: a=1; sid={t}"), Some("sid"), "sid"),
            (
                format!("Set-Cookie: session={t}; Path=/; HttpOnly; SameSite=Lax"),
                None,
                "session",
            ),
            // One pair under another name: used, with its own name.
            (format!("sid={t}"), None, "sid"),
            (format!("sid={t}"), Some("x"), "sid"),
        ];
        for (input, wanted, name) in cases {
            assert_eq!(
                extract(&input, wanted).unwrap(),
                Pasted {
                    value: t,
                    name: Some(name)
                },
                "{input}"
            );
        }
        assert_eq!(extract(&format!("Cookie: {t}"), None).unwrap(), bare(t));
    }

    #[test]
    fn ambiguous_or_empty_input_is_refused_with_the_names_seen() {
        assert!(extract(" \n", None).unwrap_err().contains("empty"));
        let err = extract("Cookie: a=1; b=2", None).unwrap_err();
        assert!(
            err.contains("\"a\", \"b\"") && err.contains("--cookie-name"),
            "{err}"
        );
        let err = extract("Cookie: a=1; b=2", Some("c")).unwrap_err();
        assert!(err.contains("none named \"c\""), "{err}");
    }
}
