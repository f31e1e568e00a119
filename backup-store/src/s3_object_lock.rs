//! [`S3ObjectLock`]: version locks enforced by S3 itself, as Object Lock retention on the
//! objects, so that they hold against the bucket's own credentials too.
//!
//! `object_store` has no Object Lock call, and its `PutOptions` cannot carry the signed
//! `x-amz-object-lock-*` headers S3 wants, so each retention is set afterwards with
//! `PutObjectRetention` (`PUT /KEY?retention`), presigned with the store's own signer and sent
//! with reqwest, as `S3OpenUploads` does for its listing.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use backup_core::{Error, LockMode, ObjectLocks, Result, VersionLock};
use base64::Engine as _;
use chrono::{DateTime, SecondsFormat, Utc};
use md5::Digest as _;
use object_store::aws::AmazonS3;
use object_store::path::Path;
use object_store::signer::{HeaderName, HeaderValue, Method, SignedUrlOptions, Signer};
use serde::Deserialize;

/// How long a signed request stays valid: it is sent at once.
const SIGNED_FOR: Duration = Duration::from_secs(300);

/// The header of S3's `HeadObject` that holds an object's retain-until date.
const RETAIN_UNTIL_HEADER: &str = "x-amz-object-lock-retain-until-date";
/// The header of S3's `HeadObject` that holds an object's retention mode.
const MODE_HEADER: &str = "x-amz-object-lock-mode";

/// The store's name in the errors' sources.
const STORE: &str = "S3";

/// Version locks as S3 Object Lock retention, for [`backup_core::EngineBuilder::object_locks`]:
/// [`ObjectLocks::retain`] sets a version's object and description to be kept until the lock
/// ends (`PutObjectRetention`, COMPLIANCE or GOVERNANCE as the lock's mode), lengthening a
/// retention the object already has and never shortening it; [`ObjectLocks::check`] asks the
/// bucket whether Object Lock is enabled (it can only be enabled when the bucket is created).
///
/// Built by [`crate::open_store`] for `s3://` URLs with `object_lock=true` (in
/// [`crate::OpenedStore::object_locks`]), or with [`S3ObjectLock::new`] for a store built by
/// hand.
#[derive(Debug)]
pub struct S3ObjectLock {
    s3: Arc<AmazonS3>,
    bucket: String,
    prefix: Option<Path>,
    http: reqwest::Client,
}

impl S3ObjectLock {
    /// Object Lock retention on `s3`'s bucket, named `bucket` in messages, for the engine's
    /// keys under `prefix` (the key prefix of the store the engine writes through, if it is a
    /// `PrefixStore` over `s3`).
    pub fn new(s3: Arc<AmazonS3>, bucket: impl Into<String>, prefix: Option<Path>) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap_or_default();
        S3ObjectLock { s3, bucket: bucket.into(), prefix, http }
    }

    fn full(&self, key: &Path) -> Path {
        match &self.prefix {
            Some(p) => p.parts().chain(key.parts()).collect(),
            None => key.clone(),
        }
    }

    async fn sign(
        &self,
        method: Method,
        path: &Path,
        options: &SignedUrlOptions,
        operation: &'static str,
    ) -> Result<reqwest::Url> {
        self.s3.signed_url_opts(method, path, SIGNED_FOR, options).await.map_err(|e| Error::Store {
            operation,
            key: path.to_string(),
            source: e,
        })
    }

    /// The object's current retention (`HeadObject`), if it has one.
    async fn current(&self, key: &Path) -> Result<Option<(LockMode, DateTime<Utc>)>> {
        const OPERATION: &str = "HeadObject (retention)";
        let url = self.sign(Method::HEAD, key, &SignedUrlOptions::default(), OPERATION).await?;
        let response = self.http.head(url).send().await.map_err(|e| unanswered(OPERATION, key, &e))?;
        let status = response.status();
        if !status.is_success() {
            // A HEAD answer has no body, so no S3 error code: the status says it.
            return Err(refused(OPERATION, key, status, &S3Error::default()));
        }
        let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let (Some(mode), Some(until)) = (header(MODE_HEADER), header(RETAIN_UNTIL_HEADER)) else { return Ok(None) };
        let unreadable = |what: &str| Error::Store {
            operation: OPERATION,
            key: key.to_string(),
            source: object_store::Error::Generic {
                store: STORE,
                source: format!(
                    "unreadable {what} {mode:?} until {until:?}: a retention that cannot be read \
                         might be shortened, so none is set"
                )
                .into(),
            },
        };
        let mode = match mode.as_str() {
            "COMPLIANCE" => LockMode::Compliance,
            "GOVERNANCE" => LockMode::Governance,
            _ => return Err(unreadable("retention mode")),
        };
        let until = DateTime::parse_from_rfc3339(&until).map_err(|_| unreadable("retain-until date"))?.to_utc();
        Ok(Some((mode, until)))
    }

    /// `PUT /KEY?retention` with `mode` until `until`.
    async fn put_retention(&self, key: &Path, mode: LockMode, until: DateTime<Utc>) -> Result<()> {
        const OPERATION: &str = "PutObjectRetention";
        let body = retention_body(mode, until);
        // S3 refuses a PutObjectRetention without a checksum of its body.
        let md5 = base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(body.as_bytes()));
        let header = |value: &str| {
            HeaderValue::from_str(value).map_err(|e| Error::internal(format!("{OPERATION} header {value:?}: {e}")))
        };
        let content_md5 = header(&md5)?;
        let content_type = header("application/xml")?;
        let options = SignedUrlOptions::default()
            .with_query([("retention", "")])
            .with_signed_header(HeaderName::from_static("content-md5"), content_md5.clone())
            .with_signed_header(HeaderName::from_static("content-type"), content_type.clone());
        let url = self.sign(Method::PUT, key, &options, OPERATION).await?;
        let response = self
            .http
            .put(url)
            .header("content-md5", content_md5)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .map_err(|e| unanswered(OPERATION, key, &e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let answer = response.bytes().await.unwrap_or_default();
        Err(refused(OPERATION, key, status, &S3Error::parse(&answer)))
    }
}

