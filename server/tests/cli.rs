//! The `sealed-sessions` binary, run as an operator would: `hash-password`, `keygen`,
//! `keys list`, and `serve` over real TCP with SIGTERM and SIGINT.

#![allow(clippy::unwrap_used)]

mod support;

use std::ffi::OsStr;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use argon2::{Argon2, PasswordHash, PasswordVerifier as _};
use support::bin::{cmd, keys_list, run, run_with_stdin, text};
use support::server::{Server, Stopped};

fn hash_password_with_stdin(input: &[u8]) -> Output {
    run_with_stdin(cmd().arg("hash-password"), input)
}

/// The error output of a command that must have failed.
fn refused(out: &Output) -> String {
    assert!(!out.status.success(), "succeeded: {}", text(&out.stdout));
    text(&out.stderr)
}

/// A users file with one user, carol (admin), whose password is `pw`.
fn users_file(dir: &Path, pw: &str) -> PathBuf {
    let hash = support::bin::hash_password(pw);
    support::bin::users_file(dir, &[("carol", "admin", &hash)])
}

fn keygen(dir: &Path) {
    keygen_with(dir, &["--primary"]);
}

/// `keygen --keys dir` with `args`, which must succeed.
fn keygen_with(dir: &Path, args: &[&str]) -> Output {
    let out = run(cmd().arg("keygen").args(args).arg("--keys").arg(dir));
    assert!(out.status.success(), "{}", text(&out.stderr));
    out
}

#[cfg(unix)]
fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// One HTTP/1.1 GET over a fresh connection: (status, head, body).
fn http_get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_ascii_lowercase(), body.to_owned())
}

#[test]
fn hash_password_from_stdin_prints_a_verifiable_owasp_argon2id_hash() {
    let out = hash_password_with_stdin(b"correct horse \n");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let hash = text(&out.stdout).trim().to_owned();
    assert!(
        hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{hash}"
    );
    let parsed = PasswordHash::new(&hash).unwrap();
    // Only the line ending is stripped; the trailing space is part of the password.
    assert!(
        Argon2::default()
            .verify_password(b"correct horse ", &parsed)
            .is_ok()
    );
    assert!(
        Argon2::default()
            .verify_password(b"correct horse", &parsed)
            .is_err()
    );
}

#[test]
fn hash_password_refuses_an_empty_password() {
    for input in [&b"\n"[..], b"", b"\r\n"] {
        let out = hash_password_with_stdin(input);
        let err = refused(&out);
        assert!(out.stdout.is_empty());
        assert!(
            err.contains("password too short: 0 bytes, at least 8 needed"),
            "{err}"
        );
    }
}

