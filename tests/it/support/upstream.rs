//! The stand-in APM Server: HTTP/1.1 and, on the same port, gRPC over h2c (HTTP/2 with prior
//! knowledge, as APM Server's port takes OTLP/gRPC), on loopback, answering like an APM
//! Server with auth off, recording every request it receives, with live counters a test can
//! order its steps by.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};

/// The one-worker runtime a stand-in server runs on; dropping it ends the server.
pub fn server_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

/// A stand-in server's runtime and its TCP listener on `addr` (port 0: a free one), with the
/// address it got.
pub fn listening_on(
    addr: SocketAddr,
) -> (tokio::runtime::Runtime, tokio::net::TcpListener, SocketAddr) {
    let runtime = server_runtime();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(addr))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    (runtime, listener, addr)
}

/// One request as the stand-in saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub uri: String,
    /// `:scheme`, for HTTP/2 requests.
    pub scheme: Option<String>,
    pub headers: http::HeaderMap,
    /// The body, when it is at most `KEEP_BODY` bytes.
    pub body: Vec<u8>,
    pub body_len: usize,
    pub body_sha256: Vec<u8>,
    /// False when the body stream ended in an error (the proxy aborted it).
    pub complete: bool,
}

const KEEP_BODY: usize = 8 << 20;

/// A request with this header is answered 200 with a body of that many chunks, each sent
/// only once the test has acknowledged the one before ([`Upstream::ack`]).
pub const STREAM_RESPONSE: &str = "x-stand-in-stream-chunks";

/// A gRPC call with this header is answered with that `grpc-status` (and a message and a
/// custom trailer), instead of OK.
pub const GRPC_STATUS: &str = "x-stand-in-grpc-status";

/// A request with this header is answered only after that many milliseconds.
pub const DELAY_MS: &str = "x-stand-in-delay-ms";

/// A request with this header is answered with that HTTP status (an overloaded APM Server's
/// 503, say) and an APM-style error body.
pub const STATUS: &str = "x-stand-in-status";

/// The trailer every gRPC answer of the stand-in carries, to show trailers pass through.
pub const GRPC_TRAILER: (&str, &str) = ("x-upstream-trailer", "kept");

/// The HTTP/2 connection preface (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

#[derive(Default)]
struct Shared {
    records: Mutex<Vec<Recorded>>,
    /// Request heads that arrived (recorded or still streaming).
    started: AtomicUsize,
    /// Body bytes received so far, over all requests.
    body_bytes: AtomicUsize,
    /// Response chunks the test has seen (for streamed responses).
    acked: AtomicUsize,
    /// The proxy's readiness checks (answered, not recorded).
    checks: AtomicUsize,
    /// Connections accepted that spoke HTTP/2 with prior knowledge.
    h2_connections: AtomicUsize,
    /// While set, every request (checks included) waits before it is answered: a server
    /// that hangs.
    hanging: AtomicBool,
}

pub struct Upstream {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    runtime: Option<tokio::runtime::Runtime>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Answer,
    /// Accept connections, read, never answer.
    Silent,
}

impl Upstream {
    pub fn start() -> Upstream {
        Self::start_on("127.0.0.1:0".parse().unwrap())
    }

    /// Start on `addr` (used to bring an upstream back on the port it had).
    pub fn start_on(addr: SocketAddr) -> Upstream {
        Self::launch(addr, Mode::Answer)
    }

    /// An upstream that accepts connections and never answers.
    pub fn silent() -> Upstream {
        Self::launch("127.0.0.1:0".parse().unwrap(), Mode::Silent)
    }