#[async_trait]
impl ObjectLocks for S3ObjectLock {
    /// Sets the object's retention to the later of its own and `lock`'s end, in the stricter
    /// of the two modes; does nothing when the object already has that.
    ///
    /// # Errors
    /// [`Error::Store`] naming the key and S3's error code when S3 refuses (no such object,
    /// a bucket without Object Lock, access denied) or cannot be reached.
    async fn retain(&self, key: &Path, lock: &VersionLock) -> Result<()> {
        let full = self.full(key);
        let wanted = whole_seconds_up(lock.until.to_datetime());
        let (mode, until) = match self.current(&full).await? {
            Some((mode, until)) if until >= wanted && mode >= lock.mode => return Ok(()),
            // Never shorter than what the object has, and never a weaker mode: S3 refuses the
            // first in COMPLIANCE mode, and would allow it in GOVERNANCE to a bypassing caller.
            Some((mode, until)) => (mode.max(lock.mode), until.max(wanted)),
            None => (lock.mode, wanted),
        };
        self.put_retention(&full, mode, until).await
    }

    /// Asks the bucket for its Object Lock configuration (`GET /?object-lock`).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming the bucket when Object Lock is not enabled on it (or
    /// the server does not know Object Lock); [`Error::Store`] when S3 cannot be asked.
    async fn check(&self) -> Result<()> {
        const OPERATION: &str = "GetObjectLockConfiguration";
        let bucket = Path::default();
        let options = SignedUrlOptions::default().with_query([("object-lock", "")]);
        let url = self.sign(Method::GET, &bucket, &options, OPERATION).await?;
        let response = self.http.get(url).send().await.map_err(|e| unanswered(OPERATION, &bucket, &e))?;
        let status = response.status();
        let answer = response.bytes().await.map_err(|e| unanswered(OPERATION, &bucket, &e))?;
        let not_enabled = |what: String| {
            Error::invalid(
                "object lock",
                format!(
                    "S3 bucket {:?}: Object Lock is not enabled ({what}); it can only be enabled when the \
                     bucket is created, so the store cannot keep locked versions from being deleted",
                    self.bucket
                ),
            )
        };
        if status.is_success() {
            let config: ObjectLockConfiguration = quick_xml::de::from_reader(answer.as_ref())
                .map_err(|e| refused(OPERATION, &bucket, status, &S3Error::unreadable(&e)))?;
            return match config.object_lock_enabled.as_deref() {
                Some("Enabled") => Ok(()),
                Some(other) => Err(not_enabled(format!("ObjectLockEnabled is {other:?}"))),
                None => Err(not_enabled("no ObjectLockEnabled in the configuration".to_owned())),
            };
        }
        let error = S3Error::parse(&answer);
        match (status.as_u16(), error.code.as_str()) {
            // What S3 answers for a bucket created without it; a server without Object Lock at
            // all (s3s-fs) answers NotImplemented.
            (404, "ObjectLockConfigurationNotFoundError") | (501, _) | (_, "NotImplemented") => {
                Err(not_enabled(error.describe(status)))
            }
            _ => Err(refused(OPERATION, &bucket, status, &error)),
        }
    }

    fn describe(&self) -> String {
        format!(
            "S3 Object Lock on bucket {:?}: until a locked version's lock ends, S3 refuses to delete or \
             overwrite its object and description versions to every credential in COMPLIANCE mode, and in \
             GOVERNANCE mode to every credential without s3:BypassGovernanceRetention; a delete without a \
             version id only adds a delete marker and keeps the locked versions",
            self.bucket
        )
    }
}

/// `time` rounded up to a whole second: S3 keeps whole seconds, and rounding down would
/// shorten the lock.
fn whole_seconds_up(time: DateTime<Utc>) -> DateTime<Utc> {
    let seconds = time.timestamp() + i64::from(time.timestamp_subsec_nanos() > 0);
    DateTime::from_timestamp(seconds, 0).unwrap_or(time)
}