#[test]
fn hash_password_refuses_passwords_outside_8_to_1024_bytes() {
    let seven = hash_password_with_stdin(b"1234567\n");
    let err = refused(&seven);
    assert!(seven.stdout.is_empty());
    assert!(
        err.contains("password too short: 7 bytes, at least 8 needed"),
        "{err}"
    );
    let long = hash_password_with_stdin(format!("{}\n", "x".repeat(1025)).as_bytes());
    let err = refused(&long);
    assert!(long.stdout.is_empty());
    assert!(
        err.contains("password too long: more than 1024 bytes"),
        "{err}"
    );
    // The bounds themselves are allowed (bytes, not characters: four 2-byte letters are 8).
    for ok in ["12345678".to_owned(), "éééé".to_owned(), "x".repeat(1024)] {
        let out = hash_password_with_stdin(format!("{ok}\n").as_bytes());
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
}

/// Every command that reads or writes the key directory takes it as `--keys`, and its help
/// shows no other name (`--dir` still parses, hidden, for old scripts).
#[test]
fn every_key_directory_command_takes_keys_and_shows_no_other_name() {
    for command in [&["serve"][..], &["keygen"], &["keys", "list"], &["inspect"]] {
        let out = run(cmd().args(command).arg("--help"));
        assert!(out.status.success(), "{command:?}: {}", text(&out.stderr));
        let help = text(&out.stdout);
        assert!(help.contains("--keys <DIR>"), "{command:?}:\n{help}");
        assert!(!help.contains("--dir"), "{command:?}:\n{help}");
        assert!(!help.contains("--key-dir"), "{command:?}:\n{help}");
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("keys");
    keygen_with(&dir, &["--primary", "--id", "k1"]);
    let out = run(cmd().args(["keygen", "--id", "k2", "--dir"]).arg(&dir));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(dir.join("k2.key").exists());
}

#[test]
fn serve_help_mentions_no_hidden_flag() {
    let out = run(cmd().args(["serve", "--help"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let help = text(&out.stdout);
    // --port-file is hidden (for tests and scripts): the help must not send readers to it.
    assert!(!help.contains("port-file"), "{help}");
    assert!(help.contains("--listen <ADDR>"), "{help}");
}

#[test]
fn keygen_writes_a_private_key_file_and_keys_list_shows_id_and_primary_but_no_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("keys");
    let out = keygen_with(&dir, &["--primary", "--id", "k-test1"]);
    let key_file = dir.join("k-test1.key");
    let key_text = std::fs::read_to_string(&key_file).unwrap();
    #[cfg(unix)]
    {
        assert_eq!(mode(&key_file), 0o600);
        assert_eq!(mode(&dir), 0o700);
    }
    assert!(!text(&out.stdout).contains(key_text.trim()));

    // A second, non-primary key.
    keygen_not_primary(&dir);

    let out = keys_list(&dir);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listing = text(&out.stdout);
    let line = listing
        .lines()
        .find(|l| l.starts_with("k-test1 "))
        .unwrap_or_else(|| panic!("{listing}"));
    assert!(line.contains(" * "), "{listing}");
    assert_eq!(listing.lines().count(), 3, "{listing}");
    assert_eq!(listing.matches(" * ").count(), 1, "{listing}");
    for f in std::fs::read_dir(&dir).unwrap() {
        let f = f.unwrap().path();
        if f.extension().is_some_and(|e| e == "key") {
            let secret = std::fs::read_to_string(&f).unwrap();
            assert!(!listing.contains(secret.trim()), "key bytes listed");
            assert!(!text(&out.stderr).contains(secret.trim()));
        }
    }
}

/// The AGE column of the `keys list` row for `id`, parsed back into a duration: the row is
/// `ID [*] AGE… MODE SOURCE`, and an age is one or more `<number><unit>` words.
fn listed_age(listing: &str, id: &str) -> Duration {
    let line = listing
        .lines()
        .find(|l| l.split_whitespace().next() == Some(id))
        .unwrap_or_else(|| panic!("no {id}: {listing}"));
    let age: Vec<&str> = line
        .split_whitespace()
        .skip(1)
        .skip_while(|w| *w == "*")
        .take_while(|w| {
            w.starts_with(|c: char| c.is_ascii_digit()) && w.ends_with(|c: char| c.is_alphabetic())
        })
        .collect();
    assert!(!age.is_empty(), "no age for {id}: {line}");
    humantime::parse_duration(&age.join(" ")).unwrap_or_else(|e| panic!("{e}: {line}"))
}

#[test]
fn keys_list_shows_each_key_files_age_from_its_modification_time() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("keys");
    keygen_with(&dir, &["--primary", "--id", "old"]);
    keygen_with(&dir, &["--id", "new"]);
    // The old key was last written 3 days and 2 hours ago.
    let set_back = Duration::from_secs(3 * 86_400 + 2 * 3600);
    let set_at = Instant::now();
    std::fs::File::options()
        .write(true)
        .open(dir.join("old.key"))
        .unwrap()
        .set_modified(std::time::SystemTime::now() - set_back)
        .unwrap();

    let out = keys_list(&dir);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listing = text(&out.stdout);
    // Whole seconds, so the listed age lies between the age set and that plus the time since.
    let slack = set_at.elapsed() + Duration::from_secs(1);
    let old = listed_age(&listing, "old");
    assert!(
        old >= set_back && old <= set_back + slack,
        "old key listed as {old:?}, set {set_back:?} ago: {listing}"
    );
    assert!(listing.contains("3days 2h"), "{listing}");
    // The key just made is listed as just made.
    let new = listed_age(&listing, "new");
    assert!(new <= slack + Duration::from_secs(60), "{new:?}: {listing}");
}

fn keygen_not_primary(dir: &Path) {
    let out = keygen_with(dir, &[]);
    assert!(text(&out.stdout).contains("not primary"));
}

#[test]
fn keygen_refuses_to_overwrite_an_existing_key() {
    let tmp = tempfile::tempdir().unwrap();
    let args = ["keygen", "--id", "k1", "--keys"];
    assert!(run(cmd().args(args).arg(tmp.path())).status.success());
    let err = refused(&run(cmd().args(args).arg(tmp.path())));
    assert!(err.contains("already exists"), "{err}");
}

#[test]
fn serve_production_with_an_empty_key_dir_refuses_with_a_clear_message() {
    let tmp = tempfile::tempdir().unwrap();
    let keys = tmp.path().join("keys");
    std::fs::create_dir(&keys).unwrap();
    let users = users_file(tmp.path(), "carol-password");
    let err = refused(&run(cmd()
        .args(["serve", "--production", "--listen", "127.0.0.1:0", "--keys"])
        .arg(&keys)
        .arg("--users")
        .arg(&users)));
    assert!(
        err.contains("refusing to start with --production") && err.contains("no session keys"),
        "{err}"
    );
    assert!(err.contains("sealed-sessions keygen --keys"), "{err}");
    assert_eq!(
        std::fs::read_dir(&keys).unwrap().count(),
        0,
        "a key was generated"
    );
}

#[test]
fn serve_production_without_a_users_file_refuses() {
    let tmp = tempfile::tempdir().unwrap();
    let keys = tmp.path().join("keys");
    keygen(&keys);
    let err = refused(&run(cmd()
        .args(["serve", "--production", "--listen", "127.0.0.1:0", "--keys"])
        .arg(&keys)));
    assert!(
        err.contains("refusing to start with --production") && err.contains("no --users file"),
        "{err}"
    );
}

#[test]
fn serve_production_reports_every_problem_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let keys = tmp.path().join("keys");
    let err = refused(&run(cmd()
        .args([
            "serve",
            "--production",
            "--insecure-dev-cookies",
            "--listen",
            "127.0.0.1:0",
            "--keys",
        ])
        .arg(&keys)));
    for part in [
        "no --users file",
        "--insecure-dev-cookies",
        "no session keys",
    ] {
        assert!(err.contains(part), "{part}: {err}");
    }
    assert!(!keys.exists(), "a key directory was created");
}

#[test]
fn bad_durations_are_refused_with_the_flag_and_an_example() {
    let out = run(cmd().args(["serve", "--idle-timeout", "nonsense"]));
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("--idle-timeout") && err.contains("nonsense") && err.contains("30m"),
        "{err}"
    );
}

#[test]
fn contradictory_timeouts_are_refused_naming_the_flags() {
    let err = refused(&run(cmd().args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--idle-timeout",
        "1m",
        "--renew-after",
        "2m",
    ])));
    assert!(
        err.contains("--renew-after (2m) must be shorter than --idle-timeout (1m)"),
        "{err}"
    );
}

