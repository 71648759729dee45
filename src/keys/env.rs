//! Loading a key ring from an environment variable. The format is described in the `keys`
//! module's docs.

use zeroize::Zeroizing;

use super::{EnvProblem, KeyError, KeyId, KeyRing, parse_key};

/// Environment variable conventionally holding the key ring
/// (see [`KeyRing::from_env`]).
pub const ENV_VAR: &str = "SEALED_SESSIONS_KEYS";

impl KeyRing {
    /// Parses `id1:BASE64,id2:BASE64`; the first entry is primary.
    ///
    /// Whitespace around items is allowed and empty items are skipped.
    /// Errors give the entry number and never quote key text.
    pub fn from_env_value(value: &str) -> Result<KeyRing, KeyError> {
        let malformed = |reason: EnvProblem| KeyError::MalformedEnv { reason };
        let mut entries = Vec::new();
        for (n, item) in value
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .enumerate()
        {
            let entry = n + 1;
            let (id, key) = item
                .split_once(':')
                .ok_or_else(|| malformed(EnvProblem::NotIdAndKey { entry }))?;
            // The id is not echoed here: in a malformed list it may be key text.
            let id =
                KeyId::new(id.trim()).map_err(|_| malformed(EnvProblem::InvalidId { entry }))?;
            let key = parse_key(key.as_bytes()).map_err(|problem| {
                malformed(EnvProblem::InvalidKey {
                    entry,
                    id: id.clone(),
                    problem,
                })
            })?;
            entries.push((id, key));
        }
        let mut entries = entries.into_iter();
        let primary = entries
            .next()
            .ok_or_else(|| malformed(EnvProblem::NoEntries))?;
        KeyRing::new(primary, entries)
    }

    /// Reads the ring from environment variable `var` (usually [`ENV_VAR`]).
    ///
    /// `Ok(None)` if it is unset or blank, so callers can fall back to a key
    /// directory.
    pub fn from_env(var: &str) -> Result<Option<KeyRing>, KeyError> {
        match std::env::var(var) {
            Ok(value) => {
                let value = Zeroizing::new(value);
                if value.trim().is_empty() {
                    Ok(None)
                } else {
                    KeyRing::from_env_value(&value).map(Some)
                }
            }
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => Err(KeyError::EnvNotUnicode {
                var: var.to_owned(),
            }),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::keys::test_support::*;

    #[test]
    fn env_value_first_entry_is_primary() {
        let (k1, k2) = (test_key(1), test_key(2));
        let value = format!(
            " new : {} ,\n old:{}\n,",
            k2.to_base64().as_str(),
            k1.to_base64().as_str()
        );
        let ring = KeyRing::from_env_value(&value).unwrap();
        assert_eq!(ids_of(&ring), ["new", "old"]);
        assert_eq!(ring.primary().1.expose_secret(), k2.expose_secret());
        assert_eq!(
            ring.get(b"old").unwrap().expose_secret(),
            k1.expose_secret()
        );
    }

    #[test]
    fn env_value_duplicate_ids_are_refused() {
        let b64 = test_key(1).to_base64();
        let value = format!("a:{0},b:{0},a:{0}", b64.as_str());
        let err = KeyRing::from_env_value(&value).unwrap_err();
        assert!(
            matches!(&err, KeyError::DuplicateId { id } if id.as_str() == "a"),
            "{err:?}"
        );
    }

    #[test]
    fn env_value_errors_give_entry_and_hide_key_text() {
        let key = test_key(3);
        let b64 = key.to_base64();
        let cases = [
            (String::new(), "no entries"),
            (" , ".to_owned(), "no entries"),
            (format!("a:{}, {}", b64.as_str(), b64.as_str()), "entry 2"),
            (
                format!("{}:a", b64.as_str()),
                "entry 1 has an invalid key id",
            ),
            (format!("a:{}", &b64[..20]), "entry 1 (key a)"),
        ];
        for (value, expected) in cases {
            let err = KeyRing::from_env_value(&value).unwrap_err();
            let shown = format!("{err} {err:?}");
            assert!(matches!(err, KeyError::MalformedEnv { .. }), "{err:?}");
            assert!(shown.contains(expected), "{shown}");
            assert_no_key_material(&shown, &key);
        }
    }

    #[test]
    fn from_env_unset_is_none() {
        // Setting variables needs `unsafe` in edition 2024, so only the
        // unset path is tested here; parsing is covered via from_env_value.
        let ring = KeyRing::from_env("SEALED_SESSIONS_KEYS_TEST_SURELY_UNSET").unwrap();
        assert!(ring.is_none());
    }
}
