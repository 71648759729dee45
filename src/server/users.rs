//! Users: the store loaded from the users file (whose format, `sealed_sessions::users_file`, is
//! in the library so it can be fuzzed), the demo users, and password hashing and verification.
//!
//! Verification runs argon2id (19 MiB, about a core for tens of milliseconds) on the blocking
//! pool, at most `--login-concurrency` at a time, so a flood of logins queues behind the
//! semaphore instead of taking every core from request validation.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use argon2::password_hash::{PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Params, PasswordHasher as _, PasswordVerifier as _, Version};
use parking_lot::RwLock;
use rand::TryRngCore as _;
use sealed_sessions::users_file::{check_password_hash, parse_users_file};
use tokio::sync::Semaphore;
use zeroize::Zeroizing;

/// OWASP's argon2id recommendation: 19 MiB, 2 passes, 1 lane.
pub const ARGON2_M_KIB: u32 = 19_456;
/// Passes over memory.
pub const ARGON2_T: u32 = 2;
/// Lanes.
pub const ARGON2_P: u32 = 1;

/// Verified against when the username is unknown, so that costs what a wrong password costs. Made
/// by `hash-password` from random bytes that were thrown away; the unknown-user path returns "no"
/// whatever the outcome anyway. Same parameters as [`hash_password`] (a unit test pins that).
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$yzdgowYnurK+dcl97RgXyg$3jgM0aetC7uVYABsebx3hJmEBJvZ0JOCg4IYBXeOXCo";

/// The demo accounts created when no users file is given (refused with `--production`).
pub const DEMO_USERS: [(&str, &str, Role); 2] = [
    ("alice", "alice-password", Role::User),
    ("admin", "admin-password", Role::Admin),
];

pub use sealed_sessions::users_file::Role;

/// One account.
#[derive(Clone, PartialEq, Eq)]
pub struct User {
    /// The role sealed into the user's sessions at login.
    pub role: Role,
    /// An argon2id PHC string, checked at load.
    pub password_hash: String,
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A hash is offline-crackable: keep it out of logs.
        f.debug_struct("User")
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// The accounts, changeable at run time (password changes).
///
/// A `parking_lot` lock because reads are short lookups and it is never held across `.await`.
#[derive(Debug, Default)]
pub struct UserStore {
    users: RwLock<HashMap<String, User>>,
}

impl UserStore {
    /// A store holding `users`.
    pub fn new(users: HashMap<String, User>) -> UserStore {
        UserStore {
            users: RwLock::new(users),
        }
    }

    /// Reads and checks a users file.
    pub fn load(path: &Path) -> anyhow::Result<UserStore> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read users file {}", path.display()))?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses users-file text; `origin` names the file in errors. Warns about hashes whose
    /// argon2 parameters differ from [`hash_password`]'s (see [`timing_outlier`]).
    pub fn parse(text: &str, origin: &str) -> anyhow::Result<UserStore> {
        let users = parse_users_file(text, origin)?
            .into_iter()
            .map(|r| {
                if timing_outlier(&r.password_hash) {
                    tracing::warn!(
                        user = %r.username,
                        file = origin,
                        "password hash uses other argon2 parameters than m={ARGON2_M_KIB},t={ARGON2_T},p={ARGON2_P}: \
                         login timing can tell this user exists (unknown users are checked \
                         against a hash with those parameters); rehash with `sealed-sessions hash-password`"
                    );
                }
                let user = User {
                    role: r.role,
                    password_hash: r.password_hash,
                };
                (r.username, user)
            })
            .collect();
        Ok(UserStore::new(users))
    }

    /// The demo users, hashed now (on the blocking pool: two argon2 runs).
    pub async fn demo() -> anyhow::Result<UserStore> {
        let mut users = HashMap::new();
        for (name, password, role) in DEMO_USERS {
            let password = Zeroizing::new(password.to_owned());
            let password_hash = tokio::task::spawn_blocking(move || hash_password(&password))
                .await
                .context("hashing a demo password")??;
            users.insert(
                name.to_owned(),
                User {
                    role,
                    password_hash,
                },
            );
        }
        Ok(UserStore::new(users))
    }

    /// A copy of one user's entry.
    pub fn get(&self, username: &str) -> Option<User> {
        self.users.read().get(username).cloned()
    }

