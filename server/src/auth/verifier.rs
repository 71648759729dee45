//! Password checks on the blocking pool, a bounded number at a time.
//!
//! Verification runs argon2id (19 MiB, about a core for tens of milliseconds) on the blocking
//! pool, at most `--login-concurrency` at a time, so a flood of logins queues behind the
//! semaphore instead of taking every core from request validation.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use zeroize::Zeroizing;

use super::password::{DUMMY_HASH, hash_password, verify_hash};
use super::{Role, UserStore};

/// Password checking could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
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
        let users = self.users.clone();
        let username = username.to_owned();
        self.run_blocking(move || {
            // A password changed on another node sharing the users file counts at once.
            users.refresh();
            let (hash, role) = match users.get(&username) {
                Some(u) => (u.password_hash, Some(u.role)),
                None => (DUMMY_HASH.to_owned(), None),
            };
            let ok = verify_hash(password.as_bytes(), &hash);
            role.filter(|_| ok)
        })
        .await
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
    use crate::auth::User;
    use std::collections::HashMap;

    fn pw(s: &str) -> Zeroizing<String> {
        Zeroizing::new(s.to_owned())
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
}