/// The body of a `PutObjectRetention`.
fn retention_body(mode: LockMode, until: DateTime<Utc>) -> String {
    let mode = match mode {
        LockMode::Compliance => "COMPLIANCE",
        LockMode::Governance => "GOVERNANCE",
    };
    format!(
        r#"<Retention xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Mode>{mode}</Mode><RetainUntilDate>{}</RetainUntilDate></Retention>"#,
        until.to_rfc3339_opts(SecondsFormat::Secs, true)
    )
}

/// A request that got no answer: the store is unavailable.
fn unanswered(operation: &'static str, key: &Path, e: &dyn std::fmt::Display) -> Error {
    Error::Store {
        operation,
        key: key.to_string(),
        source: object_store::Error::Generic { store: STORE, source: format!("no answer: {e}").into() },
    }
}

/// A refusal, as the store error of its kind (not found, permission denied, other).
fn refused(operation: &'static str, key: &Path, status: reqwest::StatusCode, error: &S3Error) -> Error {
    let path = key.to_string();
    let source = error.describe(status).into();
    let source = match status.as_u16() {
        404 => object_store::Error::NotFound { path, source },
        403 => object_store::Error::PermissionDenied { path, source },
        _ => object_store::Error::Generic { store: STORE, source },
    };
    Error::Store { operation, key: key.to_string(), source }
}

/// S3's error answer: `<Error><Code>…</Code><Message>…</Message></Error>`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct S3Error {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

impl S3Error {
    /// The error in `answer`, or its first bytes as the message when it is not S3's XML.
    fn parse(answer: &[u8]) -> S3Error {
        match quick_xml::de::from_reader::<_, S3Error>(answer) {
            Ok(error) if !error.code.is_empty() => error,
            // Not S3's XML (a proxy's or a crashed server's page): its first bytes say more.
            _ => S3Error {
                code: String::new(),
                message: String::from_utf8_lossy(&answer[..answer.len().min(200)]).trim().to_owned(),
            },
        }
    }

    fn unreadable(e: &dyn std::fmt::Display) -> S3Error {
        S3Error { code: "UnreadableAnswer".to_owned(), message: e.to_string() }
    }

    fn describe(&self, status: reqwest::StatusCode) -> String {
        match (self.code.is_empty(), self.message.is_empty()) {
            (true, true) => format!("HTTP {status}"),
            (true, false) => format!("HTTP {status}: {}", self.message),
            (false, true) => format!("HTTP {status} {}", self.code),
            (false, false) => format!("HTTP {status} {}: {}", self.code, self.message),
        }
    }
}

/// The part of S3's `ObjectLockConfiguration` this needs.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ObjectLockConfiguration {
    object_lock_enabled: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use backup_core::ErrorKind;

    #[test]
    fn the_body_is_what_s3_reads() {
        let until = DateTime::parse_from_rfc3339("2030-01-02T03:04:05Z").unwrap().to_utc();
        assert_eq!(
            retention_body(LockMode::Compliance, until),
            r#"<Retention xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Mode>COMPLIANCE</Mode><RetainUntilDate>2030-01-02T03:04:05Z</RetainUntilDate></Retention>"#
        );
        assert!(retention_body(LockMode::Governance, until).contains("<Mode>GOVERNANCE</Mode>"));
    }

    #[test]
    fn a_fraction_of_a_second_rounds_up() {
        let exact = DateTime::parse_from_rfc3339("2030-01-02T03:04:05Z").unwrap().to_utc();
        assert_eq!(whole_seconds_up(exact), exact);
        let later = DateTime::parse_from_rfc3339("2030-01-02T03:04:05.000001Z").unwrap().to_utc();
        assert_eq!(whole_seconds_up(later), exact + chrono::Duration::seconds(1));
    }

    #[test]
    fn answers_read_as_s3_writes_them() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<ObjectLockConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><ObjectLockEnabled>Enabled</ObjectLockEnabled><Rule><DefaultRetention><Mode>GOVERNANCE</Mode><Days>1</Days></DefaultRetention></Rule></ObjectLockConfiguration>"#;
        let config: ObjectLockConfiguration = quick_xml::de::from_reader(xml.as_bytes()).unwrap();
        assert_eq!(config.object_lock_enabled.as_deref(), Some("Enabled"));
        let error = S3Error::parse(
            br#"<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code><Message>Access Denied</Message><RequestId>x</RequestId></Error>"#,
        );
        assert_eq!((error.code.as_str(), error.message.as_str()), ("AccessDenied", "Access Denied"));
        let e = refused("PutObjectRetention", &Path::from("c/v1"), reqwest::StatusCode::FORBIDDEN, &error);
        assert!(matches!(&e, Error::Store { source: object_store::Error::PermissionDenied { .. }, .. }), "{e:?}");
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        let shown = e.to_string();
        assert!(shown.contains("c/v1") && shown.contains("AccessDenied"), "{shown}");
        let html = S3Error::parse(b"<!doctype html><title>500 Internal Server Error</title>");
        assert!(html.code.is_empty() && html.message.contains("500"), "{html:?}");
    }
}
