//! The PostgreSQL URL of the tests: skipped by name when absent, a failure under `CI=true`.

use std::io::Write;

/// The PostgreSQL URL, or `None` after reporting the test as skipped by name. Under
/// `CI=true` a missing URL fails the test: CI configures every service.
pub fn database_url(test: &str) -> Option<String> {
    match std::env::var("TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("{test}: TEST_DATABASE_URL is not set, and CI=true forbids skipping")
        }
        _ => {
            skipped(test, "no TEST_DATABASE_URL");
            None
        }
    }
}

/// Reports a skipped test on the real stderr (not captured by the test harness).
pub fn skipped(test: &str, why: &str) {
    let _ = writeln!(std::io::stderr(), "skipped: {test}: {why}");
}

/// A fresh, random PostgreSQL schema name, so tests can share one database.
pub fn fresh_schema(prefix: &str) -> String {
    format!("{prefix}_{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}
