//! End to end in real headless Chromium: the page at `/` of the real server binary, driven over
//! WebDriver (`chromedriver`, started by the test on a free loopback port) with fantoccini.
//!
//! Two WebDriver sessions with separate profiles are two devices of the same user. The page is
//! driven as a user would: the session list and "end this session", the password change,
//! step-up and elevation, logout everywhere, and the idle and absolute expiries it shows.
//! Needs `chromium` and `chromedriver` (Debian: `apt-get install -y chromium chromium-driver`;
//! `.ci/run` installs them because this file mentions chromedriver).
#![allow(clippy::unwrap_used)]

mod support;

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

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

/// Clears `#status`, so the next wait sees this action's outcome, not an earlier one's.
async fn clear_status(b: &Client) {
    b.execute(
        "document.getElementById('status').textContent = '';",
        vec![],
    )
    .await
    .unwrap();
}

/// Clicks `#id` after clearing `#status`.
async fn act(b: &Client, id: &str) {
    clear_status(b).await;
    click(b, id).await;
}

/// The `attribute` of element `#id`.
async fn attr(b: &Client, id: &str, attribute: &str) -> Option<String> {
    b.find(Locator::Id(id))
        .await
        .unwrap()
        .attr(attribute)
        .await
        .unwrap()
}

/// Fills the sign-in form and submits it (the page must show it).
async fn submit_sign_in(b: &Client, origin: &str, user: &str, password: &str) {
    if !b.current_url().await.unwrap().as_str().starts_with(origin) {
        b.goto(&format!("{origin}/")).await.unwrap();
        // The page asks /me on load; without a cookie it shows the signed-out state.
        wait_text(b, "whoami", "page loaded", |t| t == SIGNED_OUT).await;
    }
    type_into(b, "username", user).await;
    type_into(b, "password", password).await;
    act(b, "login-button").await;
}

/// Opens the page and signs in through the form.
async fn sign_in(b: &Client, origin: &str, user: &str, password: &str) {
    submit_sign_in(b, origin, user, password).await;
    let want = format!("Signed in as {user}");
    wait_text(b, "whoami", "signed in", |t| t == want).await;
    assert_eq!(text(b, "status").await, "Signed in.");
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

/// The session list as the page shows it: (session id, marked as this session).
async fn listed_sessions(b: &Client) -> Vec<(String, bool)> {
    let v = b
        .execute(
            "return [...document.querySelectorAll('#session-list li')]
               .map(li => [li.dataset.sid, li.classList.contains('current')]);",
            vec![],
        )
        .await
        .unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|e| (e[0].as_str().unwrap().to_owned(), e[1].as_bool().unwrap()))
        .collect()
}

