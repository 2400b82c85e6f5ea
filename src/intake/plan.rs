//! What the proxy does with an admitted request's body, decided once from the admission:
//! forward it unread, count its lines, read an agent-config query's service, check an
//! intake stream's events, or read an OTLP export whole. The proxy's hooks only carry the
//! plan out.

use http::Method;

use super::body_check::BodyCheck;
use super::decode::Format;
use super::otlp::{Carrier, Compression, Signal};
use super::otlp_check::OtlpCheck;
use crate::admission::{path_of, BodyLimits, EndpointKind, NameRules};
use crate::limits::EventCharge;

pub enum BodyPlan {
    /// Forwarded as it comes, read by nobody.
    Unread {
        /// Count an uncompressed intake body's lines for the usage book.
        count_lines: bool,
        /// Keep Pingora's copy of the body for a retry. Only an idempotent request is ever
        /// retried once sent; for the others the copy would cost a copy per chunk and up to
        /// 64 KiB per open stream (vendor/README.md).
        keep_retry_copy: bool,
    },
    /// An agent-config query whose service must follow `rules`: named in the query string
    /// (GET) or in a small JSON body read whole before anything is forwarded (POST).
    ConfigQuery { rules: NameRules, in_body: bool },
    /// An intake stream read ahead until its metadata has been checked, then checked event
    /// by event as it streams.
    Events(Box<BodyCheck>),
    /// An OTLP export read whole before anything is forwarded, then checked.
    Otlp(Box<OtlpCheck>),
}

/// What the plan is made from: the admission's decisions and the request's head (read only
/// where the plan needs it: most requests need nothing of it).
pub struct PlanInput<'a> {
    pub kind: EndpointKind,
    pub method: &'a Method,
    /// The request target as sent (path and query; for gRPC, the method).
    pub target: &'a [u8],
    pub headers: &'a http::HeaderMap,
    /// The name rules the body must follow, if any.
    pub rules: Option<NameRules>,
    /// Whose tokens its events take, if anyone's.
    pub events: Option<EventCharge>,
    /// Usage is tracked: count events where nothing else does.
    pub count_events: bool,
}

impl PlanInput<'_> {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.get(name).map(|v| v.as_bytes())
    }
}

/// The plan for one admitted request's body.
pub fn plan(mut input: PlanInput<'_>, limits: &BodyLimits) -> BodyPlan {
    let unread = |input: &PlanInput<'_>| BodyPlan::Unread {
        count_lines: input.count_events
            && input.kind.is_ndjson_intake()
            && input.header("content-encoding").is_none(),
        keep_retry_copy: input.method.is_idempotent(),
    };
    let Some(rules) = input.rules.take() else {
        return unread(&input);
    };
    if input.kind.is_agent_config() {
        let in_body = *input.method == Method::POST;
        return BodyPlan::ConfigQuery { rules, in_body };
    }
    if input.kind.is_otlp() {
        let path = std::str::from_utf8(path_of(input.target)).unwrap_or("");
        let (signal, carrier, compression) = if input.kind.is_grpc() {
            let signal = Signal::of_grpc_method(path);
            (signal, Some(Carrier::Grpc), input.header("grpc-encoding"))
        } else {
            let carrier = Carrier::of_content_type(input.header("content-type"));
            (
                Signal::of_path(path),
                carrier,
                input.header("content-encoding"),
            )
        };
        // Every OTLP route has a signal; were one without, its body could not be read and
        // is refused (never forwarded unchecked).
        let carrier = carrier.filter(|_| signal.is_some());
        return BodyPlan::Otlp(Box::new(OtlpCheck::new(
            signal.unwrap_or(Signal::Traces),
            carrier,
            Compression::of_header(compression),
            rules,
            limits,
            input.events.take(),
        )));
    }
    if !input.kind.is_ndjson_intake() {
        return unread(&input);
    }
    // APM Server reads RUM v3 bodies with abbreviated keys, everything else as v2.
    let format = match input.kind {
        EndpointKind::RumIntakeV3 => Format::V3,
        _ => Format::V2,
    };
    let events = input.events.take();
    BodyPlan::Events(Box::new(BodyCheck::intake(
        rules,
        format,
        input.header("content-encoding"),
        limits,
        events,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn limits() -> BodyLimits {
        BodyLimits {
            max_event_size: 1024,
            max_anonymous_request_size: 1 << 20,
            max_anonymous_decompressed_size: 1 << 24,
            max_otlp_size: 1 << 22,
        }
    }

    fn input<'a>(
        kind: EndpointKind,
        method: &'a Method,
        headers: &'a http::HeaderMap,
        rules: Option<NameRules>,
    ) -> PlanInput<'a> {
        PlanInput {
            kind,
            method,
            target: b"/",
            headers,
            rules,
            events: None,
            count_events: true,
        }
    }

    #[test]
    fn bodies_are_read_only_where_a_rule_needs_them() {
        let post = Method::POST;
        let get = Method::GET;
        let none = http::HeaderMap::new();
        let mut gzipped = http::HeaderMap::new();
        gzipped.insert("content-encoding", "gzip".parse().unwrap());
        assert!(matches!(
            plan(input(EndpointKind::Intake, &post, &none, None), &limits()),
            BodyPlan::Unread {
                count_lines: true,
                keep_retry_copy: false
            }
        ));
        assert!(matches!(
            plan(
                input(EndpointKind::Intake, &post, &gzipped, None),
                &limits()
            ),
            BodyPlan::Unread {
                count_lines: false,
                ..
            }
        ));
        assert!(matches!(
            plan(
                input(EndpointKind::AgentConfig, &get, &none, None),
                &limits()
            ),
            BodyPlan::Unread {
                count_lines: false,
                keep_retry_copy: true
            }
        ));
        let bound = || Some(NameRules::BoundKey(Arc::from(vec!["shop".to_string()])));
        assert!(matches!(
            plan(
                input(EndpointKind::AgentConfig, &post, &none, bound()),
                &limits()
            ),
            BodyPlan::ConfigQuery { in_body: true, .. }
        ));
        assert!(matches!(
            plan(
                input(EndpointKind::AgentConfig, &get, &none, bound()),
                &limits()
            ),
            BodyPlan::ConfigQuery { in_body: false, .. }
        ));
        assert!(matches!(
            plan(
                input(EndpointKind::RumIntakeV3, &post, &none, bound()),
                &limits()
            ),
            BodyPlan::Events(_)
        ));
        let mut otlp = input(EndpointKind::OtlpHttp, &post, &none, bound());
        otlp.target = b"/v1/logs";
        assert!(matches!(plan(otlp, &limits()), BodyPlan::Otlp(_)));
        let mut grpc = input(EndpointKind::OtlpGrpc, &post, &none, bound());
        grpc.target = b"/opentelemetry.proto.collector.trace.v1.TraceService/Export";
        assert!(matches!(plan(grpc, &limits()), BodyPlan::Otlp(_)));
        assert!(matches!(
            plan(input(EndpointKind::OtlpHttp, &post, &none, None), &limits()),
            BodyPlan::Unread { .. }
        ));
    }
}
