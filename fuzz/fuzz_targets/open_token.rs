//! Arbitrary input as a cookie value: `UntrustedToken::parse` and `token::open` must refuse
//! everything that is not a token sealed under the ring, without panicking.
//!
//! The ring holds the two keys of `tests/vectors/token_v1.json`, so the seeds in
//! `fuzz/seeds/open_token` (the vector tokens) open, and mutations of them exercise every later
//! check. The raw bytes are also tried base64url-encoded, which reaches header parsing directly.
#![no_main]

use std::sync::LazyLock;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use libfuzzer_sys::fuzz_target;
use sealed_sessions::token::{self, UntrustedToken};
use sealed_sessions::{Claims, Key, KeyId, KeyRing};
use serde::{Deserialize, Serialize};

/// The vectors' application data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Data {
    role: String,
    tenant: u32,
}

fn key(first: u8) -> Key {
    let mut b = [0u8; 32];
    for (i, x) in b.iter_mut().enumerate() {
        *x = first.wrapping_add(i as u8);
    }
    Key::from_bytes(b)
}

static RING: LazyLock<KeyRing> = LazyLock::new(|| {
    let id = |s: &str| KeyId::new(s).expect("valid key id");
    KeyRing::new((id("k1"), key(0x00)), [(id("2026-11_b"), key(0x80))]).expect("distinct ids")
});

const COOKIE_NAMES: [&str; 2] = ["__Host-session", "session"];

fn exercise(text: &str) {
    let parsed = UntrustedToken::parse(text);
    for name in COOKIE_NAMES {
        let opened: Result<Claims<Data>, _> = token::open(&RING, name, text);
        // Opening succeeds only for what parses, and under the key id the header names.
        if opened.is_ok() {
            let kid = parsed.as_ref().map(UntrustedToken::key_id);
            assert!(
                matches!(kid, Ok("k1" | "2026-11_b")),
                "opened without a known key id"
            );
        }
    }
    if let Ok(untrusted) = parsed {
        let _ = untrusted.key_id();
        let _ = untrusted.open::<()>(&RING, COOKIE_NAMES[0]);
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        exercise(text);
    }
    exercise(&URL_SAFE_NO_PAD.encode(data));
});