#[test]
fn bad_trusted_proxies_are_refused_with_the_offending_item() {
    let out = run(cmd().args(["serve", "--trusted-proxies", "10.0.0.0/8,not-an-ip"]));
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("--trusted-proxies") && err.contains("\"not-an-ip\" is not a CIDR"),
        "{err}"
    );
}

#[test]
fn bad_redis_url_is_refused() {
    let out = run(cmd().args(["serve", "--redis", "http://cache:6379"]));
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("--redis") && err.contains("redis://"), "{err}");
    // The URL may hold a password: it is not echoed.
    let out = run(cmd().args(["serve", "--redis", "redis://user:hunter2@/0"]));
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("invalid --redis URL") && !err.contains("hunter2"),
        "{err}"
    );
}

/// `serve` on a free loopback port with the key directory `dir/keys` (generated there).
fn serve_in(dir: &Path) -> Server {
    Server::builder().keys(dir.join("keys")).start()
}

/// Stops a server with SIGTERM; returns its log once it has exited (zero).
fn stop(server: Server) -> String {
    let Stopped { status, logs } = server.stop();
    assert!(status.success(), "{status}: {logs}");
    logs
}

#[test]
fn serve_answers_healthz_and_the_page_then_exits_zero_on_sigterm() {
    let tmp = tempfile::tempdir().unwrap();
    let server = serve_in(tmp.path());
    let addr = server.addr;

    let (status, head, body) = http_get(addr, "/healthz");
    assert_eq!(status, 200, "{head}");
    assert!(head.contains("content-type: application/json"), "{head}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"status":"ok","revocation":{"backend":"memory","synced":true,"lag_ms":0}})
    );

    let (status, head, body) = http_get(addr, "/");
    assert_eq!(status, 200, "{head}");
    assert!(head.contains("content-type: text/html"), "{head}");
    assert!(
        head.contains("content-security-policy: default-src 'none'"),
        "{head}"
    );
    assert!(body.contains("id=\"login-button\""));

    let err = stop(server);
    // Development conveniences are announced.
    assert!(err.contains("generated one"), "{err}");
    assert!(err.contains("demo users"), "{err}");
    assert!(err.contains("SIGTERM"), "{err}");
    #[cfg(unix)]
    for f in std::fs::read_dir(tmp.path().join("keys")).unwrap() {
        let f = f.unwrap().path();
        if f.extension().is_some_and(|e| e == "key") {
            assert_eq!(mode(&f), 0o600);
        }
    }
}

