//! Adversarial limits: what floods, oversized requests, slow clients and curious log readers
//! get. The revocation bound runs on the library with an injected clock; the rest spawns the
//! `sealed-sessions` binary on 127.0.0.1:0 and talks raw HTTP/1.1 to it.
#![allow(clippy::unwrap_used, missing_docs)]

mod support;

use std::collections::VecDeque;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sealed_sessions::clock::{ManualClock, UnixMillis};
use sealed_sessions::revocation::{RevocationBackend, Revoked};
use sealed_sessions::{EngineConfig, Key, KeyId, KeyRing, MemoryRevocations, SessionEngine};
use serde_json::json;
use support::bin::{cmd, hash_password, keygen, run_with_stdin, users_file};
use support::http::{Conn, Resp};
use support::server::Server;

const HOUR: Duration = Duration::from_secs(3600);

// ------------------------------------------------------------------ revocation list bound

/// 48 simulated hours of logouts at a steady rate, half of fresh sessions and half of sessions
/// about to expire: the list never holds more than the logouts of one absolute timeout (24 h),
/// plus those expired within one purge interval and not swept yet. Logouts-everywhere of
/// distinct users are bounded the same way. Every revocation still in force keeps working.
#[tokio::test]
async fn logout_flood_keeps_the_revocation_list_within_one_absolute_timeout_of_revocations() {
    const PER_HOUR: usize = 40;
    const BUMPS_PER_HOUR: usize = 10;
    const HOURS: usize = 48;
    let purge_every = Duration::from_secs(60);
    let clock = ManualClock::new(UnixMillis(1_767_225_600_000));
    let list = Arc::new(MemoryRevocations::with_purge_interval(purge_every));
    let config = EngineConfig::builder()
        .absolute_timeout(24 * HOUR)
        .build()
        .unwrap();
    let keys = KeyRing::single(KeyId::new("k1").unwrap(), Key::generate().unwrap());
    let engine: SessionEngine<()> =
        SessionEngine::with_parts(config, keys, list.clone(), Arc::new(clock.clone()));

    // An entry lives until its token's absolute expiry, at most 24 h after the logout; the lazy
    // sweep may leave it for one purge interval more, and expiry is kept in whole seconds. So
    // the list holds at most the logouts of a window of 24 h + 61 s.
    let step = HOUR / PER_HOUR as u32;
    let bump_step = HOUR / BUMPS_PER_HOUR as u32;
    let in_window = |every: Duration| {
        ((24 * HOUR + purge_every + Duration::from_secs(1)).as_secs() / every.as_secs()) as usize
            + 1
    };
    let session_bound = in_window(step);
    let user_bound = in_window(bump_step);
    assert!(session_bound <= 24 * PER_HOUR + 1, "{session_bound}");

    let mut unrevoked = VecDeque::new();
    let mut revoked = Vec::new();
    let (mut most_sessions, mut most_users, mut logouts) = (0, 0, 0);
    for hour in 0..HOURS {
        for i in 0..PER_HOUR {
            clock.advance(step);
            let now = engine.now();
            // Two new sessions, one logout: alternately the newest session and the oldest one
            // still unexpired, so revocations land at every age (the pool grows, so after the
            // first day the oldest are about to expire).
            for n in 0..2 {
                let issued = engine
                    .issue(format!("user{i}-{n}"), (), None)
                    .await
                    .unwrap();
                unrevoked.push_back(issued.session);
            }
            let victim = if i % 2 == 0 {
                unrevoked.pop_back()
            } else {
                while unrevoked
                    .front()
                    .is_some_and(|s| s.claims().expires_at <= now)
                {
                    unrevoked.pop_front();
                }
                unrevoked.pop_front()
            };
            let victim = victim.unwrap();
            engine.logout(&victim).await.unwrap();
            logouts += 1;
            revoked.push((victim.id(), victim.claims().expires_at));
            if i % (PER_HOUR / BUMPS_PER_HOUR) == 0 {
                // Logout everywhere of a user never seen before: one more user entry.
                engine
                    .logout_everywhere(&format!("flood-{hour}-{i}"))
                    .await
                    .unwrap();
            }
            let stats = list.stats();
            most_sessions = most_sessions.max(stats.revoked_sessions);
            most_users = most_users.max(stats.user_versions);
            assert!(
                stats.revoked_sessions <= session_bound,
                "hour {hour}: {} revoked ids held, bound {session_bound}",
                stats.revoked_sessions
            );
            assert!(
                stats.user_versions <= user_bound,
                "hour {hour}: {} user versions held, bound {user_bound}",
                stats.user_versions
            );
        }
        // An explicit purge leaves exactly what is in force.
        list.purge_expired(engine.now());
        assert!(list.stats().revoked_sessions <= 24 * PER_HOUR + 1);
    }
    let now = engine.now();
    let stats = list.stats();
    println!(
        "{logouts} logouts over {HOURS} h; most revoked ids held at once: {most_sessions} \
         (bound {session_bound}); most user versions: {most_users} (bound {user_bound}); \
         ~{} bytes per entry",
        stats.approx_bytes / (stats.revoked_sessions + stats.user_versions).max(1)
    );
    assert!(
        logouts >= 2 * 24 * PER_HOUR,
        "the flood must outlast two windows"
    );
    // Expiry, not forgetting, keeps the list small: every revocation in force still holds.
    let mut in_force = 0;
    for (sid, expires_at) in revoked {
        if expires_at > now {
            in_force += 1;
            assert_eq!(
                list.check(&sid, "any", u64::MAX, now),
                Err(Revoked::Session)
            );
        }
    }
    assert!(in_force >= 12 * PER_HOUR, "{in_force}");
}

