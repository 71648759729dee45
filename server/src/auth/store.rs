//! The accounts in memory, loaded from the users file (its format is [`super::users_file`])
//! or made up for the demo ([`super::demo`]), changeable at run time (password changes).
//!
//! A store loaded from a users file keeps to it: a password change is written back into the
//! file first (the private `auth::write_back` module), and a file changed by another node sharing it is read
//! again at the next login ([`UserStore::refresh`]).

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::Context as _;
use parking_lot::{Mutex, RwLock};

use super::Role;
use super::password::{ARGON2_M_KIB, ARGON2_P, ARGON2_T, timing_outlier};
use super::users_file::{check_password_hash, parse_users_file};
use super::write_back::rewrite_hash;
use crate::report;

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
                tracing::warn!(file = %origin, error = %report::chain(e.as_ref()), "users file changed but does not load; keeping the accounts held");
            }
        }
    }

    /// Parses users-file text; `origin` names the file in errors. Warns about hashes whose
    /// argon2 parameters differ from [`hash_password`](super::password::hash_password)'s (see [`timing_outlier`]).
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

    /// Replaces a user's password hash (already checked, e.g. from
    /// [`hash_password`](super::password::hash_password)), in the users file first when there is
    /// one (blocking I/O), then here. Returns `false` if there is no such user.
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

/// Checks that `hash` is an argon2id PHC string whose parameters argon2 accepts.
fn check_hash(hash: &str) -> anyhow::Result<()> {
    Ok(check_password_hash(hash)?)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::auth::password::{DUMMY_HASH, hash_password};

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
}
