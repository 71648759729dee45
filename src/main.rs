//! `sealed-sessions`: the reference server and the operator commands.

mod server;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use server::admin::{KeygenArgs, ListArgs};
use server::config::ServeConfig;

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
    /// Read a password (no echo; or one line from a pipe) and print its argon2id hash for a
    /// users file.
    HashPassword,
    /// Write a new session key file.
    Keygen(KeygenArgs),
    /// Inspect a key directory.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// List key ids, which one is primary, and file ages (never key bytes).
    List(ListArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(config) => server::serve::serve(*config),
        Command::HashPassword => server::admin::hash_password_command(),
        Command::Keygen(args) => server::admin::keygen_command(args),
        Command::Keys {
            command: KeysCommand::List(args),
        } => server::admin::keys_list_command(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