// ------------------------------------------------------------------ the binary

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A key directory and a users file with `carol` (admin) whose password is `password`.
fn setup(dir: &Path, password: &str) -> (std::path::PathBuf, std::path::PathBuf, String) {
    let keys = dir.join("keys");
    keygen(&keys);
    let hash = hash_password(password);
    let users = users_file(dir, &[("carol", "admin", &hash)]);
    (keys, users, hash)
}

fn server(keys: &Path, users: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
    Server::builder()
        .keys(keys)
        .arg("--users")
        .arg(users)
        .args(extra)
        .envs(env)
        .start()
}

fn post_json(s: &Server, path: &str, cookie: Option<&str>, body: serde_json::Value) -> Resp {
    let body = body.to_string();
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(c) = cookie {
        headers.push(("Cookie", c));
    }
    s.request("POST", path, &headers, body.as_bytes())
}

fn assert_healthy(s: &mut Server) {
    assert!(s.is_running(), "server died");
    let r = s.request("GET", "/healthz", &[], b"");
    assert_eq!(r.status, 200, "{}", text(&r.body));
}

#[test]
fn oversized_bodies_get_413_and_the_server_stays_up() {
    let tmp = tempfile::tempdir().unwrap();
    let (keys, users, _) = setup(tmp.path(), "carol-password");
    let mut s = server(&keys, &users, &["--max-body-bytes", "1KiB"], &[]);
    let ct = [("Content-Type", "application/json")];

    // Within the limit: parsed (and refused as the wrong shape).
    let small = format!(
        "{{\"username\":\"carol\",\"password\":\"{}\"}}",
        "x".repeat(900)
    );
    let r = s.request("POST", "/login", &ct, small.as_bytes());
    assert_eq!(r.status, 401, "{}", text(&r.body));

    // Over the limit, declared in Content-Length: refused before the body is read.
    let big = format!(
        "{{\"username\":\"carol\",\"password\":\"{}\"}}",
        "x".repeat(2000)
    );
    let r = s.request("POST", "/login", &ct, big.as_bytes());
    assert_eq!(r.status, 413, "{}", text(&r.body));

    // Over the limit, chunked (no length up front): refused once the limit is passed.
    let mut conn = TcpStream::connect(s.addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut req = format!(
        "POST /login HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        s.addr
    )
    .into_bytes();
    for _ in 0..8 {
        req.extend_from_slice(format!("200\r\n{}\r\n", "y".repeat(0x200)).as_bytes());
    }
    req.extend_from_slice(b"0\r\n\r\n");
    // The server may answer and close before reading everything: a failed write is fine.
    let _ = conn.write_all(&req);
    let mut resp = Vec::new();
    let _ = conn.read_to_end(&mut resp);
    let resp = text(&resp);
    assert!(resp.starts_with("HTTP/1.1 413"), "{resp}");

    assert_healthy(&mut s);
}

#[test]
fn huge_or_too_many_headers_are_refused_and_the_server_stays_up() {
    let tmp = tempfile::tempdir().unwrap();
    let (keys, users, _) = setup(tmp.path(), "carol-password");
    let mut s = server(&keys, &users, &[], &[]);

    let refused = |head: Vec<u8>| {
        let mut conn = TcpStream::connect(s.addr).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        // The server answers (or resets) as soon as its header buffer is full.
        let _ = conn.write_all(&head);
        let mut resp = Vec::new();
        let _ = conn.read_to_end(&mut resp);
        let resp = text(&resp);
        assert!(
            resp.is_empty() || resp.starts_with("HTTP/1.1 431"),
            "{}",
            &resp[..resp.len().min(200)]
        );
        resp
    };

    // One 1 MiB cookie header: past hyper's ~400 KiB read buffer.
    let mut head = b"GET /me HTTP/1.1\r\nHost: x\r\nCookie: __Host-session=".to_vec();
    head.extend(std::iter::repeat_n(b'a', 1 << 20));
    head.extend_from_slice(b"\r\n\r\n");
    let huge = refused(head);

    // 200 small headers: past hyper's limit of 100.
    let mut head = b"GET /me HTTP/1.1\r\nHost: x\r\n".to_vec();
    for i in 0..200 {
        head.extend_from_slice(format!("X-Filler-{i}: 1\r\n").as_bytes());
    }
    head.extend_from_slice(b"\r\n");
    let many = refused(head);
    println!("huge header: {:?}", huge.lines().next());
    println!("many headers: {:?}", many.lines().next());

    assert_healthy(&mut s);
}

#[test]
fn a_slow_header_client_is_cut_off_after_the_header_read_timeout() {
    let tmp = tempfile::tempdir().unwrap();
    let (keys, users, _) = setup(tmp.path(), "carol-password");
    let mut s = server(&keys, &users, &["--header-read-timeout", "1s"], &[]);
    let mut conn = TcpStream::connect(s.addr).unwrap();
    let started = Instant::now();
    conn.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .unwrap();
    // One byte every 200 ms, as a slowloris client sends: trickling must not extend the
    // deadline.
    let closed_after = loop {
        let elapsed = started.elapsed();
        assert!(elapsed < Duration::from_secs(10), "connection still open");
        if conn.write_all(b"a").is_err() {
            break elapsed;
        }
        let mut buf = [0u8; 512];
        match conn.read(&mut buf) {
            Ok(0) => break started.elapsed(),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break started.elapsed(),
            // A 408 before the close is fine; keep reading until EOF.
            Ok(_) | Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    println!("slow client closed after {closed_after:?}");
    assert!(
        closed_after >= Duration::from_millis(800),
        "closed too early: {closed_after:?}"
    );
    assert!(
        closed_after <= Duration::from_secs(4),
        "closed too late: {closed_after:?}"
    );
    assert_healthy(&mut s);
}

/// Refused with a message naming the file, the fix and the override; accepted with the
/// override, with a warning.
#[cfg(unix)]
#[test]
fn key_files_readable_by_others_are_refused_unless_explicitly_allowed() {
    use std::os::unix::fs::PermissionsExt as _;
    let tmp = tempfile::tempdir().unwrap();
    let (keys, users, _) = setup(tmp.path(), "carol-password");
    let key_file = keys.join("k1.key");
    let files = std::fs::read_dir(&keys).unwrap().count();
    for mode in [0o640, 0o604] {
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(mode)).unwrap();
        let out = run_with_stdin(
            cmd()
                .args(["serve", "--listen", "127.0.0.1:0", "--keys"])
                .arg(&keys)
                .arg("--users")
                .arg(&users),
            b"",
        );
        assert!(!out.status.success());
        let err = text(&out.stderr);
        for part in [
            key_file.to_str().unwrap(),
            "group or others",
            "chmod 600",
            "--danger-allow-loose-key-permissions",
        ] {
            assert!(err.contains(part), "{mode:o}: {part}: {err}");
        }
        // Nothing was generated in place of the refused key.
        assert_eq!(std::fs::read_dir(&keys).unwrap().count(), files);
    }
    let s = server(
        &keys,
        &users,
        &["--danger-allow-loose-key-permissions"],
        &[],
    );
    assert_eq!(s.request("GET", "/healthz", &[], b"").status, 200);
    let err = s.stop().logs;
    assert!(err.contains("danger-allow-loose-key-permissions"), "{err}");
}

/// A whole session lifecycle with every log level on and JSON logs: no token, password, key or
/// password hash appears in anything the server writes.
#[test]
fn secrets_never_reach_the_logs_even_at_trace_level() {
    let tmp = tempfile::tempdir().unwrap();
    let old_pw = "old-pw-Q7xK2mZ9vB";
    let new_pw = "new-pw-Hc4Tn8Lw1R";
    let wrong_pw = "wrong-pw-Zt81Pq5Y";
    let (keys, users, hash) = setup(tmp.path(), old_pw);
    let key_text = std::fs::read_to_string(keys.join("k1.key"))
        .unwrap()
        .trim()
        .to_owned();
    let s = server(
        &keys,
        &users,
        &["--log-format", "json"],
        &[("RUST_LOG", "trace")],
    );
    let mut tokens = Vec::new();
    let r = post_json(
        &s,
        "/login",
        None,
        json!({"username": "carol", "password": wrong_pw}),
    );
    assert_eq!(r.status, 401);
    let r = post_json(
        &s,
        "/login",
        None,
        json!({"username": "carol", "password": old_pw}),
    );
    assert_eq!(r.status, 200, "{}", text(&r.body));
    let c1 = take_cookie(&r, &mut tokens);
    let r = s.request("GET", "/me", &[("Cookie", &c1)], b"");
    assert_eq!(r.status, 200, "{}", text(&r.body));
    // Two debug-level paths that hold a live cookie: a rejected value before the valid one, and
    // a cross-site request carrying the cookie.
    let planted = format!("__Host-session=planted-garbage; {c1}");
    let r = s.request("GET", "/me", &[("Cookie", &planted)], b"");
    assert_eq!(r.status, 200, "{}", text(&r.body));
    let r = s.request(
        "POST",
        "/logout",
        &[("Cookie", &c1), ("Sec-Fetch-Site", "cross-site")],
        b"",
    );
    assert_eq!(r.status, 403, "{}", text(&r.body));
    let r = post_json(&s, "/auth/step-up", Some(&c1), json!({"password": old_pw}));
    assert_eq!(r.status, 200, "{}", text(&r.body));
    let c2 = take_cookie(&r, &mut tokens);
    let r = post_json(
        &s,
        "/password",
        Some(&c2),
        json!({"current_password": old_pw, "new_password": new_pw}),
    );
    assert_eq!(r.status, 200, "{}", text(&r.body));
    let c3 = take_cookie(&r, &mut tokens);
    let r = post_json(&s, "/elevate", Some(&c3), json!({}));
    assert_eq!(r.status, 200, "{}", text(&r.body));
    let c4 = take_cookie(&r, &mut tokens);
    let r = post_json(&s, "/logout", Some(&c4), json!({}));
    assert_eq!(r.status, 200, "{}", text(&r.body));
    // The dead token is sent again: rejections are logged, the token is not.
    let r = s.request("GET", "/me", &[("Cookie", &c4)], b"");
    assert_eq!(r.json()["code"], "REVOKED");
    let r = post_json(
        &s,
        "/login",
        None,
        json!({"username": "carol", "password": new_pw}),
    );
    assert_eq!(r.status, 200, "{}", text(&r.body));
    let c5 = take_cookie(&r, &mut tokens);
    let r = post_json(&s, "/logout-everywhere", Some(&c5), json!({}));
    assert_eq!(r.status, 200, "{}", text(&r.body));
    let r = s.request("GET", "/me", &[("Cookie", &c5)], b"");
    assert_eq!(r.json()["code"], "REVOKED");

    let logs = s.stop().logs;
    if std::env::var_os("ABUSE_SHOW_LOGS").is_some() {
        println!("{logs}");
    }
    // The run was logged, in detail (debug events too), as JSON.
    assert!(logs.contains("\"level\":\"DEBUG\""));
    for event in [
        "login_failed",
        "logged_out",
        "logged_out_everywhere",
        "rejected",
        "a session cookie value before the valid one was rejected",
        "cross-origin request refused",
    ] {
        assert!(logs.contains(event), "no {event} event: {logs}");
    }
    for line in logs.lines().filter(|l| !l.is_empty()) {
        serde_json::from_str::<serde_json::Value>(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    }
    let mut secrets: Vec<(&str, String)> = vec![
        ("old password", old_pw.to_owned()),
        ("new password", new_pw.to_owned()),
        ("wrong password", wrong_pw.to_owned()),
        ("key file text", key_text.clone()),
        ("start of the key", key_text[..16].to_owned()),
        ("password hash", hash.clone()),
        // Also the hash made for the new password, which the test never sees.
        ("any argon2 PHC string", "$argon2".to_owned()),
    ];
    for t in &tokens {
        secrets.push(("cookie token", t.clone()));
        secrets.push((
            "part of a cookie token",
            t[t.len() / 2..t.len() / 2 + 24].to_owned(),
        ));
    }
    assert_eq!(tokens.len(), 5);
    for (what, secret) in secrets {
        assert!(
            !logs.contains(&secret),
            "{what} found in the logs: {secret}"
        );
    }
}

/// The server's audit events so far (JSON log lines on the `sealed_sessions::audit` target)
/// whose `event` field is `name`.
fn audit_events(s: &Server, name: &str) -> Vec<serde_json::Value> {
    s.logs()
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("{e}: {l}"))
        })
        .filter(|v| v["target"] == "sealed_sessions::audit" && v["fields"]["event"] == name)
        .collect()
}

