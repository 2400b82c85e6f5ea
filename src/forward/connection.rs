//! The agents' HTTP/1.1 connections, hosted here instead of in Pingora's built-in loop, for
//! what that loop cannot do:
//!
//! - a deadline on the whole request head: Pingora bounds each read of the head, so a head
//!   sent a byte at a time held its connection open for ever (a slowloris);
//! - nothing held by a kept-alive connection between requests but the connection itself:
//!   the request's session, its head buffer and the proxy's per-request future are only made
//!   when the next request's first byte arrives.
//!
//! HTTP/2 connections (ALPN h2, or h2c with prior knowledge on a cleartext listener) go to
//! Pingora's own loop unchanged. Every connection, either way, is admitted by the
//! [`ConnectionBook`] as it is accepted and owned by its guard until it closes.

use std::cell::Cell;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::BytesMut;
use pingora::apps::{
    ConnectionOwner, HttpPersistentSettings, HttpServerApp, ReusedHttpStream, ServerApp,
};
use pingora::protocols::http::ServerSession;
use pingora::protocols::{Stream, ALPN};
use pingora::server::ShutdownWatch;
use pingora::time::fast_timeout::fast_timeout;
use tokio::io::AsyncReadExt;

use crate::limits::ConnectionBook;

/// The size of Pingora's own first buffer for a request head.
const HEAD_BUFFER: usize = 4096;

tokio::task_local! {
    /// Set once the request head being served on this task has been read in full.
    static HEAD_READ: Cell<bool>;
}

/// Proof that the head deadline was lifted for the request being served: the only way to
/// make one is [`head_read`], and a request's context (`RequestCtx::new`) takes one, so a
/// context cannot exist for a request still under the deadline.
///
/// The contract with [`Connections::serve`]: Pingora makes the proxy's context (`new_ctx`)
/// exactly when a request head has been read in full; `serve` runs each request in a task-local
/// scope and, past `header_timeout`, lets the request go on only if the flag was set.
#[derive(Debug)]
pub struct HeadRead(());

/// The request head has been read in full: from now on the head deadline no longer applies
/// to it. Outside a connection hosted by [`Connections`] (HTTP/2, where Pingora bounds the
/// head itself) there is no deadline to lift.
pub fn head_read() -> HeadRead {
    let _ = HEAD_READ.try_with(|read| read.set(true));
    HeadRead(())
}

/// How the agents' connections are timed.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionTimes {
    /// Wait for the first byte of a request, on a new or a kept-alive connection.
    pub idle_timeout: Duration,
    /// From a request's first byte to the end of its head.
    pub header_timeout: Duration,
}

/// A Pingora `ServerApp` that serves each HTTP/1.1 request with `app` and owns the waits
/// between them.
pub struct Connections<A> {
    app: Arc<A>,
    times: ConnectionTimes,
    /// Cleartext listener: a connection that opens with the HTTP/2 preface (h2c with prior
    /// knowledge, how gRPC clients speak without TLS) goes to `app`'s HTTP/2 loop, which
    /// must have h2c enabled.
    h2c: bool,
    /// Admits each connection at accept and counts it until it closes.
    book: Arc<ConnectionBook>,
}

impl<A> Connections<A> {
    pub fn new(app: A, times: ConnectionTimes, h2c: bool, book: Arc<ConnectionBook>) -> Self {
        Connections {
            app: Arc::new(app),
            times,
            h2c,
            book,
        }
    }
}

/// What the next request on a connection starts from.
struct Request {
    stream: Stream,
    /// Its first byte, already read.
    first: u8,
    /// The keep-alive settings the previous request left.
    kept: Option<HttpPersistentSettings>,
    /// The listener is shutting down: the connection closes after this request.
    last: bool,
}

/// The HTTP/2 connection preface (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

