//! Core benchmarks: sealing, validation against its cryptographic floors, a breakdown of
//! validation, and the revocation list (with moka for comparison) at 1,000,000 entries.
//!
//! Before the criterion groups run, the RSS cost of the revocation list and of a moka cache of
//! the same size is printed. `benches/report.py` turns the criterion estimates into a table.
#![allow(clippy::unwrap_used)]

use std::fmt::Write as _;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::AeadInOut as _;
use chacha20poly1305::{KeyInit as _, XChaCha20Poly1305};
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput};
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
use serde::{Deserialize, Serialize};

use sealed_sessions::clock::{ManualClock, UnixMillis};
use sealed_sessions::{
    Claims, EngineConfig, Key, KeyId, KeyRing, MemoryRevocations, RevocationBackend, SessionEngine,
    SessionId, ValidSession,
};

/// Entries in each revocation list (and in the moka cache).
const ENTRIES: u64 = 1_000_000;
/// Random probe keys per benchmark, cycled through so a repeated key does not hide cache misses.
const PROBES: usize = 1 << 16;
/// The engine's (frozen) clock.
const NOW: UnixMillis = UnixMillis(1_750_000_000_000);
/// Live revocation entries last a day past `NOW`.
const DAY: Duration = Duration::from_secs(24 * 60 * 60);
/// Target postcard plaintext of the large session; the token plus cookie attributes stays under
/// the 4096-byte Set-Cookie limit.
const LARGE_PLAINTEXT: usize = 2_950;
/// Header bytes of a token sealed under key id `k1`: version, kid length, kid.
const HEADER_LEN: usize = 4;
const NONCE_LEN: usize = 24;
const USER: &str = "alice@example.com";

/// Application data of a session: a typical one (`blob` empty) and a 3 KB one.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Data {
    role: String,
    tenant: u32,
    theme: String,
    blob: String,
}

/// splitmix64: deterministic, well-spread keys that can be regenerated from their index.
fn mix(i: u64) -> u64 {
    let mut z = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn key16(seed: u64, i: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&mix(seed ^ mix(i)).to_le_bytes());
    k[8..].copy_from_slice(&mix(seed ^ mix(i) ^ 0x5555).to_le_bytes());
    k
}

/// Revoked session ids and moka keys come from these seeds; probes for misses from another.
const REVOKED_SEED: u64 = 1;
const MISS_SEED: u64 = 2;
const MOKA_SEED: u64 = 3;

fn revoked_id(i: u64) -> SessionId {
    SessionId::from_bytes(key16(REVOKED_SEED, i))
}

fn bumped_user(buf: &mut String, i: u64) {
    buf.clear();
    write!(buf, "user{i}@example.com").unwrap();
}

/// Bumped users carry this minimum version; tokens probed against them carry it too (current).
const BUMPED_VERSION: u64 = NOW.0 - 3_600_000;

fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let resident: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    resident * 4096
}

fn per_entry(before: usize, after: usize) -> usize {
    after.saturating_sub(before) / ENTRIES as usize
}

/// Per-entry expiry for moka: the value is the entry's time to live in seconds.
struct RevocationExpiry;

impl moka::Expiry<[u8; 16], u32> for RevocationExpiry {
    fn expire_after_create(&self, _: &[u8; 16], ttl: &u32, _: Instant) -> Option<Duration> {
        Some(Duration::from_secs(u64::from(*ttl)))
    }
}

type Moka = moka::sync::Cache<[u8; 16], u32>;

struct Fixtures {
    list: Arc<MemoryRevocations>,
    moka: Moka,
    engine: SessionEngine<Data>,
    key: [u8; 32],
    /// The cookie name, bound as associated data.
    cookie_name: String,
    typical: Sample,
    large: Sample,
}

/// One session at one size and everything the floors need to open the same bytes.
struct Sample {
    name: &'static str,
    session: ValidSession<Data>,
    token: String,
    /// The decoded token: header, nonce, ciphertext, tag.
    raw: Vec<u8>,
    /// postcard(claims): what the ciphertext decrypts to.
    plaintext: Vec<u8>,
}

impl Sample {
    fn aad(&self, cookie_name: &str) -> Vec<u8> {
        [&self.raw[..HEADER_LEN], cookie_name.as_bytes()].concat()
    }
    fn nonce(&self) -> [u8; NONCE_LEN] {
        self.raw[HEADER_LEN..HEADER_LEN + NONCE_LEN]
            .try_into()
            .unwrap()
    }
    /// Ciphertext and tag.
    fn body(&self) -> &[u8] {
        &self.raw[HEADER_LEN + NONCE_LEN..]
    }
}

