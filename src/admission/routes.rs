//! Which APM endpoint a request is for, and whether its path is safe to decide on.
//!
//! The proxy decides access on the path, then forwards that same path. If the upstream
//! could read the path differently (Go decodes `%65` to `e`, some servers fold `//` or
//! resolve `..`), a request could be authorised for one endpoint and served by another. So
//! a path that is not already in its one canonical form is refused outright.

use crate::auth::Action;

/// The endpoints of APM Server's agent-facing HTTP API (7.x – 9.x).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `GET /`: server information; the body is only for authenticated callers.
    Root,
    /// An endpoint that needs a credential with the given privilege.
    Protected { action: Action, kind: EndpointKind },
    /// Anything else (unknown paths, `/debug/*` pprof/expvar): answered 404 by the proxy,
    /// never forwarded.
    NotFound,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointKind {
    /// `GET /`, for an authenticated caller (who sees the server's version).
    ServerInfo,
    Intake,
    /// RUM v2 intake (`/intake/v2/rum/events`).
    RumIntake,
    /// RUM v3 intake (`/intake/v3/rum/events`): the same stream with abbreviated keys.
    RumIntakeV3,
    Profile,
    OtlpHttp,
    AgentConfig,
    RumAgentConfig,
    Sourcemap,
    /// The three OTLP `Export` methods over gRPC (HTTP/2, `application/grpc`).
    OtlpGrpc,
    /// Any other gRPC method: forwarded only for a credential that grants every action.
    Grpc,
}

impl EndpointKind {
    /// Intake-style endpoints report errors as `{"accepted":0,"errors":[{"message":…}]}`.
    pub fn reports_stream_errors(self) -> bool {
        matches!(
            self,
            EndpointKind::Intake
                | EndpointKind::RumIntake
                | EndpointKind::RumIntakeV3
                | EndpointKind::Profile
                | EndpointKind::OtlpHttp
        )
    }
}

impl EndpointKind {
    /// Endpoints whose bodies the proxy can read for service and agent names (ndjson
    /// intake, OTLP/HTTP exports) or whose service is in the query (agent config).
    pub fn anonymous_checkable(self) -> bool {
        matches!(
            self,
            EndpointKind::Intake
                | EndpointKind::RumIntake
                | EndpointKind::RumIntakeV3
                | EndpointKind::AgentConfig
                | EndpointKind::RumAgentConfig
                | EndpointKind::OtlpHttp
        )
    }

    /// OTLP exports, over HTTP or gRPC.
    pub fn is_otlp(self) -> bool {
        matches!(self, EndpointKind::OtlpHttp | EndpointKind::OtlpGrpc)
    }

    /// Bodies whose events the proxy can count (and charge to an events rate limit).
    pub fn counts_events(self) -> bool {
        self.is_ndjson_intake() || self.is_otlp()
    }

    /// Bodies the proxy can hold to a key's services (names in the body or the query).
    pub fn service_checkable(self) -> bool {
        self.is_ndjson_intake() || self.is_agent_config() || self.is_otlp()
    }

    /// Forwarded over HTTP/2 (h2c) to the upstream and answered in gRPC's form.
    pub fn is_grpc(self) -> bool {
        matches!(self, EndpointKind::OtlpGrpc | EndpointKind::Grpc)
    }

    pub fn is_rum(self) -> bool {
        matches!(
            self,
            EndpointKind::RumIntake | EndpointKind::RumIntakeV3 | EndpointKind::RumAgentConfig
        )
    }

    /// ndjson event streams.
    pub fn is_ndjson_intake(self) -> bool {
        matches!(
            self,
            EndpointKind::Intake | EndpointKind::RumIntake | EndpointKind::RumIntakeV3
        )
    }

    pub fn is_agent_config(self) -> bool {
        matches!(
            self,
            EndpointKind::AgentConfig | EndpointKind::RumAgentConfig
        )
    }
}

/// The OTLP/gRPC methods APM Server serves on its HTTP port (7.12+; logs 8.0+).
pub const OTLP_GRPC_METHODS: [&str; 3] = [
    "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
    "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
];