    fn launch(addr: SocketAddr, mode: Mode) -> Upstream {
        let (runtime, listener, addr) = listening_on(addr);
        let shared = Arc::new(Shared::default());
        let state = shared.clone();
        runtime.spawn(async move {
            // Ends when the runtime is dropped (`stop`, or the stand-in's drop).
            while let Ok((stream, _)) = listener.accept().await {
                let state = state.clone();
                tokio::spawn(async move {
                    if mode == Mode::Silent {
                        let mut stream = stream;
                        let _ = tokio::io::copy(&mut stream, &mut tokio::io::sink()).await;
                        return;
                    }
                    let h2 = starts_with_h2_preface(&stream).await;
                    let shared = state.clone();
                    let service =
                        hyper::service::service_fn(move |req| handle(req, shared.clone()));
                    let io = hyper_util::rt::TokioIo::new(stream);
                    if h2 {
                        state.h2_connections.fetch_add(1, Ordering::SeqCst);
                        let _ = hyper::server::conn::http2::Builder::new(
                            hyper_util::rt::TokioExecutor::new(),
                        )
                        .serve_connection(io, service)
                        .await;
                    } else {
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(io, service)
                            .await;
                    }
                });
            }
        });
        Upstream {
            addr,
            shared,
            runtime: Some(runtime),
        }
    }

    /// Stop listening and close every connection.
    pub fn stop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }

    /// How many requests have reached the upstream, finished or still streaming.
    pub fn started(&self) -> usize {
        self.shared.started.load(Ordering::SeqCst)
    }

    /// Body bytes received so far, over all requests (streams still open included).
    pub fn body_bytes(&self) -> usize {
        self.shared.body_bytes.load(Ordering::SeqCst)
    }

    /// Readiness checks the proxy made (never in `requests`).
    pub fn checks(&self) -> usize {
        self.shared.checks.load(Ordering::SeqCst)
    }

    /// Connections that spoke HTTP/2 (gRPC) so far.
    pub fn h2_connections(&self) -> usize {
        self.shared.h2_connections.load(Ordering::SeqCst)
    }

    /// Hold every request unanswered (`true`) until released (`false`), as a server that
    /// hangs and then recovers; requests held meanwhile are answered on release.
    pub fn hang(&self, hanging: bool) {
        self.shared.hanging.store(hanging, Ordering::SeqCst);
    }

    /// The test saw one more chunk of a streamed response.
    pub fn ack(&self) {
        self.shared.acked.fetch_add(1, Ordering::SeqCst);
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.records.lock().unwrap().clone()
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop();
    }
}

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// How the proxy's readiness check introduces itself (`User-Agent`).
pub const UPSTREAM_CHECK: &str = "(upstream check)";

async fn handle(req: Request<Incoming>, state: Arc<Shared>) -> Result<Response<Body>, Infallible> {
    // Ends with the release, or with the stand-in (its runtime is dropped).
    while state.hanging.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let is_check = req
        .headers()
        .get(http::header::USER_AGENT)
        .is_some_and(|v| v.to_str().unwrap_or("").contains(UPSTREAM_CHECK));
    if is_check {
        state.checks.fetch_add(1, Ordering::SeqCst);
        return Ok(Response::new(
            Full::new(Bytes::from_static(b"{}")).boxed_unsync(),
        ));
    }
    state.started.fetch_add(1, Ordering::SeqCst);
    let (parts, mut body) = req.into_parts();
    let mut hash = ring::digest::Context::new(&ring::digest::SHA256);
    let (mut kept, mut len, mut complete) = (Vec::new(), 0usize, true);
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Some(data) = frame.data_ref() {
                    hash.update(data);
                    len += data.len();
                    state.body_bytes.fetch_add(data.len(), Ordering::SeqCst);
                    if kept.len() + data.len() <= KEEP_BODY {
                        kept.extend_from_slice(data);
                    }
                }
            }
            Err(_) => {
                complete = false;
                break;
            }
        }
    }
    let path = parts.uri.path().to_string();
    let stream_chunks = parts
        .headers
        .get(STREAM_RESPONSE)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    let grpc = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
        .then(|| {
            parts
                .headers
                .get(GRPC_STATUS)
                .and_then(|v| v.to_str().ok()?.parse::<u32>().ok())
                .unwrap_or(0)
        });
    let delay_ms = parts
        .headers
        .get(DELAY_MS)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let forced_status = parts
        .headers
        .get(STATUS)
        .and_then(|v| v.to_str().ok()?.parse::<u16>().ok());
    state.records.lock().unwrap().push(Recorded {
        method: parts.method.to_string(),
        // As an HTTP/1.1 request target (HTTP/2 carries scheme and authority beside it).
        uri: parts
            .uri
            .path_and_query()
            .map_or_else(|| parts.uri.to_string(), |pq| pq.to_string()),
        scheme: parts.uri.scheme_str().map(str::to_string),
        headers: parts.headers,
        body: if len <= KEEP_BODY { kept } else { Vec::new() },
        body_len: len,
        body_sha256: hash.finish().as_ref().to_vec(),
        complete,
    });
    if let Some(ms) = delay_ms {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if let Some(status) = grpc {
        return Ok(grpc_answer(status));
    }
    if let Some(chunks) = stream_chunks {
        return Ok(Response::new(streamed(chunks, state)));
    }
    if let Some(status) = forced_status {
        let body = Bytes::from_static(b"{\"error\":\"queue is full\"}\n");
        return Ok(Response::builder()
            .status(status)
            .body(Full::new(body).boxed_unsync())
            .unwrap());
    }
    let (status, body): (u16, &'static [u8]) = match path.as_str() {
        "/" => (
            200,
            b"{\"build_date\":\"2024-01-01T00:00:00Z\",\"build_sha\":\"abc\",\"publish_ready\":true,\"version\":\"7.17.0\"}",
        ),
        p if p.starts_with("/intake/") => (202, b""),
        p if p.starts_with("/v1/") => (200, b""),
        p if p.starts_with("/config/") => (
            200,
            b"{\"sanitize_field_names\":\"foo,bar,baz\",\"transaction_sample_rate\":\"0.5\"}",
        ),
        _ => (200, b"{}"),
    };
    let mut response = Response::builder().status(status);
    if path.contains("/rum/") {
        // APM Server with RUM on echoes the origin itself; the proxy must not duplicate it.
        response = response.header("Access-Control-Allow-Origin", "set-by-upstream");
    }
    Ok(response
        .body(Full::new(Bytes::from_static(body)).boxed_unsync())
        .unwrap())
}

