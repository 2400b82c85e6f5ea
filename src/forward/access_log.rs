//! One access-log line and one metrics record per request: method, path (never the query),
//! status, client and peer IP, the credential's *name* (never a secret), the outcome and the
//! rejection's label, bytes, durations, TLS version and user agent. The field names are the
//! text format's; `logging::ecs` maps them to Elastic Common Schema for `log.format = "json"`.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use pingora::proxy::Session;
use pingora::Error;

use crate::admission::{endpoint_label, path_of, Rejection};
use crate::auth::Identity;
use crate::metrics::{Metrics, Outcome, RequestRecord};

pub struct Entry<'a> {
    pub started: Instant,
    pub client_ip: IpAddr,
    pub identity: Option<&'a Identity>,
    pub rejection: Option<&'a Rejection>,
    pub upstream_duration: Option<Duration>,
    /// The upstream pool chosen and the member that served the request, if any.
    pub pool: &'a str,
    pub member: Option<SocketAddr>,
}

impl Entry<'_> {
    fn outcome(&self) -> Outcome {
        match self.rejection {
            None => Outcome::Forwarded,
            Some(r) if r.is_upstream_failure() => Outcome::UpstreamError,
            Some(_) => Outcome::Rejected,
        }
    }
}

fn status(session: &Session) -> u16 {
    session.response_written().map_or(0, |r| r.status.as_u16())
}

pub fn record_metrics(metrics: &Metrics, session: &Session, entry: &Entry<'_>) {
    let (method, credential) = match entry.identity {
        None => ("none", ""),
        Some(who) => who
            .credential()
            .map_or(("anonymous", ""), |(kind, name)| (kind.as_str(), &**name)),
    };
    if let Some(member) = entry.member {
        metrics.upstream_request(entry.pool, member);
    }
    metrics.record(&RequestRecord {
        endpoint: endpoint_label(path_of(session.req_header().raw_path())),
        status: status(session),
        outcome: entry.outcome(),
        reason: entry.rejection.map_or("", Rejection::label),
        limit: entry.rejection.and_then(Rejection::limit),
        auth_method: method,
        credential,
        duration: entry.started.elapsed(),
        upstream_duration: entry.upstream_duration,
        bytes_in: session.body_bytes_read() as u64,
        bytes_out: session.body_bytes_sent() as u64,
    });
}

pub fn write(session: &Session, e: Option<&Error>, entry: &Entry<'_>) {
    let req = session.req_header();
    let peer = session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip());
    let tls_version = session
        .digest()
        .and_then(|d| d.ssl_digest.as_ref())
        .map(|t| t.version.as_ref());
    let user_agent = req
        .headers
        .get(http::header::USER_AGENT)
        .map(|v| String::from_utf8_lossy(v.as_bytes()));
    tracing::info!(
        target: "access",
        method = %req.method,
        // Debug-quoted: a hostile path cannot forge log lines.
        path = ?String::from_utf8_lossy(path_of(req.raw_path())),
        status = status(session),
        client_ip = %entry.client_ip,
        peer_ip = %peer.map_or("-".to_string(), |p| p.to_string()),
        credential = %CredentialLabel(entry.identity),
        outcome = entry.outcome().label(),
        rejection = entry.rejection.map_or("-", Rejection::label),
        bytes_in = session.body_bytes_read(),
        bytes_out = session.body_bytes_sent(),
        duration_ms = entry.started.elapsed().as_secs_f64() * 1000.0,
        tls_version = tls_version.unwrap_or("-"),
        upstream_pool = entry.pool,
        upstream_member = %entry.member.map_or("-".to_string(), |m| m.to_string()),
        user_agent = ?user_agent.as_deref().unwrap_or("-"),
        error = e.map(|e| e.etype().as_str()).unwrap_or("-"),
    );
}

/// `token:<name>`, `api_key:<id>`, `client_cert:<name>`, `anonymous` or `-`, written
/// straight into the log line (no per-request allocation).
pub struct CredentialLabel<'a>(pub Option<&'a Identity>);

impl std::fmt::Display for CredentialLabel<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            None => f.write_str("-"),
            Some(who) => match who.credential() {
                Some((kind, name)) => write!(f, "{kind}:{name}"),
                None => f.write_str("anonymous"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_name_the_credential_never_its_secret() {
        let key = Identity::ApiKey {
            id: "k1".into(),
            name: "shop".into(),
            privileges: crate::auth::Privileges::ALL,
            services: std::sync::Arc::from(Vec::new()),
            upstream: None,
            rate_limit: None,
        };
        assert_eq!(CredentialLabel(Some(&key)).to_string(), "api_key:k1");
        let token = Identity::SecretToken {
            name: "ci".into(),
            upstream: None,
            rate_limit: None,
        };
        assert_eq!(CredentialLabel(Some(&token)).to_string(), "token:ci");
        assert_eq!(CredentialLabel(None).to_string(), "-");
    }
}
