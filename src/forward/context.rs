//! What the proxy learns about one request as it passes the Pingora hooks.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::connection::HeadRead;
use crate::admission::{EndpointKind, Rejection, Reply};
use crate::auth::Identity;
use crate::intake::agent_config::AnswerTrimmer;
use crate::intake::{BodyCheck, LineCount};
use crate::lifecycle::{InFlight, Lifecycle};
use crate::limits::Slot;

/// What the proxy learned about one request, for the later phases and the access log.
pub struct RequestCtx {
    /// The head deadline was lifted before this context was made.
    _head: HeadRead,
    /// Counts the request as in flight until the context is dropped (the drain waits on it).
    pub(super) _in_flight: InFlight,
    pub(super) started: Instant,
    /// When the request head was sent upstream.
    pub(super) upstream_started: Option<Instant>,
    pub(super) upstream_duration: Option<Duration>,
    pub(super) client_ip: IpAddr,
    /// The TCP peer is a trusted proxy.
    pub(super) from_trusted_proxy: bool,
    pub(super) identity: Option<Identity>,
    /// Why the proxy answered the request itself, if it did.
    pub(super) rejection: Option<Rejection>,
    pub(super) kind: Option<EndpointKind>,
    /// Echoed as `Access-Control-Allow-Origin` on the response of a RUM request.
    pub(super) cors_origin: Option<String>,
    /// An anonymous request's place under the per-IP concurrency cap, freed on drop.
    pub(super) _slot: Option<Slot>,
    /// Checks applied to the request body as it streams.
    pub(super) body: Option<BodyCheck>,
    /// Lines of an uncompressed intake body nothing else reads, for the usage counts.
    pub(super) lines: Option<LineCount>,
    /// The answer for an error raised while the body streamed (sent by `fail_to_proxy`).
    pub(super) pending_reply: Option<Reply>,
    /// An anonymous agent-config answer, collected to be trimmed.
    pub(super) config_answer: Option<AnswerTrimmer>,
    /// The upstream pool chosen for the request, the members a connect failed to (not tried
    /// again for this request), the one in use.
    pub(super) pool: usize,
    pub(super) tried: Vec<SocketAddr>,
    pub(super) member: Option<SocketAddr>,
}

impl RequestCtx {
    /// A request's context, made once its head is in (`head`: the deadline was lifted).
    pub(super) fn new(lifecycle: &Arc<Lifecycle>, head: HeadRead) -> RequestCtx {
        RequestCtx {
            _head: head,
            _in_flight: InFlight::new(lifecycle),
            started: Instant::now(),
            upstream_started: None,
            upstream_duration: None,
            client_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            from_trusted_proxy: false,
            identity: None,
            rejection: None,
            kind: None,
            cors_origin: None,
            _slot: None,
            body: None,
            lines: None,
            pending_reply: None,
            config_answer: None,
            pool: 0,
            tried: Vec::new(),
            member: None,
        }
    }

    /// Events forwarded, where the proxy could count them (see `usage`).
    pub(super) fn events(&self) -> u64 {
        match (&self.body, &self.lines) {
            (Some(check), _) => check.events_forwarded(),
            (None, Some(lines)) => lines.events(),
            (None, None) => 0,
        }
    }

    /// A gRPC call: forwarded over h2c, answered in gRPC's form.
    /// The proxy's own answer, with the request's CORS headers, for `fail_to_proxy` to send.
    pub(super) fn answer_with(&mut self, rejection: Rejection) {
        self.pending_reply = Some(Reply::plain(rejection).with_cors(self.cors_origin.as_deref()));
    }

    pub(super) fn is_grpc(&self) -> bool {
        self.kind.is_some_and(EndpointKind::is_grpc)
    }

    /// An anonymous caller's agent-config query, whose answer is trimmed.
    pub(super) fn is_anonymous_config_query(&self) -> bool {
        matches!(self.identity, Some(Identity::Anonymous))
            && self.kind.is_some_and(EndpointKind::is_agent_config)
    }
}
