//! Operator commands: `hash-password`, `keygen`, `keys list`. They print no secret except the
//! password hash asked for. (`inspect` and `revoke` have their own modules.)

use std::io::{BufRead as _, IsTerminal as _, Read as _};
use std::path::PathBuf;
use std::time::SystemTime;

use anyhow::{Context as _, bail};
use sealed_sessions::keys::{self, KeyFileInfo, LoadOptions};

use super::config::KeyDirFlags;
use super::{key_files, keys_bootstrap};
use sealed_sessions::{Key, KeyId, KeyRing};
use zeroize::Zeroizing;

use super::auth::password::{MAX_PASSWORD_BYTES, check_new_password, hash_password};

/// `keygen` flags.
#[derive(Debug, clap::Args)]
pub struct KeygenArgs {
    /// Key directory (created with mode 0700 if missing).
    #[arg(
        long = "keys",
        alias = "dir",
        value_name = "DIR",
        env = "SEALED_SESSIONS_KEYS_DIR",
        default_value = "keys/"
    )]
    pub dir: PathBuf,
    /// Also make the new key the primary (the one that seals). Only once every node has it.
    #[arg(long)]
    pub primary: bool,
    /// Key id (default: random, like k1a2b3c4d).
    #[arg(long)]
    pub id: Option<KeyId>,
}

/// `keys list` flags.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// The key directory, read as `serve` reads it.
    #[command(flatten)]
    pub keys: KeyDirFlags,
}

/// Reads a password (no echo on a terminal; one line from a pipe) and prints its argon2id hash.
/// The password must meet the rules `POST /password` applies to a new password.
pub fn hash_password_command() -> anyhow::Result<()> {
    let stdin = std::io::stdin();
    let password = if stdin.is_terminal() {
        let first = Zeroizing::new(
            rpassword::prompt_password("Password: ").context("reading the password")?,
        );
        let again = Zeroizing::new(
            rpassword::prompt_password("Repeat password: ").context("reading the password")?,
        );
        if first != again {
            bail!("the two passwords differ");
        }
        first
    } else {
        // One byte past the longest password allowed (plus a line ending) is enough to refuse
        // a longer one. Pre-sized so the buffer does not reallocate and leave copies behind.
        let bound = MAX_PASSWORD_BYTES + 3;
        let mut line = Zeroizing::new(String::with_capacity(bound));
        stdin
            .lock()
            .take(bound as u64)
            .read_line(&mut line)
            .context("reading the password from standard input")?;
        // Only the line ending goes: spaces may be part of the password.
        let len = line
            .strip_suffix('\n')
            .map_or(line.len(), |l| l.strip_suffix('\r').unwrap_or(l).len());
        line.truncate(len);
        line
    };
    check_new_password(&password)?;
    println!("{}", hash_password(&password)?);
    Ok(())
}

/// Writes a new key file and says where, without the key.
pub fn keygen_command(args: KeygenArgs) -> anyhow::Result<()> {
    let id = args.id.unwrap_or_else(KeyId::generate);
    let key = Key::generate().context("generating a key")?;
    // A lone key without PRIMARY is primary because it is alone: name it in PRIMARY before adding
    // a second, or the directory would stop loading ("no PRIMARY file").
    if !args.primary
        && let Some(sole) = sole_key_without_primary(&args.dir)
    {
        key_files::write_primary_file(&args.dir, &sole)?;
        println!(
            "wrote {}: {sole} stays primary",
            args.dir.join(keys::PRIMARY_FILE).display()
        );
    }
    key_files::write_key_file(&args.dir, &id, &key, args.primary)?;
    let path = args.dir.join(format!("{id}{}", keys::KEY_FILE_EXT));
    let alone = keys::list_dir(&args.dir).is_ok_and(|l| l.len() == 1);
    if args.primary {
        println!("wrote {} (mode 0600); {id} is now primary", path.display());
    } else if alone {
        println!(
            "wrote {} (mode 0600); {id} is primary, being the only key",
            path.display()
        );
    } else {
        println!(
            "wrote {} (mode 0600); not primary: once every node has it, run `echo {id} > {}`",
            path.display(),
            args.dir.join(keys::PRIMARY_FILE).display()
        );
    }
    if let Err(e) = keys_bootstrap::load_dir(&args.dir, &LoadOptions::default()) {
        eprintln!("warning: {} does not load yet: {e:#}", args.dir.display());
    }
    if std::env::var_os(keys::ENV_VAR).is_some_and(|v| !v.is_empty()) {
        eprintln!(
            "warning: {} is set here; a server with it set uses those keys and ignores {}",
            keys::ENV_VAR,
            args.dir.display()
        );
    }
    Ok(())
}

