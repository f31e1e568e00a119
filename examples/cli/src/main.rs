//! `backup-cli`: backups in and out of a backup server from a shell. See the README for the
//! commands, a cron job and the exit codes.

mod cli;
mod client;
mod commands;
mod download;
mod error;
mod openpgp;
mod output;
mod pipe;
mod token_store;
mod upload;

use std::io::BufRead;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::client::{Client, normalize_server};
use crate::error::{CliError, Result};
use crate::output::Output;
use crate::token_store::TokenStore;

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
    let server = normalize_server(raw_server)?;
    let token = match (&cli.command, cli.global.token.clone()) {
        (Command::Login(_), _) => None,
        (_, Some(token)) if !token.is_empty() => Some(token),
        _ => TokenStore::open()?.get(&server)?.map(|t| t.token),
    };
    let client = Client::new(server, token, cli.global.attempts)?;
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
