//! The operator commands run as an operator would: `inspect` on real server cookies, the same
//! clear error for each key-directory mistake from `inspect`, `keys list` and `serve`, and
//! `revoke` through a test-owned Redis shared with a running server.

#![allow(clippy::unwrap_used)]

mod support;

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use sealed_sessions::keys::{self, KEY_FILE_EXT};
use sealed_sessions::{EngineConfig, Key, KeyId, KeyRing, SessionEngine};
use sealed_sessions_server::key_files;
use support::bin::{cmd, run, run_with_stdin, text};
use support::http::{eventually, http, login, me, value};
use support::server::Server;

fn dev_server(work: &Path, name: &str, extra: &[&OsStr]) -> Server {
    Server::builder()
        .name(name)
        .keys(work.join(format!("keys-{name}")))
        .arg("--insecure-dev-cookies")
        .args(extra)
        .start()
}

fn inspect(keys: &Path, args: &[&str]) -> Command {
    let mut c = cmd();
    c.args(["inspect", "--keys"]).arg(keys).args(args);
    c
}

fn json(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn failed(out: &Output) -> String {
    assert!(!out.status.success(), "succeeded: {}", text(&out.stdout));
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    text(&out.stderr)
}

// ---------------------------------------------------------------------------------------------
// inspect
// ---------------------------------------------------------------------------------------------

#[test]
fn inspect_shows_a_server_cookie_from_the_argument_a_pair_or_a_pasted_cookie_header() {
    let tmp = tempfile::tempdir().unwrap();
    let server = dev_server(tmp.path(), "s", &[]);
    let keys = tmp.path().join("keys-s");
    let cookie = login(server.addr, "admin", "admin-password");
    let token = value(&cookie);
    let shown = me(server.addr, &cookie).json();

    let v = json(&run(&mut inspect(
        &keys,
        &["--cookie-name", "session", token],
    )));
    assert_eq!(v["user"], "admin");
    assert_eq!(v["session_id"], shown["session_id"]);
    assert_eq!(v["created_at"], shown["created_at"]);
    assert_eq!(v["expires_at"], shown["expires_at"]);
    assert_eq!(v["cookie_name"], "session");
    assert_eq!(v["key_id"], keys::list_dir(&keys).unwrap()[0].id.as_str());
    assert_eq!(
        v["data"],
        serde_json::json!({"role": "admin", "elevated": false})
    );
    assert_eq!(v["data_hex"], "0100");
    assert_eq!(v["data_owner"], "reference-server");
    assert!(v["fingerprint"].is_null());
    assert!(v["version"].is_u64());
    for field in ["auth_time", "last_seen"] {
        let t = v[field].as_str().unwrap();
        assert!(humantime::parse_rfc3339(t).is_ok(), "{field}: {t}");
    }

    // From standard input: a pair, or a whole Cookie header; the name comes with the value.
    for input in [
        format!("{cookie}\n"),
        format!("Cookie: theme=dark; {cookie}; lang=en\r\n"),
    ] {
        let out = run_with_stdin(&mut inspect(&keys, &["-"]), input.as_bytes());
        assert_eq!(json(&out), v, "{input}");
    }
}

/// A cookie of another application on the same library, sealed with `ring` under the default
/// cookie name: its data is `(tenant, 3)`.
fn app_cookie(ring: KeyRing) -> String {
    let engine: SessionEngine<(String, u8)> = SessionEngine::new(EngineConfig::default(), ring);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let issued = runtime
        .block_on(engine.issue("bob", ("tenant-9".to_owned(), 3), None))
        .unwrap();
    issued.token
}

#[test]
fn inspect_shows_another_applications_data_as_hex_and_says_it_is_the_applications() {
    let tmp = tempfile::tempdir().unwrap();
    let key = Key::generate().unwrap();
    let env = format!("app1:{}", key.to_base64().as_str());
    let token = app_cookie(KeyRing::single(KeyId::new("app1").unwrap(), key));
    let with_env = |args: &[&str]| {
        let mut c = inspect(&tmp.path().join("unused"), args);
        c.env(keys::ENV_VAR, &env);
        run(&mut c)
    };

    let out = with_env(&[&token]);
    let v = json(&out);
    assert_eq!(v["user"], "bob");
    assert_eq!(v["data_owner"], "application");
    assert!(v.get("data").is_none(), "{v}");
    // postcard: the string's length, its bytes, then the number.
    assert_eq!(v["data_hex"], "0874656e616e742d3903");
    assert!(
        text(&out.stderr).contains("the data is the application's"),
        "{}",
        text(&out.stderr)
    );

    // Asked to decode it as the server's: refused, saying whose it is.
    let err = failed(&with_env(&["--data", "server", &token]));
    assert!(
        err.contains("does not decode as the reference server's session data")
            && err.contains("--data app"),
        "{err}"
    );

    // --data app never decodes, not even a server cookie.
    let server = dev_server(tmp.path(), "s", &[]);
    let cookie = login(server.addr, "admin", "admin-password");
    let out = run(&mut inspect(
        &tmp.path().join("keys-s"),
        &["--data", "app", "--cookie-name", "session", value(&cookie)],
    ));
    let v = json(&out);
    assert_eq!(v["data_owner"], "application");
    assert!(v.get("data").is_none(), "{v}");
    assert_eq!(v["data_hex"], "0100");
}

#[test]
fn inspect_says_why_a_token_does_not_open_and_exits_nonzero() {
    let tmp = tempfile::tempdir().unwrap();
    let server = dev_server(tmp.path(), "s", &[]);
    let keys = tmp.path().join("keys-s");
    let cookie = login(server.addr, "alice", "alice-password");
    let token = value(&cookie);

    // The bare token under the default name `__Host-session`: the cookie name is bound in.
    let err = failed(&run(&mut inspect(&keys, &[token])));
    assert!(
        err.contains(
            "failed authentication: tampered, sealed under a different key with this id, or \
             for another cookie name (try --cookie-name)"
        ) && err.contains("--cookie-name session"),
        "{err}"
    );

    // Tampered: one character of the ciphertext changed.
    let mut t = token.to_owned();
    let i = t.len() - 30;
    let c = if &t[i..=i] == "A" { "B" } else { "A" };
    t.replace_range(i..=i, c);
    let err = failed(&run(&mut inspect(&keys, &["--cookie-name", "session", &t])));
    assert!(err.contains("failed authentication"), "{err}");

    // Another deployment's key directory: the id is unknown, and the ring's ids are listed.
    let other = tmp.path().join("other");
    key_files::write_key_file(
        &other,
        &KeyId::new("k9").unwrap(),
        &Key::generate().unwrap(),
        true,
    )
    .unwrap();
    let err = failed(&run(&mut inspect(
        &other,
        &["--cookie-name", "session", token],
    )));
    let kid = keys::list_dir(&keys).unwrap()[0].id.to_string();
    assert!(
        err.contains(&format!("unknown key id \"{kid}\"")) && err.contains("k9 (primary)"),
        "{err}"
    );

    for (input, want) in [
        ("not*base64", "bad encoding"),
        (&token[..20], "truncated"),
        ("AgJrMQ", "unknown token format version 2"),
        (&"A".repeat(5000), "5000 bytes"),
    ] {
        let err = failed(&run(&mut inspect(
            &keys,
            &["--cookie-name", "session", input],
        )));
        assert!(err.contains(want), "{want}: {err}");
    }
    let out = run_with_stdin(&mut inspect(&keys, &["-"]), b"Cookie: a=1; b=2\n");
    let err = failed(&out);
    assert!(
        err.contains("\"a\", \"b\"") && err.contains("--cookie-name"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------------
// hash-password
// ---------------------------------------------------------------------------------------------

/// One rule set: what `POST /password` refuses as a new password, `hash-password` refuses in
/// the same words, and what one accepts the other does.
#[test]
fn hash_password_and_post_password_refuse_the_same_passwords_in_the_same_words() {
    let tmp = tempfile::tempdir().unwrap();
    let server = dev_server(tmp.path(), "s", &[]);
    let cookie = login(server.addr, "alice", "alice-password");
    let change = |new: &str| {
        let body = serde_json::json!({
            "current_password": "alice-password",
            "new_password": new,
        })
        .to_string();
        http(server.addr, "POST", "/password", Some(&cookie), Some(&body))
    };
    let hash = |password: &str| {
        run_with_stdin(
            cmd().arg("hash-password"),
            format!("{password}\n").as_bytes(),
        )
    };
    for bad in ["", "1234567", &"x".repeat(1025)] {
        let r = change(bad);
        assert_eq!((r.status, r.code().as_str()), (400, "BAD_REQUEST"), "{r:?}");
        let said = r.json()["error"].as_str().unwrap().to_owned();
        let rule = said.strip_prefix("new ").unwrap_or(&said);
        assert!(rule.starts_with("password too "), "{said}");
        let err = failed(&hash(bad));
        assert!(err.contains(rule), "{rule:?} not in {err}");
    }
    let shortest = "8 bytes!";
    assert!(hash(shortest).status.success());
    let r = change(shortest);
    assert_eq!(r.status, 200, "{r:?}");
}

// ---------------------------------------------------------------------------------------------
// Key directory mistakes: inspect, keys list and serve each refuse, naming the problem.
// ---------------------------------------------------------------------------------------------

/// A token that parses, for commands that must fail on the keys before looking at it.
const ANY_TOKEN: &str = "AQJrMQ";

fn put_key(dir: &Path, id: &str, mode: u32) {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(format!("{id}{KEY_FILE_EXT}"));
    std::fs::write(&path, Key::generate().unwrap().to_base64().as_bytes()).unwrap();
    set_mode(&path, mode);
}

fn set_mode(path: &Path, mode: u32) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
}

/// Runs `inspect`, `keys list` and `serve` on `dir` (with `env`), expects each to fail, and
/// returns their error output.
fn all_three(dir: &Path, env: &[(&str, &str)]) -> [(&'static str, String); 3] {
    let with_env = |mut c: Command| {
        c.envs(env.iter().copied());
        c
    };
    let open = with_env(inspect(dir, &[ANY_TOKEN]));
    let mut list = cmd();
    list.args(["keys", "list", "--keys"]).arg(dir);
    let list = with_env(list);
    let mut serve = cmd();
    serve
        .args([
            "serve",
            "--insecure-dev-cookies",
            "--listen",
            "127.0.0.1:0",
            "--keys",
        ])
        .arg(dir);
    let serve = with_env(serve);
    [("inspect", open), ("keys list", list), ("serve", serve)].map(|(name, mut c)| {
        let out = run(&mut c);
        assert!(
            !out.status.success(),
            "{name} succeeded: {}",
            text(&out.stdout)
        );
        (name, text(&out.stderr))
    })
}

fn assert_all_say(results: &[(&str, String)], wants: &[&str]) {
    for (name, err) in results {
        for want in wants {
            assert!(err.contains(want), "{name}: {want:?} not in {err}");
        }
    }
}

#[test]
fn an_unreadable_key_directory_is_refused_by_every_command() {
    let tmp = tempfile::tempdir().unwrap();
    // A file where the directory should be.
    let not_a_dir = tmp.path().join("keys");
    std::fs::write(&not_a_dir, "").unwrap();
    let results = all_three(&not_a_dir, &[]);
    assert_all_say(
        &results,
        &[
            "cannot read key directory",
            &not_a_dir.display().to_string(),
        ],
    );

    // A directory without read permission (meaningless for root, which reads it anyway).
    #[cfg(unix)]
    {
        let locked = tmp.path().join("locked");
        put_key(&locked, "k1", 0o600);
        set_mode(&locked, 0o000);
        if std::fs::read_dir(&locked).is_err() {
            let results = all_three(&locked, &[]);
            assert_all_say(&results, &["cannot read key directory", "ermission denied"]);
        } else {
            eprintln!("running with privileges: skipped the permission-denied case");
        }
        set_mode(&locked, 0o700);
    }
}

#[test]
fn a_malformed_key_file_is_named_by_every_command() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("keys");
    put_key(&dir, "k1", 0o600);
    let bad = dir.join("k2.key");
    std::fs::write(&bad, "SECRET-not*base64\n").unwrap();
    set_mode(&bad, 0o600);
    std::fs::write(dir.join("PRIMARY"), "k1\n").unwrap();
    let results = all_three(&dir, &[]);
    assert_all_say(
        &results,
        &[
            "malformed key file",
            &bad.display().to_string(),
            "not base64",
        ],
    );
    for (name, err) in &results {
        assert!(!err.contains("SECRET"), "{name} echoed the file: {err}");
    }
}

#[test]
fn duplicate_key_ids_in_the_environment_are_refused_by_every_command() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("keys");
    put_key(&dir, "k1", 0o600);
    let b64 = Key::generate().unwrap().to_base64();
    let value = format!("a:{0},b:{0},a:{0}", b64.as_str());
    let results = all_three(&dir, &[(keys::ENV_VAR, &value)]);
    assert_all_say(
        &results,
        &[
            "invalid SEALED_SESSIONS_KEYS environment variable",
            "duplicate key id a",
        ],
    );
    for (name, err) in &results {
        assert!(!err.contains(b64.as_str()), "{name} echoed a key: {err}");
    }
}

#[test]
fn several_keys_without_primary_are_refused_by_every_command() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("keys");
    put_key(&dir, "k1", 0o600);
    put_key(&dir, "k2", 0o600);
    let results = all_three(&dir, &[]);
    assert_all_say(&results, &["2 key files", "no PRIMARY file", "PRIMARY"]);
}

#[cfg(unix)]
#[test]
fn a_key_file_readable_by_others_is_refused_by_every_command() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("keys");
    put_key(&dir, "k1", 0o644);
    let path = dir.join("k1.key").display().to_string();
    let results = all_three(&dir, &[]);
    assert_all_say(&results, &["mode 0644", &format!("chmod 600 {path}")]);
}

