//! Redis over TLS (`rediss://`), against a `redis-server` that speaks only TLS with a CA made by
//! the test: two nodes share revocations; mutual TLS; a certificate that does not verify is an
//! error that says so; the `revoke` command takes the same flags.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use sealed_sessions::redis_topology::RedisTls;
use sealed_sessions::revocation::{RedisConfig, RedisRevocations, RevocationBackend, SyncPhase};
use support::bin::{cmd, run, text};
use support::redis::{Certs, TlsRedis, eventually, is_revoked, propagates, quick};

fn day() -> Duration {
    Duration::from_secs(86_400)
}

fn tls_config(server: &TlsRedis, tls: RedisTls) -> RedisConfig {
    quick(RedisConfig::new(server.url(), day()).with_tls(tls))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_revocations_over_tls_with_a_private_ca() {
    let certs = Certs::make();
    let server = TlsRedis::start(&certs, "optional");
    let tls = RedisTls::new().with_ca_pem(certs.pem("ca.pem"));
    let a = RedisRevocations::connect(tls_config(&server, tls.clone()))
        .await
        .unwrap();
    let b = RedisRevocations::connect(tls_config(&server, tls))
        .await
        .unwrap();
    assert!(a.ready() && b.ready(), "{} / {}", a.phase(), b.phase());
    propagates(&a, &b).await;
    propagates(&b, &a).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_presents_the_client_certificate() {
    let certs = Certs::make();
    let server = TlsRedis::start(&certs, "yes");
    let with_id = RedisTls::new()
        .with_ca_pem(certs.pem("ca.pem"))
        .with_client_identity(certs.pem("client.pem"), certs.pem("client.key"));
    let a = RedisRevocations::connect(tls_config(&server, with_id.clone()))
        .await
        .unwrap();
    let b = RedisRevocations::connect(tls_config(&server, with_id))
        .await
        .unwrap();
    assert!(a.ready(), "{}", a.phase());
    propagates(&a, &b).await;
    // Without a client certificate the server refuses the handshake.
    let mut no_id = tls_config(&server, RedisTls::new().with_ca_pem(certs.pem("ca.pem")));
    no_id.startup_wait = Duration::from_millis(500);
    let c = RedisRevocations::connect(no_id).await.unwrap();
    assert!(!c.ready());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_that_does_not_verify_is_an_error_that_says_so() {
    let certs = Certs::make();
    let server = TlsRedis::start(&certs, "optional");
    // Trusting an unrelated CA: the handshake must fail, and say why.
    let mut config = tls_config(
        &server,
        RedisTls::new().with_ca_pem(certs.pem("other-ca.pem")),
    );
    config.startup_wait = Duration::from_millis(300);
    let node = RedisRevocations::connect(config).await.unwrap();
    eventually("the phase explains the certificate", Duration::from_secs(5), || {
        matches!(node.phase(), SyncPhase::Unreachable(ref e) if e.contains("certificate did not verify"))
    })
    .await;
    assert!(!node.ready());
    let sid = support::redis::new_sid();
    let now = support::redis::now();
    let err = node
        .revoke_session(sid, now.saturating_add(day()), now)
        .await
        .unwrap_err();
    // The cause is the error's source: shown with `{:#}`, as the CLI prints errors.
    let shown = format!("{:#}", anyhow::Error::from(err));
    assert!(shown.contains("certificate did not verify"), "{shown}");
    // The system roots do not know the test CA either: no silent success, no plain text.
    let mut config = tls_config(&server, RedisTls::new());
    config.startup_wait = Duration::from_millis(300);
    let node = RedisRevocations::connect(config).await.unwrap();
    eventually("system roots reject the test CA", Duration::from_secs(5), || {
        matches!(node.phase(), SyncPhase::Unreachable(ref e) if e.contains("certificate did not verify"))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_revoke_command_speaks_tls_with_the_ca_and_client_certificate_flags() {
    let certs = Certs::make();
    let server = TlsRedis::start(&certs, "yes");
    let tls = RedisTls::new()
        .with_ca_pem(certs.pem("ca.pem"))
        .with_client_identity(certs.pem("client.pem"), certs.pem("client.key"));
    let node = RedisRevocations::connect(tls_config(&server, tls))
        .await
        .unwrap();
    let sid = support::redis::new_sid();
    let path = |n: &str| certs.path(n).display().to_string();
    let out = run(cmd().args([
        "revoke",
        "--redis",
        &server.url(),
        "--redis-prefix",
        "topo",
        "--redis-ca",
        &path("ca.pem"),
        "--redis-client-cert",
        &path("client.pem"),
        "--redis-client-key",
        &path("client.key"),
        "--session",
        &sid.to_string(),
    ]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    eventually(
        "the node enforces the command's revocation",
        Duration::from_secs(5),
        || is_revoked(&node, &sid),
    )
    .await;
    // A wrong CA: the command fails and says the certificate did not verify.
    let out = run(cmd().args([
        "revoke",
        "--redis",
        &server.url(),
        "--redis-ca",
        &path("other-ca.pem"),
        "--redis-client-cert",
        &path("client.pem"),
        "--redis-client-key",
        &path("client.key"),
        "--session",
        &sid.to_string(),
        "--timeout",
        "1s",
    ]));
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("certificate did not verify"),
        "{}",
        text(&out.stderr)
    );
}