/// Password guessing against one account, as the audit log shows it: each failure is a
/// `login_failed` event, the fifth within a minute completes a burst and raises one warn-level
/// `anomaly` event, and the attempt the per-username limit then refuses is a `throttled` event.
/// No password reaches the log.
#[test]
fn a_burst_of_failed_logins_raises_an_anomaly_and_the_refused_attempt_is_audited_as_throttled() {
    let tmp = tempfile::tempdir().unwrap();
    let right_pw = "right-pw-Fq3Lm8Rz2K";
    let (keys, users, _) = setup(tmp.path(), right_pw);
    let s = server(
        &keys,
        &users,
        &["--log-format", "json"],
        // Audit events only (and warnings from elsewhere), as an audit log would be routed.
        &[("RUST_LOG", "warn,sealed_sessions::audit=info")],
    );
    let wrong: Vec<String> = (0..5).map(|i| format!("wrong-pw-{i}-Vt6Qe1")).collect();
    for (i, pw) in wrong.iter().enumerate() {
        let r = post_json(
            &s,
            "/login",
            None,
            json!({"username": "carol", "password": pw}),
        );
        assert_eq!(r.code(), "INVALID_CREDENTIALS", "{r:?}");
        // The handler logs before it answers, so the log is complete here.
        assert_eq!(audit_events(&s, "login_failed").len(), i + 1);
        if i < 4 {
            assert!(
                audit_events(&s, "anomaly").is_empty(),
                "anomaly after {} failures",
                i + 1
            );
        }
    }
    for e in audit_events(&s, "login_failed") {
        assert_eq!(e["level"], "INFO", "{e}");
        assert_eq!(e["fields"]["user"], "carol", "{e}");
        assert_eq!(e["fields"]["ip"], "127.0.0.1", "{e}");
    }
    let anomalies = audit_events(&s, "anomaly");
    assert_eq!(anomalies.len(), 1, "{anomalies:?}");
    let a = &anomalies[0];
    assert_eq!(a["level"], "WARN", "{a}");
    assert_eq!(a["fields"]["kind"], "login_failed", "{a}");
    assert_eq!(a["fields"]["user"], "carol", "{a}");
    assert_eq!(a["fields"]["count"], 5, "{a}");
    assert_eq!(a["fields"]["window_secs"], 60, "{a}");

    // The sixth attempt, with the right password, is refused by the per-username limit.
    let r = post_json(
        &s,
        "/login",
        None,
        json!({"username": "carol", "password": right_pw}),
    );
    assert_eq!((r.status, r.code().as_str()), (429, "TOO_MANY_ATTEMPTS"));
    let throttled = audit_events(&s, "throttled");
    assert_eq!(throttled.len(), 1, "{throttled:?}");
    let t = &throttled[0];
    assert_eq!(t["level"], "INFO", "{t}");
    assert_eq!(t["fields"]["key"], "carol", "{t}");
    assert_eq!(t["fields"]["ip"], "127.0.0.1", "{t}");
    // A refused attempt is not a failed password check: no new failure, no second burst.
    assert_eq!(audit_events(&s, "login_failed").len(), 5);
    assert_eq!(audit_events(&s, "anomaly").len(), 1);

    let logs = s.stop().logs;
    for pw in wrong.iter().map(String::as_str).chain([right_pw]) {
        assert!(!logs.contains(pw), "password {pw} in the logs: {logs}");
    }
}

