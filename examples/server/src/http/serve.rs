//! The accept loop, and what bounds a client's hold on the server:
//!
//! - at most [`ConnectionLimits::max`] connections at once (more wait in the kernel's
//!   backlog, so descriptors never run out), and [`ConnectionLimits::per_address`] from one
//!   address (trusted proxies excepted);
//! - a connection with no request in progress is closed after [`ConnectionLimits::idle`]:
//!   the first request included, from the first byte (silent sockets, HTTP/2 prefaces that
//!   never finish), and keep-alive connections between requests;
//! - a request whose body or answer makes no progress for [`ConnectionLimits::stall`] (a
//!   client that stops sending, or stops reading a download) is cut: when its answer has not
//!   started yet, it gets one first (408 for a body that stopped coming, 503 for an answer
//!   that did not come), with `Connection: close`;
//! - hyper's own bounds: header bytes and lines, HTTP/1 header read timeout, HTTP/2 streams,
//!   header list size and keep-alive pings.
//!
//! Shutdown drains: no new connections, requests in flight get `drain` to finish, then
//! whatever is left is cut; a request whose answer has not started gets a 503 with
//! `Retry-After` and `Connection: close` first. An upload cut that way is dropped before its
//! commit, so it aborts; nothing half-written becomes a version.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Request, Response, StatusCode, Version, header};
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use ipnet::IpNet;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tower::ServiceExt;

/// How many header lines hyper parses; the router refuses more than [`crate::http::middleware::MAX_HEADERS`]
/// with a JSON reason, so this is only the hard stop.
const HYPER_MAX_HEADERS: usize = 512;

/// How long a client may take to send its request line and headers (HTTP/1).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// HTTP/2 streams one connection may run at once.
const H2_MAX_STREAMS: u32 = 32;

/// The largest HTTP/2 header list (the router refuses more than 16 KiB with a reason).
const H2_MAX_HEADER_LIST: u32 = 64 * 1024;

/// How often the watchdog of a connection looks at it.
const WATCH_EVERY: Duration = Duration::from_millis(500);

/// Descriptors kept for everything but client connections (catalog, files, storage).
const RESERVED_DESCRIPTORS: u64 = 128;

/// How long a cut connection may take to send the answers of its cut requests before it is
/// dropped.
const CUT_ANSWER_GRACE: Duration = Duration::from_secs(2);

/// The `Retry-After` of a request cut by the shutdown, in seconds: about a restart.
const DRAIN_RETRY_AFTER_SECS: u64 = 30;

/// The `Retry-After` of a request whose answer did not come in time, in seconds.
const SLOW_RETRY_AFTER_SECS: u64 = 5;

/// What one client may hold.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionLimits {
    /// Connections at once.
    pub(crate) max: usize,
    /// Connections from one address at once (not counted for trusted proxies).
    pub(crate) per_address: usize,
    /// A connection without a request in progress is closed after this long.
    pub(crate) idle: Duration,
    /// A request without progress for this long is cut.
    pub(crate) stall: Duration,
    /// Proxies: many clients behind one address.
    pub(crate) trusted: Vec<IpNet>,
}

impl ConnectionLimits {
    /// At most what the process's descriptor limit allows, raised to its hard limit first.
    pub(crate) fn within_descriptor_limit(mut self) -> Self {
        let available = raise_descriptor_limit().saturating_sub(RESERVED_DESCRIPTORS).max(16);
        let allowed = usize::try_from(available).unwrap_or(usize::MAX);
        if self.max > allowed {
            tracing::warn!(configured = self.max, allowed, "--max-connections lowered to the descriptor limit");
            self.max = allowed;
        }
        self
    }
}

/// Raises the soft limit of open files to the hard one; returns the soft limit in force.
fn raise_descriptor_limit() -> u64 {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    rlimit::Resource::NOFILE.get().map_or(1024, |(soft, _hard)| soft)
}

