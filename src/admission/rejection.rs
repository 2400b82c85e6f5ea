//! Every answer the proxy writes itself, as one type: each variant carries its status, APM
//! Server's exact message and the label the access log gives it. This table can be held
//! against APM Server's source (`internal/beater/api/…`, `auth`, `ratelimit`, `request`),
//! and is the complete list of reasons an operator can see.

use std::borrow::Cow;

use http::header::{HeaderName, ACCESS_CONTROL_ALLOW_ORIGIN};
use http::StatusCode;

use super::names::NameRefused;
use super::routes::PathRejection;
use crate::auth::{ActionRefused, AuthFailure, CallerKind};

/// What both Authorization forms look like, in APM Server's 401 messages.
pub const EXPECTED: &str =
    "expected 'Authorization: Bearer secret_token' or 'Authorization: ApiKey base64(API key ID:API key)'";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    // --- from the request head ---
    HeaderTooLarge,
    AmbiguousPath(PathRejection),
    DuplicateAuthorization,
    NotFound,
    /// The answer to a CORS preflight (`OPTIONS`), headers from the CORS policy.
    CorsPreflight,
    OriginNotAllowed(Option<String>),
    AuthThrottled,
    MissingCredentials,
    AuthenticationFailed(AuthFailure),
    /// `GET /` without valid credentials: an empty 200, as APM Server answers it.
    RootWithoutCredentials,
    ActionNotPermitted(ActionRefused),
    NameNotPermitted(NameRefused),
    /// A key bound to services on an endpoint whose body the proxy does not read.
    KeyRestrictedEndpoint,
    /// Intake endpoints take POST only (APM Server answers 400, in the intake shape).
    OnlyPost,
    /// Other endpoints refuse other methods with 405.
    MethodNotSupported(http::Method),
    TooManyOpenRequests,
    RateLimited,
    /// The credential's own `rate_limit`, at admission.
    CredentialRateLimited,
    // --- from the request body ---
    BodyTooLarge,
    /// The intake metadata line did not come within what the proxy can read ahead.
    MetadataBeyondReadAhead,
    /// Mid-stream: no rate-limit tokens for the next batch of events.
    EventRateLimited,
    /// Mid-stream: the credential's own events limit.
    CredentialEventRateLimited,
    EventTooLarge,
    MissingMetadata,
    InvalidJson,
    /// Keys that APM Server would read differently from the proxy's checks.
    AmbiguousEvent,
    CorruptCompression,
    /// An OTLP export the proxy must read that is not one (protobuf, JSON or gRPC framing).
    InvalidOtlp,
    /// A body the proxy must read in a `Content-Type` it cannot read.
    UnsupportedMediaType,
    /// A body the proxy must read in a compression it cannot read.
    UnsupportedEncoding,
    ClientTimeout,
    InvalidRequest,
    // --- from the upstream ---
    /// The credential is bound to another upstream pool than the request's route.
    UpstreamNotPermitted,
    /// No member of the pool is healthy.
    NoHealthyUpstream,
    UpstreamUnreachable,
    UpstreamClosed,
    UpstreamTimeout,
    /// A status Pingora chose for a request it could not proxy.
    RequestFailed(StatusCode),
    Internal,
}

