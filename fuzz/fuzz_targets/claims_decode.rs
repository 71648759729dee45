//! Arbitrary bytes as sealed plaintext: `postcard::from_bytes::<Claims<Data>>` is what runs once a
//! tag verifies. It must never panic, and whatever decodes must re-encode to bytes that decode
//! to the same claims.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sealed_sessions::Claims;
use serde::{Deserialize, Serialize};

/// Application data like the reference server's and the test vectors'.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Data {
    role: String,
    tenant: u32,
    flags: Option<Vec<u8>>,
}

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

fuzz_target!(|data: &[u8]| {
    round_trip::<Data>(data);
    round_trip::<()>(data);
    round_trip::<String>(data);
});
