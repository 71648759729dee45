//! Operator commands: `hash-password`, `keygen`, `keys list`. They print no secret except the
//! password hash asked for.

use std::io::{BufRead as _, IsTerminal as _, Read as _};
use std::path::PathBuf;
use std::time::SystemTime;

use anyhow::{Context as _, bail};
use sealed_sessions::keys::{self, KeyFileInfo};
use sealed_sessions::{Key, KeyId};
use zeroize::Zeroizing;

use super::users::hash_password;

/// Longest password line read from a pipe.
const MAX_PASSWORD_BYTES: u64 = 4096;

/// `keygen` flags.
#[derive(Debug, clap::Args)]
pub struct KeygenArgs {
    /// Key directory (created with mode 0700 if missing).
    #[arg(long, default_value = "keys/")]
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
    /// Key directory.
    #[arg(long, default_value = "keys/")]
    pub dir: PathBuf,
}

/// Reads a password (no echo on a terminal; one line from a pipe) and prints its argon2id hash.
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
        // Pre-sized so the buffer does not reallocate and leave copies behind.
        let mut line = Zeroizing::new(String::with_capacity(MAX_PASSWORD_BYTES as usize + 2));
        stdin
            .lock()
            .take(MAX_PASSWORD_BYTES + 2)
            .read_line(&mut line)
            .context("reading the password from standard input")?;
        // Only the line ending goes: spaces may be part of the password.
        let len = line
            .strip_suffix('\n')
            .map_or(line.len(), |l| l.strip_suffix('\r').unwrap_or(l).len());
        if len as u64 > MAX_PASSWORD_BYTES {
            bail!("password longer than {MAX_PASSWORD_BYTES} bytes");
        }
        line.truncate(len);
        line
    };
    if password.is_empty() {
        bail!("refusing an empty password");
    }
    println!("{}", hash_password(&password)?);
    Ok(())
}

/// Writes a new key file and says where, without the key.
pub fn keygen_command(args: KeygenArgs) -> anyhow::Result<()> {
    let id = args.id.unwrap_or_else(KeyId::generate);
    let key = Key::generate().context("generating a key")?;
    keys::write_key_file(&args.dir, &id, &key, args.primary)?;
    let path = args.dir.join(format!("{id}{}", keys::KEY_FILE_EXT));
    if args.primary {
        println!("wrote {} (mode 0600); {id} is now primary", path.display());
    } else {
        println!(
            "wrote {} (mode 0600); not primary: once every node has it, run `echo {id} > {}`",
            path.display(),
            args.dir.join(keys::PRIMARY_FILE).display()
        );
    }
    Ok(())
}

/// Lists key ids, the primary marker and file ages; never key bytes.
pub fn keys_list_command(args: ListArgs) -> anyhow::Result<()> {
    let list = keys::list_dir(&args.dir)?;
    print!("{}", render_list(&list, SystemTime::now()));
    if list.is_empty() {
        eprintln!(
            "no keys in {}; create one with `sealed-sessions keygen --dir {} --primary`",
            args.dir.display(),
            args.dir.display()
        );
    } else if !list.iter().any(|k| k.primary) {
        eprintln!(
            "warning: no key is primary; write the sealing key's id to {}",
            args.dir.join(keys::PRIMARY_FILE).display()
        );
    }
    Ok(())
}

fn render_list(list: &[KeyFileInfo], now: SystemTime) -> String {
    let mut out = format!("{:<16}  {:<7}  {:<14}  FILE\n", "ID", "PRIMARY", "AGE");
    for k in list {
        let age = k
            .modified
            .and_then(|m| now.duration_since(m).ok())
            .map_or_else(
                || "?".to_owned(),
                |d| {
                    humantime::format_duration(std::time::Duration::from_secs(d.as_secs()))
                        .to_string()
                },
            );
        out.push_str(&format!(
            "{:<16}  {:<7}  {:<14}  {}\n",
            k.id.as_str(),
            if k.primary { "*" } else { "" },
            age,
            k.path.display()
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
    fn list_shows_id_primary_marker_and_age() {
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
        let text = render_list(&list, now);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("ID"));
        assert!(
            lines[1].starts_with("k1 ") && lines[1].contains("3days"),
            "{text}"
        );
        assert!(
            lines[2].starts_with("k2 ") && lines[2].contains(" * "),
            "{text}"
        );
        assert!(lines[2].contains(" ? "), "{text}");
    }
}
