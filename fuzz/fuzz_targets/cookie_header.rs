//! Arbitrary bytes as `Cookie` request headers, through the function the session layer itself
//! uses (`__fuzz::session_from_cookie_headers`: split into pairs, at most `MAX_COOKIE_VALUES`
//! values of the session cookie, each validated by the engine).
//!
//! Input: header values separated by `\n`. The marker `@V` is replaced by a valid token and
//! `@R` by a revoked one, so the fuzzer can place real tokens among duplicates, quotes, other
//! cookies and garbage. The first byte picks the request's fingerprint. Oracle: a session is
//! accepted only if it is the valid token's, and only with the fingerprint it was bound to.
#![no_main]

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use sealed_sessions::__fuzz::session_from_cookie_headers;
use sealed_sessions::clock::{ManualClock, UnixMillis};
use sealed_sessions::token::seal_token;
use sealed_sessions::{
    Claims, CookieSettings, EngineConfig, Fingerprint, FingerprintMode, Key, KeyId, KeyRing,
    MemoryRevocations, SessionEngine, SessionId,
};

const NOW: UnixMillis = UnixMillis(1_767_225_600_000);
const VALID_ID: [u8; 16] = [1; 16];
const REVOKED_ID: [u8; 16] = [2; 16];

struct World {
    engine: SessionEngine<String>,
    valid: String,
    revoked: String,
    bound: Fingerprint,
    other: Fingerprint,
}

static WORLD: LazyLock<World> = LazyLock::new(|| {
    let keys = KeyRing::single(
        KeyId::new("k1").expect("valid key id"),
        Key::from_bytes([7; 32]),
    );
    let config = EngineConfig::builder()
        .cookie(CookieSettings::insecure_dev())
        .fingerprint(FingerprintMode::Ua)
        .build()
        .expect("valid config");
    let revocations = Arc::new(MemoryRevocations::new());
    let bound = Fingerprint::from_parts(&[b"ua"]);
    let claims = |id: [u8; 16]| Claims {
        session_id: SessionId::from_bytes(id),
        user_id: "alice".to_owned(),
        version: 0,
        created_at: NOW,
        auth_time: NOW,
        last_seen: NOW,
        expires_at: NOW.saturating_add(Duration::from_secs(3600)),
        fingerprint: Some(bound),
        data: "user".to_owned(),
    };
    let valid = seal_token(&keys, "session", &claims(VALID_ID)).expect("seals");
    let revoked = seal_token(&keys, "session", &claims(REVOKED_ID)).expect("seals");
    revocations.revoke_session_now(
        SessionId::from_bytes(REVOKED_ID),
        NOW.saturating_add(Duration::from_secs(3600)),
        NOW,
    );
    let engine =
        SessionEngine::with_parts(config, keys, revocations, Arc::new(ManualClock::new(NOW)));
    World {
        engine,
        valid,
        revoked,
        bound,
        other: Fingerprint::from_parts(&[b"another ua"]),
    }
});

/// `line` with every `@V` / `@R` replaced by the valid / revoked token.
fn expand(line: &[u8], w: &World) -> Vec<u8> {
    let mut out = Vec::with_capacity(line.len());
    let mut i = 0;
    while i < line.len() {
        match line.get(i..i + 2) {
            Some(b"@V") => {
                out.extend_from_slice(w.valid.as_bytes());
                i += 2;
            }
            Some(b"@R") => {
                out.extend_from_slice(w.revoked.as_bytes());
                i += 2;
            }
            _ => {
                out.push(line[i]);
                i += 1;
            }
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let w = &*WORLD;
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let fingerprint = match pick % 3 {
        0 => None,
        1 => Some(&w.bound),
        _ => Some(&w.other),
    };
    let lines: Vec<Vec<u8>> = rest.split(|&b| b == b'\n').map(|l| expand(l, w)).collect();
    let outcome =
        session_from_cookie_headers(&w.engine, lines.iter().map(Vec::as_slice), fingerprint);
    if let Some(Ok(session)) = outcome {
        assert_eq!(
            session.id(),
            SessionId::from_bytes(VALID_ID),
            "forged session accepted"
        );
        assert_eq!(session.user_id(), "alice");
        assert!(
            fingerprint.is_some_and(|f| f.ct_eq(&w.bound)),
            "fingerprint not enforced"
        );
    }
});
