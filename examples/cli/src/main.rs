//! `backup-cli`: backups in and out of a backup server from a shell. See the README for the
//! commands, a cron job and the exit codes.

mod cli;
mod commands;
mod download;
mod error;
mod openpgp;
mod output;
mod pipe;
mod upload;

use std::io::BufRead;
use std::path::PathBuf;

use backup_client::{Client, TokenStore};
use clap::Parser;

use crate::cli::{Cli, Command};
use crate::error::{CliError, Result};
use crate::output::Output;

fn main() {
    // clap exits with 2 on usage errors itself, as documented.
    let cli = Cli::parse();
    let json = cli.global.json;
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start: {e}");
            std::process::exit(error::ExitCode::Usage as i32);
        }
    };
    let outcome = runtime.block_on(run(cli));
    let code = match outcome {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            let code = e.exit_code() as i32;
            // Scripts that read `--json` get the failure as JSON too.
            if json {
                println!("{}", serde_json::json!({ "error": e.to_string(), "exitCode": code }));
            }
            code
        }
    };
    // Not waiting for a blocking reader that a refused upload left behind.
    runtime.shutdown_background();
    std::process::exit(code);
}

async fn run(cli: Cli) -> Result<()> {
    let out = Output { json: cli.global.json, quiet: cli.global.quiet };
    let Some(raw_server) = cli.global.server.as_deref() else {
        return Err(CliError::usage("no server: give --server URL or set BACKUP_SERVER"));
    };
    let server =
        backup_client::normalize_server_url(raw_server).map_err(|e| CliError::usage(format!("--server {e}")))?;
    let token = match (&cli.command, cli.global.token.clone()) {
        (Command::Login(_), _) => None,
        (_, Some(token)) if !token.is_empty() => Some(token),
        _ => token_store()?.get(&server)?.map(|t| t.token),
    };
    let mut builder = Client::builder()
        .with_server(server)
        .with_attempts(cli.global.attempts)
        .with_user_agent(concat!("backup-cli/", env!("CARGO_PKG_VERSION")))
        .with_retry_notifier(|e, pause| eprintln!("note: {e}; trying again in {pause:.1?}"));
    if let Some(token) = token {
        builder = builder.with_token(token);
    }
    let client = builder.build()?;
    match cli.command {
        Command::Login(args) => commands::login(&client, out, args).await,
        Command::Logout => commands::logout(&client, out).await,
        Command::Upload(args) => upload::run(&client, out, args).await,
        Command::Download(args) => download::run(&client, out, args).await,
        Command::List(args) => commands::list(&client, out, args).await,
        Command::Collections => commands::collections(&client, out).await,
        Command::Delete(args) => commands::change_version(&client, out, args, false).await,
        Command::Restore(args) => commands::change_version(&client, out, args, true).await,
        Command::Health(args) => commands::health(&client, out, args).await,
        Command::Retention(args) => commands::retention(&client, out, args).await,
        Command::Verify(args) => commands::verify(&client, out, args).await,
        Command::Audit(args) => commands::audit(&client, out, args).await,
    }
}

/// The first line of standard input, without its line end (a password or passphrase).
pub(crate) fn read_stdin_line(what: &str) -> Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| CliError::usage(format!("cannot read the {what}: {e}")))?;
    let line = line.trim_end_matches(['\n', '\r']).to_owned();
    if line.is_empty() {
        return Err(CliError::usage(format!("the {what} on standard input is empty")));
    }
    Ok(line)
}

/// The token file: `tokens.json` in `BACKUP_CLI_CONFIG_DIR`, or in the user's config folder.
pub(crate) fn token_store() -> Result<TokenStore> {
    let path = match std::env::var_os("BACKUP_CLI_CONFIG_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir).join("tokens.json"),
        _ => TokenStore::default_path("backup-cli")
            .ok_or_else(|| CliError::usage("cannot find your config folder: set BACKUP_CLI_CONFIG_DIR"))?,
    };
    Ok(TokenStore::new(path))
}

/// The token, or an error that says how to get one.
pub(crate) fn require_token(client: &Client) -> Result<()> {
    match client.token() {
        Some(_) => Ok(()),
        None => Err(CliError::usage(format!(
            "not logged in to {}: run `backup-cli login --username USER`, or set BACKUP_TOKEN",
            client.server()
        ))),
    }
}
