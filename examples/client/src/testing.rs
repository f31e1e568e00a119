//! Faults between a client and a server, for tests (feature `testing`): proxies on loopback
//! that pass requests whole and damage the answers as a network does: cut them short, lose
//! them, flip a bit. Point a [`crate::Client`] (or any HTTP client) at the address they
//! return.

use std::future::Future;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

/// Which answers [`answer_losing_proxy`] loses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lose {
    /// The answers to POSTs (uploads); other requests (a lookup) pass both ways.
    Posts,
    /// Every answer.
    All,
}

/// A proxy on loopback in front of `upstream` that passes requests whole and answers only up
/// to `limit` bytes, then closes: a download cut mid-way.
pub async fn cutting_proxy(upstream: SocketAddr, limit: usize) -> SocketAddr {
    proxy(upstream, move |_method, mut server_read, mut client_write| async move {
        let mut passed = 0;
        let mut buf = vec![0u8; 16 * 1024];
        while passed < limit {
            let n = match server_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n.min(limit - passed),
            };
            if client_write.write_all(&buf[..n]).await.is_err() {
                break;
            }
            passed += n;
        }
        client_write
    })
    .await
}

/// A proxy on loopback in front of `upstream` that passes requests whole and loses the
/// answers `lose` says: once the server starts to answer, the client's connection is closed.
pub async fn answer_losing_proxy(upstream: SocketAddr, lose: Lose) -> SocketAddr {
    proxy(upstream, move |method, mut server_read, mut client_write| async move {
        if lose == Lose::All || method == b"POST" {
            let mut buf = [0u8; 1];
            let _ = server_read.read(&mut buf).await;
        } else {
            let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
        }
        client_write
    })
    .await
}

/// A proxy on loopback in front of `upstream` that passes requests whole and flips one bit of
/// each answer's body at `offset` (counted from the body's first byte): a download damaged in
/// transit.
pub async fn flipping_proxy(upstream: SocketAddr, offset: usize) -> SocketAddr {
    proxy(upstream, move |_method, mut server_read, mut client_write| async move {
        // The answer's head, then the body counted from its first byte.
        let mut seen = Vec::new();
        let mut body_start = None;
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match server_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let from = seen.len();
            seen.extend_from_slice(&buf[..n]);
            if body_start.is_none() {
                body_start = seen.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4);
            }
            if let Some(at) = body_start.map(|start| start + offset)
                && (from..seen.len()).contains(&at)
            {
                buf[at - from] ^= 0x01;
            }
            if client_write.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        client_write
    })
    .await
}

/// The scaffold of every proxy here: listens on loopback, connects each client to
/// `upstream`, passes the request whole (its first four bytes, the method, also go to
/// `answer`), and lets `answer` pass the server's answer to the client as it likes; the
/// client's connection is then closed.
async fn proxy<F, Fut>(upstream: SocketAddr, answer: F) -> SocketAddr
where
    F: Fn(Vec<u8>, OwnedReadHalf, OwnedWriteHalf) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = OwnedWriteHalf> + Send,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a loopback port");
    let addr = listener.local_addr().expect("its address");
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let answer = answer.clone();
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(upstream).await else { return };
                let (mut client_read, client_write) = client.into_split();
                let (server_read, mut server_write) = server.into_split();
                let mut method = vec![0u8; 4];
                if client_read.read_exact(&mut method).await.is_err() || server_write.write_all(&method).await.is_err()
                {
                    return;
                }
                let up = tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
                });
                let mut client_write = answer(method, server_read, client_write).await;
                up.abort();
                let _ = client_write.shutdown().await;
            });
        }
    });
    addr
}
