//! The key rotation procedure of `keys/README.md`, run across two nodes of the binary, with a
//! restart as the reload: add the new key everywhere, then make it primary everywhere, then
//! remove the old key. Done in that order, nobody is logged out.

#![allow(clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use sealed_sessions::keys::{self, KeyRing, LoadOptions};
use sealed_sessions::{Key, KeyId};
use support::bin::{cmd, run, text};
use support::http::{key_id_of, login, me, value};
use support::server::Server;

/// One node: its own key directory, and the running server (restarted to reload keys).
struct Node {
    name: &'static str,
    keys: PathBuf,
    server: Option<Server>,
}

impl Node {
    fn new(work: &Path, name: &'static str) -> Node {
        let keys = work.join(format!("keys-{name}"));
        std::fs::create_dir(&keys).unwrap();
        Node {
            name,
            keys,
            server: None,
        }
    }

    fn start(&mut self) {
        self.server = Some(
            Server::builder()
                .name(self.name)
                .keys(&self.keys)
                .args(["--insecure-dev-cookies", "--renew-after", "1s"])
                .start(),
        );
    }

    /// Restart: how a node picks up a changed key directory.
    fn restart(&mut self) {
        if let Some(s) = self.server.take() {
            let status = s.stop().status;
            assert!(status.success(), "{} stopped with {status}", self.name);
        }
        self.start();
    }

    fn addr(&self) -> SocketAddr {
        self.server.as_ref().unwrap().addr
    }

    fn ring(&self) -> KeyRing {
        KeyRing::load_dir(&self.keys, &LoadOptions::default()).unwrap()
    }
}

/// A browser: keeps the latest cookie each response sets.
struct Browser {
    user: &'static str,
    cookie: String,
}

impl Browser {
    /// `GET /me` on `node`; must succeed. Returns the key id of any re-sealed cookie.
    fn visit(&mut self, node: &Node) -> Option<String> {
        let r = me(node.addr(), &self.cookie);
        assert_eq!(
            r.status, 200,
            "{} logged out on {}: {r:?}",
            self.user, node.name
        );
        assert_eq!(r.json()["user"], self.user);
        r.set_cookie().map(|c| {
            self.cookie = c;
            key_id_of(value(&self.cookie))
        })
    }
}

fn copy_key(from: &Node, to: &Node, file: &str) {
    // std::fs::copy keeps the permission bits (0600).
    std::fs::copy(from.keys.join(file), to.keys.join(file)).unwrap();
}

/// Step 2 of the procedure, as the README has it: `echo k2 > keys/PRIMARY`.
fn set_primary(node: &Node, id: &str) {
    std::fs::write(node.keys.join(keys::PRIMARY_FILE), format!("{id}\n")).unwrap();
}