/// A password typed into the username field must not reach the log: failures (and the
/// burst, and the refused attempt) for a name that is no account log only a keyed hash of it,
/// the same hash each time so the attempts still correlate; a real account's failure logs its
/// name.
#[test]
fn failed_logins_for_unknown_names_log_a_keyed_hash_not_the_name() {
    let tmp = tempfile::tempdir().unwrap();
    let (keys, users, _) = setup(tmp.path(), "right-pw-Fq3Lm8Rz2K");
    let s = server(
        &keys,
        &users,
        &["--log-format", "json"],
        &[("RUST_LOG", "debug")],
    );
    let typed = "Tr0ub4dor&3-in-the-wrong-field";
    for _ in 0..5 {
        let r = post_json(
            &s,
            "/login",
            None,
            json!({"username": typed, "password": "x"}),
        );
        assert_eq!(r.code(), "INVALID_CREDENTIALS", "{r:?}");
    }
    let r = post_json(
        &s,
        "/login",
        None,
        json!({"username": typed, "password": "x"}),
    );
    assert_eq!(r.code(), "TOO_MANY_ATTEMPTS", "{r:?}");
    let r = post_json(
        &s,
        "/login",
        None,
        json!({"username": "carol", "password": "wrong-pw-Vt6Qe1"}),
    );
    assert_eq!(r.code(), "INVALID_CREDENTIALS", "{r:?}");

    let failed = audit_events(&s, "login_failed");
    assert_eq!(failed.len(), 6, "{failed:?}");
    let hash = failed[0]["fields"]["user_hash"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(hash.len(), 16, "{hash}");
    assert!(hash.bytes().all(|b| b.is_ascii_hexdigit()), "{hash}");
    for e in &failed[..5] {
        assert_eq!(e["fields"]["user_hash"], hash.as_str(), "{e}");
        assert!(e["fields"].get("user").is_none(), "{e}");
    }
    assert_eq!(failed[5]["fields"]["user"], "carol", "{}", failed[5]);
    assert!(
        failed[5]["fields"].get("user_hash").is_none(),
        "{}",
        failed[5]
    );
    let anomaly = audit_events(&s, "anomaly");
    assert_eq!(anomaly.len(), 1, "{anomaly:?}");
    assert_eq!(
        anomaly[0]["fields"]["user_hash"],
        hash.as_str(),
        "{}",
        anomaly[0]
    );
    let throttled = audit_events(&s, "throttled");
    assert_eq!(throttled.len(), 1, "{throttled:?}");
    assert_eq!(
        throttled[0]["fields"]["user_hash"],
        hash.as_str(),
        "{}",
        throttled[0]
    );
    assert!(
        throttled[0]["fields"].get("key").is_none(),
        "{}",
        throttled[0]
    );

    let logs = s.stop().logs;
    for secret in [typed, "Tr0ub4dor", "wrong-field", "wrong-pw-Vt6Qe1"] {
        assert!(!logs.contains(secret), "{secret} in the logs: {logs}");
    }
}

/// The live session cookie a response sets (`name=value`); its token is added to `tokens`.
fn take_cookie(r: &Resp, tokens: &mut Vec<String>) -> String {
    let c = r
        .set_cookies()
        .into_iter()
        .find(|c| !c.ends_with('='))
        .unwrap_or_else(|| panic!("no cookie: {r:?}"));
    tokens.push(c.split_once('=').unwrap().1.to_owned());
    c
}

/// `Debug` of what carries a live token — an issued session, the layer's pending cookie
/// change, the engine — never shows it (nor the key).
#[tokio::test]
async fn debug_output_never_shows_a_token_or_key() {
    use sealed_sessions::layer::CookieChange;
    let key = Key::generate().unwrap();
    let key_text = key.to_base64();
    let keys = KeyRing::single(KeyId::new("k1").unwrap(), key);
    let engine: SessionEngine<String> = SessionEngine::new(EngineConfig::default(), keys);
    let issued = engine
        .issue("alice", "data".to_owned(), None)
        .await
        .unwrap();
    let change = CookieChange::Set(engine.set_cookie(&issued));
    let session = engine.validate(&issued.token, None).unwrap();
    let shown = format!("{issued:?} {issued:#?} {change:?} {session:?} {engine:?}");
    assert!(shown.contains("alice"), "{shown}");
    assert!(!shown.contains(&issued.token), "{shown}");
    assert!(!shown.contains(&issued.token[..24]), "{shown}");
    assert!(!shown.contains(key_text.as_str()), "{shown}");
}

// ------------------------------------------------------------------ login flood

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// Times GET /me on one keep-alive connection, back to back, until at least `n` requests and
/// `min` have passed; every answer must be 200. Sorted.
fn time_me(s: &Server, cookie: &str, n: usize, min: Duration) -> Vec<Duration> {
    let mut conn = s.connect();
    let started = Instant::now();
    let mut times = Vec::new();
    while times.len() < n || started.elapsed() < min {
        let t = Instant::now();
        let r = conn.send("GET", "/me", &[("Cookie", cookie)], b"");
        times.push(t.elapsed());
        assert_eq!(r.status, 200, "{}", text(&r.body));
    }
    times.sort();
    times
}

/// How many logins the flood sends at once. A login waits at most 10 s for a password-check
/// slot before its 503 `BUSY`; at `--login-concurrency 1` argon2 gets through 15–60 checks a
/// second, so 1200 waiting at once are far more than one slot serves in 10 s.
const FLOOD_CONNECTIONS: u32 = 1200;

/// One flood login on its own connection: a wrong password for a user that does not exist,
/// from its own address (through a trusted proxy's `X-Forwarded-For`, one IPv6 /64 each, so
/// the throttle lets it reach the verifier's queue). Returns the answer's status and code;
/// panics unless it is 401 `INVALID_CREDENTIALS` or 503 `BUSY` with a JSON body.
fn flood_login(addr: std::net::SocketAddr, i: u32) -> (u16, String) {
    // Documentation prefix 2001:db8::/32.
    let ip = format!("2001:db8:{:x}:{:x}::1", i >> 16, i & 0xffff);
    let body = json!({"username": format!("flood-{i}"), "password": "wrong-password"}).to_string();
    let r = Conn::new(addr).send(
        "POST",
        "/login",
        &[
            ("Content-Type", "application/json"),
            ("X-Forwarded-For", &ip),
        ],
        body.as_bytes(),
    );
    assert_eq!(r.header("content-type"), Some("application/json"), "{r:?}");
    let code = r.code();
    assert!(
        (r.status, code.as_str()) == (401, "INVALID_CREDENTIALS")
            || (r.status, code.as_str()) == (503, "BUSY"),
        "login answered {r:?}"
    );
    (r.status, code)
}

/// A login flood fills the verifier's queue while GET /me is timed: `FLOOD_CONNECTIONS` logins
/// sent at once, each on its own connection and thread, more than the password-check slots can
/// serve within the 10 s a login may wait. Asserts that every login is answered 401 or 503
/// `BUSY` (with a JSON body), that at least one reached `BUSY`, that /me answers 200 throughout,
/// and that afterwards the server still serves /me, /healthz and a real login. Prints p50/p99
/// of /me without and during the flood (the README's numbers come from
/// `cargo test --release --test abuse login_flood -- --nocapture`).
/// `ABUSE_LOGIN_CONCURRENCY` sets `--login-concurrency` (default 1).
#[test]
fn login_flood_leaves_session_validation_working() {
    let tmp = tempfile::tempdir().unwrap();
    let (keys, users, _) = setup(tmp.path(), "carol-password");
    let concurrency = std::env::var("ABUSE_LOGIN_CONCURRENCY").unwrap_or_else(|_| "1".to_owned());
    let s = server(
        &keys,
        &users,
        &[
            "--trusted-proxies",
            "127.0.0.1",
            "--login-concurrency",
            &concurrency,
        ],
        &[],
    );
    let carol = json!({"username": "carol", "password": "carol-password"});
    let r = post_json(&s, "/login", None, carol.clone());
    assert_eq!(r.status, 200, "{}", text(&r.body));
    let cookie = r.set_cookies().remove(0);
    const N: usize = 200;
    const MIN: Duration = Duration::from_secs(2);
    time_me(&s, &cookie, 20, Duration::ZERO); // warm-up
    let quiet = time_me(&s, &cookie, N, MIN);

    let addr = s.addr;
    let flood_started = Instant::now();
    let flooders: Vec<_> = (0..FLOOD_CONNECTIONS)
        .map(|i| {
            std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || flood_login(addr, i))
                .unwrap()
        })
        .collect();
    let busy = time_me(&s, &cookie, N, MIN);
    let mut totals = std::collections::BTreeMap::<String, usize>::new();
    for f in flooders {
        let (status, code) = f.join().unwrap();
        *totals.entry(format!("{status} {code}")).or_default() += 1;
    }
    let flood_time = flood_started.elapsed();
    println!(
        "GET /me without flood: p50 {:?} p99 {:?}; during a login flood (--login-concurrency \
         {concurrency}, {FLOOD_CONNECTIONS} logins at once, answered {totals:?} within \
         {flood_time:?}): p50 {:?} p99 {:?}; {} and {} requests",
        percentile(&quiet, 0.5),
        percentile(&quiet, 0.99),
        percentile(&busy, 0.5),
        percentile(&busy, 0.99),
        quiet.len(),
        busy.len(),
    );
    assert!(
        totals.get("503 BUSY").is_some_and(|n| *n > 0),
        "the flood never reached the verifier's queue limit: {totals:?}"
    );
    // The server is still whole: sessions validate, and a real login gets a slot again.
    time_me(&s, &cookie, 20, Duration::ZERO);
    assert_eq!(s.request("GET", "/healthz", &[], b"").status, 200);
    let r = post_json(&s, "/login", None, carol);
    assert_eq!(r.status, 200, "{}", text(&r.body));
}
