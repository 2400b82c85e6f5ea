//! The Pingora side of the proxy: admission in `request_filter`, header rewriting in
//! `upstream_request_filter`, the upstream peer, error replies and the access log.
//! Bodies are never touched: Pingora streams them chunk by chunk in both directions.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use http::HeaderValue;
use pingora::http::RequestHeader;
use pingora::prelude::HttpPeer;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{Error, ErrorSource, ErrorType, Result};

use crate::auth::Identity;
use crate::client_ip::{self, ClientIpPolicy};
use crate::gate::{Decision, Gate};
use crate::response::{self, Reply};
use crate::tls::client::PeerCertificate;

/// Per-listener settings the proxy applies to each request.
#[derive(Debug, Clone)]
pub struct ProxySettings {
    pub idle_timeout: Duration,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    pub reject_drain_timeout: Duration,
    /// "https" when the listener terminates TLS.
    pub scheme: &'static str,
    pub access_log: bool,
}

pub struct ApmProxy {
    gate: Gate,
    client_ip: ClientIpPolicy,
    upstream: HttpPeer,
    /// `Bearer <upstream.secret_token>`, sent upstream in place of the client's credential.
    upstream_authorization: Option<HeaderValue>,
    settings: ProxySettings,
}

impl ApmProxy {
    pub fn new(
        gate: Gate,
        client_ip: ClientIpPolicy,
        upstream: HttpPeer,
        upstream_token: Option<&str>,
        settings: ProxySettings,
    ) -> Result<Self, http::header::InvalidHeaderValue> {
        let upstream_authorization = upstream_token
            .map(|t| {
                let mut v = HeaderValue::from_str(&format!("Bearer {t}"))?;
                v.set_sensitive(true);
                Ok(v)
            })
            .transpose()?;
        Ok(ApmProxy {
            gate,
            client_ip,
            upstream,
            upstream_authorization,
            settings,
        })
    }
}

const CLIENT_CERT_HEADERS: [&str; 8] = [
    "x-forwarded-client-cert",
    "x-client-cert",
    "x-client-verify",
    "x-client-dn",
    "x-ssl-client-cert",
    "x-ssl-client-dn",
    "x-ssl-client-verify",
    "ssl-client-cert",
];

/// What the proxy learned about one request, for the later phases and the access log.
pub struct RequestCtx {
    started: Instant,
    client_ip: IpAddr,
    identity: Option<Identity>,
    /// Why the proxy answered the request itself, if it did.
    rejection: Option<&'static str>,
}

