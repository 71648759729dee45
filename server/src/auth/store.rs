//! Users: the store loaded from the users file (whose format, `crate::users_file`, is
//! in the library so it can be fuzzed), the demo users, and password hashing and verification.
//!
//! Verification runs argon2id (19 MiB, about a core for tens of milliseconds) on the blocking
//! pool, at most `--login-concurrency` at a time, so a flood of logins queues behind the
//! semaphore instead of taking every core from request validation.
//!
//! A store loaded from a users file keeps to it: a password change is written back into the
//! file (only that user's `password_hash`, comments and layout kept; a new file renamed over the
//! old one, so a reader never sees half of it), and a file changed by another node sharing it is
//! read again at the next login.

use std::collections::HashMap;
use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::users_file::{check_password_hash, parse_users_file};
use anyhow::Context as _;
use argon2::password_hash::{PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Params, PasswordHasher as _, PasswordVerifier as _, Version};
use parking_lot::{Mutex, RwLock};
use rand::TryRngCore as _;
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

pub use crate::users_file::Role;

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
/// `parking_lot` locks because reads are short lookups and none is held across `.await`. The
/// file's methods do blocking I/O: call them from the blocking pool.
#[derive(Debug, Default)]
pub struct UserStore {
    users: RwLock<HashMap<String, User>>,
    file: Option<UsersFile>,
}

/// The users file behind a store, and how it looked when last read or written. The mutex also
/// serialises the store's writes and re-reads.
#[derive(Debug)]
struct UsersFile {
    path: PathBuf,
    seen: Mutex<Option<FileStamp>>,
}

/// Enough of a file's metadata to notice that someone else rewrote it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    #[cfg(unix)]
    inode: u64,
}

impl FileStamp {
    fn of(path: &Path) -> std::io::Result<FileStamp> {
        let m = std::fs::metadata(path)?;
        Ok(FileStamp {
            modified: m.modified().ok(),
            len: m.len(),
            #[cfg(unix)]
            inode: std::os::unix::fs::MetadataExt::ino(&m),
        })
    }
}

impl UserStore {
    /// A store holding `users`.
    pub fn new(users: HashMap<String, User>) -> UserStore {
        UserStore {
            users: RwLock::new(users),
            file: None,
        }
    }

    /// Reads and checks a users file; the store keeps to it from then on (see the module docs).
    pub fn load(path: &Path) -> anyhow::Result<UserStore> {
        let stamp = FileStamp::of(path).ok();
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read users file {}", path.display()))?;
        let mut store = Self::parse(&text, &path.display().to_string())?;
        store.file = Some(UsersFile {
            path: path.to_owned(),
            seen: Mutex::new(stamp),
        });
        Ok(store)
    }

