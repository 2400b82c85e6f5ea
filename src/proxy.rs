//! The Pingora side of the proxy: admission in `request_filter`, header rewriting in
//! `upstream_request_filter`, the upstream peer, error replies and the access log.
//! Bodies stream chunk by chunk in both directions and are forwarded untouched. The only
//! bodies the proxy reads are intake streams it must check (anonymous callers, keys bound
//! to services: event names and counts, read as they pass) and agent-config answers to
//! anonymous callers, which it trims as APM Server does.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use http::HeaderValue;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::HttpPeer;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{Error, ErrorSource, ErrorType, Result};

use crate::auth::Identity;
use crate::client_ip::ClientIpPolicy;
use crate::concurrency::Slot;
use crate::event_rules::{EventRules, NameRules};
use crate::gate::{Caller, Decision, Gate};
use crate::intake::{IntakeReader, ScanError};
use crate::ratelimit::Grant;
use crate::response::{self, Reply};
use crate::routes::EndpointKind;
use crate::tls::client::PeerCertificate;
use crate::upstream_headers;

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
    /// Longest decompressed intake line the proxy reads (`rum.max_event_size`).
    pub max_event_size: usize,
    /// Largest anonymous request body (`auth.anonymous.max_request_size`).
    pub max_anonymous_request_size: u64,
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

/// What the proxy learned about one request, for the later phases and the access log.
pub struct RequestCtx {
    started: Instant,
    client_ip: IpAddr,
    identity: Option<Identity>,
    /// Why the proxy answered the request itself, if it did.
    rejection: Option<&'static str>,
    kind: Option<EndpointKind>,
    /// Echoed as `Access-Control-Allow-Origin` on the response of a RUM request.
    cors_origin: Option<String>,
    /// An anonymous request's place under the per-IP concurrency cap, freed on drop.
    _slot: Option<Slot>,
    /// Checks applied to the request body as it streams.
    body: Option<BodyCheck>,
    /// The answer for an error raised while the body streamed (sent by `fail_to_proxy`).
    pending_reply: Option<Reply>,
    /// An anonymous agent-config answer, collected to be trimmed.
    config_answer: Option<Vec<u8>>,
}

impl RequestCtx {
    /// An anonymous caller's agent-config query, whose answer is trimmed.
    fn is_anonymous_config_query(&self) -> bool {
        matches!(self.identity, Some(Identity::Anonymous))
            && self.kind.is_some_and(EndpointKind::is_agent_config)
    }
}

/// The streaming checks of one request body.
struct BodyCheck {
    /// Event names and counts (intake streams); `None` once the body is done.
    reader: Option<IntakeReader<EventRules>>,
    /// Bytes read ahead in `request_filter`: Pingora replays them through
    /// `request_body_filter`, where they must not be counted twice.
    read_ahead: u64,
    /// Body bytes seen by `request_body_filter`.
    seen: u64,
    max_bytes: Option<u64>,
    /// Anonymous: events are charged to this IP's rate limit as they stream.
    rate_limited: bool,
    /// Events read so far (the `accepted` count of an error reply).
    events_read: u64,
    /// Events charged to the rate limit so far, in batches of ten as APM Server does.
    charged: u64,
}

/// Events per rate-limit step, as APM Server's intake handler batches them.
const EVENT_BATCH: u64 = 10;
/// How much of a body the proxy may read ahead before forwarding (Pingora's retry buffer).
const READ_AHEAD_LIMIT: u64 = 64 * 1024;
/// Largest agent-config answer the proxy trims for anonymous callers.
const CONFIG_ANSWER_LIMIT: usize = 64 * 1024;