/// Serves `router` on `listener` until `shutdown` resolves, then drains for at most `drain`.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) {
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT).max_headers(HYPER_MAX_HEADERS);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(H2_MAX_STREAMS)
        .max_header_list_size(H2_MAX_HEADER_LIST)
        .keep_alive_interval(Some(limits.idle / 2))
        .keep_alive_timeout(limits.idle / 2);
    let graceful = GracefulShutdown::new();
    // Set when the drain time is over: requests still waiting for their answer get a 503.
    let (drained, drained_rx) = tokio::sync::watch::channel(false);
    let mut connections = JoinSet::new();
    let slots = Arc::new(Semaphore::new(limits.max));
    let per_address = Arc::new(PerAddress::default());
    tokio::pin!(shutdown);
    loop {
        // Finished connections' tasks are reaped as they pile up.
        while connections.try_join_next().is_some() {}
        // A slot first: past the cap, connections wait in the backlog, not in descriptors.
        let slot = tokio::select! {
            () = &mut shutdown => break,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
        };
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (socket, peer) = match accepted {
            Ok(a) => a,
            // Out of descriptors and the like: wait instead of spinning.
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let ip = backup_policy::canonical(peer.ip());
        let counted = !limits.trusted.iter().any(|n| n.contains(&ip));
        let Some(address_slot) = per_address.enter(ip, counted, limits.per_address) else {
            tracing::debug!(%peer, "too many connections from this address; closed");
            continue;
        };
        let _ = socket.set_nodelay(true);
        let activity = Arc::new(Activity::new());
        let service = tracked(router.clone(), peer, activity.clone(), drained_rx.clone());
        let connection = builder.serve_connection(TokioIo::new(socket), TowerToHyperService::new(service)).into_owned();
        let connection = graceful.watch(connection);
        let (idle, stall) = (limits.idle, limits.stall);
        connections.spawn(async move {
            let _slots = (slot, address_slot);
            tokio::pin!(connection);
            // When the requests of a stalled connection were told to answer.
            let mut cut_at: Option<Instant> = None;
            loop {
                tokio::select! {
                    result = &mut connection => {
                        if let Err(e) = result {
                            tracing::debug!(%peer, error = %e, "connection ended with an error");
                        }
                        return;
                    }
                    () = tokio::time::sleep(WATCH_EVERY) => {
                        if let Some(at) = cut_at {
                            if at.elapsed() >= CUT_ANSWER_GRACE {
                                tracing::debug!(%peer, "connection closed after its stall answers");
                                return;
                            }
                            continue;
                        }
                        let Some(why) = activity.overdue(idle, stall) else { continue };
                        // Requests that have not answered yet answer now (their handlers are
                        // dropped: an upload aborts); the connection closes once they are sent.
                        if why == STALLED && activity.awaiting_answer() > 0 {
                            tracing::debug!(%peer, why, "answering the stalled requests, then closing");
                            activity.cut();
                            cut_at = Some(Instant::now());
                            continue;
                        }
                        // Dropping the connection closes the socket and cancels what runs on it
                        // (an upload aborts; a download's reads stop).
                        tracing::debug!(%peer, why, "connection closed");
                        return;
                    }
                }
            }
        });
    }
    drop(listener);
    let running = connections.len();
    if running > 0 {
        tracing::info!(running, ?drain, "draining connections");
    }
    let shutdown = graceful.shutdown();
    tokio::pin!(shutdown);
    if tokio::time::timeout(drain, &mut shutdown).await.is_err() {
        tracing::warn!(
            left = connections.len(),
            ?drain,
            "requests still running after the drain time; cutting them (their uploads abort)"
        );
        // Those still waiting for their answer get a 503 first; then whatever is left goes.
        drained.send_replace(true);
        if tokio::time::timeout(CUT_ANSWER_GRACE, &mut shutdown).await.is_err() {
            connections.abort_all();
        }
    }
    while connections.join_next().await.is_some() {}
}

/// The router as a per-connection service that reports every request's progress. A request
/// whose answer has not started when its connection is cut (stalled, or the shutdown's drain
/// time is over) is answered here instead of by its handler, which is dropped.
fn tracked(
    router: Router,
    peer: SocketAddr,
    activity: Arc<Activity>,
    drained: tokio::sync::watch::Receiver<bool>,
) -> impl tower::Service<
    Request<Incoming>,
    Response = Response<Body>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<Body>, Infallible>> + Send,
> + Clone {
    tower::service_fn(move |mut req: Request<Incoming>| {
        let (router, activity) = (router.clone(), activity.clone());
        let (mut cut, mut drained) = (activity.cut.subscribe(), drained.clone());
        async move {
            let in_flight = activity.begin();
            let awaiting = activity.awaiting();
            let version = req.version();
            let body_ended = Arc::new(AtomicBool::new(http_body::Body::is_end_stream(req.body())));
            req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
            let req = req.map(|body| {
                Body::new(Progress {
                    inner: body,
                    activity: activity.clone(),
                    _in_flight: None,
                    ended: Some(body_ended.clone()),
                })
            });
            let routed = router.oneshot(req);
            tokio::pin!(routed);
            let response = tokio::select! {
                response = &mut routed => response?,
                () = signalled(&mut cut) => {
                    if body_ended.load(Ordering::Relaxed) {
                        cut_answer(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "the server could not answer in time; try again",
                            Some(SLOW_RETRY_AFTER_SECS),
                            version,
                        )
                    } else {
                        cut_answer(StatusCode::REQUEST_TIMEOUT, "the request body stopped coming", None, version)
                    }
                }
                () = signalled(&mut drained) => cut_answer(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the server is shutting down; try again",
                    Some(DRAIN_RETRY_AFTER_SECS),
                    version,
                ),
            };
            drop(awaiting);
            // The request is in progress until its answer has been sent (or dropped).
            Ok(response
                .map(|body| Body::new(Progress { inner: body, activity, _in_flight: Some(in_flight), ended: None })))
        }
    })
}