    /// Number of accounts.
    pub fn len(&self) -> usize {
        self.users.read().len()
    }

    /// Replaces a user's password hash (already checked, e.g. from [`hash_password`]). Returns
    /// `false` if there is no such user.
    pub fn set_password(&self, username: &str, new_hash: String) -> anyhow::Result<bool> {
        check_hash(&new_hash)?;
        Ok(match self.users.write().get_mut(username) {
            Some(user) => {
                user.password_hash = new_hash;
                true
            }
            None => false,
        })
    }
}

/// Checks that `hash` is an argon2id PHC string whose parameters argon2 accepts.
fn check_hash(hash: &str) -> anyhow::Result<()> {
    Ok(check_password_hash(hash)?)
}

/// Whether checking `hash` costs measurably more or less than checking the dummy hash used for
/// unknown users: true when its argon2 parameters are not [`hash_password`]'s.
pub fn timing_outlier(hash: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return true;
    };
    match Params::try_from(&parsed) {
        Ok(p) => (p.m_cost(), p.t_cost(), p.p_cost()) != (ARGON2_M_KIB, ARGON2_T, ARGON2_P),
        Err(_) => true,
    }
}

fn argon2() -> anyhow::Result<Argon2<'static>> {
    let params = Params::new(ARGON2_M_KIB, ARGON2_T, ARGON2_P, None)
        .map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// An argon2id PHC string for `password` (m=19456 KiB, t=2, p=1, random 16-byte salt). CPU-heavy:
/// call from blocking code or [`PasswordVerifier::hash`].
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let mut salt = [0u8; 16];
    rand::rngs::OsRng
        .try_fill_bytes(&mut salt)
        .context("the operating system random number generator failed")?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    let hash = argon2()?
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("hashing failed: {e}"))?;
    Ok(hash.to_string())
}

/// Whether `password` matches `hash` (with the hash's own parameters). CPU-heavy.
fn verify_hash(password: &[u8], hash: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default().verify_password(password, &parsed).is_ok(),
        Err(_) => false,
    }
}

/// Password checking could not run.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// Too many logins are waiting; the client should retry later (503).
    #[error("too many password checks in progress")]
    Busy,
    /// The hashing task failed (a panic in argon2, or the runtime shutting down).
    #[error("password check failed to run: {0}")]
    Internal(String),
}

/// Checks passwords on the blocking pool, a bounded number at a time. Cheap to clone.
#[derive(Clone, Debug)]
pub struct PasswordVerifier {
    users: Arc<UserStore>,
    // Bounds parallel argon2 runs: each takes a core and 19 MiB.
    permits: Arc<Semaphore>,
    // How long a login waits for a permit before getting `Busy`, so a flood does not pile up
    // connections that each wait minutes.
    queue_timeout: Duration,
}

impl PasswordVerifier {
    /// A verifier for `users` running at most `concurrency` (at least 1) checks at once.
    pub fn new(users: Arc<UserStore>, concurrency: usize) -> PasswordVerifier {
        PasswordVerifier {
            users,
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            queue_timeout: Duration::from_secs(10),
        }
    }

    /// Sets how long a check waits for a free slot (default 10 s).
    #[cfg(test)]
    #[must_use]
    pub fn with_queue_timeout(mut self, timeout: Duration) -> PasswordVerifier {
        self.queue_timeout = timeout;
        self
    }

    /// The users checked against.
    pub fn users(&self) -> &Arc<UserStore> {
        &self.users
    }

    /// The user's role if `password` is theirs; `None` for a wrong password or an unknown user
    /// (which costs the same: it is checked against a dummy hash).
    pub async fn verify(
        &self,
        username: &str,
        password: Zeroizing<String>,
    ) -> Result<Option<Role>, VerifyError> {
        // Copy out and drop the lock before waiting.
        let user = self.users.get(username);
        let (hash, role) = match &user {
            Some(u) => (u.password_hash.clone(), Some(u.role)),
            None => (DUMMY_HASH.to_owned(), None),
        };
        let ok = self
            .run_blocking(move || verify_hash(password.as_bytes(), &hash))
            .await?;
        Ok(role.filter(|_| ok))
    }