/// The refusal names the flag an operator can pass, not the library's option, and every
/// command that reads the directory takes that flag.
#[cfg(unix)]
#[test]
fn loose_key_permissions_are_refused_naming_the_command_line_flag_that_accepts_them() {
    let tmp = tempfile::tempdir().unwrap();
    let loose_file = tmp.path().join("file");
    put_key(&loose_file, "k1", 0o640);
    let loose_dir = tmp.path().join("dir");
    put_key(&loose_dir, "k1", 0o600);
    set_mode(&loose_dir, 0o775);
    for dir in [&loose_file, &loose_dir] {
        let results = all_three(dir, &[]);
        assert_all_say(&results, &["--danger-allow-loose-key-permissions"]);
        for (name, err) in &results {
            assert!(
                !err.contains("danger_allow_loose_permissions"),
                "{name} names the library field: {err}"
            );
        }
        // With the flag, inspect and keys list read the directory as serve would.
        let out = run(cmd()
            .args([
                "keys",
                "list",
                "--danger-allow-loose-key-permissions",
                "--keys",
            ])
            .arg(dir));
        assert!(out.status.success(), "{}", text(&out.stderr));
        let err = failed(&run(&mut inspect(
            dir,
            &["--danger-allow-loose-key-permissions", ANY_TOKEN],
        )));
        assert!(err.contains("cannot open the token"), "{err}");
    }
}

