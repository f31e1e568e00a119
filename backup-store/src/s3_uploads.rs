//! [`S3OpenUploads`]: the open multipart uploads under an object's key on S3, found by the
//! store's own listing (`ListMultipartUploads`) and aborted.
//!
//! The engine records a multipart upload's id in the catalog right after creating it, and
//! aborts by that id when the upload is released. Two things escape that record: a process
//! killed between the create and the record, and a create request that the S3 client retried
//! after a stall although S3 had already created the first upload (the client only sees the
//! second id). Such an upload keeps its parts, invisible to object listings and billed, until
//! a lifecycle rule (if any) removes it. This listing finds them by key.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use backup_core::store::UploadLeftovers;
use backup_core::{Error, ErrorKind, Result};
use object_store::aws::AmazonS3;
use object_store::multipart::MultipartStore;
use object_store::path::Path;
use object_store::signer::{Method, SignedUrlOptions, Signer};
use serde::Deserialize;

/// How long a signed listing request stays valid: it is sent at once.
const SIGNED_FOR: Duration = Duration::from_secs(300);

/// The most listing pages one call reads (1,000 uploads a page): a bound, not a limit that
/// one key's uploads ever reach.
const MAX_PAGES: usize = 100;

/// Aborts every open multipart upload whose key is exactly the object's key (under the
/// store's prefix), for [`backup_core::EngineBuilder::upload_leftovers`]. Built by
/// [`crate::open_store`] for `s3://` URLs.
#[derive(Debug)]
pub struct S3OpenUploads {
    s3: Arc<AmazonS3>,
    prefix: Option<Path>,
    http: reqwest::Client,
}

impl S3OpenUploads {
    pub(crate) fn new(s3: Arc<AmazonS3>, prefix: Option<Path>) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap_or_default();
        S3OpenUploads { s3, prefix, http }
    }

    fn full(&self, key: &Path) -> Path {
        match &self.prefix {
            Some(p) => p.parts().chain(key.parts()).collect(),
            None => key.clone(),
        }
    }

    /// One page of `GET /?uploads&prefix=KEY`, signed with the store's credentials.
    async fn page(&self, key: &Path, marker: Option<(&str, &str)>) -> Result<ListMultipartUploadsResult> {
        let mut query = vec![("uploads".to_owned(), String::new()), ("prefix".to_owned(), key.to_string())];
        if let Some((key_marker, upload_marker)) = marker {
            query.push(("key-marker".to_owned(), key_marker.to_owned()));
            query.push(("upload-id-marker".to_owned(), upload_marker.to_owned()));
        }
        let options = SignedUrlOptions::default().with_query(query);
        let url = self
            .s3
            .signed_url_opts(Method::GET, &Path::default(), SIGNED_FOR, &options)
            .await
            .map_err(|e| Error::backend(ErrorKind::Unavailable, "s3", "sign ListMultipartUploads", e))?;
        let failed = |what: &str, e: &dyn std::fmt::Display| {
            Error::backend(ErrorKind::Unavailable, "s3", "ListMultipartUploads", format!("{key}: {what}: {e}"))
        };
        let response = self.http.get(url).send().await.map_err(|e| failed("request", &e))?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| failed("answer", &e))?;
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
            return Err(failed("refused", &format!("HTTP {status}: {text}")));
        }
        quick_xml::de::from_reader(body.as_ref()).map_err(|e| failed("unreadable answer", &e))
    }
}

#[async_trait]
impl UploadLeftovers for S3OpenUploads {
    async fn remove(&self, key: &Path) -> Result<u64> {
        let full = self.full(key);
        let mut removed = 0;
        let mut marker: Option<(String, String)> = None;
        for _ in 0..MAX_PAGES {
            let page = self.page(&full, marker.as_ref().map(|(k, u)| (k.as_str(), u.as_str()))).await?;
            // The prefix also matches longer keys (the description beside the object): only
            // this very key's uploads are touched.
            for upload in page.uploads.iter().filter(|u| u.key == full.as_ref()) {
                match self.s3.abort_multipart(&full, &upload.upload_id).await {
                    Ok(()) => removed += 1,
                    Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(Error::backend(ErrorKind::Unavailable, "s3", "AbortMultipartUpload", e)),
                }
            }
            match (page.is_truncated, page.next_key_marker, page.next_upload_id_marker) {
                (true, Some(k), Some(u)) => marker = Some((k, u)),
                _ => return Ok(removed),
            }
        }
        Ok(removed)
    }
}

/// The parts of S3's `ListMultipartUploadsResult` this needs.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListMultipartUploadsResult {
    #[serde(default)]
    is_truncated: bool,
    next_key_marker: Option<String>,
    next_upload_id_marker: Option<String>,
    #[serde(default, rename = "Upload")]
    uploads: Vec<OpenUpload>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct OpenUpload {
    key: String,
    upload_id: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_reads_as_s3_writes_it() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListMultipartUploadsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Bucket>b</Bucket><KeyMarker></KeyMarker><UploadIdMarker></UploadIdMarker>
  <NextKeyMarker>p/c/k</NextKeyMarker><NextUploadIdMarker>id-2</NextUploadIdMarker>
  <MaxUploads>1000</MaxUploads><IsTruncated>true</IsTruncated>
  <Upload><Key>p/c/k</Key><UploadId>id-1</UploadId><Initiated>2026-12-07T10:00:00.000Z</Initiated></Upload>
  <Upload><Key>p/c/k</Key><UploadId>id-2</UploadId></Upload>
</ListMultipartUploadsResult>"#;
        let page: ListMultipartUploadsResult = quick_xml::de::from_reader(xml.as_bytes()).unwrap();
        assert!(page.is_truncated);
        assert_eq!(page.next_upload_id_marker.as_deref(), Some("id-2"));
        let ids: Vec<&str> = page.uploads.iter().map(|u| u.upload_id.as_str()).collect();
        assert_eq!(ids, ["id-1", "id-2"]);
        let empty = r#"<ListMultipartUploadsResult><IsTruncated>false</IsTruncated></ListMultipartUploadsResult>"#;
        let page: ListMultipartUploadsResult = quick_xml::de::from_reader(empty.as_bytes()).unwrap();
        assert!(page.uploads.is_empty() && !page.is_truncated);
    }
}
