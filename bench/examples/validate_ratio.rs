//! The validate-versus-floor ratio on a noisy machine: alternates short slices of full
//! `validate` and of ring's ChaCha20-Poly1305 open of the same plaintext (and the HChaCha20 step
//! our format adds), so load from other processes hits both alike; prints min and median. Then
//! the same for a 3 KB session.
//!
//! ```sh
//! cargo run --release --example validate_ratio
//! ```
//! Criterion's `cargo bench --bench core` has the same numbers with ids; this is the
//! cross-check when the machine is shared.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Instant;

use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
use sealed_sessions::clock::{ManualClock, UnixMillis};
use sealed_sessions::{EngineConfig, Key, KeyId, KeyRing, MemoryRevocations, SessionEngine};

use sealed_sessions_bench::{TypicalData as Data, min_median as stats};

/// The 3 KB session: the typical data plus a blob, about as large as a cookie allows.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Large {
    data: Data,
    blob: String,
}

/// A token for `data` and ring's ChaCha20-Poly1305 sealing of the same plaintext (the floor).
fn sample<T: serde::Serialize + serde::de::DeserializeOwned + Clone>(
    engine: &SessionEngine<T>,
    data: T,
) -> (String, Vec<u8>, Vec<u8>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let issued = rt
        .block_on(engine.issue("alice@example.com", data, None))
        .unwrap();
    let plain = postcard::to_allocvec(issued.session.claims()).unwrap();
    let key = floor_key();
    let mut sealed = plain.clone();
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key([1; 12]),
        Aad::from(&AAD),
        &mut sealed,
    )
    .unwrap();
    (issued.token, plain, sealed)
}

const AAD: [u8; 18] = [0; 18];

fn floor_key() -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, &[9; 32]).unwrap())
}

fn engine<T: serde::Serialize + serde::de::DeserializeOwned + Clone>() -> SessionEngine<T> {
    let clock = ManualClock::new(UnixMillis(1_767_225_600_000));
    let keys = KeyRing::single(KeyId::new("k1").unwrap(), Key::from_bytes([7; 32]));
    SessionEngine::with_parts(
        EngineConfig::default(),
        keys,
        Arc::new(MemoryRevocations::new()),
        Arc::new(clock),
    )
}

/// Alternates slices of validate and of ring's open; returns (min, median) of each, in ns.
fn measure<T: serde::Serialize + serde::de::DeserializeOwned + Clone>(
    engine: &SessionEngine<T>,
    token: &str,
    sealed: &[u8],
    reps: u32,
) -> ((f64, f64), (f64, f64)) {
    let key = floor_key();
    let mut buf = sealed.to_vec();
    let (mut v, mut r) = (Vec::new(), Vec::new());
    for _ in 0..60 {
        let t = Instant::now();
        for _ in 0..reps {
            std::hint::black_box(engine.validate(std::hint::black_box(token), None).unwrap());
        }
        v.push(t.elapsed().as_nanos() as f64 / f64::from(reps));
        let t = Instant::now();
        for _ in 0..reps {
            buf.copy_from_slice(sealed);
            let n = Nonce::assume_unique_for_key([1; 12]);
            std::hint::black_box(key.open_in_place(n, Aad::from(&AAD), &mut buf).unwrap());
        }
        r.push(t.elapsed().as_nanos() as f64 / f64::from(reps));
    }
    (stats(v), stats(r))
}

fn main() {
    let data = Data::sample();
    let typical_engine = engine::<Data>();
    let (token, plain, sealed) = sample(&typical_engine, data.clone());
    let reps = 20_000u32;
    let ((vmin, vmed), (rmin, rmed)) = measure(&typical_engine, &token, &sealed, reps);
    let mut h = Vec::new();
    for _ in 0..60 {
        let t = Instant::now();
        for _ in 0..reps {
            let k = std::hint::black_box(&[1u8; 32]);
            let n = std::hint::black_box(&[2u8; 16]);
            std::hint::black_box(chacha20::hchacha::<chacha20::R20>(k.into(), n.into()));
        }
        h.push(t.elapsed().as_nanos() as f64 / f64::from(reps));
    }
    let (hmin, hmed) = stats(h);
    println!(
        "plaintext {} bytes, token {} chars, 60 alternating slices of {reps}",
        plain.len(),
        token.len()
    );
    println!("validate/typical        min {vmin:6.0} ns  median {vmed:6.0} ns");
    println!("ring open (floor)       min {rmin:6.0} ns  median {rmed:6.0} ns");
    println!("HChaCha20 (format step) min {hmin:6.0} ns  median {hmed:6.0} ns");
    println!(
        "validate / ring floor: {:.2} (min)  {:.2} (median)",
        vmin / rmin,
        vmed / rmed
    );

    // The 3 KB session: as `benches/core.rs`, a plaintext of about 2,950 bytes.
    let large_engine = engine::<Large>();
    let blob = "x".repeat(2_950 - plain.len() - 2);
    let (token, plain, sealed) = sample(&large_engine, Large { data, blob });
    let reps = 2_000u32;
    let ((vmin, vmed), (rmin, rmed)) = measure(&large_engine, &token, &sealed, reps);
    println!(
        "plaintext {} bytes, token {} chars, 60 alternating slices of {reps}",
        plain.len(),
        token.len()
    );
    println!("validate/3kb            min {vmin:6.0} ns  median {vmed:6.0} ns");
    println!("ring open (floor)       min {rmin:6.0} ns  median {rmed:6.0} ns");
    println!(
        "validate / ring floor (3kb): {:.2} (min)  {:.2} (median)",
        vmin / rmin,
        vmed / rmed
    );
}
