//! The session lifecycle with an injected clock: timeouts, renewal, regeneration, logout,
//! logout everywhere, step-up, fingerprints, rotation and revocation expiry.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use sealed_sessions::FingerprintMode;
use sealed_sessions::clock::{ManualClock, UnixMillis};
use sealed_sessions::engine::{EngineError, Rejection};
use sealed_sessions::revocation::{RevocationBackend, Revoked, next_version};
use sealed_sessions::token::{SealError, TokenError};
use sealed_sessions::{
    CookieSettings, EngineConfig, Fingerprint, Key, KeyId, KeyRing, MemoryRevocations,
    SessionEngine,
};

const T0: UnixMillis = UnixMillis(1_767_225_600_000);
const MIN: Duration = Duration::from_secs(60);

struct Fixture {
    engine: SessionEngine<String>,
    clock: ManualClock,
    list: Arc<MemoryRevocations>,
}

fn key(id: &str, b: u8) -> (KeyId, Key) {
    (KeyId::new(id).unwrap(), Key::from_bytes([b; 32]))
}

fn fixture_with(config: EngineConfig, keys: KeyRing) -> Fixture {
    let clock = ManualClock::new(T0);
    let list = Arc::new(MemoryRevocations::new());
    let engine = SessionEngine::with_parts(config, keys, list.clone(), Arc::new(clock.clone()));
    Fixture {
        engine,
        clock,
        list,
    }
}

fn fixture_with_mode(mode: FingerprintMode) -> Fixture {
    let (id, k) = key("k1", 1);
    let config = EngineConfig::builder().fingerprint(mode).build().unwrap();
    fixture_with(config, KeyRing::single(id, k))
}