fn build_revocations() -> Arc<MemoryRevocations> {
    let until = NOW.saturating_add(DAY);
    let list = MemoryRevocations::new();

    let before = rss_bytes();
    for i in 0..ENTRIES {
        list.revoke_session_now(revoked_id(i), until, NOW);
    }
    let after_sessions = rss_bytes();
    let approx_sessions = list.stats().approx_bytes;

    let mut name = String::with_capacity(32);
    for i in 0..ENTRIES {
        bumped_user(&mut name, i);
        list.raise_user_version(&name, BUMPED_VERSION, until, NOW);
    }
    let after_users = rss_bytes();
    let stats = list.stats();
    assert_eq!(stats.revoked_sessions, ENTRIES as usize);
    assert_eq!(stats.user_versions, ENTRIES as usize);

    println!(
        "revocation memory: {} bytes per revoked id (RSS delta over 1,000,000 entries)",
        per_entry(before, after_sessions)
    );
    println!(
        "revocation memory: {} bytes per bumped user (RSS delta over 1,000,000 entries)",
        per_entry(after_sessions, after_users)
    );
    println!(
        "revocation stats().approx_bytes: {} after 1,000,000 revoked ids ({} bytes per id); \
         {} after adding 1,000,000 bumped users ({} bytes per user)",
        approx_sessions,
        approx_sessions / ENTRIES as usize,
        stats.approx_bytes,
        (stats.approx_bytes - approx_sessions) / ENTRIES as usize,
    );
    Arc::new(list)
}

fn build_moka() -> Moka {
    let before = rss_bytes();
    let cache: Moka = moka::sync::Cache::builder()
        .expire_after(RevocationExpiry)
        .build();
    for i in 0..ENTRIES {
        // A day, spread over a minute so expiries differ per entry.
        cache.insert(key16(MOKA_SEED, i), 86_400 + (i % 60) as u32);
    }
    cache.run_pending_tasks();
    let after = rss_bytes();
    assert_eq!(cache.entry_count(), ENTRIES);
    println!(
        "moka memory: {} bytes per entry (RSS delta over 1,000,000 16-byte keys with per-entry expiry)",
        per_entry(before, after)
    );
    cache
}

fn sample(engine: &SessionEngine<Data>, name: &'static str, blob_len: usize) -> Sample {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let data = Data {
        role: "editor".into(),
        tenant: 4_711,
        theme: "solarized-dark".into(),
        blob: "x".repeat(blob_len),
    };
    let issued = rt.block_on(engine.issue(USER, data, None)).unwrap();
    let plaintext = postcard::to_allocvec(issued.session.claims()).unwrap();
    let raw = URL_SAFE_NO_PAD.decode(&issued.token).unwrap();
    assert_eq!(raw.len(), HEADER_LEN + NONCE_LEN + plaintext.len() + 16);
    Sample {
        name,
        session: issued.session,
        token: issued.token,
        raw,
        plaintext,
    }
}

fn fixtures() -> Fixtures {
    let list = build_revocations();
    let moka = build_moka();
    let key = [0x42u8; 32];
    let keys = KeyRing::single(KeyId::new("k1").unwrap(), Key::from_bytes(key));
    let engine: SessionEngine<Data> = SessionEngine::with_parts(
        EngineConfig::default(),
        keys,
        list.clone(),
        Arc::new(ManualClock::new(NOW)),
    );
    let cookie_name = engine.config().cookie().name().to_owned();
    let typical = sample(&engine, "typical", 0);
    // Size the blob so the whole plaintext lands on the target.
    let large = sample(
        &engine,
        "3kb",
        LARGE_PLAINTEXT - typical.plaintext.len() - 1,
    );
    println!(
        "sessions: typical plaintext {} bytes (token {} chars), 3kb plaintext {} bytes (token {} chars); \
         aad {} bytes",
        typical.plaintext.len(),
        typical.token.len(),
        large.plaintext.len(),
        large.token.len(),
        typical.aad(&cookie_name).len(),
    );
    for s in [&typical, &large] {
        engine.validate(&s.token, None).unwrap();
    }
    Fixtures {
        list,
        moka,
        engine,
        key,
        cookie_name,
        typical,
        large,
    }
}