fn keygen(node: &Node, id: &str, primary: bool) {
    let mut c = cmd();
    c.args(["keygen", "--id", id, "--keys"]).arg(&node.keys);
    if primary {
        c.arg("--primary");
    }
    let out = run(&mut c);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// `inspect` on node `a`'s keys: the claims as JSON.
fn inspect(node: &Node, cookie: &str) -> serde_json::Value {
    let out = run(cmd()
        .args(["inspect", "--cookie-name", "session", "--keys"])
        .arg(&node.keys)
        .arg(value(cookie)));
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn rotation_in_the_documented_order_logs_nobody_out_on_either_node() {
    let tmp = tempfile::tempdir().unwrap();
    let mut a = Node::new(tmp.path(), "a");
    let mut b = Node::new(tmp.path(), "b");

    // Both nodes trust {k1 primary}.
    keygen(&a, "k1", true);
    copy_key(&a, &b, "k1.key");
    copy_key(&a, &b, keys::PRIMARY_FILE);
    a.start();
    b.start();

    // Log in on node A; keep the cookie as it was at login, and browsers that follow renewals.
    let k1_cookie = login(a.addr(), "alice", "alice-password");
    assert_eq!(key_id_of(value(&k1_cookie)), "k1");
    let mut alice = Browser {
        user: "alice",
        cookie: k1_cookie.clone(),
    };
    let mut admin = Browser {
        user: "admin",
        cookie: login(b.addr(), "admin", "admin-password"),
    };
    for node in [&a, &b] {
        alice.visit(node);
        admin.visit(node);
    }

    // 1. Add k2 to both, not primary; restart both. The k1 cookie still works everywhere, and
    //    nothing is sealed under k2 yet.
    keygen(&a, "k2", false);
    copy_key(&a, &b, "k2.key");
    a.restart();
    b.restart();
    for node in [&a, &b] {
        assert_eq!(node.ring().primary_id().as_str(), "k1");
        assert_eq!(me(node.addr(), &k1_cookie).status, 200, "{}", node.name);
        for browser in [&mut alice, &mut admin] {
            if let Some(kid) = browser.visit(node) {
                assert_eq!(kid, "k1", "{} sealed under k2 too early", node.name);
            }
        }
    }

    // 2. Make k2 primary on both; restart both. The k1 cookie keeps working, and each node's
    //    answer carries it re-sealed under k2.
    set_primary(&a, "k2");
    set_primary(&b, "k2");
    a.restart();
    b.restart();
    let mut resealed = Vec::new();
    for node in [&a, &b] {
        assert_eq!(node.ring().primary_id().as_str(), "k2");
        let r = me(node.addr(), &k1_cookie);
        assert_eq!(r.status, 200, "{}: {r:?}", node.name);
        let cookie = r
            .set_cookie()
            .unwrap_or_else(|| panic!("{}: not re-sealed", node.name));
        assert_eq!(key_id_of(value(&cookie)), "k2", "{}", node.name);
        resealed.push(cookie);
        for browser in [&mut alice, &mut admin] {
            browser.visit(node);
        }
    }
    // Every browser now holds a k2 cookie, whichever node it last visited.
    for browser in [&alice, &admin] {
        assert_eq!(key_id_of(value(&browser.cookie)), "k2", "{}", browser.user);
    }
    // `inspect` agrees: same session, sealed under k2, the server's data decoded.
    let before = inspect(&a, &k1_cookie);
    let after = inspect(&a, &resealed[0]);
    assert_eq!(before["key_id"], "k1");
    assert_eq!(after["key_id"], "k2");
    assert_eq!(after["session_id"], before["session_id"]);
    assert_eq!(after["user"], "alice");
    assert_eq!(
        after["data"],
        serde_json::json!({"role": "user", "elevated": false})
    );

    // 3. Remove k1 from both; restart both. The re-sealed cookies work on both nodes; the old
    //    k1 cookie is rejected as INVALID.
    std::fs::remove_file(a.keys.join("k1.key")).unwrap();
    std::fs::remove_file(b.keys.join("k1.key")).unwrap();
    a.restart();
    b.restart();
    for node in [&a, &b] {
        assert_eq!(node.ring().len(), 1);
        for cookie in &resealed {
            let r = me(node.addr(), cookie);
            assert_eq!(r.status, 200, "{}: {r:?}", node.name);
        }
        for browser in [&mut alice, &mut admin] {
            browser.visit(node);
        }
        let r = me(node.addr(), &k1_cookie);
        assert_eq!(
            (r.status, r.code().as_str()),
            (401, "INVALID"),
            "{}",
            node.name
        );
    }
    // A k1-sealed token is now an unknown key to `inspect` too.
    let out = run(cmd()
        .args(["inspect", "--cookie-name", "session", "--keys"])
        .arg(&a.keys)
        .arg(value(&k1_cookie)));
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("unknown key id \"k1\"") && err.contains("k2 (primary)"),
        "{err}"
    );
}

/// Why the order matters (keys/README.md): a node that seals with a key another node does not
/// trust yet logs its users out on that other node.
#[test]
fn making_a_key_primary_before_every_node_trusts_it_logs_users_out() {
    let tmp = tempfile::tempdir().unwrap();
    let mut a = Node::new(tmp.path(), "a");
    let mut b = Node::new(tmp.path(), "b");
    keygen(&a, "k1", true);
    copy_key(&a, &b, "k1.key");
    copy_key(&a, &b, keys::PRIMARY_FILE);
    // Only node A gets k2, and at once as primary.
    keygen(&a, "k2", true);
    a.start();
    b.start();
    let cookie = login(a.addr(), "alice", "alice-password");
    assert_eq!(key_id_of(value(&cookie)), "k2");
    assert_eq!(me(a.addr(), &cookie).status, 200);
    let r = me(b.addr(), &cookie);
    assert_eq!((r.status, r.code().as_str()), (401, "INVALID"), "{r:?}");
}

/// Sanity check of the helper used above against the library's own sealing.
#[test]
fn key_id_of_reads_the_token_header() {
    let ring = KeyRing::single(KeyId::new("k-rot").unwrap(), Key::generate().unwrap());
    let claims = sealed_sessions::Claims {
        session_id: sealed_sessions::SessionId::generate().unwrap(),
        user_id: "u".into(),
        version: 0,
        created_at: sealed_sessions::clock::UnixMillis(0),
        auth_time: sealed_sessions::clock::UnixMillis(0),
        last_seen: sealed_sessions::clock::UnixMillis(0),
        expires_at: sealed_sessions::clock::UnixMillis(1),
        fingerprint: None,
        data: (),
    };
    let token = sealed_sessions::token::seal_token(&ring, "session", &claims).unwrap();
    assert_eq!(key_id_of(&token), "k-rot");
}
