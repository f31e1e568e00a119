//! `git-backup`: scheduled backups of git repositories into collections of the backup engine,
//! embedded in this program or on a backup server. See the README for the configuration.

mod config;
mod daemon;
mod git;
mod restore;
mod run;
mod state;
mod status;
mod target;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::state::State;
use crate::target::Target;

/// Backs git repositories up on a schedule (mirror, bundle, one version per change), keeps
/// them by a retention policy, and restores them.
///
/// Exit codes: 0 done, 1 a repository failed (the others ran), 2 configuration or usage.
#[derive(Debug, Parser)]
#[command(name = "git-backup", version, max_term_width = 100)]
struct Cli {
    /// The configuration file (TOML).
    #[arg(long, short, env = "GIT_BACKUP_CONFIG", default_value = "git-backup.toml", global = true)]
    config: PathBuf,
    /// Log level (error, warn, info, debug, trace) or a tracing filter.
    #[arg(long, default_value = "info", global = true)]
    log_level: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Back up the repositories named (default: all) once, now.
    RunOnce {
        /// Repositories by name.
        repositories: Vec<String>,
        /// Store a version even when the refs did not change.
        #[arg(long)]
        force: bool,
    },
    /// Run the schedules until SIGTERM or Ctrl-C.
    Daemon,
    /// Each repository's last success and failure, next run, versions kept and their size.
    Status {
        /// JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Restore a version into a new or empty folder as a working repository:
    /// `restore REPO [latest|N] DEST`.
    Restore {
        /// The repository's name, the version (`latest`, the default, or a number) and the
        /// folder to create.
        #[arg(num_args = 2..=3, value_names = ["REPO", "VERSION", "DEST"], required = true)]
        args: Vec<String>,
    },
}

fn main() {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log_level).unwrap_or_else(|e| {
        eprintln!("error: --log-level {:?}: {e}", cli.log_level);
        std::process::exit(2);
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start: {e}");
            std::process::exit(2);
        }
    };
    let code = runtime.block_on(run(cli));
    std::process::exit(code);
}

async fn run(cli: Cli) -> i32 {
    let config = match Config::load(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let mut state = match State::load(&config.cache_dir) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let target = match Target::open(&config.destination).await {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: cannot open the destination: {e}");
            return 2;
        }
    };
    match cli.command {
        Command::RunOnce { repositories, force } => match config.select(&repositories) {
            Err(e) => {
                eprintln!("error: {e}");
                2
            }
            Ok(repos) => {
                if run::run_all(&target, &config, &mut state, &repos, force).await {
                    0
                } else {
                    1
                }
            }
        },
        Command::Daemon => match daemon::run(&target, &config, &mut state).await {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("error: {e}");
                1
            }
        },
        Command::Status { json } => {
            if status::show(&target, &config, &state, json).await {
                0
            } else {
                1
            }
        }
        Command::Restore { args } => {
            let (repository, version, dest) = match args.as_slice() {
                [repo, dest] => (repo.clone(), "latest".to_owned(), PathBuf::from(dest)),
                [repo, version, dest] => (repo.clone(), version.clone(), PathBuf::from(dest)),
                _ => {
                    eprintln!("error: restore REPO [latest|N] DEST");
                    return 2;
                }
            };
            let repo = match config.select(std::slice::from_ref(&repository)) {
                Ok(mut r) => r.remove(0),
                Err(e) => {
                    eprintln!("error: {e}");
                    return 2;
                }
            };
            match restore::restore(&target, &config, &repo, &version, &dest).await {
                Ok(number) => {
                    println!("restored version {number} of {} into {}", repo.name, dest.display());
                    0
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    1
                }
            }
        }
    }
}
