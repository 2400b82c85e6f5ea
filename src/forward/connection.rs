//! The agents' HTTP/1.1 connections, hosted here instead of in Pingora's built-in loop, for
//! what that loop cannot do:
//!
//! - a deadline on the whole request head: Pingora bounds each read of the head, so a head
//!   sent a byte at a time held its connection open for ever (a slowloris);
//! - nothing held by a kept-alive connection between requests but the connection itself:
//!   the request's session, its head buffer and the proxy's per-request future are only made
//!   when the next request's first byte arrives;
//! - a request refused from its head is answered here, once the head is read
//!   ([`Front::answer`]), without entering the proxy's per-request machinery; a request let
//!   through is handed to the proxy with its head and its screening ([`take_screened`]).
//!
//! HTTP/2 connections (ALPN h2, or h2c with prior knowledge on a cleartext listener) go to
//! Pingora's own loop unchanged. Every connection, either way, is admitted by the
//! [`ConnectionBook`] as it is accepted and owned by its guard until it closes.

use std::cell::RefCell;
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
use pingora::ErrorType;
use tokio::io::AsyncReadExt;

use super::front::{Front, Screened};
use crate::admission::Decision;
use crate::limits::ConnectionBook;

/// The size of the first buffer a request head is read into. The header values point into
/// it, so it lives as long as the request — a streaming agent's whole stream. An agent's head
/// with its first events fits in 2 KiB (a keep-alive POST of 1 KiB too, in one read); a larger
/// head is read in more steps, the buffer growing (4 KiB before: 2 KB more per agent).
const HEAD_BUFFER: usize = 2048;

tokio::task_local! {
    /// The screening of the HTTP/1.1 request being served on this task, for the proxy.
    /// Boxed: the value is swapped in and out of the task-local slot on every poll of the
    /// request — every event of a streaming agent — so it is kept to a pointer (with a
    /// `Screened` inline, each poll cost ≈ 550 instructions more).
    static SCREENED: RefCell<Option<Box<Screened>>>;
}

/// The screening the connection layer made of the request being served, taken once; `None`
/// for a request it did not screen (HTTP/2), which the proxy screens itself.
pub fn take_screened() -> Option<Screened> {
    SCREENED
        .try_with(|s| s.borrow_mut().take())
        .ok()
        .flatten()
        .map(|screened| *screened)
}

/// How the agents' connections are timed.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionTimes {
    /// Wait for the first byte of a request, on a new or a kept-alive connection.
    pub idle_timeout: Duration,
    /// From a request's first byte to the end of its head.
    pub header_timeout: Duration,
}

/// A Pingora `ServerApp` that reads each HTTP/1.1 request's head, answers it when `front`
/// refuses it, serves it with `app` otherwise, and owns the waits between requests.
pub struct Connections<A> {
    app: Arc<A>,
    /// Screens each request's head, answers its refusals and records them.
    front: Arc<Front>,
    times: ConnectionTimes,
    /// Cleartext listener: a connection that opens with the HTTP/2 preface (h2c with prior
    /// knowledge, how gRPC clients speak without TLS) goes to `app`'s HTTP/2 loop, which
    /// must have h2c enabled.
    h2c: bool,
    /// Admits each connection at accept and counts it until it closes.
    book: Arc<ConnectionBook>,
}

impl<A> Connections<A> {
    pub fn new(
        app: A,
        front: Arc<Front>,
        times: ConnectionTimes,
        h2c: bool,
        book: Arc<ConnectionBook>,
    ) -> Self {
        Connections {
            app: Arc::new(app),
            front,
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
        // Boxed apart: reading, screening and answering a head take more state than handing
        // the request on, which a streaming agent's connection holds for the stream's life.
        let (mut session, screened) = match Box::pin(self.head(next)).await {
            Head::Done(reused) => return reused,
            Head::Forward(session, screened) => (session, screened),
        };
        // The proxy reads the same head again from the session, without reading.
        session.keep_request_for_next_read();
        let request = self.app.process_new_http(session, shutdown);
        SCREENED
            .scope(RefCell::new(screened.map(Box::new)), request)
            .await
    }

    /// Read the next request's head within `header_timeout` and screen it; answer it here
    /// when it is refused.
    async fn head(&self, next: Request) -> Head {
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
        match fast_timeout(self.times.header_timeout, session.read_request()).await {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => return Head::Done(None),
            Ok(Err(e)) => return Head::Done(refuse_head(session, e.etype()).await),
            Err(_) => {
                // Closed without an answer, as APM Server (Go's net/http) does on a read
                // deadline.
                tracing::debug!("request head not complete within server.header_timeout; closing");
                self.book.header_timed_out();
                return Head::Done(None);
            }
        }
        // Pingora answers a CONNECT itself (405): not screened, nothing charged.
        if session.req_header().method == http::Method::CONNECT {
            return Head::Forward(session, None);
        }
        let Screened { client, decision } = self.front.screen(&mut session);
        match decision {
            Decision::Reply(reply, identity) => {
                Head::Done(self.front.answer(session, client, reply, identity).await)
            }
            decision => Head::Forward(session, Some(Screened { client, decision })),
        }
    }
}

/// What reading and screening a request's head came to.
// Returned once per request and taken apart at once: boxing the session would only add an
// allocation per request.
#[allow(clippy::large_enum_variant)]
enum Head {
    /// Answered here (a refusal, or a head that could not be read): the connection, when it
    /// can take another request.
    Done(Option<ReusedHttpStream>),
    /// For the proxy to serve, with its screening (`None`: not screened).
    Forward(ServerSession, Option<Screened>),
}

/// A head that could not be parsed gets Pingora's answer, 400 (any other failure to read
/// one: the client is gone); the connection is closed either way.
async fn refuse_head(mut session: ServerSession, error: &ErrorType) -> Option<ReusedHttpStream> {
    if matches!(error, ErrorType::InvalidHTTPHeader) {
        tracing::debug!("invalid request head; answering 400");
        let _ = session.respond_error(400).await;
    }
    session.shutdown().await;
    None
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
