//! The admin listener: plain HTTP on its own address (loopback by default), never the agents'
//! port. `GET /livez` (200 while the process serves), `GET /readyz` (200 when ready, 503 with
//! the reason while starting, draining or when an upstream pool has no member up),
//! `GET /metrics` (Prometheus text format). [`probe`] is the client side, for
//! `apm-auth-proxy health`.

mod settings;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;

use crate::lifecycle::Lifecycle;
use crate::limits::ConnectionBook;
use crate::metrics::Metrics;
use crate::tls::CertResolver;
use crate::upstream::Pools;
use crate::usage::UsageBook;

pub use settings::AdminSettings;

pub struct AdminApp {
    /// The registry `/metrics` encodes, and the gauges set when it is scraped.
    pub metrics: Arc<Metrics>,
    pub lifecycle: Arc<Lifecycle>,
    pub certificate: Option<Arc<CertResolver>>,
    /// The agents' connections, for the connection gauge.
    pub connections: Arc<ConnectionBook>,
    pub pools: Arc<Pools>,
    /// Usage per credential, when tracked.
    pub usage: Option<Arc<UsageBook>>,
}

fn text(status: StatusCode, content_type: &str, body: impl Into<Vec<u8>>) -> Response<Vec<u8>> {
    let body = body.into();
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, content_type)
        .header(http::header::CONTENT_LENGTH, body.len())
        .header(http::header::CACHE_CONTROL, "no-store")
        .body(body)
        .unwrap_or_default()
}

/// The usage per credential, with times in RFC 3339 as `apikey list --json` gives them.
fn usage_json(book: &UsageBook) -> Vec<serde_json::Value> {
    let at = |secs: u64| {
        let t = std::time::UNIX_EPOCH + Duration::from_secs(secs);
        humantime::format_rfc3339_seconds(t).to_string()
    };
    (book.snapshot().into_iter())
        .map(|u| {
            serde_json::json!({
                "kind": u.kind,
                "name": u.name,
                "last_used": u.last_used.map(at),
                "last_client_ip": u.last_client_ip,
                "requests_accepted": u.requests_accepted,
                "requests_refused": u.requests_refused,
                "events_accepted": u.events_accepted,
            })
        })
        .collect()
}

impl AdminApp {
    fn metrics(&self) -> Response<Vec<u8>> {
        let m = &self.metrics;
        m.in_flight.set(self.lifecycle.in_flight() as i64);
        if let Some(c) = &self.certificate {
            m.set_certificates(&c.not_after_by_name());
        }
        // The members as they are now: one that left DNS is no longer reported.
        m.set_upstream_members(self.pools.all().iter().flat_map(|pool| {
            (pool.members().into_iter())
                .map(|member| (&*pool.name, member.addr.to_string(), member.up))
        }));
        m.client_connections
            .set(i64::try_from(self.connections.open()).unwrap_or(i64::MAX));
        text(StatusCode::OK, "text/plain; version=0.0.4", m.encode())
    }
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let req = session.req_header();
        if req.method != http::Method::GET && req.method != http::Method::HEAD {
            return text(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "GET only\n");
        }
        match req.uri.path() {
            "/livez" => text(StatusCode::OK, "text/plain", "ok\n"),
            "/readyz" => match self.lifecycle.readiness() {
                Ok(()) => text(StatusCode::OK, "text/plain", "ready\n"),
                Err(why) => text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    format!("not ready: {}\n", why.reason()),
                ),
            },
            "/metrics" => self.metrics(),
            "/usage" => match &self.usage {
                Some(book) => {
                    let body = serde_json::json!({ "credentials": usage_json(book) });
                    text(StatusCode::OK, "application/json", format!("{body}\n"))
                }
                None => text(
                    StatusCode::NOT_FOUND,
                    "text/plain",
                    "usage is not tracked (usage.enabled = false)\n",
                ),
            },
            _ => text(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
        }
    }
}

/// `GET <path>` on the admin listener at `addr`: the status and body, or why it failed.
pub fn probe(addr: SocketAddr, path: &str, timeout: Duration) -> Result<(u16, String), String> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| format!("cannot connect to the admin listener at {addr}: {e}"))?;
    let _ = stream.set_read_timeout(Some(timeout));
    let _ = stream.set_write_timeout(Some(timeout));
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("{addr}: {e}"))?;
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .map_err(|e| format!("{addr}: {e}"))?;
    let answer = String::from_utf8_lossy(&answer);
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{addr}: not an HTTP answer"))?;
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.trim().to_string())
        .unwrap_or_default();
    Ok((status, body))
}
