//! `sealed-sessions`: the reference server and the operator commands.

use sealed_sessions_server as server;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use server::admin::{KeygenArgs, ListArgs};
use server::config::ServeConfig;
use server::inspect::InspectArgs;
use server::revoke::RevokeArgs;

#[derive(Debug, Parser)]
#[command(name = "sealed-sessions", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the reference server.
    Serve(Box<ServeConfig>),
    /// Read a password (no echo; or one line from a pipe), check it against the rules
    /// `POST /password` applies (8 to 1024 bytes), and print its argon2id hash for a users file.
    HashPassword,
    /// Write a new session key file into the key directory (--keys).
    Keygen(KeygenArgs),
    /// Inspect a key directory.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Open a session cookie with the key ring and print its claims as JSON, or say why it does
    /// not open. The cookie name is bound into the token: servers run with
    /// --insecure-dev-cookies need `--cookie-name session`.
    Inspect(InspectArgs),
    /// Log a user out everywhere (--user) or revoke one session (--session), through the
    /// servers' Redis; prints what was recorded as JSON.
    Revoke(Box<RevokeArgs>),
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// List key ids, which one is primary, and file ages (never key bytes).
    List(ListArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(config) => {
            // Taken out of the environment now, while this is the only thread (clap spawns
            // none; the runtime starts inside `serve`), so no child process inherits the keys.
            // SAFETY: no other thread exists yet to read or write the environment.
            #[allow(unsafe_code)]
            let env_keys = unsafe { server::keys_bootstrap::take_env_keys() };
            server::serve::serve(*config, env_keys)
        }
        Command::HashPassword => server::admin::hash_password_command(),
        Command::Keygen(args) => server::admin::keygen_command(args),
        Command::Keys {
            command: KeysCommand::List(args),
        } => server::admin::keys_list_command(args),
        Command::Inspect(args) => server::inspect::inspect_command(args),
        Command::Revoke(args) => server::revoke::revoke_command(*args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
