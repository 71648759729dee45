//! End to end in real headless Chromium: the page at `/` of the real server binary, driven over
//! WebDriver (`chromedriver`, started by the test on a free loopback port) with fantoccini.
//!
//! Two WebDriver sessions with separate profiles are two devices of the same user.
//! Needs `chromium` and `chromedriver` (Debian: `apt-get install -y chromium chromium-driver`;
//! `.ci/run` installs them because this file mentions chromedriver).
#![allow(clippy::unwrap_used)]

mod support;

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use support::server;

const INSTALL: &str = "apt-get install -y chromium chromium-driver";
/// Generous: Chromium starts slowly on a loaded 2-core machine.
const WAIT: Duration = Duration::from_secs(30);

/// `name` on `PATH`, or a well-known location.
fn find_program(name: &str, fallback: &str) -> PathBuf {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join(name))
        .chain(std::iter::once(PathBuf::from(fallback)))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("{name} is not installed; this test drives a real browser. Install it with `{INSTALL}`.")
        })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `chromedriver` this test started. Killed on drop.
struct ChromeDriver {
    port: u16,
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl ChromeDriver {
    async fn start() -> ChromeDriver {
        let program = find_program("chromedriver", "/usr/bin/chromedriver");
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("chromedriver.log");
        let port = free_port();
        let child = Command::new(program)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(File::create(&log).unwrap())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run chromedriver ({e}); install it with `{INSTALL}`")
            });
        let mut driver = ChromeDriver {
            port,
            child,
            log,
            _dir: dir,
        };
        let status = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(r) = status.get(format!("{}/status", driver.url())).send().await
                && let Ok(v) = r.json::<Value>().await
                && v["value"]["ready"] == true
            {
                return driver;
            }
            if let Some(s) = driver.child.try_wait().unwrap() {
                panic!("chromedriver exited ({s}):\n{}", driver.logs());
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver not ready:\n{}",
                driver.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A browser profile directory. On drop, any Chromium process still using it (left behind by a
/// failed test) is killed by pid, then the directory is removed.
struct Profile(tempfile::TempDir);

impl Profile {
    fn new() -> Profile {
        Profile(tempfile::tempdir().unwrap())
    }

    fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for Profile {
    fn drop(&mut self) {
        let marker = format!("--user-data-dir={}", self.path().display());
        let Ok(procs) = std::fs::read_dir("/proc") else {
            return;
        };
        for p in procs.flatten() {
            let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(cmdline) = std::fs::read(p.path().join("cmdline")) else {
                continue;
            };
            if cmdline
                .split(|b| *b == 0)
                .any(|arg| arg == marker.as_bytes())
            {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
        }
    }
}

/// A new WebDriver session: a fresh headless Chromium with its own profile (a separate device).
async fn open_browser(driver: &ChromeDriver, profile: &Profile) -> Client {
    let chromium = find_program("chromium", "/usr/bin/chromium");
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".to_owned(),
        json!({
            "binary": chromium,
            "args": [
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-dev-shm-usage",
                "--disable-quic",
                "--no-first-run",
                "--disable-component-update",
                "--disable-sync",
                "--window-size=1000,900",
                format!("--user-data-dir={}", profile.path().display()),
            ],
        }),
    );
    ClientBuilder::new(HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url())
        .await
        .unwrap_or_else(|e| panic!("cannot start Chromium through chromedriver: {e}"))
}

/// The text of element `#id`.
async fn text(b: &Client, id: &str) -> String {
    b.find(Locator::Id(id)).await.unwrap().text().await.unwrap()
}

/// Waits until `#id`'s text satisfies `ok`.
async fn wait_text(b: &Client, id: &str, what: &str, ok: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        // The element may be re-rendered between find and text: retry on any error.
        if let Ok(e) = b.find(Locator::Id(id)).await
            && let Ok(t) = e.text().await
        {
            if ok(&t) {
                return t;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: #{id} shows {t:?} after {WAIT:?} (#status: {:?})",
                text(b, "status").await
            );
        }
        assert!(Instant::now() < deadline, "{what}: no #{id} after {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn click(b: &Client, id: &str) {
    b.find(Locator::Id(id))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

async fn type_into(b: &Client, id: &str, text: &str) {
    let e = b.find(Locator::Id(id)).await.unwrap();
    e.clear().await.unwrap();
    e.send_keys(text).await.unwrap();
}

const SIGNED_OUT: &str = "Not signed in.";

/// Opens the page and signs in through the form.
async fn sign_in(b: &Client, origin: &str, user: &str, password: &str) {
    if !b.current_url().await.unwrap().as_str().starts_with(origin) {
        b.goto(&format!("{origin}/")).await.unwrap();
        // The page asks /me on load; without a cookie it shows the signed-out state.
        wait_text(b, "whoami", "page loaded", |t| t == SIGNED_OUT).await;
    }
    type_into(b, "username", user).await;
    type_into(b, "password", password).await;
    click(b, "login-button").await;
    let want = format!("Signed in as {user}");
    wait_text(b, "whoami", "signed in", |t| t == want).await;
    assert_eq!(text(b, "status").await, "POST /login: OK");
}

/// `GET /me` from inside the page (same origin, the browser's cookie), as JSON.
async fn fetch_me(b: &Client) -> Value {
    b.execute_async(
        "const done = arguments[arguments.length - 1];
         fetch('/me', {credentials: 'same-origin'})
           .then(r => r.json().then(body => done({status: r.status, body})))
           .catch(e => done({status: 0, body: String(e)}));",
        vec![],
    )
    .await
    .unwrap()
}

fn screenshot_path() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    std::fs::create_dir_all(&target).unwrap();
    target.join("browser-logged-in.png")
}

/// The scenario, on two devices of alice.
async fn scenario(origin: &str, laptop: &Client, phone: &Client) {
    // Device 1 signs in through the form.
    sign_in(laptop, origin, "alice", "alice-password").await;
    assert_eq!(text(laptop, "me-role").await, "user");
    let laptop_sid = text(laptop, "me-session-id").await;
    assert!(laptop_sid.len() >= 16, "{laptop_sid:?}");

    // The session cookie exists, but page scripts cannot read it (HttpOnly).
    let cookies = laptop.get_all_cookies().await.unwrap();
    let session = cookies
        .iter()
        .find(|c| c.name() == "session")
        .unwrap_or_else(|| panic!("no session cookie in {cookies:?}"));
    assert_eq!(session.http_only(), Some(true));
    let visible = laptop
        .execute("return document.cookie", vec![])
        .await
        .unwrap();
    let visible = visible.as_str().unwrap();
    assert!(
        !visible.contains("session="),
        "document.cookie = {visible:?}"
    );
    assert!(!visible.contains(session.value()), "token visible to JS");

    let png = laptop.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    std::fs::write(screenshot_path(), png).unwrap();

    // Device 2 signs in too: another session.
    sign_in(phone, origin, "alice", "alice-password").await;
    assert_ne!(text(phone, "me-session-id").await, laptop_sid);

    // Step-up through the dialog: a wrong password is refused, the right one refreshes auth_time.
    let before = fetch_me(laptop).await;
    assert_eq!(before["status"], 200, "{before}");
    click(laptop, "stepup-button").await;
    type_into(laptop, "stepup-password", "wrong-password").await;
    click(laptop, "stepup-submit").await;
    wait_text(laptop, "status", "step-up refused", |t| {
        t.starts_with("POST /auth/step-up: INVALID_CREDENTIALS")
    })
    .await;
    click(laptop, "stepup-button").await;
    type_into(laptop, "stepup-password", "alice-password").await;
    click(laptop, "stepup-submit").await;
    wait_text(laptop, "status", "step-up", |t| {
        t == "POST /auth/step-up: OK"
    })
    .await;
    let after = fetch_me(laptop).await;
    assert_eq!(after["status"], 200, "{after}");
    assert_eq!(after["body"]["session_id"], before["body"]["session_id"]);
    let auth_time =
        |v: &Value| humantime::parse_rfc3339(v["body"]["auth_time"].as_str().unwrap()).unwrap();
    assert!(auth_time(&after) > auth_time(&before), "{before} {after}");
    wait_text(laptop, "whoami", "still signed in", |t| {
        t == "Signed in as alice"
    })
    .await;

    // Device 1 signs out everywhere...
    click(laptop, "logout-everywhere-button").await;
    wait_text(laptop, "status", "logout everywhere", |t| {
        t == "POST /logout-everywhere: OK"
    })
    .await;
    wait_text(laptop, "whoami", "device 1 signed out", |t| t == SIGNED_OUT).await;

    // ...and device 2, which still holds its cookie, finds its session revoked.
    click(phone, "me-refresh-button").await;
    let status = wait_text(phone, "status", "device 2 refused", |t| {
        t.starts_with("GET /me: ")
    })
    .await;
    assert!(status.starts_with("GET /me: REVOKED"), "{status}");
    wait_text(phone, "whoami", "device 2 signed out", |t| t == SIGNED_OUT).await;

    // Device 1 signs in again, then signs out.
    sign_in(laptop, origin, "alice", "alice-password").await;
    assert_ne!(text(laptop, "me-session-id").await, laptop_sid);
    click(laptop, "logout-button").await;
    wait_text(laptop, "status", "logout", |t| t == "POST /logout: OK").await;
    wait_text(laptop, "whoami", "signed out", |t| t == SIGNED_OUT).await;
    // The browser dropped the cookie (the clearing Set-Cookie matched it): no session at all.
    click(laptop, "me-refresh-button").await;
    wait_text(laptop, "status", "no session", |t| {
        t.starts_with("GET /me: NO_SESSION")
    })
    .await;
    let cookies = laptop.get_all_cookies().await.unwrap();
    assert!(cookies.iter().all(|c| c.name() != "session"), "{cookies:?}");
    let sign_in_form = laptop.find(Locator::Id("login-section")).await.unwrap();
    assert!(sign_in_form.is_displayed().await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium + chromedriver"]
async fn two_devices_sign_in_and_logout_everywhere_signs_out_both_in_chromium() {
    // Plain-http localhost: the development cookie preset.
    let srv = server::start(&["--insecure-dev-cookies"]);
    let driver = ChromeDriver::start().await;
    let (p1, p2) = (Profile::new(), Profile::new());
    let laptop = open_browser(&driver, &p1).await;
    let phone = open_browser(&driver, &p2).await;

    // Run the scenario on its own task so the browsers are closed whatever happens in it.
    let result = {
        let (laptop, phone) = (laptop.clone(), phone.clone());
        let origin = srv.origin();
        tokio::spawn(async move { scenario(&origin, &laptop, &phone).await }).await
    };
    let _ = laptop.close().await;
    let _ = phone.close().await;
    drop(driver);
    drop((p1, p2));
    // Re-raised here, the panic makes the server guard print its log.
    if let Err(e) = result {
        std::panic::resume_unwind(e.into_panic());
    }
}
