//! backup-server: a drop-in backup-repository server on the backup engine.
//!
//! ```text
//! cargo run --release -p backup-server -- --config-local-path examples/server/config --listen 127.0.0.1:8080
//! backup-server --encode-password 's3cret'      # for a Secret's data
//! backup-server --hash-jwt "$TOKEN"            # its session id
//! backup-server --rebuild-catalog [--verify]   # a lost catalog, from the storage
//! backup-server --verify-audit                 # the audit log's chain and anchors; exit 1 if broken
//! backup-server --import-backup-repository --db-name backups …   # migrate from the original
//! ```

use backup_policy::StoredPassword;
use backup_server::Args;
use clap::Parser;

fn main() {
    let args = Args::parse();
    if let Some(password) = &args.encode_password {
        match StoredPassword::hash(password.as_bytes()).map(|h| h.to_backup_repository_form()) {
            Ok(Some(encoded)) => println!("{encoded}"),
            _ => {
                eprintln!("error: cannot hash the password");
                std::process::exit(1);
            }
        }
        return;
    }
    if let Some(jwt) = &args.hash_jwt {
        println!("{}", backup_core::SessionId::of_token(jwt));
        return;
    }
    let filter = match tracing_filter(&args.log_level) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: --log-level {:?}: {e}", args.log_level);
            std::process::exit(2);
        }
    };
    {
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::util::SubscriberInitExt;
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .finish()
            .with(filter)
            .init();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    if args.rebuild_catalog || args.import_backup_repository || args.verify_audit {
        let helper = async {
            if args.rebuild_catalog {
                backup_server::rebuild_catalog(&args).await
            } else if args.verify_audit {
                backup_server::verify_audit(&args).await
            } else {
                backup_server::import_backup_repository(&args).await
            }
        };
        match runtime.block_on(helper) {
            Ok(summary) => println!("{summary}"),
            Err(e) => {
                eprintln!("error: {e}");
                std::process::exit(1);
            }
        }
        return;
    }
    if let Err(e) = runtime.block_on(backup_server::run(args)) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

/// logrus's level names (backup-repository's `--log-level`) as a tracing filter; other
/// values are per-target levels (`info,backup_core=debug`).
fn tracing_filter(level: &str) -> Result<tracing_subscriber::filter::Targets, String> {
    let directive = match level.to_ascii_lowercase().as_str() {
        "panic" | "fatal" | "error" => "error",
        "warning" | "warn" => "warn",
        "info" => "info",
        "debug" => "debug",
        "trace" => "trace",
        _ => level,
    };
    directive.parse().map_err(|e: tracing_subscriber::filter::ParseError| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::tracing_filter;

    #[test]
    fn log_levels_are_logrus_names_or_per_target_levels() {
        for ok in ["warning", "fatal", "INFO", "info,backup_core=debug", "backup_server=trace"] {
            assert!(tracing_filter(ok).is_ok(), "{ok}");
        }
        for bad in ["info,backup_core=shouting", "a=b=c"] {
            assert!(tracing_filter(bad).is_err(), "{bad}");
        }
    }
}
