//! What is decided about a request from its head alone — its timeouts and keep-alive, the
//! client's IP, its id and the gate's decision ([`Front::screen`]) — and what is recorded
//! when it ends: the access line, the metrics, the usage ([`Front::record`]).
//!
//! An HTTP/1.1 request is screened by the connection layer as soon as its head is read, and a
//! refusal is answered there ([`Front::answer`]), without entering Pingora's per-request proxy
//! machinery (its session, modules and the ≈ 10 KB per-request future): a flood of refused
//! requests costs what the answer costs. A request let through goes on to the proxy's hooks
//! with its screening; an HTTP/2 request is screened by the proxy's `request_filter`. Either
//! way the same functions decide, answer (`response::send`) and record.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use pingora::apps::{HttpPersistentSettings, ReusedHttpStream};
use pingora::protocols::http::ServerSession;
use pingora::Error;

use super::access_log::{self, Entry};
use super::request_id::RequestIds;
use super::response;
use crate::admission::{BodyLimits, Caller, ClientIpPolicy, Decision, Gate, Reply};
use crate::auth::Identity;
use crate::lifecycle::{InFlight, Lifecycle};
use crate::metrics::Metrics;
use crate::tls::ConnectionInfo;
use crate::upstream::{PoolId, Pools};
use crate::usage::UsageBook;

/// Per-listener settings applied to each request.
#[derive(Debug, Clone)]
pub struct ProxySettings {
    pub idle_timeout: Duration,
    pub read_timeout: Duration,
    pub body_deadline: Duration,
    pub write_timeout: Duration,
    pub reject_drain_timeout: Duration,
    /// "https" when the listener terminates TLS.
    pub scheme: &'static str,
    pub access_log: bool,
    pub body_limits: BodyLimits,
}

/// The head-only part of every request, shared by the connection layer and the proxy.
pub struct Front {
    gate: Gate,
    client_ip: ClientIpPolicy,
    request_ids: RequestIds,
    /// Requests in flight and whether the process is draining.
    lifecycle: Arc<Lifecycle>,
    /// The APM Servers, by pool (the access line names the pool).
    pools: Arc<Pools>,
    /// Usage per credential, when tracked.
    usage: Option<Arc<UsageBook>>,
    /// Where requests are recorded (`None` when the admin listener, which serves the
    /// metrics, is off: nothing is recorded for nobody).
    metrics: Option<Arc<Metrics>>,
    settings: ProxySettings,
}

/// A request's head, screened: who the client is, and the gate's decision.
pub struct Screened {
    pub client: Client,
    pub decision: Decision,
}

/// What the screening learned about a request's client, and the request's id.
pub struct Client {
    pub started: Instant,
    pub ip: IpAddr,
    /// The TCP peer is a trusted proxy.
    pub from_trusted_proxy: bool,
    pub request_id: String,
}

/// How a request ended, for its record.
pub struct Ended<'a> {
    pub entry: Entry<'a>,
    /// Its events forwarded, where the proxy could count them (see `usage`).
    pub events: u64,
}

impl Front {
    pub fn new(
        gate: Gate,
        client_ip: ClientIpPolicy,
        pools: Arc<Pools>,
        lifecycle: Arc<Lifecycle>,
        usage: Option<Arc<UsageBook>>,
        metrics: Option<Arc<Metrics>>,
        settings: ProxySettings,
    ) -> Front {
        Front {
            gate,
            client_ip,
            request_ids: RequestIds::new(),
            lifecycle,
            pools,
            usage,
            metrics,
            settings,
        }
    }

    pub fn pools(&self) -> &Arc<Pools> {
        &self.pools
    }

    pub fn settings(&self) -> &ProxySettings {
        &self.settings
    }

    /// Set the request's timeouts and keep-alive, then decide on it from its head. Admission
    /// charges its limits here, once per request.
    pub fn screen(&self, session: &mut ServerSession) -> Screened {
        let started = Instant::now();
        let s = &self.settings;
        if self.lifecycle.is_draining() {
            // Served during the drain delay, then the connection closes (`Connection: close`).
            session.set_keepalive(None);
        } else {
            session.set_keepalive(Some(s.idle_timeout.as_secs().max(1)));
        }
        session.set_read_timeout(Some(s.read_timeout));
        session.set_write_timeout(Some(s.write_timeout));
        let peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip());
        let headers = &session.req_header().headers;
        let from_trusted_proxy = self.client_ip.is_trusted(peer);
        let client_ip = self.client_ip.client_ip(peer, headers);
        let request_id = self.request_ids.for_request(headers);
        let caller = Caller {
            peer_cert: connection_info(session).and_then(|c| c.peer_certificate.as_ref()),
            ip: client_ip,
            now: SystemTime::now(),
            clock: started,
        };
        let decision = self.gate.decide(session.req_header(), caller);
        let client = Client {
            started,
            ip: client_ip,
            from_trusted_proxy,
            request_id,
        };
        Screened { client, decision }
    }

    /// Answer an HTTP/1.1 request the screen refused, record it, and hand back its
    /// connection when it can take another request — what Pingora does after a
    /// `request_filter` that answered.
    pub async fn answer(
        &self,
        mut session: ServerSession,
        client: Client,
        reply: Reply,
        identity: Option<Identity>,
    ) -> Option<ReusedHttpStream> {
        // The drain waits for refusals being answered too.
        let _in_flight = InFlight::new(&self.lifecycle);
        let sent = response::send(&mut session, &reply, self.settings.reject_drain_timeout).await;
        let ended = Ended {
            entry: Entry {
                started: client.started,
                client_ip: client.ip,
                identity: identity.as_ref(),
                rejection: Some(&reply.rejection),
                upstream_duration: None,
                pool: &self.pools.get(PoolId::default()).name,
                member: None,
                request_id: &client.request_id,
                server_name: server_name(&session),
            },
            events: 0,
        };
        self.record(&session, sent.as_ref().err().map(|e| &**e), &ended);
        // A failed answer leaves the connection in an unknown state: closed.
        sent.ok()?;
        let settings = HttpPersistentSettings::for_session(&session);
        let reusable = session.finish().await.ok().flatten()?;
        Some(ReusedHttpStream::from_reusable_stream(reusable, settings))
    }

    /// Record an ended request: metrics, the access line (or, with the access log off, a
    /// failure's WARN line), the credential's usage.
    pub fn record(&self, session: &ServerSession, e: Option<&Error>, ended: &Ended<'_>) {
        let entry = &ended.entry;
        if let Some(metrics) = &self.metrics {
            access_log::record_metrics(metrics, session, entry);
        }
        match (self.settings.access_log, e) {
            (true, _) => access_log::write(session, e, entry),
            (false, Some(e)) => access_log::write_failure(session, e, entry),
            (false, None) => {}
        }
        if let (Some(book), Some(who)) = (&self.usage, entry.identity) {
            let accepted = entry.rejection.is_none();
            let now = SystemTime::now();
            book.record(who, accepted, ended.events, entry.client_ip, now);
        }
    }
}

/// What the TLS handshake learned about the connection (none over cleartext).
pub fn connection_info(session: &ServerSession) -> Option<&ConnectionInfo> {
    (session.digest())
        .and_then(|d| d.ssl_digest.as_ref())
        .and_then(|tls| tls.extension.get::<ConnectionInfo>())
}

/// The TLS server name (SNI) the client asked for, read from the connection when a line is
/// written: no copy per request.
pub fn server_name(session: &ServerSession) -> Option<&str> {
    connection_info(session).and_then(|c| c.server_name.as_deref())
}
