//! A real S3 protocol server in-process: s3s-fs over a temporary folder, on 127.0.0.1 with
//! SigV4 keys. It enforces signatures and conditional writes, so it catches what a mock
//! would not.

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
        let dir = tempfile::tempdir().expect("temp dir");
        let bucket = "test-bucket".to_owned();
        std::fs::create_dir(dir.path().join(&bucket)).expect("bucket folder");
        let (access_key, secret_key) = ("test-access".to_owned(), "test-secret-key".to_owned());
        let fs = s3s_fs::FileSystem::new(dir.path()).expect("s3s-fs");
        let mut builder = S3ServiceBuilder::new(fs);
        builder.set_auth(SimpleAuth::from_single(access_key.clone(), secret_key.clone()));
        let service = builder.build();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
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