/// `chunks` lines, chunk `i` sent once the test acknowledged `i` chunks (at most 10 s each).
fn streamed(chunks: usize, state: Arc<Shared>) -> Body {
    let stream = futures_util::stream::unfold(0usize, move |i| {
        let state = state.clone();
        async move {
            if i == chunks {
                return None;
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while state.acked.load(Ordering::SeqCst) < i && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let line = Bytes::from(format!("chunk {i}\n"));
            Some((Ok::<_, Infallible>(Frame::data(line)), i + 1))
        }
    });
    StreamBody::new(stream).boxed_unsync()
}

/// Whether a new connection opens with the HTTP/2 preface (peeked, so nothing is consumed).
async fn starts_with_h2_preface(stream: &tokio::net::TcpStream) -> bool {
    let mut buf = [0u8; H2_PREFACE.len()];
    // An HTTP/1.1 client may send its request in pieces: look again (bounded) while what
    // came so far is still a prefix of the preface.
    for _ in 0..200 {
        match stream.peek(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) if buf[..n] != H2_PREFACE[..n] => return false,
            Ok(n) if n == H2_PREFACE.len() => return true,
            Ok(_) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
    false
}

/// A gRPC answer: an empty message (an OTLP `Export…ServiceResponse` with nothing in it) and
/// OK, or no message and `status`; trailers either way.
fn grpc_answer(status: u32) -> Response<Body> {
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", status.into());
    trailers.insert(
        GRPC_TRAILER.0,
        http::HeaderValue::from_static(GRPC_TRAILER.1),
    );
    let mut frames = Vec::new();
    if status == 0 {
        // Not compressed, length 0.
        frames.push(Frame::data(Bytes::from_static(&[0, 0, 0, 0, 0])));
    } else {
        trailers.insert(
            "grpc-message",
            http::HeaderValue::from_static("upstream says no"),
        );
    }
    frames.push(Frame::trailers(trailers));
    let stream = futures_util::stream::iter(frames.into_iter().map(Ok::<_, Infallible>));
    Response::builder()
        .header(http::header::CONTENT_TYPE, "application/grpc")
        .body(StreamBody::new(stream).boxed_unsync())
        .unwrap()
}