    /// Hashes a new password under the same concurrency bound as verification.
    pub async fn hash(&self, password: Zeroizing<String>) -> Result<String, VerifyError> {
        self.run_blocking(move || hash_password(&password))
            .await?
            .map_err(|e| VerifyError::Internal(format!("{e:#}")))
    }

    async fn run_blocking<R: Send + 'static>(
        &self,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> Result<R, VerifyError> {
        let permit = tokio::time::timeout(self.queue_timeout, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| VerifyError::Busy)?
            .map_err(|_| VerifyError::Internal("semaphore closed".to_owned()))?;
        tokio::task::spawn_blocking(move || {
            let out = f();
            drop(permit);
            out
        })
        .await
        .map_err(|e| VerifyError::Internal(e.to_string()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn pw(s: &str) -> Zeroizing<String> {
        Zeroizing::new(s.to_owned())
    }

    fn file_with(users: &[(&str, &str, &str)]) -> String {
        users
            .iter()
            .map(|(name, role, hash)| {
                format!(
                    "[[user]]\nusername = {name:?}\nrole = {role:?}\npassword_hash = {hash:?}\n\n"
                )
            })
            .collect()
    }

    #[test]
    fn good_users_file_loads_every_user_with_its_role() {
        let h = hash_password("pw").unwrap();
        let store = UserStore::parse(
            &file_with(&[("alice", "user", &h), ("root", "admin", &h)]),
            "users.toml",
        )
        .unwrap();
        assert_eq!(store.len(), 2);
        assert_eq!(store.get("alice").unwrap().role, Role::User);
        assert_eq!(store.get("root").unwrap().role, Role::Admin);
        assert!(store.get("bob").is_none());
    }

    #[test]
    fn duplicate_username_is_refused_naming_user_and_file() {
        let text = file_with(&[
            ("alice", "user", DUMMY_HASH),
            ("alice", "admin", DUMMY_HASH),
        ]);
        let msg = format!("{:#}", UserStore::parse(&text, "users.toml").unwrap_err());
        assert!(
            msg.contains("users.toml") && msg.contains("\"alice\""),
            "{msg}"
        );
        assert!(msg.contains("more than once"), "{msg}");
    }

    #[test]
    fn bad_hash_is_refused_naming_user_and_file() {
        for bad in [
            "plaintext",
            "$argon2i$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$PpHpvM2LByVKjbxvwzP9wi7KqHW6YIF8ZZr6XbZGhZ4",
            "$argon2id$v=19$m=1,t=2,p=1$c2FsdHNhbHRzYWx0$PpHpvM2LByVKjbxvwzP9wi7KqHW6YIF8ZZr6XbZGhZ4",
        ] {
            let text = file_with(&[("bob", "user", bad)]);
            let msg = format!("{:#}", UserStore::parse(&text, "/etc/u.toml").unwrap_err());
            assert!(
                msg.contains("/etc/u.toml") && msg.contains("\"bob\""),
                "{bad}: {msg}"
            );
        }
    }

    #[test]
    fn unknown_role_and_unknown_fields_are_refused() {
        let text = file_with(&[("bob", "root", DUMMY_HASH)]);
        assert!(UserStore::parse(&text, "u.toml").is_err());
        let text = format!("{}extra = 1\n", file_with(&[("bob", "user", DUMMY_HASH)]));
        assert!(UserStore::parse(&text, "u.toml").is_err());
        assert!(UserStore::parse("", "u.toml").is_err());
    }

    #[test]
    fn hash_uses_owasp_parameters_and_dummy_hash_matches_them() {
        let h = hash_password("secret").unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify_hash(b"secret", &h));
        assert!(!verify_hash(b"Secret", &h));
        let dummy = PasswordHash::new(DUMMY_HASH).unwrap();
        let real = PasswordHash::new(&h).unwrap();
        assert_eq!(
            Params::try_from(&dummy).unwrap(),
            Params::try_from(&real).unwrap()
        );
        assert_eq!(dummy.algorithm, real.algorithm);
        check_hash(DUMMY_HASH).unwrap();
    }

    async fn store_with_alice() -> Arc<UserStore> {
        let mut users = HashMap::new();
        users.insert(
            "alice".to_owned(),
            User {
                role: Role::Admin,
                password_hash: hash_password("right").unwrap(),
            },
        );
        Arc::new(UserStore::new(users))
    }

    #[tokio::test]
    async fn verifier_accepts_the_right_password_only() {
        let v = PasswordVerifier::new(store_with_alice().await, 2);
        assert_eq!(
            v.verify("alice", pw("right")).await.unwrap(),
            Some(Role::Admin)
        );
        assert_eq!(v.verify("alice", pw("wrong")).await.unwrap(), None);
    }

    #[tokio::test]
    async fn unknown_user_is_refused_even_with_any_password() {
        let v = PasswordVerifier::new(store_with_alice().await, 1);
        assert_eq!(v.verify("mallory", pw("right")).await.unwrap(), None);
        assert_eq!(v.verify("", pw("")).await.unwrap(), None);
    }

    #[tokio::test]
    async fn set_password_takes_effect_for_the_next_login() {
        let v = PasswordVerifier::new(store_with_alice().await, 1);
        let new_hash = v.hash(pw("new")).await.unwrap();
        assert!(v.users().set_password("alice", new_hash).unwrap());
        assert_eq!(v.verify("alice", pw("right")).await.unwrap(), None);
        assert!(v.verify("alice", pw("new")).await.unwrap().is_some());
        assert!(!v.users().set_password("nobody", DUMMY_HASH.into()).unwrap());
        assert!(v.users().set_password("alice", "junk".into()).is_err());
    }

    #[tokio::test]
    async fn a_full_queue_answers_busy_instead_of_waiting_forever() {
        let v = PasswordVerifier::new(store_with_alice().await, 1)
            .with_queue_timeout(Duration::from_millis(20));
        // Hold the only permit, as a long-running verification would.
        let held = v.permits.clone().acquire_owned().await.unwrap();
        assert!(matches!(
            v.verify("alice", pw("right")).await,
            Err(VerifyError::Busy)
        ));
        drop(held);
        assert!(v.verify("alice", pw("right")).await.unwrap().is_some());
    }

    fn median(mut v: Vec<Duration>) -> Duration {
        v.sort();
        v[v.len() / 2]
    }

    /// Login for an unknown user runs argon2 on a dummy hash with the same parameters, so it
    /// costs what a wrong password costs. Interleaved trials, alternating which goes first;
    /// medians must agree within a factor of two (generous: the machine is shared).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unknown_user_and_wrong_password_take_the_same_time() {
        let v = PasswordVerifier::new(store_with_alice().await, 1);
        let time = |user: &'static str| {
            let v = v.clone();
            async move {
                let started = std::time::Instant::now();
                assert_eq!(v.verify(user, pw("wrong")).await.unwrap(), None);
                started.elapsed()
            }
        };
        time("alice").await; // warm-up
        let (mut unknown, mut wrong) = (Vec::new(), Vec::new());
        for i in 0..15 {
            if i % 2 == 0 {
                unknown.push(time("mallory").await);
                wrong.push(time("alice").await);
            } else {
                wrong.push(time("alice").await);
                unknown.push(time("mallory").await);
            }
        }
        let (unknown, wrong) = (median(unknown), median(wrong));
        let ratio = unknown.as_secs_f64() / wrong.as_secs_f64();
        println!("median unknown user {unknown:?}, wrong password {wrong:?}, ratio {ratio:.3}");
        assert!((0.5..=2.0).contains(&ratio), "ratio {ratio}");
    }

    #[test]
    fn hashes_with_other_parameters_are_flagged_as_timing_outliers() {
        let h = hash_password("pw").unwrap();
        assert!(!timing_outlier(&h));
        assert!(!timing_outlier(DUMMY_HASH));
        let other = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHRzYWx0$PpHpvM2LByVKjbxvwzP9wi7KqHW6YIF8ZZr6XbZGhZ4";
        assert!(timing_outlier(other));
    }

    #[tokio::test]
    async fn demo_users_log_in_with_their_published_passwords() {
        let v = PasswordVerifier::new(Arc::new(UserStore::demo().await.unwrap()), 2);
        for (name, password, role) in DEMO_USERS {
            assert_eq!(v.verify(name, pw(password)).await.unwrap(), Some(role));
        }
    }
}
