//! A fast stand-in APM Server for the benches: HTTP/1.1 keep-alive and, on the same port,
//! gRPC over h2c (HTTP/2 with prior knowledge, as APM Server's port takes OTLP/gRPC), on one
//! thread. HTTP: 202 with no body for intake paths, `{}` otherwise. gRPC: an empty message
//! and `grpc-status: 0`. Request bodies are read and discarded.
//!
//! Usage: `bench_upstream 127.0.0.1:18201`

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};

type Body = UnsyncBoxBody<Bytes, Infallible>;

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

async fn handle(req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let intake = req.uri().path().starts_with("/intake/");
    let grpc = req
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    let mut body = req.into_body();
    while let Some(frame) = body.frame().await {
        if frame.is_err() {
            break;
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