impl Rejection {
    pub fn status(&self) -> StatusCode {
        use Rejection::*;
        match self {
            CorsPreflight | RootWithoutCredentials => StatusCode::OK,
            HeaderTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            AmbiguousPath(_)
            | DuplicateAuthorization
            | OnlyPost
            | EventTooLarge
            | MissingMetadata
            | InvalidJson
            | AmbiguousEvent
            | CorruptCompression
            | InvalidOtlp
            | InvalidRequest => StatusCode::BAD_REQUEST,
            UnsupportedMediaType | UnsupportedEncoding => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            NotFound => StatusCode::NOT_FOUND,
            MissingCredentials | AuthenticationFailed(_) => StatusCode::UNAUTHORIZED,
            OriginNotAllowed(_)
            | ActionNotPermitted(_)
            | NameNotPermitted(_)
            | KeyRestrictedEndpoint
            | UpstreamNotPermitted => StatusCode::FORBIDDEN,
            AuthThrottled
            | TooManyOpenRequests
            | RateLimited
            | EventRateLimited
            | CredentialRateLimited
            | CredentialEventRateLimited => StatusCode::TOO_MANY_REQUESTS,
            BodyTooLarge | MetadataBeyondReadAhead => StatusCode::PAYLOAD_TOO_LARGE,
            ClientTimeout => StatusCode::REQUEST_TIMEOUT,
            UpstreamUnreachable | UpstreamClosed => StatusCode::BAD_GATEWAY,
            UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            MethodNotSupported(_) => StatusCode::METHOD_NOT_ALLOWED,
            NoHealthyUpstream => StatusCode::SERVICE_UNAVAILABLE,
            RequestFailed(status) => *status,
            Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// APM Server's message; `None` for the answers without a body.
    pub fn message(&self) -> Option<Cow<'static, str>> {
        use Rejection::*;
        let fixed = |s: &'static str| Some(Cow::Borrowed(s));
        match self {
            CorsPreflight | RootWithoutCredentials => None,
            HeaderTooLarge => fixed("request header fields too large"),
            AmbiguousPath(why) => Some(format!("invalid request path: {why}").into()),
            DuplicateAuthorization => fixed("invalid request: more than one Authorization header"),
            NotFound => fixed("404 page not found"),
            OriginNotAllowed(origin) => Some(
                format!(
                    "forbidden request: origin: '{}' is not allowed",
                    origin.as_deref().unwrap_or("")
                )
                .into(),
            ),
            AuthThrottled => fixed("too many requests: too many failed authentication attempts"),
            MissingCredentials => Some(
                format!(
                    "authentication failed: missing or improperly formatted Authorization \
                     header: {EXPECTED}"
                )
                .into(),
            ),
            AuthenticationFailed(failure) => Some(auth_failure_message(failure)),
            ActionNotPermitted(ActionRefused { caller, action }) => Some(match caller {
                CallerKind::Anonymous => {
                    "unauthorized: anonymous access not permitted for sourcemap uploads".into()
                }
                CallerKind::ApiKey => format!(
                    "unauthorized: API Key not permitted action \"{}\"",
                    action.name()
                )
                .into(),
                CallerKind::ClientCert => format!(
                    "unauthorized: client certificate not permitted action \"{}\"",
                    action.name()
                )
                .into(),
                CallerKind::Jwt => format!(
                    "unauthorized: token not permitted action \"{}\"",
                    action.name()
                )
                .into(),
            }),
            NameNotPermitted(refused) => Some(refused.to_string().into()),
            KeyRestrictedEndpoint => fixed(
                "unauthorized: API Key restricted to services cannot be used on this endpoint",
            ),
            TooManyOpenRequests => fixed("too many requests: too many concurrent requests"),
            OnlyPost => fixed("only POST requests are supported"),
            MethodNotSupported(method) => Some(format!("method not supported: {method}").into()),
            RateLimited | CredentialRateLimited => fixed("too many requests: rate limit exceeded"),
            BodyTooLarge => fixed("request body too large"),
            MetadataBeyondReadAhead => {
                fixed("request body too large: the metadata line must come within the first 64 KiB")
            }
            EventRateLimited | CredentialEventRateLimited => fixed("rate limit exceeded"),
            EventTooLarge => fixed("event exceeded the permitted size"),
            MissingMetadata => {
                fixed("data validation error: the first line must be a metadata object")
            }
            InvalidJson => fixed("data decoding error: invalid JSON line"),
            AmbiguousEvent => fixed(
                "data decoding error: a key appears twice in different cases, or a line has more than one event",
            ),
            CorruptCompression => fixed("data decoding error: the compressed body is corrupt"),
            InvalidOtlp => fixed("data decoding error: not a valid OTLP export request"),
            UnsupportedMediaType => fixed(
                "unsupported content type: OTLP/HTTP takes application/x-protobuf or application/json",
            ),
            UnsupportedEncoding => fixed("unsupported content encoding: gzip, deflate or none"),
            ClientTimeout => fixed("request timed out"),
            InvalidRequest => fixed("invalid request"),
            UpstreamNotPermitted => {
                fixed("unauthorized: credential not permitted for this APM Server")
            }
            NoHealthyUpstream => fixed("service unavailable: no healthy APM Server"),
            UpstreamUnreachable => fixed("bad gateway: the APM Server is unreachable"),
            UpstreamClosed => fixed("bad gateway: the APM Server closed the connection"),
            UpstreamTimeout => fixed("gateway timeout: the APM Server did not answer in time"),
            RequestFailed(_) => fixed("request failed"),
            Internal => fixed("internal error"),
        }
    }

    /// The `grpc-status` a gRPC call gets instead (APM Server's gRPC interceptors answer
    /// auth failures 16 UNAUTHENTICATED, refused privileges 7 PERMISSION_DENIED, limits 8
    /// RESOURCE_EXHAUSTED; a proxy answers an unreachable upstream 14 UNAVAILABLE and a
    /// timeout 4 DEADLINE_EXCEEDED).
    pub fn grpc_status(&self) -> u8 {
        use Rejection::*;
        match self {
            MissingCredentials | AuthenticationFailed(_) | RootWithoutCredentials => 16,
            OriginNotAllowed(_)
            | ActionNotPermitted(_)
            | NameNotPermitted(_)
            | KeyRestrictedEndpoint
            | UpstreamNotPermitted => 7,
            AuthThrottled
            | TooManyOpenRequests
            | RateLimited
            | EventRateLimited
            | CredentialRateLimited
            | CredentialEventRateLimited
            | HeaderTooLarge
            | BodyTooLarge
            | MetadataBeyondReadAhead => 8,
            UpstreamUnreachable | UpstreamClosed | NoHealthyUpstream => 14,
            UpstreamTimeout | ClientTimeout => 4,
            NotFound
            | OnlyPost
            | MethodNotSupported(_)
            | CorsPreflight
            | UnsupportedMediaType
            | UnsupportedEncoding => 12,
            AmbiguousPath(_)
            | DuplicateAuthorization
            | EventTooLarge
            | MissingMetadata
            | InvalidJson
            | AmbiguousEvent
            | CorruptCompression
            | InvalidOtlp
            | InvalidRequest => 3,
            RequestFailed(status) if status.is_server_error() => 14,
            RequestFailed(_) => 3,
            Internal => 13,
        }
    }

    /// The upstream failed the request (not the client, not a rule of the proxy).
    pub fn is_upstream_failure(&self) -> bool {
        matches!(
            self,
            Rejection::UpstreamUnreachable
                | Rejection::UpstreamClosed
                | Rejection::UpstreamTimeout
                | Rejection::NoHealthyUpstream
        )
    }

    /// The limit that refused the request (the `limit` label of `limited_total`), if any.
    pub fn limit(&self) -> Option<&'static str> {
        use Rejection::*;
        match self {
            RateLimited | EventRateLimited => Some("rate"),
            CredentialRateLimited | CredentialEventRateLimited => Some("credential_rate"),
            TooManyOpenRequests => Some("concurrency"),
            AuthThrottled => Some("failed_auth"),
            _ => None,
        }
    }