#[test]
fn keys_list_lists_what_it_refuses_and_shows_environment_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("keys");
    put_key(&dir, "k1", 0o600);
    put_key(&dir, "k2", 0o644);
    std::fs::write(dir.join("PRIMARY"), "k2\n").unwrap();
    let out = support::bin::keys_list(&dir);
    assert!(!out.status.success());
    let listing = text(&out.stdout);
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with("k1 ") && l.contains("0600")),
        "{listing}"
    );
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with("k2 ") && l.contains(" * ") && l.contains("0644")),
        "{listing}"
    );
    assert!(
        text(&out.stderr).contains("cannot be loaded"),
        "{}",
        text(&out.stderr)
    );

    let value = format!(
        "new:{},old:{}",
        Key::generate().unwrap().to_base64().as_str(),
        Key::generate().unwrap().to_base64().as_str()
    );
    let out = run(cmd()
        .env(keys::ENV_VAR, &value)
        .args(["keys", "list", "--keys"])
        .arg(&dir));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listing = text(&out.stdout);
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with("new ") && l.contains(" * ")),
        "{listing}"
    );
    assert!(listing.lines().any(|l| l.starts_with("old ")), "{listing}");
    assert!(!listing.contains("k1"), "{listing}");
    assert!(
        text(&out.stderr).contains("instead of"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn keygen_next_to_a_lone_key_keeps_it_primary_so_the_directory_still_loads() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("keys");
    // A hand-made key: primary because it is alone, with no PRIMARY file.
    put_key(&dir, "k1", 0o600);
    let out = run(cmd().args(["keygen", "--id", "k2", "--keys"]).arg(&dir));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("k1 stays primary"),
        "{}",
        text(&out.stdout)
    );
    let out = support::bin::keys_list(&dir);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listing = text(&out.stdout);
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with("k1 ") && l.contains(" * ")),
        "{listing}"
    );
}

