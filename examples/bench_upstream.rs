//! A fast stand-in APM Server for the benches: HTTP/1.1 keep-alive and, on the same port,
//! gRPC over h2c (HTTP/2 with prior knowledge, as APM Server's port takes OTLP/gRPC), on one
//! thread. HTTP: 202 with no body for intake paths, `{}` otherwise. gRPC: an empty message
//! and `grpc-status: 0`. Request bodies are read and discarded; in requests marked
//! `X-Bench-Fleet` (the agent-fleet workload, `fleet_load`), events carrying
//! `"ts":<µs since the epoch>` are counted with the
//! time they took to arrive: `GET /fleet/reset` clears, `GET /fleet/stats` reports
//! `arrived=<n> p50_ms=<…> p99_ms=<…>`.
//!
//! Usage: `bench_upstream 127.0.0.1:18201`

use std::convert::Infallible;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// Arrival latencies (µs) of the fleet workload's events.
static FLEET: Mutex<Vec<u32>> = Mutex::new(Vec::new());

fn now_micros() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros()
}

/// Record the arrival of every `"ts":` event in the complete lines of `pending`; what is
/// left is the start of the next line.
fn record_events(pending: &mut Vec<u8>) {
    let Some(last) = pending.iter().rposition(|&b| b == b'\n') else {
        return;
    };
    let now = now_micros();
    let mut fleet = FLEET.lock().unwrap_or_else(|e| e.into_inner());
    for line in pending[..last].split(|&b| b == b'\n') {
        let Some(at) = line.windows(5).position(|w| w == b"\"ts\":") else {
            continue;
        };
        let digits: String = line[at + 5..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .map(|&b| b as char)
            .collect();
        if let Ok(sent) = digits.parse::<u128>() {
            fleet.push(now.saturating_sub(sent).min(u128::from(u32::MAX)) as u32);
        }
    }
    pending.drain(..=last);
}

fn fleet_stats(reset: bool) -> String {
    let mut fleet = FLEET.lock().unwrap_or_else(|e| e.into_inner());
    if reset {
        fleet.clear();
        return "reset\n".into();
    }
    let mut sorted = fleet.clone();
    sorted.sort_unstable();
    let pct = |p: f64| {
        sorted
            .get(((sorted.len() as f64 * p).ceil() as usize).saturating_sub(1))
            .map_or(0.0, |&us| f64::from(us) / 1000.0)
    };
    format!(
        "arrived={} p50_ms={:.2} p99_ms={:.2}\n",
        sorted.len(),
        pct(0.50),
        pct(0.99)
    )
}

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

async fn handle(req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    if req.uri().path().starts_with("/fleet/") {
        let text = fleet_stats(req.uri().path() == "/fleet/reset");
        return Ok(Response::new(Full::new(Bytes::from(text)).boxed_unsync()));
    }
    let intake = req.uri().path().starts_with("/intake/");
    // Only the fleet workload's streams are read for events.
    let fleet = req.headers().contains_key("x-bench-fleet");
    let grpc = req
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    let mut body = req.into_body();
    let mut pending = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            break;
        };
        if let (true, Some(data)) = (fleet, frame.data_ref()) {
            pending.extend_from_slice(data);
            record_events(&mut pending);
        }
    }
    if grpc {
        let mut trailers = hyper::HeaderMap::new();
        trailers.insert("grpc-status", hyper::header::HeaderValue::from_static("0"));
        let frames = [
            Frame::data(Bytes::from_static(&[0, 0, 0, 0, 0])),
            Frame::trailers(trailers),
        ];
        let stream = futures_util::stream::iter(frames.map(Ok::<_, Infallible>));
        return Ok(Response::builder()
            .header(hyper::header::CONTENT_TYPE, "application/grpc")
            .body(StreamBody::new(stream).boxed_unsync())
            .expect("static response"));
    }
    let (status, body) = if intake { (202, "") } else { (200, "{}") };
    Ok(Response::builder()
        .status(status)
        .body(Full::new(Bytes::from_static(body.as_bytes())).boxed_unsync())
        .expect("static response"))
}

/// Whether the connection opens with the HTTP/2 preface (peeked; a short read is looked at
/// again while it is still a prefix of the preface).
async fn speaks_h2(stream: &tokio::net::TcpStream) -> bool {
    let mut buf = [0u8; H2_PREFACE.len()];
    for _ in 0..100 {
        match stream.peek(&mut buf).await {
            Ok(n) if n > 0 && buf[..n] == H2_PREFACE[..n] => {
                if n == H2_PREFACE.len() {
                    return true;
                }
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
            _ => return false,
        }
    }
    false
}

fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18201".to_string());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&addr).await?;
        loop {
            let (stream, _) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let h2 = speaks_h2(&stream).await;
                let io = hyper_util::rt::TokioIo::new(stream);
                let service = hyper::service::service_fn(handle);
                let _ = if h2 {
                    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(io, service)
                        .await
                } else {
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await
                };
            });
        }
    })
}
