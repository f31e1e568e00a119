//! A real S3 protocol server in-process: s3s-fs over a temporary folder, on 127.0.0.1 with
//! SigV4 keys. It enforces signatures and conditional writes, so it catches what a mock
//! would not. s3s-fs has no `ListMultipartUploads`; [`ListUploads`] answers it from the
//! records s3s-fs keeps of open uploads, so leaks of multipart uploads can be tested.

use std::sync::Arc;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;

/// A running S3 server; stopped and its folder removed when dropped.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let s3 = backup_store::testing::S3Server::start().await;
/// // With the `aws` feature: backup_store::object_store_from_url(&s3.url(), &Default::default())
/// assert!(s3.url().starts_with("s3://test-bucket?endpoint=http://127.0.0.1:"));
/// # });
/// ```
#[allow(missing_debug_implementations)]
pub struct S3Server {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// A bucket that exists.
    pub bucket: String,
    /// The access key id.
    pub access_key: String,
    /// The secret key.
    pub secret_key: String,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl S3Server {
    /// Starts a server with one bucket, `test-bucket`, on a free loopback port.
    pub async fn start() -> S3Server {
        Self::start_on(0).await
    }

    /// Starts a server with one bucket, `test-bucket`, on loopback port `port` (0 for a free
    /// one): a test that took a store down brings it back where its clients look.
    pub async fn start_on(port: u16) -> S3Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let bucket = "test-bucket".to_owned();
        std::fs::create_dir(dir.path().join(&bucket)).expect("bucket folder");
        let (access_key, secret_key) = ("test-access".to_owned(), "test-secret-key".to_owned());
        let fs = s3s_fs::FileSystem::new(dir.path()).expect("s3s-fs");
        let mut builder = S3ServiceBuilder::new(fs);
        builder.set_auth(SimpleAuth::from_single(access_key.clone(), secret_key.clone()));
        builder.set_route(ListUploads { root: dir.path().to_path_buf() });
        let service = builder.build();
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.expect("bind");
        let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
        let task = tokio::spawn(async move {
            let http = Arc::new(ConnBuilder::new(TokioExecutor::new()));
            while let Ok((socket, _)) = listener.accept().await {
                let (http, service) = (http.clone(), service.clone());
                tokio::spawn(async move {
                    let _ = http.serve_connection(TokioIo::new(socket), service).await;
                });
            }
        });
        S3Server { endpoint, bucket, access_key, secret_key, task, _dir: dir }
    }

    /// The keys of the multipart uploads open in the bucket (not completed, not aborted),
    /// sorted, one entry per upload.
    pub fn open_uploads(&self) -> Vec<String> {
        let mut keys: Vec<String> = open_uploads(self._dir.path(), &self.bucket).into_iter().map(|(k, _)| k).collect();
        keys.sort();
        keys
    }

    /// The `s3://` URL of the bucket, with every setting in its query.
    pub fn url(&self) -> String {
        format!(
            "s3://{}?endpoint={}&region=us-east-1&allow_http=true&access_key_id={}&secret_access_key={}",
            self.bucket, self.endpoint, self.access_key, self.secret_key
        )
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The open multipart uploads of `bucket` as (key, upload id): s3s-fs writes
/// `.bucket-<b64 bucket>.object-<b64 key>.upload-<id>.metadata.json` when one is created and
/// removes it when it is completed or aborted.
fn open_uploads(root: &std::path::Path, bucket: &str) -> Vec<(String, String)> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let head = format!(".bucket-{}.object-", b64.encode(bucket));
    let Ok(entries) = std::fs::read_dir(root) else { return Vec::new() };
    entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|name| {
            let rest = name.strip_prefix(&head)?.strip_suffix(".metadata.json")?;
            let (key, id) = rest.split_once(".upload-")?;
            let key = String::from_utf8(b64.decode(key).ok()?).ok()?;
            Some((key, id.to_owned()))
        })
        .collect()
}

/// `GET /<bucket>?uploads[&prefix=…]`: S3's `ListMultipartUploads` (one page, sorted by key
/// and id), which s3s-fs does not implement.
struct ListUploads {
    root: std::path::PathBuf,
}

#[async_trait::async_trait]
impl s3s::route::S3Route for ListUploads {
    fn is_match(
        &self,
        method: &http::Method,
        uri: &http::Uri,
        _headers: &http::HeaderMap,
        _extensions: &mut http::Extensions,
    ) -> bool {
        method == http::Method::GET
            && uri.query().is_some_and(|q| q.split('&').any(|p| p == "uploads" || p.starts_with("uploads=")))
            && uri.path().trim_matches('/').split('/').count() == 1
    }

    async fn call(&self, req: s3s::S3Request<s3s::Body>) -> s3s::S3Result<s3s::S3Response<s3s::Body>> {
        let bucket = req.uri.path().trim_matches('/').to_owned();
        let prefix = url::form_urlencoded::parse(req.uri.query().unwrap_or("").as_bytes())
            .find(|(k, _)| k == "prefix")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        let mut uploads: Vec<(String, String)> =
            open_uploads(&self.root, &bucket).into_iter().filter(|(k, _)| k.starts_with(&prefix)).collect();
        uploads.sort();
        let escape = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
        let mut xml = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListMultipartUploadsResult \
             xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Bucket>{}</Bucket><Prefix>{}</Prefix>\
             <MaxUploads>1000</MaxUploads><IsTruncated>false</IsTruncated>",
            escape(&bucket),
            escape(&prefix)
        );
        for (key, id) in uploads {
            xml += &format!("<Upload><Key>{}</Key><UploadId>{}</UploadId></Upload>", escape(&key), escape(&id));
        }
        xml += "</ListMultipartUploadsResult>";
        let mut response = s3s::S3Response::new(s3s::Body::from(xml));
        response.headers.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/xml"));
        Ok(response)
    }
}