/// The id of the only key in `dir` when there is no `PRIMARY` file (that key is primary only
/// because it is alone). `None` in every other case, including an unreadable directory, which
/// writing the key will report.
fn sole_key_without_primary(dir: &std::path::Path) -> Option<KeyId> {
    if dir.join(keys::PRIMARY_FILE).exists() {
        return None;
    }
    match keys::list_dir(dir).ok()?.as_slice() {
        [only] => Some(only.id.clone()),
        _ => None,
    }
}

/// Lists the keys `serve` and `inspect` would use, the primary marker and file ages; never key
/// bytes. Like `serve`, `SEALED_SESSIONS_KEYS` wins over the directory when set. Fails (after
/// printing the list) when those commands would refuse the keys, with the same error.
pub fn keys_list_command(args: ListArgs) -> anyhow::Result<()> {
    let dir = &args.keys.dir;
    let from_env = KeyRing::from_env(keys::ENV_VAR)
        .with_context(|| format!("invalid {} environment variable", keys::ENV_VAR))?;
    if let Some(ring) = from_env {
        print!("{}", render(&env_rows(&ring), SystemTime::now()));
        eprintln!(
            "note: keys from the {} environment variable, which serve and inspect use instead \
             of {}",
            keys::ENV_VAR,
            dir.display()
        );
        return Ok(());
    }
    let list = keys::list_dir(dir)?;
    print!("{}", render(&dir_rows(&list), SystemTime::now()));
    if list.is_empty() {
        eprintln!(
            "no keys in {}; create one with `sealed-sessions keygen --keys {} --primary`",
            dir.display(),
            dir.display()
        );
        return Ok(());
    }
    // The listing reads names only; loading checks content, permissions and PRIMARY, exactly
    // as `serve` does at startup.
    keys_bootstrap::load_dir(dir, &args.keys.load_options())
        .map(drop)
        .with_context(|| {
            format!(
                "the keys in {} cannot be loaded (serve and inspect refuse them)",
                dir.display()
            )
        })
}

/// One line of `keys list`.
#[derive(Debug)]
struct Row {
    id: String,
    primary: bool,
    modified: Option<SystemTime>,
    /// Unix permission bits of the key file.
    mode: Option<u32>,
    /// Where the key is: its file, or the environment variable.
    source: String,
}

fn dir_rows(list: &[KeyFileInfo]) -> Vec<Row> {
    list.iter()
        .map(|k| Row {
            id: k.id.to_string(),
            primary: k.primary,
            modified: k.modified,
            mode: file_mode(&k.path),
            source: k.path.display().to_string(),
        })
        .collect()
}

fn env_rows(ring: &KeyRing) -> Vec<Row> {
    ring.ids()
        .map(|id| Row {
            id: id.to_string(),
            primary: id == ring.primary_id(),
            modified: None,
            mode: None,
            source: format!("${}", keys::ENV_VAR),
        })
        .collect()
}

#[cfg(unix)]
fn file_mode(path: &std::path::Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path)
        .ok()
        .map(|m| m.permissions().mode() & 0o7777)
}

#[cfg(not(unix))]
fn file_mode(_path: &std::path::Path) -> Option<u32> {
    None
}