// ---------------------------------------------------------------------------------------------
// serve --production startup warnings
// ---------------------------------------------------------------------------------------------

/// The warning `serve --production` logs when revocations cannot outlive the process.
const NO_REDIS_WARNING: &str = "--production without --redis";

/// `serve --production` with a key and a users file under `work`, plus `extra`.
fn production_server(work: &Path, extra: &[&OsStr]) -> Server {
    let keys = work.join("keys");
    support::bin::keygen(&keys);
    let hash = support::bin::hash_password("carol-password");
    let users = support::bin::users_file(work, &[("carol", "user", &hash)]);
    Server::builder()
        .keys(&keys)
        .arg("--production")
        .arg("--users")
        .arg(&users)
        .args(extra)
        .start()
}

#[test]
fn production_without_redis_warns_that_revocations_are_forgotten_on_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let server = production_server(tmp.path(), &[]);
    let logs = server.logs();
    let line = logs
        .lines()
        .find(|l| l.contains(NO_REDIS_WARNING))
        .unwrap_or_else(|| panic!("no warning: {logs}"));
    assert!(
        line.contains("WARN") && line.contains("restart forgets them"),
        "{line}"
    );
}

#[test]
fn production_with_redis_does_not_warn_about_it() {
    let Some(redis) = support::redis::start() else {
        return;
    };
    let url = redis.url();
    let tmp = tempfile::tempdir().unwrap();
    let server = production_server(tmp.path(), &["--redis".as_ref(), url.as_ref()]);
    let logs = server.logs();
    assert!(logs.contains("revocation list synced from Redis"), "{logs}");
    assert!(!logs.contains(NO_REDIS_WARNING), "{logs}");
}