#[async_trait]
impl<A> ServerApp for Connections<A>
where
    A: HttpServerApp + Send + Sync + 'static,
{
    async fn process_new(
        self: &Arc<Self>,
        mut stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        if matches!(stream.selected_alpn_proto(), Some(ALPN::H2))
            || (self.h2c && self.opens_with_h2_preface(&mut stream).await?)
        {
            return ServerApp::process_new(&self.app, stream, shutdown).await;
        }
        let mut stop = shutdown.clone();
        let mut kept: Option<HttpPersistentSettings> = None;
        loop {
            let first = self.first_byte(&mut stream, &mut stop).await?;
            let next = Request {
                stream,
                first,
                kept: kept.take(),
                last: *stop.borrow(),
            };
            // Boxed: this connection's state, held for its whole life, is then only what
            // waiting for the next request needs (≈ 0.45 KB, not 1.7 KB: bench/RESULTS.md).
            let reused = Box::pin(self.serve(next, shutdown)).await?;
            (stream, kept) = reused.consume();
        }
    }

    async fn cleanup(&self) {
        self.app.http_cleanup().await;
    }

    fn admit(&self, peer: Option<&std::net::SocketAddr>) -> Option<Box<dyn ConnectionOwner>> {
        self.book
            .admit(peer)
            .map(|guard| Box::new(guard) as Box<dyn ConnectionOwner>)
    }
}

impl<A> Connections<A>
where
    A: HttpServerApp + Send + Sync + 'static,
{
    /// The next request's first byte; `None` when the client closes, stays silent past the
    /// idle timeout, or the listener is shutting down.
    async fn first_byte(&self, stream: &mut Stream, stop: &mut ShutdownWatch) -> Option<u8> {
        if *stop.borrow() {
            return None;
        }
        let mut byte = [0u8; 1];
        let next = async {
            tokio::select! {
                read = stream.read(&mut byte) => matches!(read, Ok(1)).then_some(byte[0]),
                _ = stopping(stop) => None,
            }
        };
        // Pingora's coarse timer, not tokio's: a tokio timer set while the worker is busy
        // wakes the driver (an eventfd write and an extra epoll round per request).
        fast_timeout(self.times.idle_timeout, next)
            .await
            .ok()
            .flatten()
    }

    /// Whether a cleartext connection's first bytes are the HTTP/2 preface (peeked, nothing
    /// consumed); `None` when it sends nothing within the idle timeout.
    async fn opens_with_h2_preface(&self, stream: &mut Stream) -> Option<bool> {
        let mut first = [0u8; H2_PREFACE.len()];
        let peeked = tokio::time::timeout(self.times.idle_timeout, stream.try_peek(&mut first));
        match peeked.await {
            Ok(Ok(true)) => Some(first == H2_PREFACE),
            // Not peekable: HTTP/1.1 as before.
            Ok(Ok(false)) => Some(false),
            Ok(Err(_)) | Err(_) => None,
        }
    }

    /// One request, its head bounded by `header_timeout`; the reusable connection after it.
    async fn serve(&self, next: Request, shutdown: &ShutdownWatch) -> Option<ReusedHttpStream> {
        let mut session = ServerSession::new_http1(next.stream);
        match next.kept {
            Some(settings) => settings.apply_to_session(&mut session),
            // The proxy sets the kept-alive wait per request; until then, this one.
            None => session.set_keepalive(Some(self.times.idle_timeout.as_secs().max(1))),
        }
        if next.last {
            session.set_keepalive(None);
        }
        let mut head = BytesMut::with_capacity(HEAD_BUFFER);
        head.extend_from_slice(&[next.first]);
        session.set_pipelined_prefix(head);
        // The flag lives in the request's own future: nothing allocated per request for it.
        let request = HEAD_READ.scope(
            Cell::new(false),
            self.app.process_new_http(session, shutdown),
        );
        tokio::pin!(request);
        if let Ok(reused) = fast_timeout(self.times.header_timeout, &mut request).await {
            return reused;
        }
        // Taken out once, past the deadline; the request needs the flag no more.
        if request.as_mut().take_value().is_some_and(|read| read.get()) {
            return request.await;
        }
        // Closed without an answer, as APM Server (Go's net/http) does on a read deadline.
        tracing::debug!("request head not complete within server.header_timeout; closing");
        self.book.header_timed_out();
        None
    }
}

/// Resolves once the shutdown flag turns true (never, if its sender is gone).
async fn stopping(stop: &mut ShutdownWatch) {
    loop {
        if *stop.borrow_and_update() {
            return;
        }
        if stop.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
