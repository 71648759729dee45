//! The reference server's users file: TOML `[[user]]` tables with argon2id password hashes.
//!
//! ```toml
//! [[user]]
//! username = "alice"
//! role = "user"            # or "admin"
//! password_hash = "$argon2id$v=19$m=19456,t=2,p=1$..."
//! ```
//!
//! Only the format lives here — parsing and checking text, no files, no hashing, no store — so
//! the `users_file` fuzz target exercises exactly what the server runs at startup. The server's
//! user store and password verifier build on [`parse_users_file`] and [`check_password_hash`].
//!
//! Errors never quote the file's text: a TOML syntax error gives the line and column, not the
//! offending line (which may hold a password hash).

use std::fmt;

use argon2::password_hash::PasswordHash;
use argon2::{Algorithm, Params};
use serde::{Deserialize, Serialize};

/// What a user may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// An ordinary account.
    User,
    /// May use the admin routes.
    Admin,
}

impl Role {
    /// The name used in the users file and the JSON API.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One `[[user]]` table, checked: a non-empty username and a usable argon2id hash.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserRecord {
    /// The login name (unique in the file).
    pub username: String,
    /// The role sealed into the user's sessions.
    pub role: Role,
    /// An argon2id PHC string.
    pub password_hash: String,
}

impl fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A hash is offline-crackable: keep it out of logs.
        f.debug_struct("UserRecord")
            .field("username", &self.username)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersFile {
    #[serde(default)]
    user: Vec<UserRecord>,
}

/// Why a password hash is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PasswordHashError {
    /// Not a PHC string at all.
    #[error("not a PHC string ($argon2id$v=19$m=…): {0}")]
    NotPhc(String),
    /// A PHC string of another algorithm.
    #[error("algorithm is {0}, expected argon2id (make one with `sealed-sessions hash-password`)")]
    NotArgon2id(String),
    /// Parameters argon2 refuses (for instance a memory cost below its minimum).
    #[error("bad argon2 parameters: {0}")]
    Params(String),
    /// Salt and parameters but no hash.
    #[error("the PHC string has no hash part")]
    NoHash,
}

/// Why a users file was refused. Each message names the file (`origin`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UsersFileError {
    /// Not TOML, or not the schema (unknown field, unknown role, wrong type).
    #[error("invalid users file {origin}: {message}")]
    Syntax {
        /// The file.
        origin: String,
        /// The parser's message, with the line and column but without the text there.
        message: String,
    },
    /// A `[[user]]` with `username = ""`.
    #[error("users file {origin}: a [[user]] has an empty username")]
    EmptyUsername {
        /// The file.
        origin: String,
    },
    /// A user's `password_hash` is unusable.
    #[error("users file {origin}: user {username:?} has an unusable password_hash")]
    BadHash {
        /// The file.
        origin: String,
        /// The user.
        username: String,
        /// What is wrong with the hash.
        #[source]
        source: PasswordHashError,
    },
    /// Two `[[user]]` tables with one username.
    #[error("users file {origin}: user {username:?} appears more than once")]
    Duplicate {
        /// The file.
        origin: String,
        /// The repeated username.
        username: String,
    },
    /// No `[[user]]` at all.
    #[error("users file {origin} defines no [[user]]")]
    NoUsers {
        /// The file.
        origin: String,
    },
}

/// Parses and checks users-file text; `origin` names the file in errors. Users come back in
/// file order.
///
/// # Errors
/// [`UsersFileError`]; nothing here panics on any input.
pub fn parse_users_file(text: &str, origin: &str) -> Result<Vec<UserRecord>, UsersFileError> {
    let file: UsersFile = toml::from_str(text).map_err(|e| UsersFileError::Syntax {
        origin: origin.to_owned(),
        message: describe_toml_error(text, &e),
    })?;
    let mut seen = std::collections::HashSet::with_capacity(file.user.len());
    for user in &file.user {
        if user.username.is_empty() {
            return Err(UsersFileError::EmptyUsername {
                origin: origin.to_owned(),
            });
        }
        check_password_hash(&user.password_hash).map_err(|source| UsersFileError::BadHash {
            origin: origin.to_owned(),
            username: user.username.clone(),
            source,
        })?;
        if !seen.insert(user.username.as_str()) {
            return Err(UsersFileError::Duplicate {
                origin: origin.to_owned(),
                username: user.username.clone(),
            });
        }
    }
    if file.user.is_empty() {
        return Err(UsersFileError::NoUsers {
            origin: origin.to_owned(),
        });
    }
    Ok(file.user)
}

/// Checks that `hash` is an argon2id PHC string whose parameters argon2 accepts.
///
/// # Errors
/// [`PasswordHashError`].
pub fn check_password_hash(hash: &str) -> Result<(), PasswordHashError> {
    let parsed = PasswordHash::new(hash).map_err(|e| PasswordHashError::NotPhc(e.to_string()))?;
    if parsed.algorithm != Algorithm::Argon2id.ident() {
        return Err(PasswordHashError::NotArgon2id(parsed.algorithm.to_string()));
    }
    Params::try_from(&parsed).map_err(|e| PasswordHashError::Params(e.to_string()))?;
    if parsed.hash.is_none() {
        return Err(PasswordHashError::NoHash);
    }
    Ok(())
}

/// The TOML error's message and position, without the snippet of file text `toml` would show.
fn describe_toml_error(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim_end();
    match e.span() {
        Some(span) => {
            let before = text.get(..span.start).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("line {line}, column {column}: {message}")
        }
        None => message.to_owned(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$yzdgowYnurK+dcl97RgXyg$3jgM0aetC7uVYABsebx3hJmEBJvZ0JOCg4IYBXeOXCo";

    #[test]
    fn syntax_errors_give_the_position_but_not_the_text() {
        let text = format!(
            "[[user]]\nusername = \"a\"\nrole = \"user\"\npassword_hash = \"{HASH}\" junk\n"
        );
        let err = parse_users_file(&text, "u.toml").unwrap_err();
        let shown = err.to_string();
        assert!(
            shown.contains("u.toml") && shown.contains("line 4"),
            "{shown}"
        );
        assert!(
            !shown.contains(HASH) && !format!("{err:?}").contains(HASH),
            "{shown}"
        );
    }

    #[test]
    fn records_come_back_in_file_order_and_debug_hides_the_hash() {
        let text = format!(
            "[[user]]\nusername = \"b\"\nrole = \"admin\"\npassword_hash = \"{HASH}\"\n\
             [[user]]\nusername = \"a\"\nrole = \"user\"\npassword_hash = \"{HASH}\"\n"
        );
        let users = parse_users_file(&text, "u.toml").unwrap();
        let names: Vec<_> = users
            .iter()
            .map(|u| (u.username.as_str(), u.role))
            .collect();
        assert_eq!(names, [("b", Role::Admin), ("a", Role::User)]);
        assert!(!format!("{users:?}").contains(HASH));
    }

    #[test]
    fn hash_problems_are_told_apart() {
        assert!(matches!(
            check_password_hash("plain"),
            Err(PasswordHashError::NotPhc(_))
        ));
        assert!(matches!(
            check_password_hash(&HASH.replace("argon2id", "argon2i")),
            Err(PasswordHashError::NotArgon2id(_))
        ));
        assert!(matches!(
            check_password_hash(&HASH.replace("m=19456", "m=1")),
            Err(PasswordHashError::Params(_))
        ));
        let no_hash = HASH.rsplit_once('$').unwrap().0;
        assert_eq!(check_password_hash(no_hash), Err(PasswordHashError::NoHash));
        check_password_hash(HASH).unwrap();
    }
}