#[cfg(unix)]
#[test]
fn a_key_directory_others_can_write_to_is_refused_by_every_command() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("keys");
    put_key(&dir, "k1", 0o600);
    set_mode(&dir, 0o777);
    let results = all_three(&dir, &[]);
    assert_all_say(
        &results,
        &[
            &format!("key directory {} has mode 0777", dir.display()),
            &format!("chmod go-w {}", dir.display()),
        ],
    );
}

// ---------------------------------------------------------------------------------------------
// revoke
// ---------------------------------------------------------------------------------------------

fn revoke(redis: &str, args: &[&str]) -> Output {
    run(cmd().args(["revoke", "--redis", redis]).args(args))
}

/// A dev server syncing through the Redis at `url`, under `prefix` if given (else the default).
fn synced_server(work: &Path, url: &str, prefix: Option<&str>) -> Server {
    let mut extra = vec![OsStr::new("--redis"), OsStr::new(url)];
    if let Some(prefix) = prefix {
        extra.extend([OsStr::new("--redis-prefix"), OsStr::new(prefix)]);
    }
    dev_server(work, "s", &extra)
}

/// The command printed no warning.
fn assert_no_warning(out: &Output) {
    assert!(
        !text(&out.stderr).contains("warning"),
        "{}",
        text(&out.stderr)
    );
}

/// Waits (bounded) until `cookie` is refused with 401 REVOKED.
fn until_revoked(server: &Server, cookie: &str) {
    eventually("cookie refused as REVOKED", Duration::from_secs(10), || {
        let r = me(server.addr, cookie);
        if r.status == 200 {
            return false;
        }
        assert_eq!((r.status, r.code().as_str()), (401, "REVOKED"), "{r:?}");
        true
    });
}

#[test]
fn revoke_user_logs_the_user_out_everywhere_through_redis() {
    let Some(redis) = support::redis::start() else {
        return;
    };
    let url = redis.url();
    let tmp = tempfile::tempdir().unwrap();
    let server = synced_server(tmp.path(), &url, None);
    let phone = login(server.addr, "alice", "alice-password");
    let laptop = login(server.addr, "alice", "alice-password");
    let admin = login(server.addr, "admin", "admin-password");

    let out = revoke(&url, &["--user", "alice"]);
    let v = json(&out);
    assert_no_warning(&out);
    assert_eq!(v["revoked"], "user");
    assert_eq!(v["user"], "alice");
    assert!(v["version"].as_u64().unwrap() > 0, "{v}");
    assert!(
        humantime::parse_rfc3339(v["until"].as_str().unwrap()).is_ok(),
        "{v}"
    );

    until_revoked(&server, &phone);
    until_revoked(&server, &laptop);
    assert_eq!(me(server.addr, &admin).status, 200);
    // Logging in again works: the new session carries the new version.
    let again = login(server.addr, "alice", "alice-password");
    assert_eq!(me(server.addr, &again).status, 200);
}

