//! What the proxy learns about one request as it passes the Pingora hooks.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use crate::admission::{EndpointKind, Rejection, Reply};
use crate::auth::Identity;
use crate::intake::agent_config::AnswerTrimmer;
use crate::intake::{BodyCheck, LineCount};
use crate::lifecycle::{InFlight, Lifecycle};
use crate::limits::Slot;
use crate::upstream::PoolId;

/// What the proxy learned about one request, for the later phases and the access log.
pub struct RequestCtx {
    /// Counts the request as in flight until the context is dropped (the drain waits on it).
    _in_flight: InFlight,
    pub(super) started: Instant,
    pub(super) client_ip: IpAddr,
    /// The TCP peer is a trusted proxy.
    pub(super) from_trusted_proxy: bool,
    /// In every line about the request and sent upstream (`request_id`).
    pub(super) request_id: String,
    /// The request as the gate let it through; `None` when the gate refused it.
    pub(super) admitted: Option<Admitted>,
    /// Whom the gate (or the pool choice) refused, when it knew (the access log names them).
    pub(super) refused_identity: Option<Identity>,
    /// Why the proxy answered the request itself, if it did.
    pub(super) rejection: Option<Rejection>,
    /// The answer for an error raised after admission (sent by `fail_to_proxy`).
    pub(super) pending_reply: Option<Reply>,
    pub(super) upstream: UpstreamAttempt,
}

/// A request the gate let through.
pub(super) struct Admitted {
    pub(super) identity: Identity,
    pub(super) kind: EndpointKind,
    /// Echoed as `Access-Control-Allow-Origin` on the response of a RUM request.
    pub(super) cors_origin: Option<String>,
    /// An anonymous request's place under the per-IP concurrency cap, freed on drop.
    pub(super) _slot: Option<Slot>,
    /// What is done with its body as it streams.
    pub(super) body: BodyWork,
    /// An anonymous agent-config answer, collected to be trimmed.
    pub(super) config_answer: Option<AnswerTrimmer>,
}

/// The part of the body plan that lasts while the body streams.
#[derive(Default)]
pub(super) enum BodyWork {
    #[default]
    None,
    /// Lines of an uncompressed intake body nothing else reads, for the usage counts.
    Lines(LineCount),
    /// The intake checks, fed every chunk.
    Checked(Box<BodyCheck>),
    /// A body read and checked whole before forwarding (an OTLP export): its events.
    Counted(u64),
}

/// The upstream side of a request: the pool chosen, the members a connect failed to (not
/// tried again for this request), the one in use, and its time.
#[derive(Default)]
pub(super) struct UpstreamAttempt {
    pub(super) pool: PoolId,
    pub(super) tried: Vec<SocketAddr>,
    pub(super) member: Option<SocketAddr>,
    /// When the request head was sent upstream.
    pub(super) started: Option<Instant>,
}

impl RequestCtx {
    /// A request's context, made once its head is in (the screening fills in the client).
    pub(super) fn new(lifecycle: &Arc<Lifecycle>) -> RequestCtx {
        RequestCtx {
            _in_flight: InFlight::new(lifecycle),
            started: Instant::now(),
            client_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            from_trusted_proxy: false,
            request_id: String::new(),
            admitted: None,
            refused_identity: None,
            rejection: None,
            pending_reply: None,
            upstream: UpstreamAttempt::default(),
        }
    }

    /// Who made the request, when known.
    pub(super) fn identity(&self) -> Option<&Identity> {
        match &self.admitted {
            Some(a) => Some(&a.identity),
            None => self.refused_identity.as_ref(),
        }
    }

    pub(super) fn cors_origin(&self) -> Option<&str> {
        self.admitted.as_ref()?.cors_origin.as_deref()
    }

    /// Events forwarded, where the proxy could count them (see `usage`).
    pub(super) fn events(&self) -> u64 {
        match self.admitted.as_ref().map(|a| &a.body) {
            Some(BodyWork::Checked(check)) => check.events_forwarded(),
            Some(BodyWork::Lines(lines)) => lines.events(),
            Some(BodyWork::Counted(events)) => *events,
            Some(BodyWork::None) | None => 0,
        }
    }

    /// The proxy's own answer, with the request's CORS headers, for `fail_to_proxy` to send.
    pub(super) fn answer_with(&mut self, rejection: Rejection) {
        self.pending_reply = Some(Reply::plain(rejection).with_cors(self.cors_origin()));
    }

    /// A gRPC call: forwarded over h2c, answered in gRPC's form.
    pub(super) fn is_grpc(&self) -> bool {
        self.admitted.as_ref().is_some_and(|a| a.kind.is_grpc())
    }

    /// An anonymous caller's agent-config query, whose answer is trimmed.
    pub(super) fn is_anonymous_config_query(&self) -> bool {
        self.admitted
            .as_ref()
            .is_some_and(|a| matches!(a.identity, Identity::Anonymous) && a.kind.is_agent_config())
    }
}