fn bench_seal(c: &mut Criterion, f: &Fixtures) {
    let mut g = c.benchmark_group("seal");
    for s in [&f.typical, &f.large] {
        g.throughput(Throughput::Bytes(s.plaintext.len() as u64));
        g.bench_function(s.name, |b| {
            b.iter(|| f.engine.renew(black_box(&s.session)).unwrap())
        });
    }
    g.finish();
}

fn bench_validate(c: &mut Criterion, f: &Fixtures) {
    let mut g = c.benchmark_group("validate");
    for s in [&f.typical, &f.large] {
        g.throughput(Throughput::Bytes(s.plaintext.len() as u64));
        g.bench_function(s.name, |b| {
            b.iter(|| f.engine.validate(black_box(&s.token), None).unwrap())
        });
    }
    g.finish();
}

fn bench_floors(c: &mut Criterion, f: &Fixtures) {
    let mut g = c.benchmark_group("floor");
    let ring_key = LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, &[0x17u8; 32]).unwrap());
    let ring_nonce = [0x29u8; 12];
    let xchacha = XChaCha20Poly1305::new((&f.key).into());
    for s in [&f.typical, &f.large] {
        let aad = s.aad(&f.cookie_name);
        g.throughput(Throughput::Bytes(s.plaintext.len() as u64));

        let mut ring_sealed = s.plaintext.clone();
        ring_key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(ring_nonce),
                Aad::from(&aad),
                &mut ring_sealed,
            )
            .unwrap();
        g.bench_function(BenchmarkId::new("ring_open", s.name), |b| {
            b.iter_batched(
                || ring_sealed.clone(),
                |mut buf| {
                    let n = Nonce::assume_unique_for_key(ring_nonce);
                    let plain = ring_key
                        .open_in_place(n, Aad::from(&aad), &mut buf)
                        .unwrap();
                    black_box(plain.len());
                    buf
                },
                BatchSize::SmallInput,
            )
        });

        // The token's own ciphertext: the crate computes the same cipher as ours.
        let nonce = s.nonce();
        let sealed = s.body().to_vec();
        g.bench_function(BenchmarkId::new("xchacha_crate_open", s.name), |b| {
            b.iter_batched(
                || sealed.clone(),
                |mut buf| {
                    xchacha
                        .decrypt_in_place((&nonce).into(), &aad, &mut buf)
                        .unwrap();
                    black_box(buf.len());
                    buf
                },
                BatchSize::SmallInput,
            )
        });
        let mut check = sealed.clone();
        xchacha
            .decrypt_in_place((&nonce).into(), &aad, &mut check)
            .unwrap();
        assert_eq!(check, s.plaintext);
    }
    g.finish();
}

/// What `src/aead.rs` does to open (it is crate-private): HChaCha20 subkey, then ring.
fn our_open<'a>(
    key: &[u8; 32],
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    body: &'a mut [u8],
) -> &'a [u8] {
    let hnonce: [u8; 16] = nonce[..16].try_into().unwrap();
    let subkey = chacha20::hchacha::<chacha20::R20>(key.into(), (&hnonce).into());
    let mut ietf_nonce = [0u8; 12];
    ietf_nonce[4..].copy_from_slice(&nonce[16..]);
    let k = LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, subkey.as_slice()).unwrap());
    k.open_in_place(
        Nonce::assume_unique_for_key(ietf_nonce),
        Aad::from(aad),
        body,
    )
    .unwrap()
}

fn bench_breakdown(c: &mut Criterion, f: &Fixtures) {
    let s = &f.typical;
    let mut g = c.benchmark_group("breakdown");
    g.bench_function(BenchmarkId::new("base64_decode", s.name), |b| {
        // What `token.rs` does on the validate path: base64-simd into a stack buffer.
        let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 3072];
        b.iter(|| {
            base64_simd::URL_SAFE_NO_PAD
                .decode(
                    black_box(s.token.as_bytes()),
                    base64_simd::Out::from_uninit_slice(&mut buf),
                )
                .unwrap()
                .len()
        })
    });

    let aad = s.aad(&f.cookie_name);
    let nonce = s.nonce();
    let body = s.body().to_vec();
    assert_eq!(
        our_open(&f.key, &nonce, &aad, &mut body.clone()),
        s.plaintext
    );
    g.bench_function(BenchmarkId::new("aead_open", s.name), |b| {
        b.iter_batched(
            || body.clone(),
            |mut buf| {
                black_box(our_open(&f.key, black_box(&nonce), &aad, &mut buf).len());
                buf
            },
            BatchSize::SmallInput,
        )
    });

    // All the claims through postcard's serde decoder: an upper bound, since validate reads the
    // fixed claims with a direct reader (`ClaimsHead::take_from`) and only `data` through serde.
    g.bench_function(BenchmarkId::new("postcard_decode", s.name), |b| {
        b.iter(|| postcard::from_bytes::<Claims<Data>>(black_box(&s.plaintext)).unwrap())
    });

    let claims = s.session.claims();
    g.bench_function(BenchmarkId::new("revocation_check", s.name), |b| {
        b.iter(|| {
            f.list
                .check(
                    black_box(&claims.session_id),
                    black_box(&claims.user_id),
                    claims.version,
                    NOW,
                )
                .unwrap()
        })
    });
    g.finish();
}