    /// Reads the users file again if it changed since this store last read or wrote it (another
    /// node sharing the file changed a password). A file that no longer reads or parses is
    /// logged and the accounts held stay as they are. Blocking I/O.
    pub fn refresh(&self) {
        let Some(file) = &self.file else { return };
        let mut seen = file.seen.lock();
        let Ok(now) = FileStamp::of(&file.path) else {
            return;
        };
        if *seen == Some(now) {
            return;
        }
        *seen = Some(now);
        let origin = file.path.display().to_string();
        match std::fs::read_to_string(&file.path)
            .map_err(anyhow::Error::from)
            .and_then(|text| Self::parse(&text, &origin))
        {
            Ok(fresh) => {
                let users = fresh.users.into_inner();
                tracing::info!(users = users.len(), file = %origin, "users file changed; re-read it");
                *self.users.write() = users;
            }
            Err(e) => {
                tracing::warn!(file = %origin, error = %format!("{e:#}"), "users file changed but does not load; keeping the accounts held");
            }
        }
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

    /// Whether there are no accounts.
    pub fn is_empty(&self) -> bool {
        self.users.read().is_empty()
    }

    /// Replaces a user's password hash (already checked, e.g. from [`hash_password`]), in the
    /// users file first when there is one (blocking I/O), then here. Returns `false` if there is
    /// no such user.
    ///
    /// # Errors
    /// An unusable hash, or a users file that could not be rewritten (nothing changed then).
    pub fn set_password(&self, username: &str, new_hash: String) -> anyhow::Result<bool> {
        check_hash(&new_hash)?;
        if !self.users.read().contains_key(username) {
            return Ok(false);
        }
        if let Some(file) = &self.file {
            let mut seen = file.seen.lock();
            if !rewrite_hash(&file.path, username, &new_hash)? {
                return Ok(false);
            }
            *seen = FileStamp::of(&file.path).ok();
        }
        Ok(match self.users.write().get_mut(username) {
            Some(user) => {
                user.password_hash = new_hash;
                true
            }
            None => false,
        })
    }
}

/// Sets `username`'s `password_hash` in the users file at `path`, keeping everything else in
/// it as it is; `false` if the file has no such user. The new text is checked like a users file
/// at startup, written to a temporary file beside it with the same permissions, flushed to disk
/// and renamed over the old one.
fn rewrite_hash(path: &Path, username: &str, new_hash: &str) -> anyhow::Result<bool> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read users file {origin}"))?;
    let mut doc: toml_edit::DocumentMut = text
        .parse()
        .map_err(|_| anyhow::anyhow!("users file {origin} no longer parses"))?;
    let Some(users) = doc
        .get_mut("user")
        .and_then(toml_edit::Item::as_array_of_tables_mut)
    else {
        return Ok(false);
    };
    let mut found = false;
    for table in users.iter_mut() {
        if table.get("username").and_then(toml_edit::Item::as_str) != Some(username) {
            continue;
        }
        let Some(value) = table
            .get_mut("password_hash")
            .and_then(toml_edit::Item::as_value_mut)
        else {
            continue;
        };
        let decor = value.decor().clone();
        *value = toml_edit::Value::from(new_hash);
        *value.decor_mut() = decor;
        found = true;
    }
    if !found {
        return Ok(false);
    }
    let out = doc.to_string();
    parse_users_file(&out, &origin)?;

    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map_or_else(|| "users".into(), |n| n.to_string_lossy());
    let tmp = dir.join(format!(".{name}.{:016x}.tmp", rand::random::<u64>()));
    let permissions = std::fs::metadata(path)?.permissions();
    let write = || -> std::io::Result<()> {
        let mut open = std::fs::OpenOptions::new();
        open.write(true).create_new(true);
        // Owner-only from the start; the old file's permissions are applied next.
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut open, 0o600);
        let mut f = open.open(&tmp)?;
        f.set_permissions(permissions)?;
        f.write_all(out.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("cannot rewrite users file {origin}"));
    }
    Ok(true)
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

    /// A users file with comments and two users, owner-only, in a fresh directory.
    fn users_dir(alice: &str, bob: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.toml");
        let text = format!(
            "# accounts for the demo\n[[user]]\nusername = \"alice\"\nrole = \"user\"\n\
             password_hash = {alice:?} # rotated yearly\n\n# the operator\n{}",
            file_with(&[("bob", "admin", bob)])
        );
        std::fs::write(&path, text).unwrap();
        #[cfg(unix)]
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        (dir, path)
    }

    #[test]
    fn password_change_is_written_back_keeping_the_rest_of_the_file() {
        let (old, new) = (
            hash_password("old-pw").unwrap(),
            hash_password("new-pw").unwrap(),
        );
        let (dir, path) = users_dir(&old, DUMMY_HASH);
        let store = UserStore::load(&path).unwrap();
        assert!(store.set_password("alice", new.clone()).unwrap());
        assert_eq!(store.get("alice").unwrap().password_hash, new);

        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# accounts for the demo\n"), "{text}");
        assert!(
            text.contains(&format!("password_hash = {new:?} # rotated yearly")),
            "{text}"
        );
        assert!(
            text.contains("# the operator") && text.contains(DUMMY_HASH),
            "{text}"
        );
        assert!(!text.contains(&old), "{text}");
        // What a restarted node reads.
        let reloaded = UserStore::load(&path).unwrap();
        assert_eq!(reloaded.get("alice").unwrap().password_hash, new);
        assert_eq!(reloaded.get("bob").unwrap().role, Role::Admin);
        #[cfg(unix)]
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(
                &std::fs::metadata(&path).unwrap().permissions()
            ) & 0o777,
            0o600
        );
        // Nothing left beside it.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["users.toml"]);
    }

    #[test]
    fn another_nodes_change_to_the_shared_file_is_read_at_the_next_refresh() {
        let new = hash_password("new-pw").unwrap();
        let (_dir, path) = users_dir(DUMMY_HASH, DUMMY_HASH);
        let (a, b) = (
            UserStore::load(&path).unwrap(),
            UserStore::load(&path).unwrap(),
        );
        assert!(a.set_password("alice", new.clone()).unwrap());
        assert_eq!(b.get("alice").unwrap().password_hash, DUMMY_HASH);
        b.refresh();
        assert_eq!(b.get("alice").unwrap().password_hash, new);
        // A file that no longer loads leaves the accounts held as they were.
        std::fs::write(&path, "[[user]]\nusername = \"alice\"\n").unwrap();
        b.refresh();
        assert_eq!(b.get("alice").unwrap().password_hash, new);
        assert_eq!(b.len(), 2);
    }

    #[test]
    fn a_user_gone_from_the_file_is_not_written_back() {
        let (_dir, path) = users_dir(DUMMY_HASH, DUMMY_HASH);
        let store = UserStore::load(&path).unwrap();
        // Another node removed alice; this store has not re-read the file yet.
        std::fs::write(&path, file_with(&[("bob", "admin", DUMMY_HASH)])).unwrap();
        let new = hash_password("new-pw").unwrap();
        assert!(!store.set_password("alice", new).unwrap());
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            file_with(&[("bob", "admin", DUMMY_HASH)])
        );
        assert_eq!(store.get("alice").unwrap().password_hash, DUMMY_HASH);
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
