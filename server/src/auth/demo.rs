//! The demo accounts, created when `serve` runs without a users file (refused with
//! `--production`): their passwords are published in this file and in the server's log.

use std::collections::HashMap;

use anyhow::Context as _;
use zeroize::Zeroizing;

use super::password::hash_password;
use super::{Role, User, UserStore};

/// The demo accounts: username, password, role.
pub const DEMO_USERS: [(&str, &str, Role); 2] = [
    ("alice", "alice-password", Role::User),
    ("admin", "admin-password", Role::Admin),
];

impl UserStore {
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
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::auth::PasswordVerifier;
    use std::sync::Arc;

    #[tokio::test]
    async fn demo_users_log_in_with_their_published_passwords() {
        let v = PasswordVerifier::new(Arc::new(UserStore::demo().await.unwrap()), 2);
        for (name, password, role) in DEMO_USERS {
            let password = Zeroizing::new(password.to_owned());
            assert_eq!(v.verify(name, password).await.unwrap(), Some(role));
        }
    }
}
