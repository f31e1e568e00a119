//! The moto S3 server of the tests (`TEST_MOTO_URL`): skipped by name when absent, a failure
//! under `CI=true`.

use super::database::skipped;

/// The URL of a moto S3 server (`http://127.0.0.1:PORT`, started by `.ci/with-services`), or
/// `None` after reporting the test as skipped by name. moto is the S3 server at hand that
/// enforces Object Lock (s3s-fs ignores it). Under `CI=true` a missing URL fails the test: CI
/// configures every service.
///
/// # Panics
/// Under `CI=true` when `TEST_MOTO_URL` is not set.
pub fn moto_url(test: &str) -> Option<String> {
    match std::env::var("TEST_MOTO_URL") {
        Ok(url) if !url.is_empty() => Some(url.trim_end_matches('/').to_owned()),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("{test}: TEST_MOTO_URL is not set, and CI=true forbids skipping")
        }
        _ => {
            skipped(test, "no TEST_MOTO_URL");
            None
        }
    }
}

/// A Python that imports `aiosmtpd` (`TEST_SMTP_PYTHON`, from `.ci/with-services`), for tests
/// that start an SMTP sink (`python -m aiosmtpd -n -l 127.0.0.1:PORT -c
/// aiosmtpd.handlers.Mailbox DIR`), or `None` after reporting the test as skipped by name.
///
/// # Panics
/// Under `CI=true` when `TEST_SMTP_PYTHON` is not set.
pub fn smtp_python(test: &str) -> Option<String> {
    match std::env::var("TEST_SMTP_PYTHON") {
        Ok(python) if !python.is_empty() => Some(python),
        _ => {
            skipped(test, "no TEST_SMTP_PYTHON (aiosmtpd)");
            None
        }
    }
}