#[test]
fn revoke_session_revokes_that_session_only_under_the_servers_prefix() {
    let Some(redis) = support::redis::start() else {
        return;
    };
    let url = redis.url();
    let tmp = tempfile::tempdir().unwrap();
    let server = synced_server(tmp.path(), &url, Some("tenant-a"));
    let stolen = login(server.addr, "alice", "alice-password");
    let other = login(server.addr, "alice", "alice-password");
    let sid = me(server.addr, &stolen).json()["session_id"]
        .as_str()
        .unwrap()
        .to_owned();

    let out = revoke(
        &url,
        &[
            "--redis-prefix",
            "tenant-a",
            "--session",
            &sid,
            "--until",
            "2h",
        ],
    );
    let v = json(&out);
    assert_no_warning(&out);
    assert_eq!(v["revoked"], "session");
    assert_eq!(v["session_id"], sid.as_str());
    let until = humantime::parse_rfc3339(v["until"].as_str().unwrap()).unwrap();
    let left = until.duration_since(std::time::SystemTime::now()).unwrap();
    assert!(
        left > Duration::from_secs(7000) && left <= Duration::from_secs(7200),
        "{v}"
    );

    until_revoked(&server, &stolen);
    assert_eq!(me(server.addr, &other).status, 200);
}

/// A prefix no server uses in that Redis (a typo, or the wrong Redis): the revocation is
/// recorded, with a warning that the servers will not see it; the servers' prefix gets none.
#[test]
fn revoke_warns_when_the_prefix_holds_no_stream() {
    let Some(redis) = support::redis::start() else {
        return;
    };
    let url = redis.url();
    let tmp = tempfile::tempdir().unwrap();
    let server = synced_server(tmp.path(), &url, Some("tenant-a"));
    let cookie = login(server.addr, "alice", "alice-password");

    let out = revoke(&url, &["--redis-prefix", "tenant-b", "--user", "alice"]);
    assert_eq!(json(&out)["revoked"], "user");
    let err = text(&out.stderr);
    assert!(
        err.contains("warning: Redis at")
            && err.contains("holds no revocation stream under the prefix \"tenant-b\"")
            && err.contains("--redis-prefix"),
        "{err}"
    );
    // Indeed not seen by the server.
    assert_eq!(me(server.addr, &cookie).status, 200);

    // The servers' prefix, before any revocation was made under it: no warning.
    let out = revoke(&url, &["--redis-prefix", "tenant-a", "--user", "alice"]);
    assert_eq!(json(&out)["revoked"], "user");
    assert_no_warning(&out);
    until_revoked(&server, &cookie);
}

#[test]
fn revoke_fails_loudly_when_redis_does_not_take_the_write() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("redis://127.0.0.1:{port}/");
    for args in [
        &["--user", "alice"][..],
        &["--session", "00112233445566778899aabbccddeeff"],
    ] {
        let started = std::time::Instant::now();
        let err = failed(&revoke(&url, &[&["--timeout", "1s"], args].concat()));
        assert!(
            err.contains("did not accept the revocation") && err.contains("run the command again"),
            "{err}"
        );
        assert!(started.elapsed() < Duration::from_secs(20));
    }
}

#[test]
fn revoke_refuses_operator_mistakes_before_connecting() {
    let url = "redis://127.0.0.1:1/";
    for (args, want) in [
        (&["--session", "abc"][..], "32 hex digits"),
        (
            &["--session", "zz112233445566778899aabbccddeeff"],
            "not all hex",
        ),
        (&[], "--user <USER>|--session <SID>"),
        (
            &[
                "--user",
                "a",
                "--session",
                "00112233445566778899aabbccddeeff",
            ],
            "cannot be used",
        ),
        (&["--user", "a", "--until", "1h"], "cannot be used"),
        (
            &[
                "--session",
                "00112233445566778899aabbccddeeff",
                "--until",
                "soon",
            ],
            "RFC 3339",
        ),
    ] {
        let out = revoke(url, args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        let err = text(&out.stderr);
        assert!(err.contains(want), "{args:?}: {want:?} not in {err}");
    }
    let err = failed(&revoke(
        url,
        &[
            "--session",
            "00112233445566778899aabbccddeeff",
            "--until",
            "2001-01-01T00:00:00Z",
        ],
    ));
    assert!(err.contains("not in the future"), "{err}");
    // --redis is required, and a password in it is never echoed.
    let out = run(cmd().args(["revoke", "--user", "a"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--redis"),
        "{}",
        text(&out.stderr)
    );
    let out = run(cmd().args(["revoke", "--user", "a", "--redis", "redis://u:hunter2@"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        !text(&out.stderr).contains("hunter2"),
        "{}",
        text(&out.stderr)
    );
}
