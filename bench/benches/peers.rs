//! Peers side by side on the same claims, and the whole tower/axum path in process.
//!
//! - `peers/*/typical`: open a token and decode its claims — ours (`open`, and the full
//!   `validate` with revocation checks), PASETO v4.local (pasetors), JWT HS256 (jsonwebtoken),
//!   and the `cookie` crate's private jar (AES-256-GCM). The peers carry the claims as JSON,
//!   their native encoding; ours as postcard.
//! - `tower/*`: a request with a valid cookie through `SessionLayer` and a handler that reads
//!   the session, against the same handler without the layer (`tower::ServiceExt::oneshot`).
#![allow(clippy::unwrap_used, missing_docs)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::routing::get;
use criterion::{Criterion, criterion_group, criterion_main};
use http::Request;
use sealed_sessions::clock::{ManualClock, UnixMillis};
use sealed_sessions::extract::Session;
use sealed_sessions::{
    CookieSettings, EngineConfig, Key, KeyId, KeyRing, LayerOptions, MemoryRevocations,
    SessionEngine, SessionLayer, token,
};
use serde::{Deserialize, Serialize};
use tower::ServiceExt as _;

const NOW: UnixMillis = UnixMillis(1_767_225_600_000);

use sealed_sessions_bench::TypicalData as Data;

fn data() -> Data {
    Data::sample()
}

/// The same claims, as the JSON-based peers carry them.
#[derive(Clone, Serialize, Deserialize)]
struct JsonClaims {
    sid: String,
    sub: String,
    ver: u64,
    iat: u64,
    auth_time: u64,
    last_seen: u64,
    exp: u64,
    role: String,
    tenant: u32,
    theme: String,
}

fn engine() -> SessionEngine<Data> {
    let keys = KeyRing::single(KeyId::new("k1").unwrap(), Key::from_bytes([7; 32]));
    let config = EngineConfig::builder()
        .cookie(CookieSettings::insecure_dev())
        .build()
        .unwrap();
    SessionEngine::with_parts(
        config,
        keys,
        Arc::new(MemoryRevocations::new()),
        Arc::new(ManualClock::new(NOW)),
    )
}

fn peers(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let engine = engine();
    let issued = rt
        .block_on(engine.issue("alice@example.com", data(), None))
        .unwrap();
    let ours = issued.token.clone();
    let ring = engine.keys();
    let cl = issued.session.claims();
    let json = JsonClaims {
        sid: cl.session_id.to_string(),
        sub: cl.user_id.clone(),
        ver: cl.version,
        iat: cl.created_at.0 / 1000,
        auth_time: cl.auth_time.0 / 1000,
        last_seen: cl.last_seen.0 / 1000,
        exp: 4_000_000_000,
        role: cl.data.role.clone(),
        tenant: cl.data.tenant,
        theme: cl.data.theme.clone(),
    };
    let json_text = serde_json::to_string(&json).unwrap();

    // PASETO v4.local
    let pk = pasetors::keys::SymmetricKey::<pasetors::version4::V4>::from(&[7u8; 32]).unwrap();
    let paseto =
        pasetors::version4::LocalToken::encrypt(&pk, json_text.as_bytes(), None, None).unwrap();

    // JWT HS256
    let jwt = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json,
        &jsonwebtoken::EncodingKey::from_secret(&[7u8; 32]),
    )
    .unwrap();
    let jwt_key = jsonwebtoken::DecodingKey::from_secret(&[7u8; 32]);
    let validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);

    // cookie crate private jar (AES-256-GCM)
    let jar_key = cookie::Key::from(&[7u8; 64]);
    let mut jar = cookie::CookieJar::new();
    jar.private_mut(&jar_key)
        .add(cookie::Cookie::new("session", json_text.clone()));
    let sealed_cookie = jar.get("session").unwrap().clone();

    let mut g = c.benchmark_group("peers");
    g.measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(50);
    g.bench_function("sealed_sessions_open/typical", |b| {
        b.iter(|| token::open::<Data>(&ring, "session", std::hint::black_box(&ours)).unwrap())
    });
    g.bench_function("sealed_sessions_validate/typical", |b| {
        b.iter(|| engine.validate(std::hint::black_box(&ours), None).unwrap())
    });
    g.bench_function("paseto_v4_local/typical", |b| {
        b.iter(|| {
            let untrusted = pasetors::token::UntrustedToken::<
                pasetors::Local,
                pasetors::version4::V4,
            >::try_from(std::hint::black_box(paseto.as_str()))
            .unwrap();
            let trusted =
                pasetors::version4::LocalToken::decrypt(&pk, &untrusted, None, None).unwrap();
            serde_json::from_str::<JsonClaims>(trusted.payload()).unwrap()
        })
    });
    g.bench_function("jwt_hs256/typical", |b| {
        b.iter(|| {
            jsonwebtoken::decode::<JsonClaims>(std::hint::black_box(&jwt), &jwt_key, &validation)
                .unwrap()
        })
    });
    g.bench_function("cookie_private_jar/typical", |b| {
        b.iter(|| {
            let mut jar = cookie::CookieJar::new();
            jar.add_original(std::hint::black_box(sealed_cookie.clone()));
            let plain = jar.private(&jar_key).get("session").unwrap();
            serde_json::from_str::<JsonClaims>(plain.value()).unwrap()
        })
    });
    g.finish();
}

async fn with_session(session: Session<Data>) -> String {
    session.data().role.clone()
}

async fn without_session() -> String {
    "admin".to_owned()
}

fn tower_path(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let engine = engine();
    let issued = rt
        .block_on(engine.issue("alice@example.com", data(), None))
        .unwrap();
    let cookie = format!("session={}", issued.token);
    let layered: Router = Router::new()
        .route("/me", get(with_session))
        .layer(SessionLayer::new(engine, LayerOptions::default()));
    let bare: Router = Router::new().route("/me", get(without_session));
    let peer = SocketAddr::from(([127, 0, 0, 1], 40000));
    let request = move || {
        let mut req = Request::get("/me")
            .header("cookie", cookie.as_str())
            .body(Body::empty())
            .unwrap();
        req.extensions_mut().insert(ConnectInfo(peer));
        req
    };
    // Sanity: the layered route really sees the session.
    let resp = rt.block_on(layered.clone().oneshot(request())).unwrap();
    assert_eq!(resp.status(), 200);

    let mut g = c.benchmark_group("tower");
    g.measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(50);
    g.bench_function("with_layer/typical", |b| {
        b.to_async(&rt)
            .iter(|| async { layered.clone().oneshot(request()).await.unwrap() })
    });
    g.bench_function("without_layer/typical", |b| {
        b.to_async(&rt)
            .iter(|| async { bare.clone().oneshot(request()).await.unwrap() })
    });
    g.finish();
}

criterion_group!(benches, peers, tower_path);
criterion_main!(benches);
