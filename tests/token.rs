//! The token format under attack: every malformed, truncated, tampered, wrong-key, wrong-name or
//! unknown-version input is a typed error, never a panic.
#![allow(clippy::unwrap_used)]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use proptest::prelude::*;
use sealed_sessions::clock::UnixMillis;
use sealed_sessions::token::{self, MAX_TOKEN_LEN, TokenError};
use sealed_sessions::{Claims, Fingerprint, Key, KeyId, KeyRing, SessionId};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Data {
    role: String,
    tenant: u32,
    flags: Vec<bool>,
}

fn ring(id: &str, byte: u8) -> KeyRing {
    KeyRing::single(KeyId::new(id).unwrap(), Key::from_bytes([byte; 32]))
}

fn typical() -> Claims<Data> {
    Claims {
        session_id: SessionId::from_bytes([9; 16]),
        user_id: "alice@example.com".into(),
        version: 1_767_225_600_123,
        created_at: UnixMillis(1_767_225_600_000),
        auth_time: UnixMillis(1_767_225_600_000),
        last_seen: UnixMillis(1_767_225_660_000),
        expires_at: UnixMillis(1_767_312_000_000),
        fingerprint: Some(Fingerprint::from_bytes([1, 2, 3, 4, 5, 6, 7, 8])),
        data: Data {
            role: "admin".into(),
            tenant: 42,
            flags: vec![true, false],
        },
    }
}

const NAME: &str = "__Host-session";

#[test]
fn typical_token_round_trips() {
    let r = ring("k1", 1);
    let t = token::seal_token(&r, NAME, &typical()).unwrap();
    assert_eq!(token::open::<Data>(&r, NAME, &t).unwrap(), typical());
}

#[test]
fn every_single_bit_flip_of_a_typical_token_is_rejected() {
    let r = ring("k1", 1);
    let t = token::seal_token(&r, NAME, &typical()).unwrap();
    let raw = URL_SAFE_NO_PAD.decode(&t).unwrap();
    for byte in 0..raw.len() {
        for bit in 0..8 {
            let mut m = raw.clone();
            m[byte] ^= 1 << bit;
            let flipped = URL_SAFE_NO_PAD.encode(&m);
            let err = token::open::<Data>(&r, NAME, &flipped).unwrap_err();
            // Which error depends on where the flip landed; that it is an error is the point.
            assert!(
                matches!(
                    err,
                    TokenError::Unauthentic
                        | TokenError::UnknownVersion(_)
                        | TokenError::BadKeyId
                        | TokenError::UnknownKey(_)
                        | TokenError::Truncated
                ),
                "byte {byte} bit {bit}: {err:?}"
            );
        }
    }
}

#[test]
fn truncation_at_every_length_is_rejected() {
    let r = ring("k1", 1);
    let t = token::seal_token(&r, NAME, &typical()).unwrap();
    for len in 0..t.len() {
        assert!(
            token::open::<Data>(&r, NAME, &t[..len]).is_err(),
            "len {len}"
        );
    }
}

#[test]
fn a_token_sealed_for_another_cookie_name_does_not_open() {
    let r = ring("k1", 1);
    let t = token::seal_token(&r, "__Host-csrf", &typical()).unwrap();
    assert_eq!(
        token::open::<Data>(&r, NAME, &t),
        Err(TokenError::Unauthentic)
    );
}

#[test]
fn a_key_with_the_same_id_but_other_bytes_does_not_open() {
    let t = token::seal_token(&ring("k1", 1), NAME, &typical()).unwrap();
    assert_eq!(
        token::open::<Data>(&ring("k1", 2), NAME, &t),
        Err(TokenError::Unauthentic)
    );
}

#[test]
fn a_retired_key_id_is_reported_as_unknown() {
    let t = token::seal_token(&ring("old", 1), NAME, &typical()).unwrap();
    assert_eq!(
        token::open::<Data>(&ring("new", 1), NAME, &t),
        Err(TokenError::UnknownKey("old".into()))
    );
}

#[test]
fn rotated_ring_opens_old_tokens_and_seals_under_the_new_primary() {
    let old = ring("k1", 1);
    let t_old = token::seal_token(&old, NAME, &typical()).unwrap();
    let rotated = KeyRing::new(
        (KeyId::new("k2").unwrap(), Key::from_bytes([2; 32])),
        [(KeyId::new("k1").unwrap(), Key::from_bytes([1; 32]))],
    )
    .unwrap();
    assert_eq!(
        token::open::<Data>(&rotated, NAME, &t_old).unwrap(),
        typical()
    );
    let t_new = token::seal_token(&rotated, NAME, &typical()).unwrap();
    let parsed = token::UntrustedToken::parse(&t_new).unwrap();
    assert_eq!(parsed.key_id(), "k2");
    assert!(
        token::open::<Data>(&old, NAME, &t_new).is_err(),
        "old ring lacks k2"
    );
}