fn render(rows: &[Row], now: SystemTime) -> String {
    let ages: Vec<String> = rows
        .iter()
        .map(|r| {
            r.modified
                .and_then(|m| now.duration_since(m).ok())
                .map_or_else(
                    || "-".to_owned(),
                    |d| {
                        humantime::format_duration(std::time::Duration::from_secs(d.as_secs()))
                            .to_string()
                    },
                )
        })
        .collect();
    // As wide as the longest age (`3days 2h 30m 5s` and longer), so the columns stay aligned.
    let w = ages.iter().map(String::len).max().unwrap_or(0).max(14);
    let mut out = format!(
        "{:<16}  {:<7}  {:<w$}  {:<4}  SOURCE\n",
        "ID", "PRIMARY", "AGE", "MODE"
    );
    for (r, age) in rows.iter().zip(&ages) {
        let mode = r
            .mode
            .map_or_else(|| "-".to_owned(), |m| format!("{m:04o}"));
        out.push_str(&format!(
            "{:<16}  {:<7}  {:<w$}  {:<4}  {}\n",
            r.id,
            if r.primary { "*" } else { "" },
            age,
            mode,
            r.source
        ));
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn list_shows_id_primary_marker_age_and_mode() {
        let now = SystemTime::now();
        let list = vec![
            KeyFileInfo {
                id: KeyId::new("k1").unwrap(),
                path: PathBuf::from("keys/k1.key"),
                primary: false,
                modified: Some(now - Duration::from_secs(3 * 86400)),
            },
            KeyFileInfo {
                id: KeyId::new("k2").unwrap(),
                path: PathBuf::from("keys/k2.key"),
                primary: true,
                modified: None,
            },
        ];
        let mut rows = dir_rows(&list);
        rows[0].mode = Some(0o600);
        let text = render(&rows, now);
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with("ID") && lines[0].contains("MODE"),
            "{text}"
        );
        assert!(
            lines[1].starts_with("k1 ") && lines[1].contains("3days") && lines[1].contains("0600"),
            "{text}"
        );
        assert!(
            lines[2].starts_with("k2 ") && lines[2].contains(" * "),
            "{text}"
        );
        assert!(lines[2].contains(" - "), "{text}");
        assert!(lines[2].ends_with("keys/k2.key"), "{text}");
    }

    #[test]
    fn long_ages_keep_the_columns_aligned() {
        let now = SystemTime::now();
        let list = vec![
            KeyFileInfo {
                id: KeyId::new("old").unwrap(),
                path: PathBuf::from("keys/old.key"),
                primary: false,
                modified: Some(now - Duration::from_secs(400 * 86_400 + 3 * 3600 + 61)),
            },
            KeyFileInfo {
                id: KeyId::new("new").unwrap(),
                path: PathBuf::from("keys/new.key"),
                primary: true,
                modified: Some(now),
            },
        ];
        let mut rows = dir_rows(&list);
        rows[0].mode = Some(0o600);
        rows[1].mode = Some(0o600);
        let text = render(&rows, now);
        let mode_at: Vec<usize> = text
            .lines()
            .map(|l| l.find("MODE").or_else(|| l.find("0600")).unwrap())
            .collect();
        assert!(mode_at.iter().all(|&c| c == mode_at[0]), "{text}");
    }

    #[test]
    fn env_keys_are_listed_primary_first_with_no_file() {
        let ring = KeyRing::new(
            (KeyId::new("new").unwrap(), Key::from_bytes([1; 32])),
            [(KeyId::new("old").unwrap(), Key::from_bytes([2; 32]))],
        )
        .unwrap();
        let text = render(&env_rows(&ring), SystemTime::now());
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[1].starts_with("new ") && lines[1].contains(" * "),
            "{text}"
        );
        assert!(
            lines[2].starts_with("old ") && !lines[2].contains(" * "),
            "{text}"
        );
        assert!(lines[2].ends_with("$SEALED_SESSIONS_KEYS"), "{text}");
    }
}
