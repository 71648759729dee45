//! Revocations that land while a request is in flight, reproduced with real concurrency against
//! the binary over TCP: a request body held back on a raw socket while the victim logs out
//! everywhere, and logins with the old password racing a password change.
#![allow(clippy::unwrap_used)]

mod support;

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use support::http::{Resp, http, login, me};

const DEV: &str = "--insecure-dev-cookies";
const ALICE_PW: &str = "alice-password";

/// A request whose head and first body bytes are sent; the rest waits for [`HeldBack::finish`].
struct HeldBack {
    stream: TcpStream,
    rest: Vec<u8>,
}

impl HeldBack {
    fn start(addr: SocketAddr, path: &str, cookie: &str, body: &str) -> HeldBack {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nCookie: {cookie}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let (first, rest) = body.as_bytes().split_at(5);
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(first).unwrap();
        stream.flush().unwrap();
        HeldBack {
            stream,
            rest: rest.to_vec(),
        }
    }

    /// Sends the rest of the body and reads the whole response: (status, raw response).
    fn finish(mut self) -> (u16, String) {
        self.stream.write_all(&self.rest).unwrap();
        let mut reply = Vec::new();
        self.stream.read_to_end(&mut reply).unwrap();
        let reply = String::from_utf8_lossy(&reply).into_owned();
        let status = reply
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        (status, reply)
    }
}

fn post(addr: SocketAddr, path: &str, cookie: &str, body: &str) -> Resp {
    http(addr, "POST", path, Some(cookie), Some(body))
}

fn login_status(addr: SocketAddr, user: &str, password: &str) -> u16 {
    let body = serde_json::json!({ "username": user, "password": password }).to_string();
    http(addr, "POST", "/login", None, Some(&body)).status
}

#[test]
fn password_change_whose_body_is_held_back_past_a_logout_everywhere_gets_401_and_changes_nothing() {
    let srv = support::server::start(&[DEV]);
    // The attacker holds a copy of one of alice's cookies (and, say, her password).
    let stolen = login(srv.addr, "alice", ALICE_PW);
    let victim = login(srv.addr, "alice", ALICE_PW);
    let body = serde_json::json!({
        "current_password": ALICE_PW,
        "new_password": "attacker-chosen-password",
    })
    .to_string();
    let held = HeldBack::start(srv.addr, "/password", &stolen, &body);
    // Give the server time to validate the cookie and start waiting for the body.
    std::thread::sleep(Duration::from_millis(300));
    // The victim notices and logs out everywhere: the stolen cookie is dead from here on.
    let r = post(srv.addr, "/logout-everywhere", &victim, "{}");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(me(srv.addr, &stolen).code(), "REVOKED");
    // The rest of the body arrives.
    let (status, reply) = held.finish();
    assert_eq!(status, 401, "{reply}");
    assert!(reply.contains("\"code\":\"REVOKED\""), "{reply}");
    assert!(
        !reply
            .to_ascii_lowercase()
            .contains("\r\nset-cookie: session=ey")
            && !reply.contains("password_changed"),
        "no new session: {reply}"
    );
    // Nothing changed: the old password still works, the attacker's does not.
    assert_eq!(login_status(srv.addr, "alice", ALICE_PW), 200);
    assert_eq!(
        login_status(srv.addr, "alice", "attacker-chosen-password"),
        401
    );
}

#[test]
fn step_up_whose_body_is_held_back_past_a_logout_everywhere_gets_401_and_no_fresh_cookie() {
    let srv = support::server::start(&[DEV]);
    let stolen = login(srv.addr, "alice", ALICE_PW);
    let victim = login(srv.addr, "alice", ALICE_PW);
    let body = serde_json::json!({ "password": ALICE_PW }).to_string();
    let held = HeldBack::start(srv.addr, "/auth/step-up", &stolen, &body);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        post(srv.addr, "/logout-everywhere", &victim, "{}").status,
        200
    );
    let (status, reply) = held.finish();
    assert_eq!(status, 401, "{reply}");
    assert!(reply.contains("\"code\":\"REVOKED\""), "{reply}");
    // Whatever cookie the response carries, none of them opens a session.
    for line in reply.lines() {
        if let Some(v) = line
            .strip_prefix("set-cookie: ")
            .or_else(|| line.strip_prefix("Set-Cookie: "))
        {
            let pair = v.split(';').next().unwrap();
            assert_ne!(me(srv.addr, pair).status, 200, "{pair} opens a session");
        }
    }
}

/// Logins with the old password, sent from several threads while one password change runs:
/// once `POST /password` has answered 200, none of the sessions they obtained may validate.
/// Repeated, alternating the password, so the overlap happens at every point of the change.
/// (Racers stop at their first refusal and each round ends with a good login, so the login
/// throttle never steps in.)
#[test]
fn logins_with_the_old_password_that_overlap_a_password_change_do_not_survive_it() {
    let srv = support::server::start(&[DEV]);
    let addr = srv.addr;
    let passwords = ["alice-password", "second-password-2", "third-password-3"];
    let mut cookie = login(addr, "alice", passwords[0]);
    for round in 0..4 {
        let old = passwords[round % 3];
        let new = passwords[(round + 1) % 3];
        let stop = Arc::new(AtomicBool::new(false));
        let racers: Vec<_> = (0..3)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut won = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let body =
                            serde_json::json!({ "username": "alice", "password": old }).to_string();
                        let r = http(addr, "POST", "/login", None, Some(&body));
                        if r.status != 200 {
                            break;
                        }
                        won.push(r.set_cookie().unwrap());
                    }
                    won
                })
            })
            .collect();
        // Let the racers get going, so some of their checks straddle the change.
        std::thread::sleep(Duration::from_millis(150));
        let body = serde_json::json!({ "current_password": old, "new_password": new }).to_string();
        let r = post(addr, "/password", &cookie, &body);
        assert_eq!(r.status, 200, "round {round}: {r:?}");
        cookie = r.set_cookie().unwrap();
        // Logins still in flight finish with whatever they were going to get.
        stop.store(true, Ordering::Relaxed);
        let won: Vec<String> = racers.into_iter().flat_map(|t| t.join().unwrap()).collect();
        for c in &won {
            let r = me(addr, c);
            assert_ne!(
                r.status, 200,
                "round {round}: a login with the old password survived the change: {r:?}"
            );
        }
        assert_eq!(me(addr, &cookie).status, 200);
        // A good login resets the username's failure count.
        assert_eq!(login_status(addr, "alice", new), 200);
    }
}
