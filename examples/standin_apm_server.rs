//! Test scaffolding: a stand-in APM Server for the container tests (`tests/containers/`),
//! put in an image of its own, since no real APM Server image can be pulled here. It takes
//! APM Server's own command line, so the deployment files run it unchanged: HTTP/1.1 on
//! `-E apm-server.host=ADDR` (default `0.0.0.0:8200`), every other flag ignored. Every request is read whole and then
//! written to stdout as one JSON line — what a test reads back with `podman logs`:
//! `{"method","path","authorization","content_encoding","body_bytes","lines","services"}`,
//! where `lines` counts the ndjson lines of the (gzip/deflate-decoded) body and `services`
//! the service names in its metadata lines. Answers: 202 to intake POSTs, `{"version":…}` to
//! `GET /` (APM Server's server information; the proxy's health checks ask it), `{}` to the
//! rest. Exits 0 on SIGTERM, as a container's main process must.
//!
//! Usage: `standin_apm_server [-e] [-E apm-server.host=0.0.0.0:8200] [-E …]`

use std::convert::Infallible;
use std::io::{Read, Write};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};

/// The decoded body's ndjson lines, and the service names of its metadata lines.
fn read_events(encoding: &str, body: &[u8]) -> (usize, Vec<String>) {
    let mut text = Vec::new();
    let decoded = match encoding {
        "gzip" => flate2::read::GzDecoder::new(body).read_to_end(&mut text),
        "deflate" => flate2::read::ZlibDecoder::new(body).read_to_end(&mut text),
        _ => {
            text.extend_from_slice(body);
            Ok(0)
        }
    };
    if decoded.is_err() {
        return (0, Vec::new());
    }
    let mut services = Vec::new();
    let mut lines = 0;
    for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        lines += 1;
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(line) else {
            continue;
        };
        if let Some(name) = value
            .pointer("/metadata/service/name")
            .and_then(|n| n.as_str())
        {
            services.push(name.to_string());
        }
    }
    (lines, services)
}

async fn handle(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let authorization = req.headers().contains_key(hyper::header::AUTHORIZATION);
    let encoding = header("content-encoding");
    let body = match req.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let (lines, services) = read_events(&encoding, &body);
    let record = serde_json::json!({
        "method": method,
        "path": path,
        "authorization": authorization,
        "content_encoding": encoding,
        "body_bytes": body.len(),
        "lines": lines,
        "services": services,
    });
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{record}");
    let _ = out.flush();
    let (status, text) = match (method.as_str(), path.as_str()) {
        ("POST", p) if p.starts_with("/intake/") => (202, ""),
        ("GET", "/") => (200, r#"{"version":"8.15.3","build_flavor":"stand-in"}"#),
        _ => (200, "{}"),
    };
    Ok(Response::builder()
        .status(status)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from_static(text.as_bytes())))
        .expect("static response"))
}

fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .filter_map(|a| a.strip_prefix("apm-server.host=").map(str::to_string))
        .next_back()
        .unwrap_or_else(|| "0.0.0.0:8200".to_string());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&addr).await?;
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        eprintln!("stand-in APM Server listening on {addr}");
        loop {
            let (stream, _) = tokio::select! {
                accepted = listener.accept() => accepted?,
                _ = terminate.recv() => return Ok(()),
            };
            tokio::spawn(async move {
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, hyper::service::service_fn(handle))
                    .await;
            });
        }
    })
}