/// A gRPC call: HTTP/2 with a `content-type` of `application/grpc` or `application/grpc+…`,
/// which APM Server hands to its gRPC server. The same content type over HTTP/1.1 reaches
/// its HTTP router (and there, a 404).
pub fn is_grpc(req: &pingora::http::RequestHeader) -> bool {
    req.version == http::Version::HTTP_2
        && req
            .headers
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|v| {
                let v = v.as_bytes();
                v.starts_with(b"application/grpc")
                    && matches!(v.get(16), None | Some(b'+') | Some(b';'))
            })
}

/// Route table for gRPC calls: the OTLP exports need `event:write`, any other method every
/// action (checked by the gate).
pub fn classify_grpc(path: &str) -> Endpoint {
    let kind = if OTLP_GRPC_METHODS.contains(&path) {
        EndpointKind::OtlpGrpc
    } else {
        EndpointKind::Grpc
    };
    Endpoint::Protected {
        action: Action::EventWrite,
        kind,
    }
}

/// Route table: exact paths, as APM Server's router matches them (a trailing slash is 404).
pub fn classify(path: &str) -> Endpoint {
    use Action::*;
    use EndpointKind::*;
    let (action, kind) = match path {
        "/" => return Endpoint::Root,
        "/intake/v2/events" => (EventWrite, Intake),
        "/intake/v2/rum/events" => (EventWrite, RumIntake),
        "/intake/v3/rum/events" => (EventWrite, RumIntakeV3),
        "/intake/v2/profile" => (EventWrite, Profile),
        "/v1/traces" | "/v1/metrics" | "/v1/logs" => (EventWrite, OtlpHttp),
        "/config/v1/agents" => (AgentConfigRead, AgentConfig),
        "/config/v1/rum/agents" => (AgentConfigRead, RumAgentConfig),
        "/assets/v1/sourcemaps" => (SourcemapWrite, Sourcemap),
        _ => return Endpoint::NotFound,
    };
    Endpoint::Protected { action, kind }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathRejection {
    #[error("the path must start with '/'")]
    NotAbsolute,
    #[error("percent-encoding is not allowed in the path")]
    PercentEncoded,
    #[error("backslashes are not allowed in the path")]
    Backslash,
    #[error("empty path segments ('//') are not allowed")]
    EmptySegment,
    #[error("dot segments ('.' or '..') are not allowed")]
    DotSegment,
    #[error("control characters and spaces are not allowed in the path")]
    ControlCharacter,
}

/// Accept only paths in canonical form. `raw` is the path as the client sent it, without
/// the query string.
pub fn check_path(raw: &[u8]) -> Result<&str, PathRejection> {
    let path = std::str::from_utf8(raw).map_err(|_| PathRejection::ControlCharacter)?;
    if !path.starts_with('/') {
        return Err(PathRejection::NotAbsolute);
    }
    if let Some(bad) = path
        .bytes()
        .find(|b| matches!(b, b'%' | b'\\') || b.is_ascii_control() || *b == b' ')
    {
        return Err(match bad {
            b'%' => PathRejection::PercentEncoded,
            b'\\' => PathRejection::Backslash,
            _ => PathRejection::ControlCharacter,
        });
    }
    let segments: Vec<&str> = path[1..].split('/').collect();
    let last = segments.len() - 1;
    for (i, segment) in segments.iter().enumerate() {
        match *segment {
            // A trailing slash is an unknown (404) path, not an ambiguous one.
            "" if i == last => {}
            "" => return Err(PathRejection::EmptySegment),
            "." | ".." => return Err(PathRejection::DotSegment),
            _ => {}
        }
    }
    Ok(path)
}

/// The metrics label for a request path: the endpoint's own path for APM endpoints (a fixed
/// set), `other` for everything else (so a scan cannot mint labels).
pub fn endpoint_label(path: &[u8]) -> &'static str {
    const KNOWN: [&str; 14] = [
        "/",
        "/intake/v2/events",
        "/intake/v2/rum/events",
        "/intake/v3/rum/events",
        "/intake/v2/profile",
        "/v1/traces",
        "/v1/metrics",
        "/v1/logs",
        "/config/v1/agents",
        "/config/v1/rum/agents",
        "/assets/v1/sourcemaps",
        OTLP_GRPC_METHODS[0],
        OTLP_GRPC_METHODS[1],
        OTLP_GRPC_METHODS[2],
    ];
    KNOWN
        .iter()
        .find(|k| k.as_bytes() == path)
        .copied()
        .unwrap_or("other")
}