    /// The reason in the access log and the metrics' `reason` label.
    pub fn label(&self) -> &'static str {
        use Rejection::*;
        match self {
            HeaderTooLarge => "header_too_large",
            AmbiguousPath(_) => "ambiguous_path",
            DuplicateAuthorization => "duplicate_authorization",
            NotFound => "not_found",
            CorsPreflight => "cors_preflight",
            OriginNotAllowed(_) => "origin_not_allowed",
            AuthThrottled => "auth_throttled",
            MissingCredentials => "missing_credentials",
            AuthenticationFailed(f) => match f {
                AuthFailure::UnknownScheme(_) => "unknown_scheme",
                AuthFailure::InvalidCredentials => "invalid_credentials",
                AuthFailure::Jwt(refusal) => refusal.label(),
                AuthFailure::BadApiKeyEncoding { .. } => "bad_api_key_encoding",
                AuthFailure::BadApiKeyFormat => "bad_api_key_format",
            },
            RootWithoutCredentials => "root_anonymous",
            ActionNotPermitted(_) => "forbidden_action",
            NameNotPermitted(n) => n.label(),
            KeyRestrictedEndpoint => "key_restricted_endpoint",
            TooManyOpenRequests => "too_many_open",
            OnlyPost => "only_post",
            MethodNotSupported(_) => "method_not_supported",
            RateLimited => "rate_limited",
            CredentialRateLimited => "credential_rate_limited",
            BodyTooLarge => "body_too_large",
            MetadataBeyondReadAhead => "metadata_beyond_read_ahead",
            EventRateLimited => "event_rate_limited",
            CredentialEventRateLimited => "credential_event_rate_limited",
            EventTooLarge => "event_too_large",
            MissingMetadata => "missing_metadata",
            InvalidJson => "invalid_json",
            AmbiguousEvent => "ambiguous_event",
            CorruptCompression => "corrupt_compression",
            InvalidOtlp => "invalid_otlp",
            UnsupportedMediaType => "unsupported_media_type",
            UnsupportedEncoding => "unsupported_encoding",
            ClientTimeout => "client_timeout",
            InvalidRequest => "invalid_request",
            UpstreamNotPermitted => "upstream_not_permitted",
            NoHealthyUpstream => "no_healthy_upstream",
            UpstreamUnreachable => "upstream_unreachable",
            UpstreamClosed => "upstream_closed",
            UpstreamTimeout => "upstream_timeout",
            RequestFailed(_) => "request_failed",
            Internal => "internal_error",
        }
    }
}

