//! Lingering on refused uploads. When a handler refuses an upload before reading its whole
//! body (over the quota, not OpenPGP, not allowed), hyper would answer and close the
//! connection with the client's bytes still arriving; the kernel then resets it, and the
//! client may lose the answer and see only "broken pipe". As nginx's lingering close does,
//! the rest of the body is read and discarded in the background for a while, so the client
//! reads the refusal and the connection ends cleanly.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, BodyDataStream, Bytes};
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use futures::{Stream, StreamExt};

/// The longest a refused body is read after its refusal.
const LINGER: Duration = Duration::from_secs(10);

/// Wraps the request body so that dropping it before its end drains the rest.
pub(crate) async fn linger(req: Request, next: Next) -> Response {
    let req = req.map(|body| Body::from_stream(DrainOnDrop { body: Some(body.into_data_stream()), ended: false }));
    next.run(req).await
}

struct DrainOnDrop {
    body: Option<BodyDataStream>,
    ended: bool,
}

impl Stream for DrainOnDrop {
    type Item = Result<Bytes, axum::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let Some(body) = self.body.as_mut() else { return Poll::Ready(None) };
        let item = body.poll_next_unpin(cx);
        if matches!(item, Poll::Ready(None | Some(Err(_)))) {
            self.ended = true;
        }
        item
    }
}

impl Drop for DrainOnDrop {
    fn drop(&mut self) {
        let (Some(mut body), false) = (self.body.take(), self.ended) else { return };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        runtime.spawn(async move {
            let _ = tokio::time::timeout(LINGER, async { while let Some(Ok(_)) = body.next().await {} }).await;
        });
    }
}
