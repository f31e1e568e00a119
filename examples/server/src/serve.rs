//! The accept loop. hyper's connection settings bound what a client can hold (header bytes and
//! count, a header read timeout against slow senders), and shutdown drains: no new
//! connections, requests in flight get `drain` to finish, then whatever is left is cut. An
//! upload cut that way is dropped before its commit, so it aborts; nothing half-written
//! becomes a version.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tower::ServiceExt;

/// How many header lines hyper parses; the router refuses more than [`crate::app::MAX_HEADERS`]
/// with a JSON reason, so this is only the hard stop.
const HYPER_MAX_HEADERS: usize = 512;

/// How long a client may take to send its request line and headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves `router` on `listener` until `shutdown` resolves, then drains for at most `drain`.
pub(crate) async fn serve(listener: TcpListener, router: Router, shutdown: impl Future<Output = ()>, drain: Duration) {
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT).max_headers(HYPER_MAX_HEADERS);
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    let _ = socket.set_nodelay(true);
                    let service = router.clone().map_request(move |mut req: Request<Incoming>| {
                        req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
                        req.map(Body::new)
                    });
                    let connection = builder.serve_connection(TokioIo::new(socket), TowerToHyperService::new(service)).into_owned();
                    let connection = graceful.watch(connection);
                    connections.spawn(async move {
                        if let Err(e) = connection.await {
                            tracing::debug!(%peer, error = %e, "connection ended with an error");
                        }
                    });
                }
                // Out of file descriptors and the like: wait instead of spinning.
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let running = connections.len();
    if running > 0 {
        tracing::info!(running, ?drain, "draining connections");
    }
    if tokio::time::timeout(drain, graceful.shutdown()).await.is_err() {
        tracing::warn!(
            left = connections.len(),
            ?drain,
            "requests still running after the drain time; cutting them (their uploads abort)"
        );
        connections.abort_all();
    }
    while connections.join_next().await.is_some() {}
}
