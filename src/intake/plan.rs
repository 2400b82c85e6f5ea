//! What the proxy does with an admitted request's body, decided once from the admission:
//! forward it unread, count its lines, read an agent-config query's service, check an
//! intake stream's events, or read an OTLP export whole. The proxy's hooks only carry the
//! plan out.

use http::Method;

use super::body_check::BodyCheck;
use super::decode::Format;
use super::otlp::{Carrier, Compression, Signal};
use super::otlp_check::OtlpCheck;
use crate::admission::{BodyLimits, EndpointKind, NameRules};
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

/// What the plan is made from: the admission's decisions and the request's head.
pub struct PlanInput<'a> {
    pub kind: EndpointKind,
    pub method: &'a Method,
    /// The path (for gRPC, the method).
    pub path: &'a str,
    pub content_type: Option<&'a [u8]>,
    pub content_encoding: Option<&'a [u8]>,
    /// A gRPC call's `grpc-encoding`.
    pub grpc_encoding: Option<&'a [u8]>,
    /// The name rules the body must follow, if any.
    pub rules: Option<NameRules>,
    /// Whose tokens its events take, if anyone's.
    pub events: Option<EventCharge>,
    /// Usage is tracked: count events where nothing else does.
    pub count_events: bool,
}

impl<'a> PlanInput<'a> {
    /// The input from a request's head; no rules, no charge, no counting yet.
    pub fn of_head(
        kind: EndpointKind,
        method: &'a Method,
        path: &'a str,
        headers: &'a http::HeaderMap,
    ) -> PlanInput<'a> {
        let header = |name: &str| headers.get(name).map(|v| v.as_bytes());
        PlanInput {
            kind,
            method,
            path,
            content_type: header("content-type"),
            content_encoding: header("content-encoding"),
            grpc_encoding: header("grpc-encoding"),
            rules: None,
            events: None,
            count_events: false,
        }
    }
}

/// The plan for one admitted request's body.
pub fn plan(input: PlanInput<'_>, limits: &BodyLimits) -> BodyPlan {
    let unread = || BodyPlan::Unread {
        count_lines: input.count_events
            && input.kind.is_ndjson_intake()
            && input.content_encoding.is_none(),
        keep_retry_copy: input.method.is_idempotent(),
    };
    let Some(rules) = input.rules else {
        return unread();
    };
    if input.kind.is_agent_config() {
        let in_body = *input.method == Method::POST;
        return BodyPlan::ConfigQuery { rules, in_body };
    }
    if input.kind.is_otlp() {
        let (signal, carrier, compression) = if input.kind.is_grpc() {
            let signal = Signal::of_grpc_method(input.path);
            (signal, Some(Carrier::Grpc), input.grpc_encoding)
        } else {
            let carrier = Carrier::of_content_type(input.content_type);
            (Signal::of_path(input.path), carrier, input.content_encoding)
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
            input.events,
        )));
    }
    if !input.kind.is_ndjson_intake() {
        return unread();
    }
    // APM Server reads RUM v3 bodies with abbreviated keys, everything else as v2.
    let format = match input.kind {
        EndpointKind::RumIntakeV3 => Format::V3,
        _ => Format::V2,
    };
    BodyPlan::Events(Box::new(BodyCheck::intake(
        rules,
        format,
        input.content_encoding,
        limits,
        input.events,
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

    fn input(kind: EndpointKind, method: &Method, rules: Option<NameRules>) -> PlanInput<'_> {
        PlanInput {
            kind,
            method,
            path: "/",
            content_type: None,
            content_encoding: None,
            grpc_encoding: None,
            rules,
            events: None,
            count_events: true,
        }
    }

    #[test]
    fn bodies_are_read_only_where_a_rule_needs_them() {
        let post = Method::POST;
        let get = Method::GET;
        assert!(matches!(
            plan(input(EndpointKind::Intake, &post, None), &limits()),
            BodyPlan::Unread {
                count_lines: true,
                keep_retry_copy: false
            }
        ));
        let mut gzip = input(EndpointKind::Intake, &post, None);
        gzip.content_encoding = Some(b"gzip");
        assert!(matches!(
            plan(gzip, &limits()),
            BodyPlan::Unread {
                count_lines: false,
                ..
            }
        ));
        assert!(matches!(
            plan(input(EndpointKind::AgentConfig, &get, None), &limits()),
            BodyPlan::Unread {
                count_lines: false,
                keep_retry_copy: true
            }
        ));
        let bound = || Some(NameRules::BoundKey(Arc::from(vec!["shop".to_string()])));
        assert!(matches!(
            plan(input(EndpointKind::AgentConfig, &post, bound()), &limits()),
            BodyPlan::ConfigQuery { in_body: true, .. }
        ));
        assert!(matches!(
            plan(input(EndpointKind::AgentConfig, &get, bound()), &limits()),
            BodyPlan::ConfigQuery { in_body: false, .. }
        ));
        assert!(matches!(
            plan(input(EndpointKind::RumIntakeV3, &post, bound()), &limits()),
            BodyPlan::Events(_)
        ));
        let mut otlp = input(EndpointKind::OtlpHttp, &post, bound());
        otlp.path = "/v1/logs";
        assert!(matches!(plan(otlp, &limits()), BodyPlan::Otlp(_)));
        let mut grpc = input(EndpointKind::OtlpGrpc, &post, bound());
        grpc.path = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
        assert!(matches!(plan(grpc, &limits()), BodyPlan::Otlp(_)));
        assert!(matches!(
            plan(input(EndpointKind::OtlpHttp, &post, None), &limits()),
            BodyPlan::Unread { .. }
        ));
    }
}