fn fixture() -> Fixture {
    let (id, k) = key("k1", 1);
    fixture_with(EngineConfig::default(), KeyRing::single(id, k))
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

#[test]
fn defaults_are_the_documented_production_values() {
    let c = EngineConfig::default();
    assert_eq!(c.idle_timeout(), 30 * MIN);
    assert_eq!(c.absolute_timeout(), 24 * 60 * MIN);
    assert_eq!(c.renew_after(), MIN);
    assert_eq!(c.step_up_window(), 5 * MIN);
    assert_eq!(c.cookie().name(), "__Host-session");
    assert!(c.cookie().secure());
    assert_eq!(c.fingerprint(), FingerprintMode::Off);
}

#[test]
fn issued_session_validates_with_its_claims() {
    let f = fixture();
    let issued = block_on(f.engine.issue("alice", "admin".into(), None)).unwrap();
    let s = f.engine.validate(&issued.token, None).unwrap();
    assert_eq!(s.user_id(), "alice");
    assert_eq!(s.data(), "admin");
    assert_eq!(s.claims().created_at, T0);
    assert_eq!(s.claims().expires_at, T0.saturating_add(24 * 60 * MIN));
    assert!(!s.renewal_due());
    assert_eq!(issued.max_age, 30 * MIN);
}

#[test]
fn every_login_gets_a_fresh_session_id() {
    let f = fixture();
    let a = block_on(f.engine.issue("alice", String::new(), None)).unwrap();
    let b = block_on(f.engine.issue("alice", String::new(), None)).unwrap();
    assert_ne!(a.session.id(), b.session.id());
}

#[test]
fn absolute_expiry_rejects_even_an_active_session() {
    let f = fixture();
    let mut issued = block_on(f.engine.issue("alice", String::new(), None)).unwrap();
    // Keep renewing every 20 minutes: never idle, but the absolute limit still applies.
    for _ in 0..(24 * 3 - 1) {
        f.clock.advance(20 * MIN);
        let s = f.engine.validate(&issued.token, None).unwrap();
        issued = f.engine.renew(&s).unwrap();
    }
    f.clock.advance(20 * MIN);
    assert_eq!(
        f.engine.validate(&issued.token, None).unwrap_err(),
        Rejection::Expired
    );
}

#[test]
fn idle_timeout_rejects_after_thirty_minutes_and_not_before() {
    let f = fixture();
    let issued = block_on(f.engine.issue("alice", String::new(), None)).unwrap();
    f.clock.advance(30 * MIN);
    assert!(f.engine.validate(&issued.token, None).is_ok());
    f.clock.advance(Duration::from_millis(1));
    assert_eq!(
        f.engine.validate(&issued.token, None).unwrap_err(),
        Rejection::IdleTimeout
    );
}

#[test]
fn renewal_is_due_only_after_renew_after_and_slides_the_idle_window() {
    let f = fixture();
    let issued = block_on(f.engine.issue("alice", String::new(), None)).unwrap();
    f.clock.advance(Duration::from_secs(59));
    assert!(
        !f.engine
            .validate(&issued.token, None)
            .unwrap()
            .renewal_due()
    );
    f.clock.advance(Duration::from_secs(1));
    let s = f.engine.validate(&issued.token, None).unwrap();
    assert!(s.renewal_due());
    let renewed = f.engine.renew(&s).unwrap();
    assert_eq!(renewed.session.id(), s.id(), "renewal keeps the session id");
    assert_eq!(renewed.session.claims().last_seen, f.engine.now());
    // 30 minutes after the renewal the old token is idle, the renewed one is not.
    f.clock.advance(30 * MIN);
    assert_eq!(
        f.engine.validate(&issued.token, None).unwrap_err(),
        Rejection::IdleTimeout
    );
    assert!(f.engine.validate(&renewed.token, None).is_ok());
}

#[test]
fn logout_revokes_that_session_only() {
    let f = fixture();
    let a = block_on(f.engine.issue("alice", String::new(), None)).unwrap();
    let b = block_on(f.engine.issue("alice", String::new(), None)).unwrap();
    block_on(f.engine.logout(&a.session)).unwrap();
    assert_eq!(
        f.engine.validate(&a.token, None).unwrap_err(),
        Rejection::Revoked(Revoked::Session)
    );
    assert!(f.engine.validate(&b.token, None).is_ok());
}

#[test]
fn replayed_cookie_after_logout_stays_revoked_after_renewal_attempts() {
    let f = fixture();
    let a = block_on(f.engine.issue("alice", String::new(), None)).unwrap();
    f.clock.advance(2 * MIN);
    let renewed = f
        .engine
        .renew(&f.engine.validate(&a.token, None).unwrap())
        .unwrap();
    block_on(f.engine.logout(&renewed.session)).unwrap();
    // Both the original and the renewed cookie carry the revoked id.
    for t in [&a.token, &renewed.token] {
        assert_eq!(
            f.engine.validate(t, None).unwrap_err(),
            Rejection::Revoked(Revoked::Session)
        );
    }
}

#[test]
fn logout_everywhere_kills_every_older_session_of_that_user_only() {
    let f = fixture();
    let a1 = block_on(f.engine.issue("alice", String::new(), None)).unwrap();
    let a2 = block_on(f.engine.issue("alice", String::new(), None)).unwrap();
    let b = block_on(f.engine.issue("bob", String::new(), None)).unwrap();
    f.clock.advance(Duration::from_millis(5));
    let v = block_on(f.engine.logout_everywhere("alice")).unwrap();
    assert!(v >= f.engine.now().0);
    for t in [&a1.token, &a2.token] {
        assert_eq!(
            f.engine.validate(t, None).unwrap_err(),
            Rejection::Revoked(Revoked::UserVersion)
        );
    }
    assert!(f.engine.validate(&b.token, None).is_ok());
    // A login after the bump carries the new version and is valid, even in the same ms.
    let a3 = block_on(f.engine.issue("alice", String::new(), None)).unwrap();
    assert_eq!(a3.session.claims().version, v);
    assert!(f.engine.validate(&a3.token, None).is_ok());
}

#[test]
fn regenerate_gives_a_new_id_carries_data_and_revokes_the_old_one() {
    let f = fixture();
    let a = block_on(f.engine.issue("alice", "user".into(), None)).unwrap();
    let s = f.engine.validate(&a.token, None).unwrap();
    let r = block_on(f.engine.regenerate(&s, None)).unwrap();
    assert_ne!(r.session.id(), s.id());
    assert_eq!(r.session.data(), "user");
    assert_eq!(r.session.claims().expires_at, s.claims().expires_at);
    assert_eq!(
        f.engine.validate(&a.token, None).unwrap_err(),
        Rejection::Revoked(Revoked::Session)
    );
    let elevated = block_on(f.engine.regenerate(&r.session, Some("admin".into()))).unwrap();
    assert_eq!(
        f.engine.validate(&elevated.token, None).unwrap().data(),
        "admin"
    );
}

#[test]
fn password_change_keeps_this_session_and_kills_the_others() {
    let f = fixture();
    let here = block_on(f.engine.issue("alice", String::new(), None)).unwrap();
    let other = block_on(f.engine.issue("alice", String::new(), None)).unwrap();
    f.clock.advance(Duration::from_millis(1));
    let s = f.engine.validate(&here.token, None).unwrap();
    let kept = block_on(f.engine.logout_other_sessions(&s)).unwrap();
    assert_ne!(kept.session.id(), s.id());
    assert!(f.engine.validate(&kept.token, None).is_ok());
    assert!(f.engine.validate(&here.token, None).is_err());
    assert!(f.engine.validate(&other.token, None).is_err());
}

#[test]
fn step_up_is_required_after_the_window_and_refreshes_auth_time() {
    let f = fixture();
    let a = block_on(f.engine.issue("alice", String::new(), None)).unwrap();
    let s = f.engine.validate(&a.token, None).unwrap();
    assert!(f.engine.require_fresh(&s, None).is_ok());
    f.clock.advance(5 * MIN + Duration::from_millis(1));
    let s = f.engine.validate(&a.token, None).unwrap();
    assert_eq!(
        f.engine.require_fresh(&s, None).unwrap_err(),
        Rejection::StepUpRequired
    );
    // A per-route window overrides the default.
    assert!(f.engine.require_fresh(&s, Some(10 * MIN)).is_ok());
    let stepped = block_on(f.engine.step_up(&s)).unwrap();
    assert_eq!(stepped.session.claims().auth_time, f.engine.now());
    let s2 = f.engine.validate(&stepped.token, None).unwrap();
    assert!(f.engine.require_fresh(&s2, None).is_ok());
}

#[test]
fn enforced_fingerprint_rejects_a_changed_client() {
    let (id, k) = key("k1", 1);
    let config = EngineConfig::builder()
        .fingerprint(FingerprintMode::Ua)
        .build()
        .unwrap();
    let f = fixture_with(config, KeyRing::single(id, k));
    let laptop = Fingerprint::from_parts(&[b"Firefox", b"Linux"]);
    let phone = Fingerprint::from_parts(&[b"Safari", b"iOS"]);
    let a = block_on(f.engine.issue("alice", String::new(), Some(laptop))).unwrap();
    assert!(f.engine.validate(&a.token, Some(&laptop)).is_ok());
    assert_eq!(
        f.engine.validate(&a.token, Some(&phone)).unwrap_err(),
        Rejection::FingerprintMismatch
    );
    assert_eq!(
        f.engine.validate(&a.token, None).unwrap_err(),
        Rejection::FingerprintMismatch
    );
}

#[test]
fn logged_fingerprint_accepts_but_marks_the_change() {
    let f = fixture_with_mode(FingerprintMode::Log);
    let laptop = Fingerprint::from_parts(&[b"Firefox"]);
    let phone = Fingerprint::from_parts(&[b"Safari"]);
    let a = block_on(f.engine.issue("alice", String::new(), Some(laptop))).unwrap();
    assert!(
        !f.engine
            .validate(&a.token, Some(&laptop))
            .unwrap()
            .fingerprint_changed()
    );
    assert!(
        f.engine
            .validate(&a.token, Some(&phone))
            .unwrap()
            .fingerprint_changed()
    );
}

#[test]
fn rotation_reseals_under_the_new_primary_and_retiring_a_key_invalidates_its_tokens() {
    let f = fixture();
    let old = block_on(f.engine.issue("alice", String::new(), None)).unwrap();
    // Step 1: k2 trusted but not primary — nothing changes for k1 tokens.
    let (k1, b1) = key("k1", 1);
    let (k2, b2) = key("k2", 2);
    f.engine
        .replace_keys(KeyRing::new((k1.clone(), b1), [(k2.clone(), b2)]).unwrap());
    assert!(!f.engine.validate(&old.token, None).unwrap().renewal_due());
    // Step 2: k2 primary — k1 tokens still open, and are due for re-sealing at once.
    let (k1, b1) = key("k1", 1);
    let (k2, b2) = key("k2", 2);
    f.engine
        .replace_keys(KeyRing::new((k2, b2), [(k1, b1)]).unwrap());
    let s = f.engine.validate(&old.token, None).unwrap();
    assert!(
        s.renewal_due(),
        "a token under a non-primary key is re-sealed"
    );
    let resealed = f.engine.renew(&s).unwrap();
    let header = sealed_sessions::token::UntrustedToken::parse(&resealed.token).unwrap();
    assert_eq!(header.key_id(), "k2");
    // Step 3: k1 removed — the re-sealed session lives on, the k1 token is invalid.
    let (k2, b2) = key("k2", 2);
    f.engine.replace_keys(KeyRing::single(k2, b2));
    assert!(f.engine.validate(&resealed.token, None).is_ok());
    assert_eq!(
        f.engine.validate(&old.token, None).unwrap_err(),
        Rejection::Invalid(TokenError::UnknownKey("k1".into()))
    );
}

#[test]
fn a_session_whose_set_cookie_would_pass_4096_bytes_is_refused_with_size_and_limit() {
    let f = fixture();
    let err = block_on(f.engine.issue("alice", "x".repeat(3000), None)).unwrap_err();
    match err {
        EngineError::Seal(SealError::TooLarge { size, limit }) => {
            assert_eq!(limit, 4096);
            assert!(size > 4096, "{size}");
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    // The largest accepted session's whole Set-Cookie fits.
    let mut n = 3000;
    let issued = loop {
        match block_on(f.engine.issue("alice", "x".repeat(n), None)) {
            Ok(i) => break i,
            Err(_) => n -= 1,
        }
    };
    let header = f.engine.set_cookie(&issued).to_string();
    assert!(header.len() <= 4096, "{}", header.len());
    assert!(
        header.len() > 4090,
        "the limit is used fully: {}",
        header.len()
    );
}

#[test]
fn a_token_for_another_cookie_name_is_invalid() {
    let (id, k) = key("k1", 1);
    let a = fixture_with(EngineConfig::default(), KeyRing::single(id, k));
    let (id, k) = key("k1", 1);
    let b = fixture_with(
        EngineConfig::builder()
            .cookie(CookieSettings::production().with_name("__Host-other"))
            .build()
            .unwrap(),
        KeyRing::single(id, k),
    );
    let t = block_on(a.engine.issue("alice", String::new(), None)).unwrap();
    assert_eq!(
        b.engine.validate(&t.token, None).unwrap_err(),
        Rejection::Invalid(TokenError::Unauthentic)
    );
}

#[test]
fn revoked_id_entries_expire_with_the_token_and_not_before() {
    let f = fixture();
    let a = block_on(f.engine.issue("alice", String::new(), None)).unwrap();
    block_on(f.engine.logout(&a.session)).unwrap();
    let until = a.session.claims().expires_at;
    assert_eq!(f.list.stats().revoked_sessions, 1);
    assert_eq!(f.list.purge_expired(until), 0, "kept through its expiry");
    assert_eq!(
        f.list
            .purge_expired(until.saturating_sub(Duration::from_secs(3600))),
        0
    );
    assert_eq!(
        f.list
            .check(&a.session.id(), "alice", 0, until.saturating_sub(MIN)),
        Err(Revoked::Session)
    );
    assert_eq!(
        f.list
            .purge_expired(until.saturating_add(Duration::from_secs(2))),
        1
    );
    assert_eq!(f.list.stats().revoked_sessions, 0);
}

#[test]
fn user_version_entries_expire_after_bump_plus_absolute_timeout_and_not_before() {
    let f = fixture();
    let a = block_on(f.engine.issue("alice", String::new(), None)).unwrap();
    f.clock.advance(MIN);
    block_on(f.engine.logout_everywhere("alice")).unwrap();
    let bump = f.engine.now();
    let until = bump.saturating_add(24 * 60 * MIN);
    assert_eq!(f.list.purge_expired(until), 0);
    assert_eq!(f.list.stats().user_versions, 1);
    // Just before that, the oldest possible token (issued before the bump) is still rejected.
    f.clock.set(
        a.session
            .claims()
            .expires_at
            .saturating_sub(Duration::from_millis(1)),
    );
    assert!(f.engine.validate(&a.token, None).is_err());
    assert_eq!(
        f.list
            .purge_expired(until.saturating_add(Duration::from_secs(2))),
        1
    );
    assert_eq!(f.list.stats().user_versions, 0);
}

#[test]
fn versions_stay_monotonic_when_the_store_loses_its_data() {
    let f = fixture();
    let a = block_on(f.engine.issue("alice", String::new(), None)).unwrap();
    f.clock.advance(MIN);
    let v1 = block_on(f.engine.logout_everywhere("alice")).unwrap();
    let b = block_on(f.engine.issue("alice", String::new(), None)).unwrap();
    // A fresh, empty list (the store came back empty): a new bump still beats every token.
    let empty = MemoryRevocations::new();
    f.clock.advance(Duration::from_millis(1));
    let v2 =
        empty.bump_user_version_now("alice", f.engine.now(), f.engine.now().saturating_add(MIN));
    assert!(v2 > v1);
    assert!(v2 > b.session.claims().version && v2 > a.session.claims().version);
    // Two bumps in the same millisecond still increase.
    assert_eq!(next_version(v2, UnixMillis(v2)), v2 + 1);
}

#[test]
fn renewal_needs_no_set_cookie_for_most_requests() {
    let f = fixture();
    let a = block_on(f.engine.issue("alice", String::new(), None)).unwrap();
    let due = (0..120)
        .filter(|_| {
            f.clock.advance(Duration::from_secs(1));
            f.engine.validate(&a.token, None).unwrap().renewal_due()
        })
        .count();
    // Seconds 60..=120 are due because the token itself was never renewed in this loop.
    assert_eq!(due, 61);
}

// ---------------------------------------------------------------------------------------------
// Races and untrusted claims (the attack review)

/// An engine on the same keys and revocation list, with its own clock (another node).
fn node_with_clock(f: &Fixture, config: EngineConfig, at: UnixMillis) -> SessionEngine<String> {
    let (id, k) = key("k1", 1);
    SessionEngine::with_parts(
        config,
        KeyRing::single(id, k),
        f.list.clone(),
        Arc::new(ManualClock::new(at)),
    )
}

#[test]
fn login_that_overlapped_a_password_change_is_revoked_by_it() {
    // The interleaving that resurrected sessions: a login's password check sees the old hash,
    // the password change completes, then the login seals its token. Reading the version
    // before the check (begin_login) puts the token below the change's version.
    let f = fixture();
    let here = block_on(f.engine.issue("alice", String::new(), None)).unwrap();
    f.clock.advance(Duration::from_millis(1));
    let s = f.engine.validate(&here.token, None).unwrap();
    // The overlapping login reads its version, then "checks the old password"...
    let ticket = block_on(f.engine.begin_login("alice")).unwrap();
    // ...while the change runs to completion.
    let stored = std::cell::Cell::new(false);
    let kept = block_on(f.engine.change_password(&s, async {
        stored.set(true);
        Ok::<(), ()>(())
    }))
    .unwrap();
    assert!(stored.get());
    f.clock.advance(Duration::from_millis(1));
    // The login now seals with the version it read before its check: dead on arrival.
    let late = f.engine.issue_ticket(ticket, String::new(), None).unwrap();
    assert_eq!(
        f.engine.validate(&late.token, None).unwrap_err(),
        Rejection::Revoked(Revoked::UserVersion)
    );
    assert!(f.engine.validate(&kept.token, None).is_ok());
    assert!(f.engine.validate(&here.token, None).is_err());
}

#[test]
fn login_that_checked_the_old_hash_between_the_two_raises_is_revoked() {
    // A login that read its version after the change's first raise but checked the password
    // before the new hash was stored: the second raise (after the store) kills it.
    let f = fixture();
    let here = block_on(f.engine.issue("alice", String::new(), None)).unwrap();
    f.clock.advance(Duration::from_millis(1));
    let s = f.engine.validate(&here.token, None).unwrap();
    let ticket = std::cell::RefCell::new(None);
    let kept = block_on(f.engine.change_password(&s, async {
        // Inside the store step: the first raise is done, the hash not yet replaced.
        *ticket.borrow_mut() = Some(f.engine.begin_login("alice").await.unwrap());
        Ok::<(), ()>(())
    }))
    .unwrap();
    let ticket = ticket.into_inner().unwrap();
    let late = f.engine.issue_ticket(ticket, String::new(), None).unwrap();
    assert_eq!(
        f.engine.validate(&late.token, None).unwrap_err(),
        Rejection::Revoked(Revoked::UserVersion)
    );
    assert!(f.engine.validate(&kept.token, None).is_ok());
}

#[test]
fn password_change_of_a_session_revoked_in_flight_stores_nothing() {
    let f = fixture();
    let a = block_on(f.engine.issue("alice", String::new(), None)).unwrap();
    f.clock.advance(Duration::from_millis(1));
    // Validated at request start...
    let s = f.engine.validate(&a.token, None).unwrap();
    // ...then the victim logs out everywhere while the body is held back.
    block_on(f.engine.logout_everywhere("alice")).unwrap();
    let stored = std::cell::Cell::new(false);
    let err = block_on(f.engine.change_password(&s, async {
        stored.set(true);
        Ok::<(), ()>(())
    }))
    .unwrap_err();
    assert!(
        matches!(
            err,
            sealed_sessions::PasswordChangeError::Engine(EngineError::Revoked(_))
        ),
        "{err:?}"
    );
    assert!(!stored.get(), "the new password must not be stored");
}

#[test]
fn mutations_of_a_session_revoked_in_flight_are_refused() {
    let f = fixture();
    let a = block_on(f.engine.issue("alice", "user".into(), None)).unwrap();
    let b = block_on(f.engine.issue("alice", "user".into(), None)).unwrap();
    f.clock.advance(Duration::from_millis(1));
    let sa = f.engine.validate(&a.token, None).unwrap();
    let sb = f.engine.validate(&b.token, None).unwrap();
    // Single logout of `a` and logout everywhere land after validation, before the commit.
    block_on(f.engine.logout(&sa)).unwrap();
    for err in [
        block_on(f.engine.regenerate(&sa, Some("admin".into()))).unwrap_err(),
        block_on(f.engine.step_up(&sa)).unwrap_err(),
        block_on(f.engine.logout_other_sessions(&sa)).unwrap_err(),
        f.engine.update(&sa, "x".into()).unwrap_err(),
    ] {
        assert!(
            matches!(err, EngineError::Revoked(Revoked::Session)),
            "{err:?}"
        );
    }
    block_on(f.engine.logout_everywhere("alice")).unwrap();
    for err in [
        block_on(f.engine.regenerate(&sb, Some("admin".into()))).unwrap_err(),
        block_on(f.engine.step_up(&sb)).unwrap_err(),
        block_on(f.engine.logout_other_sessions(&sb)).unwrap_err(),
    ] {
        assert!(
            matches!(err, EngineError::Revoked(Revoked::UserVersion)),
            "{err:?}"
        );
    }
}

#[test]
fn claims_from_a_clock_ahead_by_more_than_the_skew_are_invalid() {
    let f = fixture();
    let config = EngineConfig::default();
    assert_eq!(config.max_clock_skew(), 2 * MIN);
    // A node whose clock runs 10 minutes ahead seals a session.
    let ahead = node_with_clock(&f, config.clone(), T0.saturating_add(10 * MIN));
    let token = block_on(ahead.issue("alice", String::new(), None))
        .unwrap()
        .token;
    assert_eq!(
        f.engine.validate(&token, None).unwrap_err(),
        Rejection::Invalid(TokenError::FromTheFuture)
    );
    // Within the allowance it is accepted (clocks are never exactly equal).
    let slightly = node_with_clock(&f, config, T0.saturating_add(MIN));
    let token = block_on(slightly.issue("alice", String::new(), None))
        .unwrap()
        .token;
    assert!(f.engine.validate(&token, None).is_ok());
    // The allowance is configurable.
    let (id, k) = key("k1", 1);
    let strict = fixture_with(
        EngineConfig::builder()
            .max_clock_skew(Duration::from_secs(10))
            .build()
            .unwrap(),
        KeyRing::single(id, k),
    );
    assert_eq!(
        strict.engine.validate(&token, None).unwrap_err(),
        Rejection::Invalid(TokenError::FromTheFuture)
    );
}

#[test]
fn a_shorter_local_absolute_timeout_caps_tokens_sealed_with_a_longer_one() {
    let f = fixture();
    let long = EngineConfig::builder()
        .absolute_timeout(72 * 60 * MIN)
        .idle_timeout(72 * 60 * MIN)
        .build()
        .unwrap();
    let issuer = node_with_clock(&f, long, T0);
    let token = block_on(issuer.issue("alice", String::new(), None))
        .unwrap()
        .token;
    // This node runs a 48 h absolute timeout: 48 h after login the token has expired here,
    // although its sealed expiry (72 h) has not.
    let (id, k) = key("k1", 1);
    let short = fixture_with(
        EngineConfig::builder()
            .idle_timeout(48 * 60 * MIN)
            .absolute_timeout(48 * 60 * MIN)
            .build()
            .unwrap(),
        KeyRing::single(id, k),
    );
    short.clock.set(T0.saturating_add(47 * 60 * MIN));
    assert!(short.engine.validate(&token, None).is_ok());
    short.clock.set(T0.saturating_add(48 * 60 * MIN));
    assert_eq!(
        short.engine.validate(&token, None).unwrap_err(),
        Rejection::Expired
    );
}

#[test]
fn logged_fingerprint_change_is_adopted_at_the_next_reissue() {
    let f = fixture_with_mode(FingerprintMode::Log);
    let home = Fingerprint::from_parts(&[b"Firefox", b"198.51.100.0/24"]);
    let cafe = Fingerprint::from_parts(&[b"Firefox", b"203.0.113.0/24"]);
    let a = block_on(f.engine.issue("alice", String::new(), Some(home))).unwrap();
    let s = f.engine.validate(&a.token, Some(&cafe)).unwrap();
    assert!(s.fingerprint_changed());
    // The change makes the cookie due for re-issue at once, with the new fingerprint...
    assert!(s.renewal_due());
    let renewed = f.engine.renew_adopting(&s, Some(&cafe)).unwrap();
    // ...so the next request from the new network is not another anomaly.
    let s = f.engine.validate(&renewed.token, Some(&cafe)).unwrap();
    assert!(!s.fingerprint_changed());
    assert!(!s.renewal_due());
    // Under Enforce nothing is adopted (a mismatch never validates in the first place), and a
    // plain renew keeps the sealed fingerprint.
    let kept = f
        .engine
        .renew(&f.engine.validate(&a.token, Some(&cafe)).unwrap())
        .unwrap();
    assert!(
        f.engine
            .validate(&kept.token, Some(&cafe))
            .unwrap()
            .fingerprint_changed()
    );
}

#[test]
fn update_keeps_the_id_so_a_replayed_cookie_rolls_back_but_regenerate_does_not() {
    let f = fixture();
    let a = block_on(f.engine.issue("alice", "cart:3 items".into(), None)).unwrap();
    let s = f.engine.validate(&a.token, None).unwrap();
    let emptied = f.engine.update(&s, "cart:empty".into()).unwrap();
    assert_eq!(emptied.session.id(), s.id());
    // The documented limit of `update`: the older cookie still opens, with the older data.
    assert_eq!(
        f.engine.validate(&a.token, None).unwrap().data(),
        "cart:3 items"
    );
    // The safe variant for data that matters: regenerate revokes the previous cookie.
    let s = f.engine.validate(&emptied.token, None).unwrap();
    let promoted = block_on(f.engine.regenerate(&s, Some("role:admin".into()))).unwrap();
    assert_eq!(
        f.engine.validate(&emptied.token, None).unwrap_err(),
        Rejection::Revoked(Revoked::Session)
    );
    assert_eq!(
        f.engine.validate(&promoted.token, None).unwrap().data(),
        "role:admin"
    );
}

/// A memory list standing in for a replicated one: its `current_version` (a Redis round trip
/// in production) lets a logout of `victim` land while it is in flight, and `ready` says
/// whether the list was loaded.
struct Replicated {
    inner: MemoryRevocations,
    victim: parking_lot::Mutex<Option<(sealed_sessions::SessionId, UnixMillis)>>,
    ready: bool,
}

impl Replicated {
    fn new(ready: bool) -> Replicated {
        Replicated {
            inner: MemoryRevocations::new(),
            victim: parking_lot::Mutex::new(None),
            ready,
        }
    }
}

impl RevocationBackend for Replicated {
    fn check(
        &self,
        s: &sealed_sessions::SessionId,
        u: &str,
        v: u64,
        now: UnixMillis,
    ) -> Result<(), Revoked> {
        self.inner.check(s, u, v, now)
    }
    fn current_version<'a>(
        &'a self,
        u: &'a str,
    ) -> sealed_sessions::revocation::BoxFuture<
        'a,
        Result<u64, sealed_sessions::revocation::RevocationError>,
    > {
        Box::pin(async move {
            if let Some((sid, until)) = self.victim.lock().take() {
                self.inner.revoke_session_now(sid, until, T0);
            }
            self.inner.current_version(u).await
        })
    }
    fn revoke_session(
        &self,
        s: sealed_sessions::SessionId,
        until: UnixMillis,
        now: UnixMillis,
    ) -> sealed_sessions::revocation::BoxFuture<
        '_,
        Result<(), sealed_sessions::revocation::RevocationError>,
    > {
        self.inner.revoke_session(s, until, now)
    }
    fn bump_user_version<'a>(
        &'a self,
        u: &'a str,
        now: UnixMillis,
        until: UnixMillis,
    ) -> sealed_sessions::revocation::BoxFuture<
        'a,
        Result<u64, sealed_sessions::revocation::RevocationError>,
    > {
        self.inner.bump_user_version(u, now, until)
    }
    fn stats(&self) -> sealed_sessions::revocation::RevocationStats {
        self.inner.stats()
    }
    fn sync_status(&self) -> sealed_sessions::revocation::SyncStatus {
        self.inner.sync_status()
    }
    fn ready(&self) -> bool {
        self.ready
    }
}

#[test]
fn regenerate_is_refused_for_a_logout_that_lands_while_the_recheck_reads_the_store() {
    let list = Arc::new(Replicated::new(true));
    let (id, k) = key("k1", 1);
    let engine: SessionEngine<String> = SessionEngine::with_parts(
        EngineConfig::default(),
        KeyRing::single(id, k),
        list.clone(),
        Arc::new(ManualClock::new(T0)),
    );
    let issued = block_on(engine.issue("alice", "user".into(), None)).unwrap();
    let s = engine.validate(&issued.token, None).unwrap();
    *list.victim.lock() = Some((s.id(), s.claims().expires_at));
    let err = block_on(engine.regenerate(&s, None)).unwrap_err();
    assert!(
        matches!(err, EngineError::Revoked(Revoked::Session)),
        "{err:?}"
    );
}

#[test]
fn a_session_logged_out_while_its_new_password_is_stored_does_not_continue() {
    let f = fixture();
    let issued = block_on(f.engine.issue("alice", "user".into(), None)).unwrap();
    let s = f.engine.validate(&issued.token, None).unwrap();
    let (sid, until) = (s.id(), s.claims().expires_at);
    let list = f.list.clone();
    // While the users file is written, the user deletes this session from another device.
    let store = async move {
        list.revoke_session_now(sid, until, T0);
        Ok::<(), ()>(())
    };
    let err = block_on(f.engine.change_password(&s, store)).unwrap_err();
    assert!(
        matches!(
            err,
            sealed_sessions::PasswordChangeError::Engine(EngineError::Revoked(Revoked::Session))
        ),
        "{err:?}"
    );
}

#[test]
fn validation_fails_closed_while_the_revocation_list_is_not_loaded() {
    let (id, k) = key("k1", 1);
    let keys = KeyRing::single(id, k);
    let loaded: SessionEngine<String> = SessionEngine::new(EngineConfig::default(), keys.clone());
    let token = block_on(loaded.issue("alice", String::new(), None))
        .unwrap()
        .token;
    let loading: SessionEngine<String> = SessionEngine::with_parts(
        EngineConfig::default(),
        keys,
        Arc::new(Replicated::new(false)),
        Arc::new(sealed_sessions::clock::SystemClock),
    );
    let err = loading.validate(&token, None).unwrap_err();
    assert_eq!(err, Rejection::NotSynced);
    assert_eq!(err.code(), "REVOCATION_STALE");
    // A token that does not open is still INVALID: nothing is revealed before authentication.
    assert!(matches!(
        loading.validate("garbage", None).unwrap_err(),
        Rejection::Invalid(_)
    ));
}

/// A node that has not loaded its revocation list issues nothing: the cookie would be refused
/// on every request, and a login's version read from an incomplete list could be below the
/// user's real one (a login that a logout everywhere elsewhere should have outlived).
#[test]
fn no_session_is_issued_while_the_revocation_list_is_not_loaded() {
    let (id, k) = key("k1", 1);
    let loading: SessionEngine<String> = SessionEngine::with_parts(
        EngineConfig::default(),
        KeyRing::single(id, k),
        Arc::new(Replicated::new(false)),
        Arc::new(sealed_sessions::clock::SystemClock),
    );
    assert!(matches!(
        block_on(loading.begin_login("alice")),
        Err(EngineError::NotSynced)
    ));
    assert!(matches!(
        block_on(loading.issue("alice", String::new(), None)),
        Err(EngineError::NotSynced)
    ));
    assert!(matches!(
        loading.issue_anonymous(String::new(), None),
        Err(EngineError::NotSynced)
    ));
    let http = sealed_sessions::HttpError::from(EngineError::NotSynced);
    assert_eq!(
        (http.status().as_u16(), http.code()),
        (503, "REVOCATION_STALE")
    );
}

/// The README's shell line for a first key ("A key first") makes a directory the loader accepts:
/// base64 of 32 bytes, owner-only file and directory.
#[cfg(unix)]
#[test]
fn the_readme_key_command_makes_a_key_directory_the_loader_accepts() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let after = &readme[readme.find("A key first").expect("README: 'A key first'")..];
    let start = after.find("`(").unwrap() + 1;
    let end = start + after[start..].find(")`").unwrap() + 1;
    let command = after[start..end].replace('\n', " ");
    let dir = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(&command)
        .current_dir(dir.path())
        .status()
        .unwrap();
    assert!(status.success(), "{command}");
    let ring = KeyRing::load_dir(&dir.path().join("keys"), &Default::default()).unwrap();
    assert_eq!(ring.primary_id().as_str(), "k1");
}
