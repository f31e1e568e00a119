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

/// Reports a skipped test on the real stderr (not captured by the test harness). Under
/// `CI=true` it panics instead, so that a test compiled without the feature or the tool it
/// needs fails there: CI configures and builds everything, and nothing may pass by skipping.
///
/// # Panics
/// Under `CI=true`.
pub fn skipped(test: &str, why: &str) {
    skip_or_fail(test, why, std::env::var("CI").ok().as_deref());
}

fn skip_or_fail(test: &str, why: &str, ci: Option<&str>) {
    assert!(ci != Some("true"), "{test} would be skipped ({why}), and CI=true forbids skipping");
    let _ = writeln!(std::io::stderr(), "skipped: {test}: {why}");
}

/// A fresh, random PostgreSQL schema name, so tests can share one database.
pub fn fresh_schema(prefix: &str) -> String {
    format!("{prefix}_{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

#[cfg(test)]
mod tests {
    use super::skip_or_fail;

    #[test]
    #[should_panic(expected = "CI=true forbids skipping")]
    fn a_skip_fails_under_ci() {
        skip_or_fail("some_test", "built without the `postgres` feature", Some("true"));
    }

    #[test]
    fn a_skip_is_reported_elsewhere() {
        skip_or_fail("some_test", "no TEST_DATABASE_URL", None);
        skip_or_fail("some_test", "no TEST_DATABASE_URL", Some("false"));
    }
}