#[async_trait]
impl ProxyHttp for ApmProxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            started: Instant::now(),
            client_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            identity: None,
            rejection: None,
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let s = &self.settings;
        session.set_keepalive(Some(s.idle_timeout.as_secs().max(1)));
        session.set_read_timeout(Some(s.read_timeout));
        session.set_write_timeout(Some(s.write_timeout));
        let peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip());
        ctx.client_ip = self
            .client_ip
            .client_ip(peer, &session.req_header().headers);

        let peer_cert = session
            .digest()
            .and_then(|d| d.ssl_digest.as_ref())
            .and_then(|tls| tls.extension.get::<PeerCertificate>());
        let (reply, reason) =
            match self
                .gate
                .decide(session.req_header(), peer_cert, SystemTime::now())
            {
                Decision::Forward(identity) => {
                    ctx.identity = Some(identity);
                    return Ok(false);
                }
                Decision::Reply(reply, reason) => (reply, reason),
                Decision::Forbidden(reply, identity) => {
                    ctx.identity = Some(identity);
                    (reply, "forbidden_action")
                }
            };
        ctx.rejection = Some(reason);
        response::send(session, &reply, s.reject_drain_timeout).await?;
        Ok(true)
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        _ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        Ok(Box::new(self.upstream.clone()))
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        // The client's credential never leaves the proxy.
        upstream_request.remove_header(&http::header::AUTHORIZATION);
        upstream_request.remove_header(&http::header::PROXY_AUTHORIZATION);
        // Headers other proxies use to pass a client certificate on: from a client they
        // would be an impersonation attempt.
        for name in CLIENT_CERT_HEADERS {
            upstream_request.remove_header(name);
        }
        if let Some(token) = &self.upstream_authorization {
            upstream_request.insert_header(http::header::AUTHORIZATION, token.clone())?;
        }
        client_ip::set_forwarding_headers(upstream_request, ctx.client_ip, self.settings.scheme);
        Ok(())
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let reply = error_reply(e);
        let code = match reply {
            Some(reply) if session.response_written().is_none() => {
                ctx.rejection.get_or_insert("proxy_error");
                match response::send(session, &reply, self.settings.reject_drain_timeout).await {
                    Ok(()) => reply.status,
                    Err(_) => 0,
                }
            }
            Some(reply) => reply.status,
            None => 0,
        };
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    /// A client that hangs up mid-request is routine for agents (they cut uploads at
    /// `api_request_time`); it is in the access log, not worth an ERROR line each.
    fn suppress_error_log(&self, _session: &Session, _ctx: &RequestCtx, e: &Error) -> bool {
        *e.esource() == ErrorSource::Downstream
            && matches!(
                e.etype(),
                ErrorType::ConnectionClosed | ErrorType::ReadError | ErrorType::WriteError
            )
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        if !self.settings.access_log {
            return;
        }
        let req = session.req_header();
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        // The path only: query strings are the client's and may carry anything.
        tracing::info!(
            target: "access",
            method = %req.method,
            // Debug-quoted: a hostile path cannot forge log lines.
            path = ?String::from_utf8_lossy(crate::routes::path_of(req.raw_path())),
            status,
            client_ip = %ctx.client_ip,
            credential = %CredentialLabel(ctx.identity.as_ref()),
            rejection = ctx.rejection.unwrap_or("-"),
            bytes_in = session.body_bytes_read(),
            bytes_out = session.body_bytes_sent(),
            duration_ms = ctx.started.elapsed().as_secs_f64() * 1000.0,
            error = e.map(|e| e.etype().as_str()).unwrap_or("-"),
        );
    }
}

/// `token:<name>`, `api_key:<id>`, `client_cert:<name>` or `-`, written straight into the
/// log line (no per-request allocation).
struct CredentialLabel<'a>(Option<&'a Identity>);

impl std::fmt::Display for CredentialLabel<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            None => f.write_str("-"),
            Some(Identity::SecretToken { name }) => write!(f, "token:{name}"),
            Some(Identity::ApiKey { id, .. }) => write!(f, "api_key:{id}"),
            Some(Identity::ClientCert { name, .. }) => write!(f, "client_cert:{name}"),
        }
    }
}

/// The reply for a request that failed after admission; `None` when the client is gone.
fn error_reply(e: &Error) -> Option<Reply> {
    use ErrorType::*;
    if let HTTPStatus(code) = e.etype() {
        return Some(Reply::error(*code, "request failed"));
    }
    match e.esource() {
        ErrorSource::Upstream => Some(match e.etype() {
            ConnectTimedout | ReadTimedout | WriteTimedout => Reply::error(
                504,
                "gateway timeout: the APM Server did not answer in time",
            ),
            ConnectRefused | ConnectNoRoute | ConnectError | ConnectProxyFailure => {
                Reply::error(502, "bad gateway: the APM Server is unreachable")
            }
            _ => Reply::error(502, "bad gateway: the APM Server closed the connection"),
        }),
        ErrorSource::Downstream => match e.etype() {
            ReadError | WriteError | ConnectionClosed => None,
            ReadTimedout => Some(Reply::error(408, "request timed out")),
            _ => Some(Reply::error(400, "invalid request")),
        },
        ErrorSource::Internal | ErrorSource::Unset => Some(Reply::error(500, "internal error")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_failures_map_to_gateway_errors() {
        let refused = Error::new(ErrorType::ConnectRefused).into_up();
        assert_eq!(error_reply(&refused).unwrap().status, 502);
        let timeout = Error::new(ErrorType::ConnectTimedout).into_up();
        assert_eq!(error_reply(&timeout).unwrap().status, 504);
        let gone = Error::new(ErrorType::ConnectionClosed).into_down();
        assert!(error_reply(&gone).is_none());
    }
}