fn auth_failure_message(failure: &AuthFailure) -> Cow<'static, str> {
    match failure {
        AuthFailure::UnknownScheme(scheme) => {
            format!("authentication failed: unknown Authentication header {scheme}: {EXPECTED}")
                .into()
        }
        AuthFailure::InvalidCredentials | AuthFailure::Jwt(_) => "authentication failed".into(),
        AuthFailure::BadApiKeyEncoding { go_offset } => format!(
            "authentication failed: improperly encoded ApiKey credentials: expected \
             base64(ID:APIKey): illegal base64 data at input byte {go_offset}"
        )
        .into(),
        AuthFailure::BadApiKeyFormat => "authentication failed: improperly formatted ApiKey \
            credentials: expected base64(ID:APIKey)"
            .into(),
    }
}

/// A rejection as it is answered: in the plain shape `{"error": …}` or the intake shape
/// `{"accepted": n, "errors": [{"message": …}]}`, with extra headers (CORS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub rejection: Rejection,
    /// `Some(n)`: the intake shape, `n` events accepted before it.
    pub accepted: Option<u64>,
    pub headers: Vec<(HeaderName, String)>,
    /// When a throttled client may try again (a limiter's next token, a cool-down's end):
    /// OTLP clients are told (`Retry-After`, gRPC `RetryInfo`).
    pub retry_after: Option<std::time::Duration>,
}

impl Reply {
    pub fn plain(rejection: Rejection) -> Reply {
        Reply {
            rejection,
            accepted: None,
            headers: Vec::new(),
            retry_after: None,
        }
    }

    pub fn with_retry_after(mut self, after: Option<std::time::Duration>) -> Reply {
        self.retry_after = after;
        self
    }

    /// An intake endpoint's error after `accepted` events went through.
    pub fn intake(rejection: Rejection, accepted: u64) -> Reply {
        Reply {
            accepted: Some(accepted),
            ..Reply::plain(rejection)
        }
    }

    pub fn status(&self) -> StatusCode {
        self.rejection.status()
    }

    pub fn with_header(mut self, name: HeaderName, value: impl Into<String>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }

    /// Echo an allowed RUM origin: every answer to a RUM request carries it, errors too.
    pub fn with_cors(self, origin: Option<&str>) -> Reply {
        match origin {
            Some(origin) => self.with_header(ACCESS_CONTROL_ALLOW_ORIGIN, origin),
            None => self,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_limit_refusal_names_its_limit_and_nothing_else_does() {
        use Rejection::*;
        assert_eq!(RateLimited.limit(), Some("rate"));
        assert_eq!(EventRateLimited.limit(), Some("rate"));
        assert_eq!(CredentialRateLimited.limit(), Some("credential_rate"));
        assert_eq!(CredentialEventRateLimited.limit(), Some("credential_rate"));
        assert_eq!(TooManyOpenRequests.limit(), Some("concurrency"));
        assert_eq!(AuthThrottled.limit(), Some("failed_auth"));
        assert_eq!(MissingCredentials.limit(), None);
        assert_eq!(NoHealthyUpstream.limit(), None);
    }
    use crate::auth::Action;

    /// APM Server's exact words for the answers agents act on.
    #[test]
    fn messages_match_apm_server() {
        let cases = [
            (Rejection::AuthenticationFailed(AuthFailure::InvalidCredentials), 401, "authentication failed"),
            (Rejection::AuthenticationFailed(AuthFailure::BadApiKeyFormat), 401, "authentication failed: improperly formatted ApiKey credentials: expected base64(ID:APIKey)"),
            (Rejection::AuthenticationFailed(AuthFailure::BadApiKeyEncoding { go_offset: 3 }), 401, "authentication failed: improperly encoded ApiKey credentials: expected base64(ID:APIKey): illegal base64 data at input byte 3"),
            (Rejection::AuthenticationFailed(AuthFailure::UnknownScheme("Basic".into())), 401, "authentication failed: unknown Authentication header Basic: expected 'Authorization: Bearer secret_token' or 'Authorization: ApiKey base64(API key ID:API key)'"),
            (Rejection::MissingCredentials, 401, "authentication failed: missing or improperly formatted Authorization header: expected 'Authorization: Bearer secret_token' or 'Authorization: ApiKey base64(API key ID:API key)'"),
            (Rejection::ActionNotPermitted(ActionRefused { caller: CallerKind::ApiKey, action: Action::SourcemapWrite }), 403, "unauthorized: API Key not permitted action \"sourcemap:write\""),
            (Rejection::ActionNotPermitted(ActionRefused { caller: CallerKind::Anonymous, action: Action::SourcemapWrite }), 403, "unauthorized: anonymous access not permitted for sourcemap uploads"),
            (Rejection::OriginNotAllowed(Some("https://evil".into())), 403, "forbidden request: origin: 'https://evil' is not allowed"),
            (Rejection::NameNotPermitted(NameRefused::AnonymousAgent("go".into())), 403, "unauthorized: anonymous access not permitted for agent \"go\""),
            (Rejection::RateLimited, 429, "too many requests: rate limit exceeded"),
            (Rejection::EventRateLimited, 429, "rate limit exceeded"),
            (Rejection::TooManyOpenRequests, 429, "too many requests: too many concurrent requests"),
            (Rejection::NotFound, 404, "404 page not found"),
            (Rejection::EventTooLarge, 400, "event exceeded the permitted size"),
            (Rejection::UpstreamTimeout, 504, "gateway timeout: the APM Server did not answer in time"),
        ];
        for (rejection, status, message) in cases {
            assert_eq!(rejection.status().as_u16(), status, "{rejection:?}");
            assert_eq!(
                rejection.message().as_deref(),
                Some(message),
                "{rejection:?}"
            );
        }
        assert_eq!(Rejection::CorsPreflight.message(), None);
        assert_eq!(Rejection::RootWithoutCredentials.status(), StatusCode::OK);
    }

    #[test]
    fn cors_is_added_once_by_one_helper() {
        let reply = Reply::plain(Rejection::RateLimited).with_cors(Some("https://a"));
        assert_eq!(
            reply.headers,
            vec![(ACCESS_CONTROL_ALLOW_ORIGIN, "https://a".to_string())]
        );
        assert!(Reply::plain(Rejection::RateLimited)
            .with_cors(None)
            .headers
            .is_empty());
    }
}
