//! One access-log line and one metrics record per request: method, path (never the query),
//! status, client and peer IP, the credential (its id and its human name, never a secret),
//! the outcome and the rejection's label, body bytes, durations (the whole request and the
//! upstream's part), HTTP and TLS versions, the server name, the request id and user agent.
//! The field names are the text format's; `logging::ecs` maps them to Elastic Common Schema
//! for `log.format = "json"`.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use pingora::protocols::http::ServerSession;
use pingora::{Error, ErrorSource};

use crate::admission::{endpoint_label, path_of, Rejection};
use crate::auth::Identity;
use crate::metrics::{Metrics, Outcome, RequestRecord};

pub struct Entry<'a> {
    pub started: Instant,
    pub client_ip: IpAddr,
    pub identity: Option<&'a Identity>,
    pub rejection: Option<&'a Rejection>,
    /// From the request head sent upstream to the end of the upstream's answer (or now).
    pub upstream_duration: Option<Duration>,
    /// The upstream pool chosen and the member that served the request, if any.
    pub pool: &'a str,
    pub member: Option<SocketAddr>,
    /// The request's id (the client's `X-Request-Id` or `traceparent` trace id, else the
    /// proxy's own), also sent upstream as `X-Request-Id`.
    pub request_id: &'a str,
    /// The TLS server name (SNI) the client asked for.
    pub server_name: Option<&'a str>,
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

fn status(session: &ServerSession) -> u16 {
    session.response_written().map_or(0, |r| r.status.as_u16())
}

pub fn record_metrics(metrics: &Metrics, session: &ServerSession, entry: &Entry<'_>) {
    let method = match entry.identity {
        None => "none",
        Some(who) => who
            .credential()
            .map_or("anonymous", |(kind, _)| kind.as_str()),
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
        duration: entry.started.elapsed(),
        pool: entry.pool,
        upstream_duration: entry.upstream_duration,
        bytes_in: session.body_bytes_read() as u64,
        bytes_out: session.body_bytes_sent() as u64,
    });
}

pub fn write(session: &ServerSession, e: Option<&Error>, entry: &Entry<'_>) {
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
    let status = status(session);
    let endpoint = endpoint_label(path_of(req.raw_path()));
    let (credential_id, credential_name) = match entry.identity {
        None => (CredentialId(None), "-"),
        Some(who) => (CredentialId(Some(who)), who.display_name().unwrap_or("-")),
    };
    tracing::info!(
        target: "access",
        method = %req.method,
        // Debug-quoted: a hostile path cannot forge log lines.
        path = ?String::from_utf8_lossy(path_of(req.raw_path())),
        status,
        client_ip = %entry.client_ip,
        peer_ip = %peer.map_or("-".to_string(), |p| p.to_string()),
        credential = %credential_id,
        credential_name = ?credential_name,
        outcome = entry.outcome().label(),
        rejection = entry.rejection.map_or("-", Rejection::label),
        bytes_in = session.body_bytes_read(),
        bytes_out = session.body_bytes_sent(),
        duration_ms = %Millis::some(entry.started.elapsed()),
        upstream_ms = %entry.upstream_duration.map_or(Millis::NONE, Millis::some),
        http_version = http_version(req.version),
        tls_version = tls_version.unwrap_or("-"),
        server_name = ?entry.server_name.unwrap_or("-"),
        request_id = ?entry.request_id,
        upstream_pool = entry.pool,
        upstream_member = %entry.member.map_or("-".to_string(), |m| m.to_string()),
        user_agent = ?user_agent.as_deref().unwrap_or("-"),
        error_type = e.map_or("-", |e| e.etype().as_str()),
        error = %e.map_or(ErrorText(None), |e| ErrorText(Some(e))),
        // Bounded (known endpoints, or `other`): never the path or query as sent.
        "{} {endpoint} {status}",
        req.method,
    );
}

/// A failed request when the access log is off: one WARN line instead of Pingora's own
/// (which would carry the query string).
pub fn write_failure(session: &ServerSession, e: &Error, entry: &Entry<'_>) {
    if *e.esource() == ErrorSource::Downstream {
        return; // the client went away: routine, not an operator's problem
    }
    let req = session.req_header();
    tracing::warn!(
        method = %req.method,
        path = ?String::from_utf8_lossy(path_of(req.raw_path())),
        status = status(session),
        request_id = ?entry.request_id,
        upstream_member = %entry.member.map_or("-".to_string(), |m| m.to_string()),
        error_type = e.etype().as_str(),
        error = %ErrorText(Some(e)),
        "request failed"
    );
}

/// `HTTP/1.1` → `1.1`, as ECS writes `http.version`.
fn http_version(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_09 => "0.9",
        http::Version::HTTP_10 => "1.0",
        http::Version::HTTP_2 => "2",
        http::Version::HTTP_3 => "3",
        _ => "1.1",
    }
}

/// Milliseconds with microsecond precision (`12.345`), `-` when absent.
struct Millis(Option<Duration>);

impl Millis {
    const NONE: Millis = Millis(None);

    fn some(d: Duration) -> Millis {
        Millis(Some(d))
    }
}

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(d) => write!(f, "{:.3}", d.as_secs_f64() * 1000.0),
            None => f.write_str("-"),
        }
    }
}

impl From<Duration> for Millis {
    fn from(d: Duration) -> Millis {
        Millis(Some(d))
    }
}

/// An error's kind and cause without Pingora's request summary (which holds the query).
struct ErrorText<'a>(Option<&'a Error>);

impl fmt::Display for ErrorText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(e) = self.0 else {
            return f.write_str("-");
        };
        f.write_str(e.etype().as_str())?;
        if let Some(context) = &e.context {
            write!(f, ": {}", context.as_str())?;
        }
        if let Some(cause) = &e.cause {
            write!(f, ": {cause}")?;
        }
        Ok(())
    }
}

/// `token:<name>`, `api_key:<id>`, `client_cert:<name>`, `anonymous` or `-`: the one id of a
/// credential in every line (access and audit), written straight into the log line.
pub struct CredentialId<'a>(pub Option<&'a Identity>);

impl fmt::Display for CredentialId<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
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
    fn ids_name_the_credential_never_its_secret() {
        let key = Identity::ApiKey {
            id: "k1".into(),
            name: "shop".into(),
            privileges: crate::auth::Privileges::ALL,
            services: std::sync::Arc::from(Vec::new()),
            upstream: None,
            rate_limit: None,
        };
        assert_eq!(CredentialId(Some(&key)).to_string(), "api_key:k1");
        assert_eq!(key.display_name(), Some("shop"));
        let token = Identity::SecretToken {
            name: "ci".into(),
            upstream: None,
            rate_limit: None,
        };
        assert_eq!(CredentialId(Some(&token)).to_string(), "token:ci");
        assert_eq!(CredentialId(None).to_string(), "-");
    }

    #[test]
    fn milliseconds_have_a_fixed_precision() {
        assert_eq!(
            Millis::from(Duration::from_nanos(92_494)).to_string(),
            "0.092"
        );
        assert_eq!(Millis::NONE.to_string(), "-");
    }
}