/// Waits until the page lists `n` sessions, and returns them.
async fn wait_sessions(b: &Client, n: usize) -> Vec<(String, bool)> {
    let deadline = Instant::now() + WAIT;
    loop {
        let listed = listed_sessions(b).await;
        if listed.len() == n {
            return listed;
        }
        assert!(
            Instant::now() < deadline,
            "{n} sessions not listed: {listed:?} (#status: {:?})",
            text(b, "status").await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Fills the change-password form and submits it.
async fn change_password(b: &Client, current: &str, new: &str, again: &str) {
    type_into(b, "current-password", current).await;
    type_into(b, "new-password", new).await;
    type_into(b, "new-password-again", again).await;
    act(b, "password-button").await;
}

/// Confirms the password in the step-up dialog, which must be open.
async fn confirm_password(b: &Client, password: &str) {
    wait_displayed(b, "stepup-dialog").await;
    type_into(b, "stepup-password", password).await;
    clear_status(b).await;
    click(b, "stepup-submit").await;
}

async fn wait_displayed(b: &Client, id: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(e) = b.find(Locator::Id(id)).await
            && e.is_displayed().await.unwrap_or(false)
        {
            return;
        }
        assert!(Instant::now() < deadline, "#{id} not shown after {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn displayed(b: &Client, id: &str) -> bool {
    b.find(Locator::Id(id))
        .await
        .unwrap()
        .is_displayed()
        .await
        .unwrap()
}

fn rfc3339(v: &Value) -> SystemTime {
    humantime::parse_rfc3339(v.as_str().unwrap()).unwrap()
}

fn screenshot_path() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        // The workspace's target directory, beside this crate.
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    std::fs::create_dir_all(&target).unwrap();
    target.join("browser-logged-in.png")
}

/// The server's timeouts in [`sessions_scenario`]: distinct, so the page cannot show one for
/// the other.
const IDLE: Duration = Duration::from_secs(10 * 60);
const ABSOLUTE: Duration = Duration::from_secs(2 * 3600);
const NEW_PASSWORD: &str = "alice-new-password";

/// The scenario, on two devices of alice.
async fn sessions_scenario(origin: &str, laptop: &Client, phone: &Client) {
    // Device 1 signs in through the form.
    sign_in(laptop, origin, "alice", "alice-password").await;
    assert_eq!(text(laptop, "me-role").await, "user");
    let laptop_sid = text(laptop, "me-session-id").await;
    assert_eq!(laptop_sid.len(), 32, "{laptop_sid:?}");

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

    // Both expiries are shown, as /me gives them: idle ten minutes from now, absolute two
    // hours from the login.
    let me = fetch_me(laptop).await;
    assert_eq!(me["status"], 200, "{me}");
    let me = &me["body"];
    for (id, field) in [
        ("me-idle-expires-at", "idle_expires_at"),
        ("me-expires-at", "expires_at"),
    ] {
        assert_eq!(
            attr(laptop, id, "datetime").await.as_deref(),
            me[field].as_str(),
            "#{id}"
        );
        let shown = text(laptop, id).await;
        assert!(!shown.is_empty() && shown != "—", "#{id} shows {shown:?}");
    }
    let now = SystemTime::now();
    let (idle, absolute) = (rfc3339(&me["idle_expires_at"]), rfc3339(&me["expires_at"]));
    let slack = Duration::from_secs(60);
    assert!(
        idle > now + IDLE - slack && idle <= now + IDLE + slack,
        "{me}"
    );
    assert!(
        absolute > now + ABSOLUTE - slack && absolute <= now + ABSOLUTE + slack,
        "{me}"
    );
    assert_ne!(
        text(laptop, "me-idle-expires-at").await,
        text(laptop, "me-expires-at").await
    );

    let png = laptop.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    std::fs::write(screenshot_path(), png).unwrap();

    // Device 2 signs in too: the laptop's list shows both, its own marked as this session.
    sign_in(phone, origin, "alice", "alice-password").await;
    let phone_sid = text(phone, "me-session-id").await;
    assert_ne!(phone_sid, laptop_sid);
    act(laptop, "sessions-refresh-button").await;
    let mut listed = wait_sessions(laptop, 2).await;
    listed.sort_by_key(|(_, current)| !current);
    assert_eq!(
        listed,
        [(laptop_sid.clone(), true), (phone_sid.clone(), false)]
    );

    // "End this session" on the phone's entry: the phone's session is revoked.
    clear_status(laptop).await;
    laptop
        .find(Locator::Css(&format!(
            "#session-list button[data-end-sid='{phone_sid}']"
        )))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(laptop, "status", "session ended", |t| t == "Session ended.").await;
    assert_eq!(wait_sessions(laptop, 1).await, [(laptop_sid.clone(), true)]);
    act(phone, "me-refresh-button").await;
    let status = wait_text(phone, "status", "device 2 refused", |t| !t.is_empty()).await;
    assert_eq!(
        status,
        "Refresh failed: session revoked (REVOKED); sign in again"
    );
    wait_text(phone, "whoami", "device 2 signed out", |t| t == SIGNED_OUT).await;
    assert!(displayed(phone, "login-section").await);

    // Step-up through the dialog: a wrong password is refused, the right one refreshes auth_time.
    let before = fetch_me(laptop).await;
    act(laptop, "stepup-button").await;
    confirm_password(laptop, "wrong-password").await;
    let status = wait_text(laptop, "status", "step-up refused", |t| !t.is_empty()).await;
    assert_eq!(
        status,
        "Confirm password failed: invalid username or password (INVALID_CREDENTIALS)"
    );
    act(laptop, "stepup-button").await;
    confirm_password(laptop, "alice-password").await;
    wait_text(laptop, "status", "step-up", |t| t == "Password confirmed.").await;
    let after = fetch_me(laptop).await;
    assert_eq!(after["body"]["session_id"], before["body"]["session_id"]);
    assert!(
        rfc3339(&after["body"]["auth_time"]) > rfc3339(&before["body"]["auth_time"]),
        "{before} {after}"
    );

    // The password change: each mistake is said plainly, then the change goes through.
    for (current, new, again, want) in [
        (
            "wrong-password",
            NEW_PASSWORD,
            NEW_PASSWORD,
            "Change password failed: invalid username or password (INVALID_CREDENTIALS)",
        ),
        (
            "alice-password",
            "short",
            "short",
            "Change password failed: new password too short: 5 bytes, at least 8 needed \
             (BAD_REQUEST)",
        ),
        (
            "alice-password",
            NEW_PASSWORD,
            "something-else",
            "Change password failed: the two new passwords differ.",
        ),
        (
            "alice-password",
            NEW_PASSWORD,
            NEW_PASSWORD,
            "Password changed; your other sessions were signed out.",
        ),
    ] {
        change_password(laptop, current, new, again).await;
        let status = wait_text(laptop, "status", want, |t| !t.is_empty()).await;
        assert_eq!(status, want);
    }
    wait_text(laptop, "whoami", "still signed in", |t| {
        t == "Signed in as alice"
    })
    .await;

    // The old password no longer signs in; the new one does.
    submit_sign_in(phone, origin, "alice", "alice-password").await;
    let status = wait_text(phone, "status", "old password refused", |t| !t.is_empty()).await;
    assert_eq!(
        status,
        "Sign in failed: invalid username or password (INVALID_CREDENTIALS)"
    );
    assert_eq!(text(phone, "whoami").await, SIGNED_OUT);
    sign_in(phone, origin, "alice", NEW_PASSWORD).await;
    act(laptop, "sessions-refresh-button").await;
    wait_sessions(laptop, 2).await;

    // Device 1 signs out everywhere: it returns to the signed-out page...
    act(laptop, "logout-everywhere-button").await;
    wait_text(laptop, "status", "logout everywhere", |t| {
        t == "Signed out everywhere: every session of yours has ended."
    })
    .await;
    wait_text(laptop, "whoami", "device 1 signed out", |t| t == SIGNED_OUT).await;
    assert!(displayed(laptop, "login-section").await);
    for hidden in ["sessions-section", "password-section", "session-details"] {
        assert!(!displayed(laptop, hidden).await, "#{hidden} still shown");
    }
    // ...and device 2, which still holds its cookie, finds its session revoked.
    act(phone, "me-refresh-button").await;
    let status = wait_text(phone, "status", "device 2 refused", |t| !t.is_empty()).await;
    assert!(status.contains("(REVOKED)"), "{status}");
    wait_text(phone, "whoami", "device 2 signed out", |t| t == SIGNED_OUT).await;

    // Device 1 signs in again, then signs out.
    sign_in(laptop, origin, "alice", NEW_PASSWORD).await;
    assert_ne!(text(laptop, "me-session-id").await, laptop_sid);
    act(laptop, "logout-button").await;
    wait_text(laptop, "status", "logout", |t| t == "Signed out.").await;
    wait_text(laptop, "whoami", "signed out", |t| t == SIGNED_OUT).await;
    // The browser dropped the cookie (the clearing Set-Cookie matched it): no session at all.
    act(laptop, "me-refresh-button").await;
    let status = wait_text(laptop, "status", "no session", |t| !t.is_empty()).await;
    assert!(status.contains("(NO_SESSION)"), "{status}");
    let cookies = laptop.get_all_cookies().await.unwrap();
    assert!(cookies.iter().all(|c| c.name() != "session"), "{cookies:?}");
}

/// The step-up window of [`elevate_scenario`]'s server: short, so the login's password check
/// goes stale within the test.
const STEP_UP_WINDOW: Duration = Duration::from_secs(2);

async fn elevate_scenario(origin: &str, b: &Client) {
    // An ordinary account cannot be elevated, and the page says so.
    sign_in(b, origin, "alice", "alice-password").await;
    act(b, "elevate-button").await;
    let status = wait_text(b, "status", "alice refused", |t| !t.is_empty()).await;
    assert_eq!(
        status,
        "Elevate to admin failed: this account cannot be elevated (FORBIDDEN)"
    );
    assert_eq!(text(b, "me-elevated").await, "no");
    act(b, "logout-button").await;
    wait_text(b, "whoami", "signed out", |t| t == SIGNED_OUT).await;

    // The admin's password check at login is older than the window by the time they elevate:
    // the page asks for the password, then elevates.
    sign_in(b, origin, "admin", "admin-password").await;
    let signed_in = Instant::now();
    let sid = text(b, "me-session-id").await;
    assert_eq!(text(b, "me-elevated").await, "no");
    let stale = STEP_UP_WINDOW + Duration::from_millis(500);
    tokio::time::sleep(stale.saturating_sub(signed_in.elapsed())).await;
    act(b, "elevate-button").await;
    wait_text(b, "status", "step-up asked", |t| {
        t == "Elevate to admin: confirm your password first (STEP_UP_REQUIRED)."
    })
    .await;
    confirm_password(b, "admin-password").await;
    wait_text(b, "status", "elevated", |t| {
        t == "Elevated to admin (new session id)."
    })
    .await;
    wait_text(b, "me-elevated", "shown elevated", |t| t == "yes").await;
    assert_eq!(text(b, "me-role").await, "admin");
    // Elevation regenerates the session id.
    assert_ne!(text(b, "me-session-id").await, sid);
    let me = fetch_me(b).await;
    assert_eq!(me["body"]["elevated"], true, "{me}");
}

/// Runs `scenario` with `n` browsers (separate profiles) against a server started with
/// `args`, closing the browsers whatever happens.
async fn with_browsers<F, Fut>(args: &[&str], n: usize, scenario: F)
where
    F: FnOnce(String, Vec<Client>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let srv = server::start(args);
    let driver = ChromeDriver::start().await;
    let profiles: Vec<Profile> = (0..n).map(|_| Profile::new()).collect();
    let mut browsers = Vec::new();
    for p in &profiles {
        browsers.push(open_browser(&driver, p).await);
    }
    // On its own task, so the browsers are closed whatever happens in it.
    let result = tokio::spawn(scenario(srv.origin(), browsers.clone())).await;
    for b in browsers {
        let _ = b.close().await;
    }
    drop(driver);
    drop(profiles);
    // Re-raised here, the panic makes the server guard print its log.
    if let Err(e) = result {
        std::panic::resume_unwind(e.into_panic());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium + chromedriver"]
async fn the_page_lists_and_ends_sessions_changes_the_password_and_logs_out_everywhere_in_chromium()
{
    let idle = humantime::format_duration(IDLE).to_string();
    let absolute = humantime::format_duration(ABSOLUTE).to_string();
    // Plain-http localhost: the development cookie preset.
    let args = [
        "--insecure-dev-cookies",
        "--idle-timeout",
        &idle,
        "--absolute-timeout",
        &absolute,
    ];
    with_browsers(&args, 2, |origin, b| async move {
        sessions_scenario(&origin, &b[0], &b[1]).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium + chromedriver"]
async fn elevating_asks_for_the_password_again_once_the_step_up_window_passed_in_chromium() {
    let window = humantime::format_duration(STEP_UP_WINDOW).to_string();
    let args = ["--insecure-dev-cookies", "--step-up-window", &window];
    with_browsers(&args, 1, |origin, b| async move {
        elevate_scenario(&origin, &b[0]).await;
    })
    .await;
}