#[test]
fn unknown_format_version_is_a_typed_error() {
    let r = ring("k1", 1);
    let mut raw = URL_SAFE_NO_PAD
        .decode(token::seal_token(&r, NAME, &typical()).unwrap())
        .unwrap();
    raw[0] = 2;
    assert_eq!(
        token::open::<Data>(&r, NAME, &URL_SAFE_NO_PAD.encode(&raw)),
        Err(TokenError::UnknownVersion(2))
    );
}

#[test]
fn over_long_input_is_refused_before_decoding() {
    let r = ring("k1", 1);
    // Not even base64: a decoder would fail differently, so TooLong proves no decode ran.
    let long = "!".repeat(MAX_TOKEN_LEN + 1);
    assert_eq!(
        token::open::<Data>(&r, NAME, &long),
        Err(TokenError::TooLong {
            len: MAX_TOKEN_LEN + 1,
            max: MAX_TOKEN_LEN
        })
    );
}

#[test]
fn garbage_inputs_are_typed_errors() {
    let r = ring("k1", 1);
    assert_eq!(
        token::open::<Data>(&r, NAME, ""),
        Err(TokenError::Truncated)
    );
    assert_eq!(
        token::open::<Data>(&r, NAME, "a=b"),
        Err(TokenError::BadEncoding)
    );
    assert_eq!(
        token::open::<Data>(&r, NAME, "AQ"),
        Err(TokenError::Truncated)
    );
    // Padded (standard) base64 is not our encoding.
    assert_eq!(
        token::open::<Data>(&r, NAME, "AQI+/w=="),
        Err(TokenError::BadEncoding)
    );
}

#[test]
fn claims_of_another_type_are_a_typed_error_not_a_panic() {
    let r = ring("k1", 1);
    let t = token::seal_token(&r, NAME, &typical()).unwrap();
    #[derive(Debug, Deserialize)]
    struct Other {
        _big: [u64; 8],
    }
    assert!(matches!(
        token::open::<Other>(&r, NAME, &t),
        Err(TokenError::Claims(_))
    ));
}

#[test]
fn oversize_claims_are_refused_with_size_and_limit() {
    let r = ring("k1", 1);
    let mut c = typical();
    c.data.role = "x".repeat(4000);
    match token::seal_token(&r, NAME, &c) {
        Err(token::SealError::TooLarge { size, limit }) => {
            assert_eq!(limit, MAX_TOKEN_LEN);
            assert!(size > limit);
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
}

fn arb_claims() -> impl Strategy<Value = Claims<Data>> {
    (
        any::<[u8; 16]>(),
        ".{0,40}",
        any::<u64>(),
        any::<[u64; 4]>(),
        proptest::option::of(any::<[u8; 8]>()),
        ".{0,40}",
        any::<u32>(),
        proptest::collection::vec(any::<bool>(), 0..20),
    )
        .prop_map(|(sid, user, version, t, fp, role, tenant, flags)| Claims {
            session_id: SessionId::from_bytes(sid),
            user_id: user,
            version,
            created_at: UnixMillis(t[0]),
            auth_time: UnixMillis(t[1]),
            last_seen: UnixMillis(t[2]),
            expires_at: UnixMillis(t[3]),
            fingerprint: fp.map(Fingerprint::from_bytes),
            data: Data {
                role,
                tenant,
                flags,
            },
        })
}

proptest! {
    #[test]
    fn arbitrary_claims_round_trip(c in arb_claims()) {
        let r = ring("k1", 3);
        let t = token::seal_token(&r, NAME, &c).unwrap();
        prop_assert!(t.len() <= MAX_TOKEN_LEN);
        prop_assert_eq!(token::open::<Data>(&r, NAME, &t).unwrap(), c);
    }

    #[test]
    fn arbitrary_strings_never_panic(s in ".{0,300}") {
        let _ = token::open::<Data>(&ring("k1", 1), NAME, &s);
    }

    #[test]
    fn arbitrary_bytes_after_a_valid_header_never_panic_and_never_open(
        body in proptest::collection::vec(any::<u8>(), 0..300)
    ) {
        let mut raw = vec![1u8, 2, b'k', b'1'];
        raw.extend(body);
        let t = URL_SAFE_NO_PAD.encode(&raw);
        prop_assert!(token::open::<Data>(&ring("k1", 1), NAME, &t).is_err());
    }
}