#[async_trait]
impl ProxyHttp for ApmProxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            started: Instant::now(),
            client_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            identity: None,
            rejection: None,
            kind: None,
            cors_origin: None,
            _slot: None,
            body: None,
            pending_reply: None,
            config_answer: None,
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
        let caller = Caller {
            peer_cert,
            ip: ctx.client_ip,
            now: SystemTime::now(),
            clock: Instant::now(),
        };
        let (reply, reason) = match self.gate.decide(session.req_header(), caller) {
            Decision::Forward(admission) => {
                ctx.identity = Some(admission.identity);
                ctx.kind = admission.kind;
                ctx.cors_origin = admission.cors_origin;
                ctx._slot = admission.slot;
                match self
                    .start_body_checks(session, ctx, admission.rules)
                    .await?
                {
                    None => return Ok(false),
                    Some(reply) => (reply, "forbidden_body"),
                }
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

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let Some(check) = ctx.body.as_mut() else {
            return Ok(());
        };
        let outcome = self.check_chunk(check, body.as_deref(), end_of_stream, ctx.client_ip);
        let wait = match outcome {
            Ok(wait) => wait,
            Err(reply) => return Err(self.stop_body(ctx, reply)),
        };
        if !wait.is_zero() {
            // The events' tokens are reserved; hold the stream until they are due.
            tokio::time::sleep(wait).await;
        }
        Ok(())
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
        // The client's credential and headers that could impersonate the proxy's view of
        // the client never reach the upstream.
        upstream_headers::rewrite(
            upstream_request,
            ctx.client_ip,
            self.settings.scheme,
            self.upstream_authorization.as_ref(),
        )?;
        if ctx.is_anonymous_config_query() {
            // The answer is trimmed for anonymous callers, so it must come uncompressed.
            upstream_request.remove_header(&http::header::ACCEPT_ENCODING);
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        response: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(origin) = &ctx.cors_origin {
            // Replaces any the upstream set, so the header appears once.
            response.insert_header("Access-Control-Allow-Origin", origin.as_str())?;
        }
        if ctx.is_anonymous_config_query() && response.status == http::StatusCode::OK {
            response.remove_header(&http::header::CONTENT_LENGTH);
            response.remove_header(&http::header::CONTENT_ENCODING);
            if !session.is_http2() {
                response.insert_header(http::header::TRANSFER_ENCODING, "chunked")?;
            }
            ctx.config_answer = Some(Vec::new());
        }
        Ok(())
    }

    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<Duration>> {
        if let Some(answer) = ctx.config_answer.as_mut() {
            if let Some(chunk) = body.take() {
                if answer.len() + chunk.len() <= CONFIG_ANSWER_LIMIT {
                    answer.extend_from_slice(&chunk);
                } else {
                    // Not an agent configuration: answer with no settings rather than all.
                    answer.clear();
                    answer.extend_from_slice(b"{}");
                    ctx.config_answer = None;
                    *body = Some(Bytes::from_static(b"{}\n"));
                    return Ok(None);
                }
            }
            if end_of_stream {
                *body = Some(trim_agent_config(answer));
            }
        }
        Ok(None)
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let reply = ctx.pending_reply.take().or_else(|| error_reply(e));
        let code = match reply {
            Some(reply) if session.response_written().is_none() => {
                ctx.rejection.get_or_insert("proxy_error");
                // The connection is not reused after a failed proxy attempt: say so in the
                // answer, or an HTTP/1.1 client may send its next request into the closing
                // socket and see a reset instead of an answer.
                session.set_keepalive(None);
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

impl ApmProxy {
    /// Set up the checks an admitted request's body needs under `rules`, reading ahead when
    /// a decision must come before anything is forwarded (the intake metadata line; an
    /// agent-config query's service). `Some(reply)` refuses the request.
    async fn start_body_checks(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        rules: Option<NameRules>,
    ) -> Result<Option<Reply>> {
        let (Some(kind), Some(rules)) = (ctx.kind, rules) else {
            return Ok(None);
        };
        let anonymous = matches!(rules, NameRules::Anonymous(_));
        let mut check = BodyCheck {
            reader: None,
            read_ahead: 0,
            seen: 0,
            max_bytes: anonymous.then_some(self.settings.max_anonymous_request_size),
            rate_limited: anonymous,
            events_read: 0,
            charged: 0,
        };
        let refusal = if kind.is_ndjson_intake() {
            let encoding = session
                .req_header()
                .headers
                .get(http::header::CONTENT_ENCODING)
                .map(|v| v.as_bytes());
            check.reader = Some(IntakeReader::new(
                encoding,
                self.settings.max_event_size,
                EventRules::new(rules),
            ));
            read_metadata(session, &mut check).await?
        } else if kind.is_agent_config() && session.req_header().method == http::Method::POST {
            check_config_query_body(session, &mut check, &rules).await?
        } else {
            None
        };
        if let Some(reply) = refusal {
            return Ok(Some(with_cors(reply, ctx.cors_origin.as_deref())));
        }
        ctx.body = Some(check);
        Ok(None)
    }

    /// Feed one body chunk to the checks; `Ok(wait)` is how long to hold the stream for the
    /// rate limit.
    fn check_chunk(
        &self,
        check: &mut BodyCheck,
        chunk: Option<&[u8]>,
        end_of_stream: bool,
        ip: IpAddr,
    ) -> std::result::Result<Duration, Reply> {
        if let Some(chunk) = chunk {
            let len = chunk.len() as u64;
            // What was read ahead comes back first; it was checked already.
            let skip = check.read_ahead.saturating_sub(check.seen).min(len) as usize;
            check.seen += len;
            if check.max_bytes.is_some_and(|max| check.seen > max) {
                return Err(Reply::error(413, "request body too large"));
            }
            if let Some(reader) = check.reader.as_mut() {
                let read = check.events_read;
                reader
                    .feed(&chunk[skip..])
                    .map_err(|e| scan_reply(e, read))?;
                check.events_read = reader.visitor_mut().map_or(read, |r| r.events());
            }
        }
        if end_of_stream {
            if let Some(reader) = check.reader.take() {
                let read = check.events_read;
                check.events_read = reader.finish().map_err(|e| scan_reply(e, read))?.events();
            }
        }
        if !check.rate_limited {
            return Ok(Duration::ZERO);
        }
        let Some(access) = self.gate.anonymous.as_ref() else {
            return Ok(Duration::ZERO);
        };
        let mut wait = Duration::ZERO;
        let now = Instant::now();
        loop {
            let pending = check.events_read - check.charged;
            if pending == 0 || (pending < EVENT_BATCH && !end_of_stream) {
                break;
            }
            let batch = pending.min(EVENT_BATCH);
            match access.limiter.reserve(ip, batch as u32, now) {
                Grant::Now => {}
                Grant::After(d) => wait = wait.max(d),
                Grant::Refused => {
                    return Err(Reply::stream_error_after(
                        429,
                        check.charged,
                        "rate limit exceeded",
                    ))
                }
            }
            check.charged += batch;
        }
        Ok(wait)
    }

    /// Record why the body was refused and turn it into the error that stops the proxying.
    fn stop_body(&self, ctx: &mut RequestCtx, reply: Reply) -> Box<Error> {
        let status = reply.status;
        ctx.rejection = Some("forbidden_body");
        ctx.body = None;
        ctx.pending_reply = Some(with_cors(reply, ctx.cors_origin.as_deref()));
        Error::explain(ErrorType::HTTPStatus(status), "request body refused")
    }
}

fn with_cors(reply: Reply, origin: Option<&str>) -> Reply {
    match origin {
        Some(origin) => reply.with_header("Access-Control-Allow-Origin", origin),
        None => reply,
    }
}

/// APM Server's intake error for what the reader found; `accepted` events went before it.
fn scan_reply(e: ScanError<String>, accepted: u64) -> Reply {
    let (status, message) = match e {
        ScanError::Rejected(message) => (403, message),
        ScanError::EventTooLarge => (400, "event exceeded the permitted size".into()),
        ScanError::MissingMetadata => (
            400,
            "data validation error: the first line must be a metadata object".into(),
        ),
        ScanError::InvalidJson => (400, "data decoding error: invalid JSON line".into()),
        ScanError::Decompression => (
            400,
            "data decoding error: the compressed body is corrupt".into(),
        ),
    };
    Reply::stream_error_after(status, accepted, message)
}

/// Read the body ahead until the intake metadata line has been checked (or the body ends),
/// so a refused stream reaches the upstream not at all. What is read stays in Pingora's
/// retry buffer and is replayed upstream first.
async fn read_metadata(session: &mut Session, check: &mut BodyCheck) -> Result<Option<Reply>> {
    let Some(reader) = check.reader.as_mut() else {
        return Ok(None);
    };
    prepare_read_ahead(session).await?;
    while !reader.seen_metadata() {
        let chunk =
            match read_ahead(session, &mut check.read_ahead).await? {
                ReadAhead::Chunk(chunk) => chunk,
                ReadAhead::End => {
                    // The whole body is here: check its end now.
                    let reader = check.reader.take().expect("reader present");
                    return Ok(reader.finish().err().map(|e| scan_reply(e, 0)));
                }
                ReadAhead::TooLarge => return Ok(Some(Reply::stream_error(
                    413,
                    "request body too large: the metadata line must come within the first 64 KiB",
                ))),
            };
        if let Err(e) = reader.feed(&chunk) {
            return Ok(Some(scan_reply(e, 0)));
        }
    }
    Ok(None)
}

/// A POSTed agent-config query names its service in a small JSON body: read it whole
/// (it is replayed upstream) and check the service.
async fn check_config_query_body(
    session: &mut Session,
    check: &mut BodyCheck,
    rules: &NameRules,
) -> Result<Option<Reply>> {
    prepare_read_ahead(session).await?;
    let mut body = Vec::new();
    loop {
        match read_ahead(session, &mut check.read_ahead).await? {
            ReadAhead::Chunk(chunk) => body.extend_from_slice(&chunk),
            ReadAhead::End => break,
            ReadAhead::TooLarge => return Ok(Some(Reply::error(413, "request body too large"))),
        }
    }
    #[derive(serde::Deserialize)]
    struct Query {
        service: Option<Service>,
    }
    #[derive(serde::Deserialize)]
    struct Service {
        name: Option<String>,
    }
    let service = serde_json::from_slice::<Query>(&body)
        .ok()
        .and_then(|q| q.service)
        .and_then(|s| s.name);
    Ok(rules
        .check_service(service.as_deref())
        .err()
        .map(|message| Reply::error(403, message)))
}

enum ReadAhead {
    Chunk(Bytes),
    End,
    /// Past what Pingora's retry buffer can replay.
    TooLarge,
}

/// The next body chunk read ahead (kept for the replay upstream), counted in `total`.
async fn read_ahead(session: &mut Session, total: &mut u64) -> Result<ReadAhead> {
    let Some(chunk) = session.as_downstream_mut().read_request_body().await? else {
        return Ok(ReadAhead::End);
    };
    *total += chunk.len() as u64;
    if session.as_downstream().retry_buffer_truncated() || *total > READ_AHEAD_LIMIT {
        return Ok(ReadAhead::TooLarge);
    }
    Ok(ReadAhead::Chunk(chunk))
}

/// Before reading a body ahead: keep what is read for the replay, and release a client
/// that waits for `100 Continue` (HTTP/1.1) — it would otherwise send nothing to read.
async fn prepare_read_ahead(session: &mut Session) -> Result<()> {
    session.as_downstream_mut().enable_retry_buffering();
    if response::expects_continue(session.req_header()) && !session.is_http2() {
        let header = ResponseHeader::build(100, Some(0))?;
        session
            .as_downstream_mut()
            .write_response_header(Box::new(header))
            .await?;
        session
            .req_header_mut()
            .remove_header(&http::header::EXPECT);
    }
    Ok(())
}

/// APM Server gives anonymous callers only `transaction_sample_rate` of an agent config.
fn trim_agent_config(answer: &[u8]) -> Bytes {
    let pretty = answer.starts_with(b"{\n");
    let mut kept = serde_json::Map::new();
    if let Ok(serde_json::Value::Object(mut settings)) = serde_json::from_slice(answer) {
        if let Some(rate) = settings.remove("transaction_sample_rate") {
            kept.insert("transaction_sample_rate".into(), rate);
        }
    }
    let value = serde_json::Value::Object(kept);
    let mut text = if pretty {
        serde_json::to_vec_pretty(&value)
    } else {
        serde_json::to_vec(&value)
    }
    .unwrap_or_else(|_| b"{}".to_vec());
    text.push(b'\n');
    Bytes::from(text)
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
            Some(Identity::Anonymous) => f.write_str("anonymous"),
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
    fn anonymous_agent_config_keeps_only_the_sample_rate() {
        let full = br#"{"sanitize_field_names":"foo,bar,baz","transaction_sample_rate":"0.1"}"#;
        assert_eq!(
            &trim_agent_config(full)[..],
            b"{\"transaction_sample_rate\":\"0.1\"}\n"
        );
        assert_eq!(
            &trim_agent_config(b"{\n  \"capture_body\": \"all\"\n}\n")[..],
            b"{}\n"
        );
        assert_eq!(&trim_agent_config(b"not json")[..], b"{}\n");
    }

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