/// The path part of a request target (`/a/b?x` → `/a/b`).
pub fn path_of(target: &[u8]) -> &[u8] {
    match target.iter().position(|&b| b == b'?') {
        Some(i) => &target[..i],
        None => target,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_table() {
        assert_eq!(classify("/"), Endpoint::Root);
        for (path, action) in [
            ("/intake/v2/events", Action::EventWrite),
            ("/intake/v2/rum/events", Action::EventWrite),
            ("/intake/v3/rum/events", Action::EventWrite),
            ("/intake/v2/profile", Action::EventWrite),
            ("/v1/traces", Action::EventWrite),
            ("/config/v1/agents", Action::AgentConfigRead),
            ("/config/v1/rum/agents", Action::AgentConfigRead),
            ("/assets/v1/sourcemaps", Action::SourcemapWrite),
        ] {
            assert!(
                matches!(classify(path), Endpoint::Protected { action: a, .. } if a == action),
                "{path}"
            );
        }
        for path in [
            "/intake/v2/events/",
            "/debug/pprof/",
            "/debug/vars",
            "/healthcheck",
            "/INTAKE/v2/events",
        ] {
            assert_eq!(classify(path), Endpoint::NotFound, "{path}");
        }
    }

    #[test]
    fn ambiguous_paths_are_rejected() {
        let cases: [(&[u8], PathRejection); 9] = [
            (
                b"/intake/v2/rum/events/../events",
                PathRejection::DotSegment,
            ),
            (b"/intake/v2/./events", PathRejection::DotSegment),
            (b"/intake%2Fv2/events", PathRejection::PercentEncoded),
            (b"/intake/v2/%2e%2e/events", PathRejection::PercentEncoded),
            (b"/intake/v2/%65vents", PathRejection::PercentEncoded),
            (b"//intake/v2/events", PathRejection::EmptySegment),
            (b"/intake//v2/events", PathRejection::EmptySegment),
            (b"/intake\\v2/events", PathRejection::Backslash),
            (b"intake/v2/events", PathRejection::NotAbsolute),
        ];
        for (raw, why) in cases {
            assert_eq!(
                check_path(raw),
                Err(why),
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
        assert_eq!(check_path(b"/intake/v2/events"), Ok("/intake/v2/events"));
        assert_eq!(check_path(b"/"), Ok("/"));
        assert_eq!(check_path(b"/intake/v2/events/"), Ok("/intake/v2/events/"));
        assert_eq!(check_path(b"/a.b/..c"), Ok("/a.b/..c"));
    }

    #[test]
    fn query_is_not_part_of_the_path() {
        assert_eq!(
            path_of(b"/intake/v2/events?verbose=%2e"),
            b"/intake/v2/events"
        );
        assert_eq!(path_of(b"/"), b"/");
    }

    #[test]
    fn grpc_calls_are_http2_with_a_grpc_content_type() {
        let call = |version, content_type: &str| {
            let mut r =
                pingora::http::RequestHeader::build("POST", OTLP_GRPC_METHODS[0].as_bytes(), None)
                    .unwrap();
            r.set_version(version);
            r.insert_header("content-type", content_type).unwrap();
            is_grpc(&r)
        };
        use http::Version;
        assert!(call(Version::HTTP_2, "application/grpc"));
        assert!(call(Version::HTTP_2, "application/grpc+proto"));
        assert!(!call(Version::HTTP_2, "application/grpc-web"));
        assert!(!call(Version::HTTP_2, "application/json"));
        assert!(!call(Version::HTTP_11, "application/grpc"));
        for method in OTLP_GRPC_METHODS {
            assert_eq!(
                classify_grpc(method),
                Endpoint::Protected {
                    action: Action::EventWrite,
                    kind: EndpointKind::OtlpGrpc
                }
            );
            assert_eq!(endpoint_label(method.as_bytes()), method);
            // Over HTTP/1.1 the same path is no APM endpoint.
            assert_eq!(classify(method), Endpoint::NotFound);
        }
        assert!(matches!(
            classify_grpc("/jaeger.api_v2.CollectorService/PostSpans"),
            Endpoint::Protected {
                kind: EndpointKind::Grpc,
                ..
            }
        ));
    }
}