fn bench_revocation(c: &mut Criterion, f: &Fixtures) {
    let list = &*f.list;
    let mut g = c.benchmark_group("revocation");

    // Neither revoked: random ids and random user names, none in the list.
    let miss: Vec<(SessionId, String)> = (0..PROBES as u64)
        .map(|i| {
            let r = mix(MISS_SEED ^ (i << 8));
            (
                SessionId::from_bytes(key16(MISS_SEED, i)),
                format!("visitor{r}@example.org"),
            )
        })
        .collect();
    assert!(
        miss.iter()
            .all(|(sid, user)| list.check(sid, user, 0, NOW).is_ok())
    );
    g.bench_function("check_miss_random", |b| {
        let mut i = 0usize;
        b.iter(|| {
            let (sid, user) = &miss[i % PROBES];
            i += 1;
            black_box(list.check(sid, user, 0, NOW))
        })
    });

    let revoked: Vec<SessionId> = (0..PROBES as u64)
        .map(|i| revoked_id(mix(i ^ 0xabc) % ENTRIES))
        .collect();
    assert!(
        revoked
            .iter()
            .all(|sid| list.check(sid, USER, 0, NOW).is_err())
    );
    g.bench_function("check_revoked_hit_random", |b| {
        let mut i = 0usize;
        b.iter(|| {
            let sid = &revoked[i % PROBES];
            i += 1;
            black_box(list.check(sid, USER, 0, NOW))
        })
    });

    // Bumped users whose token carries the current version: the filter says "maybe", the exact
    // table says "not revoked". The session id is a miss.
    let bumped: Vec<(SessionId, String)> = (0..PROBES as u64)
        .map(|i| {
            let mut name = String::new();
            bumped_user(&mut name, mix(i ^ 0xdef) % ENTRIES);
            (
                SessionId::from_bytes(key16(MISS_SEED, i + PROBES as u64)),
                name,
            )
        })
        .collect();
    assert!(bumped.iter().all(|(sid, user)| {
        list.check(sid, user, BUMPED_VERSION, NOW).is_ok()
            && list.check(sid, user, BUMPED_VERSION - 1, NOW).is_err()
    }));
    g.bench_function("check_bumped_user_random", |b| {
        let mut i = 0usize;
        b.iter(|| {
            let (sid, user) = &bumped[i % PROBES];
            i += 1;
            black_box(list.check(sid, user, BUMPED_VERSION, NOW))
        })
    });
    g.finish();
}

fn bench_moka(c: &mut Criterion, f: &Fixtures) {
    let mut g = c.benchmark_group("moka");
    let miss: Vec<[u8; 16]> = (0..PROBES as u64).map(|i| key16(MISS_SEED, i)).collect();
    assert!(miss.iter().all(|k| f.moka.get(k).is_none()));
    g.bench_function("get_miss_random", |b| {
        let mut i = 0usize;
        b.iter(|| {
            let k = &miss[i % PROBES];
            i += 1;
            black_box(f.moka.get(k))
        })
    });
    let hit: Vec<[u8; 16]> = (0..PROBES as u64)
        .map(|i| key16(MOKA_SEED, mix(i ^ 0x123) % ENTRIES))
        .collect();
    assert!(hit.iter().all(|k| f.moka.get(k).is_some()));
    g.bench_function("get_hit_random", |b| {
        let mut i = 0usize;
        b.iter(|| {
            let k = &hit[i % PROBES];
            i += 1;
            black_box(f.moka.get(k))
        })
    });
    g.finish();
}

fn main() {
    let f = fixtures();
    let mut c = Criterion::default()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(50)
        .configure_from_args();
    bench_seal(&mut c, &f);
    bench_validate(&mut c, &f);
    bench_floors(&mut c, &f);
    bench_breakdown(&mut c, &f);
    bench_revocation(&mut c, &f);
    bench_moka(&mut c, &f);
    c.final_summary();
}
