//! Arbitrary bytes as sealed plaintext, the input that runs once a tag verifies.
//!
//! Two properties:
//! - postcard's own decoding of `Claims<T>` never panics, and whatever decodes re-encodes to
//!   bytes that decode to the same claims;
//! - differential: the bytes are sealed into a token by an independent implementation of the
//!   documented layout (the RustCrypto `chacha20poly1305` crate), and `token::open` — which
//!   reads the fixed claims with its own reader, not serde — must accept exactly what postcard
//!   accepts (with nothing left over) and give the same claims, and refuse everything else
//!   with `TokenError::Claims`.
#![no_main]

use std::fmt::Debug;
use std::sync::LazyLock;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::XChaCha20Poly1305;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use libfuzzer_sys::fuzz_target;
use sealed_sessions::token::{self, MAX_TOKEN_LEN, TokenError};
use sealed_sessions::{Claims, Key, KeyId, KeyRing};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Application data like the reference server's and the test vectors'.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Data {
    role: String,
    tenant: u32,
    flags: Option<Vec<u8>>,
}

const KEY: [u8; 32] = [7; 32];
const COOKIE: &str = "session";

static RING: LazyLock<KeyRing> =
    LazyLock::new(|| KeyRing::single(KeyId::new("f1").expect("key id"), Key::from_bytes(KEY)));

fn round_trip<T>(data: &[u8])
where
    T: Serialize + for<'de> Deserialize<'de> + PartialEq + std::fmt::Debug,
{
    if let Ok(claims) = postcard::from_bytes::<Claims<T>>(data) {
        let bytes = postcard::to_allocvec(&claims).expect("decoded claims re-encode");
        let again: Claims<T> = postcard::from_bytes(&bytes).expect("re-encoded claims decode");
        assert_eq!(again, claims);
    }
}

/// `plain` sealed under `KEY` for `COOKIE` by the layout of `src/token.rs`'s docs:
/// base64url(version 1 | kid_len | kid | nonce | XChaCha20-Poly1305(plain) | tag), with the
/// header and the cookie name as associated data.
fn seal_independently(plain: &[u8]) -> String {
    let header = [1u8, 2, b'f', b'1'];
    let nonce = [9u8; 24];
    let aad = [&header[..], COOKIE.as_bytes()].concat();
    let sealed = XChaCha20Poly1305::new((&KEY).into())
        .encrypt(
            (&nonce).into(),
            Payload {
                msg: plain,
                aad: &aad,
            },
        )
        .expect("sealing within length limits");
    URL_SAFE_NO_PAD.encode([&header[..], &nonce, &sealed].concat())
}

fn differential<T: DeserializeOwned + PartialEq + Debug>(plain: &[u8]) {
    let token = seal_independently(plain);
    if token.len() > MAX_TOKEN_LEN {
        return;
    }
    let ours = token::open::<T>(&RING, COOKIE, &token);
    let theirs = postcard::take_from_bytes::<Claims<T>>(plain);
    match (ours, theirs) {
        (Ok(a), Ok((b, []))) => assert_eq!(a, b),
        (Err(TokenError::Claims(_)), Ok((_, rest))) if !rest.is_empty() => {}
        (Err(TokenError::Claims(_)), Err(_)) => {}
        (ours, theirs) => panic!("token::open gave {ours:?}, postcard {theirs:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    round_trip::<Data>(data);
    round_trip::<()>(data);
    round_trip::<String>(data);
    differential::<Data>(data);
    differential::<()>(data);
    differential::<String>(data);
});