#[test]
fn serve_exits_zero_on_sigint_after_stopping_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let server = serve_in(tmp.path());
    assert_eq!(http_get(server.addr, "/healthz").0, 200);

    // Ctrl-C in a terminal: SIGINT, not SIGTERM.
    let Stopped { status, logs: err } = server.interrupt();
    // Killed by the signal's default action, the process would have no exit code.
    assert_eq!(status.code(), Some(0), "{status}: {err}");
    // The interrupt is logged, connections drain, and the last line says it stopped.
    let lines: Vec<&str> = err.lines().collect();
    let interrupt = lines.iter().position(|l| l.contains("interrupt received"));
    let drained = lines
        .iter()
        .position(|l| l.contains("all connections closed"));
    assert!(
        interrupt.is_some() && interrupt < drained,
        "no interrupt, then drain: {err}"
    );
    assert!(
        lines
            .last()
            .is_some_and(|l| l.trim_end().ends_with("stopped")),
        "the last line is not the stop: {err}"
    );
    assert!(!err.contains("SIGTERM"), "{err}");
}

#[test]
fn serve_takes_keys_from_the_environment_over_the_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let keys = tmp.path().join("keys");
    let users = users_file(tmp.path(), "carol-password");
    // 32 zero bytes: fine for a test, never for a deployment.
    let env_keys = format!("envk:{}", "A".repeat(43) + "=");
    let server = Server::builder()
        .keys(&keys)
        .env("SEALED_SESSIONS_KEYS", env_keys)
        .env("SEALED_SESSIONS_LOG_FORMAT", "json")
        .arg("--production")
        .arg("--users")
        .arg(&users)
        .start();
    assert_eq!(http_get(server.addr, "/healthz").0, 200);
    assert!(!keys.exists(), "the key directory was touched");
    let err = stop(server);
    // JSON logs, one object per line.
    for line in err.lines().filter(|l| !l.is_empty()) {
        serde_json::from_str::<serde_json::Value>(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    }
    assert!(err.contains("SEALED_SESSIONS_KEYS"), "{err}");
}

#[test]
fn serve_production_refuses_a_cookie_name_without_the_host_prefix() {
    let tmp = tempfile::tempdir().unwrap();
    let keys = tmp.path().join("keys");
    keygen(&keys);
    let users = users_file(tmp.path(), "carol-password");
    let args = |name: &'static str| -> Vec<&OsStr> {
        vec![
            "--production".as_ref(),
            "--users".as_ref(),
            users.as_os_str(),
            "--cookie-name".as_ref(),
            name.as_ref(),
        ]
    };
    let err = refused(&run(cmd()
        .args(["serve", "--listen", "127.0.0.1:0", "--keys"])
        .arg(&keys)
        .args(args("sid"))));
    assert!(
        err.contains("refusing to start with --production")
            && err.contains("--cookie-name \"sid\"")
            && err.contains("__Host-"),
        "{err}"
    );

    let server = Server::builder().keys(&keys).args(args("__Host-x")).start();
    assert_eq!(http_get(server.addr, "/healthz").0, 200);
    stop(server);
}

#[cfg(unix)]
#[test]
fn serve_refuses_a_key_directory_others_can_write_to() {
    use std::os::unix::fs::PermissionsExt as _;
    let tmp = tempfile::tempdir().unwrap();
    let keys = tmp.path().join("keys");
    keygen(&keys);
    let chmod =
        |m: u32| std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(m)).unwrap();

    chmod(0o777);
    let err = refused(&run(cmd()
        .args(["serve", "--listen", "127.0.0.1:0", "--keys"])
        .arg(&keys)));
    assert!(
        err.contains(&format!("key directory {} has mode 0777", keys.display()))
            && err.contains(&format!("chmod go-w {}", keys.display()))
            && err.contains("--danger-allow-loose-key-permissions"),
        "{err}"
    );

    // The flag accepts it, saying so.
    let server = Server::builder()
        .keys(&keys)
        .arg("--danger-allow-loose-key-permissions")
        .start();
    assert_eq!(http_get(server.addr, "/healthz").0, 200);
    assert!(stop(server).contains("directory they can write to"));

    chmod(0o700);
    let server = Server::builder().keys(&keys).start();
    assert_eq!(http_get(server.addr, "/healthz").0, 200);
    stop(server);
}