/// Resolves when `rx` turns true; never if its sender is gone first.
async fn signalled(rx: &mut tokio::sync::watch::Receiver<bool>) {
    if rx.wait_for(|set| *set).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// The answer of a request cut before its handler answered: the JSON envelope, and on HTTP/1
/// `Connection: close` (the rest of its body will not be read).
fn cut_answer(status: StatusCode, message: &str, retry_after: Option<u64>, version: Version) -> Response<Body> {
    let mut error = crate::http::json::ApiError::new(status, message);
    error.retry_after = retry_after;
    let mut response = axum::response::IntoResponse::into_response(error);
    if version < Version::HTTP_2 {
        response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// Why [`Activity::overdue`] closes a connection with requests in progress.
const STALLED: &str = "a request made no progress";

/// When a connection last made progress, how many of its requests are in progress and how many
/// of those have not started their answer, and the signal that cuts them.
#[derive(Debug)]
struct Activity {
    start: Instant,
    /// Milliseconds since `start` of the last progress.
    last: AtomicU64,
    in_flight: AtomicUsize,
    awaiting_answer: AtomicUsize,
    /// Set when the connection stalled: requests still waiting for their handler answer now.
    cut: tokio::sync::watch::Sender<bool>,
}

impl Activity {
    fn new() -> Self {
        Activity {
            start: Instant::now(),
            last: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            awaiting_answer: AtomicUsize::new(0),
            cut: tokio::sync::watch::Sender::new(false),
        }
    }

    /// A request whose answer has not started, until dropped.
    fn awaiting(self: &Arc<Self>) -> Awaiting {
        self.awaiting_answer.fetch_add(1, Ordering::Relaxed);
        Awaiting(self.clone())
    }

    fn awaiting_answer(&self) -> usize {
        self.awaiting_answer.load(Ordering::Relaxed)
    }

    /// Tells the requests waiting for their handlers to answer now.
    fn cut(&self) {
        self.cut.send_replace(true);
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(ms, Ordering::Relaxed);
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.touch();
        InFlight(self.clone())
    }

    /// Why the connection should be closed now, if it should.
    fn overdue(&self, idle: Duration, stall: Duration) -> Option<&'static str> {
        let since = self.start.elapsed().saturating_sub(Duration::from_millis(self.last.load(Ordering::Relaxed)));
        match self.in_flight.load(Ordering::Relaxed) {
            0 if since >= idle => Some("idle"),
            0 => None,
            _ if since >= stall => Some(STALLED),
            _ => None,
        }
    }
}

/// A request whose answer has not started; counted until dropped.
#[derive(Debug)]
struct Awaiting(Arc<Activity>);

impl Drop for Awaiting {
    fn drop(&mut self) {
        self.0.awaiting_answer.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A request in progress; it ends when dropped.
#[derive(Debug)]
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A body that reports each frame as progress (and, for an answer, holds its request in
/// progress until it is sent; for a request, tells when it ended).
struct Progress<B> {
    inner: B,
    activity: Arc<Activity>,
    _in_flight: Option<InFlight>,
    ended: Option<Arc<AtomicBool>>,
}

impl<B> http_body::Body for Progress<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(_))) => self.activity.touch(),
            Poll::Ready(None) => {
                if let Some(ended) = &self.ended {
                    ended.store(true, Ordering::Relaxed);
                }
            }
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Connections per client address.
#[derive(Debug, Default)]
struct PerAddress {
    open: Mutex<HashMap<IpAddr, usize>>,
}

impl PerAddress {
    /// A slot for one more connection from `ip`, or `None` at the cap.
    fn enter(self: &Arc<Self>, ip: IpAddr, counted: bool, cap: usize) -> Option<AddressSlot> {
        if !counted {
            return Some(AddressSlot { table: None, ip });
        }
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(ip).or_insert(0);
        if *n >= cap {
            return None;
        }
        *n += 1;
        Some(AddressSlot { table: Some(self.clone()), ip })
    }
}

/// One connection counted against its address; uncounted when dropped.
#[derive(Debug)]
struct AddressSlot {
    table: Option<Arc<PerAddress>>,
    ip: IpAddr,
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        if let Some(table) = &self.table {
            let mut open = table.open.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(n) = open.get_mut(&self.ip) {
                *n -= 1;
                if *n == 0 {
                    open.remove(&self.ip);
                }
            }
        }
    }
}
