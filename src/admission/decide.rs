//! The admission decision for one request, from its header alone: is the request well
//! formed, which endpoint is it for, may its origin call it (CORS), who is calling, may they,
//! and — for anonymous callers — are they within their rate and concurrency limits. A plain
//! function over the request header and the proxy's state, so every rule is testable
//! without a socket. What needs the body (event names, a POSTed agent-config query) is
//! checked later, by `intake`.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use pingora::http::RequestHeader;

use super::cors::CorsPolicy;
use super::names::{AnonymousPolicy, NameRules};
use super::rejection::{Rejection, Reply};
use super::routes::{self, Endpoint, EndpointKind};
use super::settings::AdmissionSettings;
use crate::auth::{authorize, Action, AuthOutcome, Authenticator, Identity, IdentityMap};
use crate::limits::{
    AuthThrottle, CredentialKey, CredentialRates, OpenRequests, RateLimiter, RateSpec, RateUnit,
    Slot,
};
use crate::tls::PeerCertificate;

#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Forward upstream.
    Forward(Admission),
    /// Answer here; the identity when the caller was authenticated (for the access log).
    Reply(Reply, Option<Identity>),
}

/// A request let through, and what the later phases need to know about it.
#[derive(Debug, PartialEq, Eq)]
pub struct Admission {
    pub identity: Identity,
    /// `None` for `GET /`.
    pub kind: Option<EndpointKind>,
    /// The allowed `Origin` of a RUM request, echoed as `Access-Control-Allow-Origin`.
    pub cors_origin: Option<String>,
    /// Held while an anonymous request is open (per-IP concurrency cap).
    pub slot: Option<Slot>,
    /// The service/agent rules its events must follow (anonymous, service-bound key).
    pub rules: Option<NameRules>,
    /// The credential's own events limit, charged as the body streams.
    pub credential_events: Option<(CredentialKey, RateSpec)>,
}

/// Who is asking, beyond the request header.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    /// The connection's verified client certificate, if any.
    pub peer_cert: Option<&'a PeerCertificate>,
    /// The client IP the proxy trusts (see `client_ip`).
    pub ip: IpAddr,
    pub now: SystemTime,
    /// Monotonic time for rate limits and throttling.
    pub clock: Instant,
}

/// Anonymous access and its limits (`auth.anonymous`).
struct AnonymousAccess {
    policy: Arc<AnonymousPolicy>,
    limiter: Arc<RateLimiter>,
    open: OpenRequests,
}

/// Approximate size of the request head as sent (request line + header lines).
fn head_size(req: &RequestHeader) -> usize {
    let headers: usize = req
        .headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    req.raw_path().len() + req.method.as_str().len() + 12 + headers
}

/// What the gate needs to decide.
pub struct Gate {
    authenticator: Arc<Authenticator>,
    identities: IdentityMap,
    max_header_size: usize,
    cors: CorsPolicy,
    /// `None` when anonymous access is off.
    anonymous: Option<AnonymousAccess>,
    /// `None` when failed-authentication throttling is off.
    failed_attempts: Option<AuthThrottle>,
    /// The buckets of credentials with a `rate_limit` of their own.
    credential_rates: Arc<CredentialRates>,
}

impl Gate {
    /// The gate `settings` describe, over the given credentials. `limiter` is the anonymous
    /// event rate limiter, shared with the body checks (required when anonymous access is on).
    pub fn new(
        settings: &AdmissionSettings,
        authenticator: Arc<Authenticator>,
        identities: IdentityMap,
        limiter: Option<Arc<RateLimiter>>,
    ) -> Gate {
        let anonymous = settings
            .anonymous
            .as_ref()
            .zip(limiter)
            .map(|(a, limiter)| AnonymousAccess {
                policy: Arc::new(a.policy.clone()),
                limiter,
                open: OpenRequests::new(a.max_concurrent_requests),
            });
        let failed_attempts = settings
            .failed_attempts
            .as_ref()
            .map(|f| AuthThrottle::new(f.max_failures, f.window, f.cooldown, f.ip_limit));
        Gate {
            authenticator,
            identities,
            max_header_size: settings.max_header_size,
            cors: settings.cors.clone(),
            anonymous,
            failed_attempts,
            credential_rates: Arc::default(),
        }
    }

    /// The per-credential buckets, for the body checks' event charges.
    pub fn credential_rates(&self) -> Arc<CredentialRates> {
        self.credential_rates.clone()
    }

    /// Decide on a request from its header and what is known about the caller.
    pub fn decide(&self, req: &RequestHeader, caller: Caller<'_>) -> Decision {
        let refuse = |rejection| Decision::Reply(Reply::plain(rejection), None);
        if head_size(req) > self.max_header_size {
            return refuse(Rejection::HeaderTooLarge);
        }
        let path = match routes::check_path(routes::path_of(req.raw_path())) {
            Ok(path) => path,
            Err(why) => return refuse(Rejection::AmbiguousPath(why)),
        };
        let mut authorization = req.headers.get_all(http::header::AUTHORIZATION).iter();
        let header = authorization.next().map(|v| v.as_bytes());
        if authorization.next().is_some() {
            return refuse(Rejection::DuplicateAuthorization);
        }
        let grpc = routes::is_grpc(req);
        let endpoint = if grpc {
            routes::classify_grpc(path)
        } else {
            routes::classify(path)
        };
        let kind = match endpoint {
            Endpoint::NotFound => return refuse(Rejection::NotFound),
            Endpoint::Root => None,
            Endpoint::Protected { kind, .. } => Some(kind),
        };

        // CORS comes first on the RUM routes, before auth, as in APM Server.
        let mut cors_origin = None;
        if kind.is_some_and(EndpointKind::is_rum) {
            let origin = req
                .headers
                .get(http::header::ORIGIN)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
            if req.method == http::Method::OPTIONS {
                let mut reply = Reply::plain(Rejection::CorsPreflight);
                reply.headers = self.cors.preflight_headers(origin.as_deref());
                return Decision::Reply(reply, None);
            }
            if !self.cors.allows(origin.as_deref()) {
                return refuse(Rejection::OriginNotAllowed(origin));
            }
            cors_origin = origin;
        }
        let answer = |rejection, identity: Option<&Identity>| {
            let reply = match kind {
                // Intake endpoints answer a 403 in their stream shape.
                Some(k)
                    if k.reports_stream_errors()
                        && (rejection_is_forbidden(&rejection)
                            || rejection == Rejection::OnlyPost) =>
                {
                    Reply::intake(rejection, 0)
                }
                _ => Reply::plain(rejection),
            };
            Decision::Reply(reply.with_cors(cors_origin.as_deref()), identity.cloned())
        };

        // A client that keeps guessing is not even checked until its cool-down is over.
        if let Some(throttle) = &self.failed_attempts {
            if header.is_some() && throttle.is_blocked(caller.ip, caller.clock) {
                return answer(Rejection::AuthThrottled, None);
            }
        }

        let certificate = caller.peer_cert.and_then(|c| self.identities.lookup(c));
        let anonymous = self
            .anonymous
            .as_ref()
            // A gRPC body is protobuf, which the allow-lists cannot be checked against.
            .filter(|a| !grpc && a.policy.allows_endpoint(path));
        // Who is calling: the credential, the certificate, both, or nobody (anonymous).
        // A wrong credential is never ignored, even when the certificate alone would do,
        // and never downgraded to anonymous.
        let (credential, cert_identity) = match (
            self.authenticator.authenticate(header, caller.now),
            certificate,
        ) {
            (AuthOutcome::Failed(failure), _) => {
                if let Some(throttle) = &self.failed_attempts {
                    if throttle.record_failure(caller.ip, caller.clock) {
                        tracing::warn!(
                            client_ip = %caller.ip,
                            "too many failed authentications: refusing credentials from \
                             this address for the cool-down period"
                        );
                    }
                }
                (Err(Rejection::AuthenticationFailed(failure)), None)
            }
            (AuthOutcome::Missing, Some(c)) if !c.require_credential => {
                (Ok(None), Some(&c.identity))
            }
            (AuthOutcome::Missing, _) if anonymous.is_some() => {
                (Ok(Some(Identity::Anonymous)), None)
            }
            (AuthOutcome::Missing, _) => (Err(Rejection::MissingCredentials), None),
            (AuthOutcome::Authenticated(id), c) => (Ok(Some(id)), c.map(|c| &c.identity)),
        };
        let Endpoint::Protected { action, kind } = endpoint else {
            // `GET /`: never 401. Only authenticated callers see the server's version.
            return match (credential, cert_identity) {
                (Ok(Some(identity)), _) => Decision::Forward(Admission::root(identity)),
                (Ok(None), Some(identity)) => Decision::Forward(Admission::root(identity.clone())),
                _ => refuse(Rejection::RootWithoutCredentials),
            };
        };
        let credential = match credential {
            Ok(c) => c,
            Err(rejection) => return answer(rejection, None),
        };
        // Every identity involved must hold the privilege; a gRPC method that is not an OTLP
        // export, every privilege there is.
        let required = match kind {
            EndpointKind::Grpc => &Action::ALL[..],
            _ => std::slice::from_ref(&action),
        };
        for identity in credential.iter().chain(cert_identity) {
            for &action in required {
                if let Err(refused) = authorize(identity, action) {
                    return answer(Rejection::ActionNotPermitted(refused), Some(identity));
                }
            }
        }
        let identity = match (credential, cert_identity) {
            (Some(identity), _) => identity,
            (None, Some(identity)) => identity.clone(),
            (None, None) => return answer(Rejection::MissingCredentials, None),
        };

        // The endpoint's methods, checked where APM Server's handlers check them: after auth.
        if let Some(refused) = method_refusal(kind, &req.method) {
            return answer(refused, Some(&identity));
        }

        // The credential's own limit: a token per request (and, for events, per batch of
        // events as the body streams), as the anonymous per-IP limit works.
        let mut credential_events = None;
        if let Some((who, spec)) = identity.rate_limit() {
            if !self.credential_rates.allow(&who, spec, caller.clock) {
                return answer(Rejection::CredentialRateLimited, Some(&identity));
            }
            if spec.unit == RateUnit::Events && kind.is_ndjson_intake() {
                credential_events = Some((who, spec));
            }
        }

        let mut slot = None;
        if let (Identity::Anonymous, Some(access)) = (&identity, anonymous) {
            // Anonymous callers may hold only so many requests open, and are rate limited
            // per IP (one token per request here, then per event as the body streams).
            slot = access.open.acquire(caller.ip);
            if slot.is_none() {
                return answer(Rejection::TooManyOpenRequests, None);
            }
            if !access.limiter.allow(caller.ip, caller.clock) {
                return answer(Rejection::RateLimited, None);
            }
        }
        let rules = match &identity {
            Identity::Anonymous => anonymous.map(|a| NameRules::Anonymous(a.policy.clone())),
            Identity::ApiKey { services, .. } if !services.is_empty() => {
                Some(NameRules::BoundKey(services.clone()))
            }
            // Read only to count events against the credential's limit.
            _ if credential_events.is_some() => Some(NameRules::Any),
            _ => None,
        };
        // A key bound to services cannot use endpoints whose bodies the proxy does not read.
        if matches!(rules, Some(NameRules::BoundKey(_)))
            && !(kind.is_ndjson_intake() || kind.is_agent_config())
        {
            return answer(Rejection::KeyRestrictedEndpoint, Some(&identity));
        }
        Decision::Forward(Admission {
            identity,
            kind: Some(kind),
            cors_origin,
            slot,
            rules,
            credential_events,
        })
    }
}

/// APM Server's answer to a method its handler for `kind` does not take.
fn method_refusal(kind: EndpointKind, method: &http::Method) -> Option<Rejection> {
    use http::Method;
    let allowed = match kind {
        EndpointKind::AgentConfig | EndpointKind::RumAgentConfig => {
            *method == Method::GET || *method == Method::POST
        }
        _ => *method == Method::POST,
    };
    match (allowed, kind.is_ndjson_intake()) {
        (true, _) => None,
        (false, true) => Some(Rejection::OnlyPost),
        (false, false) => Some(Rejection::MethodNotSupported(method.clone())),
    }
}

fn rejection_is_forbidden(rejection: &Rejection) -> bool {
    rejection.status() == http::StatusCode::FORBIDDEN
}

impl Admission {
    /// `GET /` by an authenticated caller: nothing to check beyond that.
    fn root(identity: Identity) -> Self {
        Admission {
            identity,
            kind: None,
            cors_origin: None,
            slot: None,
            rules: None,
            credential_events: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{AuthSettings, CredentialStore};
    use crate::config::{ClientIdentityConfig, ConfigFile};

    fn authenticator() -> Authenticator {
        let file = ConfigFile::parse("[auth]\nsecret_token = \"tok\"\n").unwrap();
        let settings = AuthSettings::try_from(&file.auth).unwrap();
        Authenticator::new(CredentialStore::load(&settings).unwrap())
    }

    fn req(path: &str, auth: &[&str]) -> RequestHeader {
        let mut r = RequestHeader::build("POST", path.as_bytes(), None).unwrap();
        for a in auth {
            r.append_header("Authorization", *a).unwrap();
        }
        r
    }

    fn gate(max_header_size: usize, identities: IdentityMap) -> Gate {
        Gate {
            authenticator: Arc::new(authenticator()),
            identities,
            max_header_size,
            cors: CorsPolicy::default(),
            anonymous: None,
            failed_attempts: None,
            credential_rates: Arc::default(),
        }
    }

    fn caller(peer_cert: Option<&PeerCertificate>) -> Caller<'_> {
        Caller {
            peer_cert,
            ip: "192.0.2.7".parse().unwrap(),
            now: SystemTime::now(),
            clock: Instant::now(),
        }
    }

    fn decide_now(path: &str, auth: &[&str]) -> Decision {
        gate(1 << 20, IdentityMap::default()).decide(&req(path, auth), caller(None))
    }

    fn status(d: &Decision) -> u16 {
        match d {
            Decision::Forward(_) => 0,
            Decision::Reply(r, _) => r.status().as_u16(),
        }
    }

    #[test]
    fn client_certificates_as_credentials() {
        let cert = PeerCertificate {
            sha256: [1; 32],
            subject_cn: Some("agent-1".into()),
            san_dns: vec!["agent-1.example".into()],
            san_uri: vec![],
        };
        let id =
            |name: &str, cn: &str, privileges: &[&str], require_credential| ClientIdentityConfig {
                name: name.into(),
                sha256: None,
                subject_cn: Some(cn.into()),
                san_dns: None,
                san_uri: None,
                privileges: privileges.iter().map(|s| s.to_string()).collect(),
                require_credential,
            };
        let alone = gate(
            1 << 20,
            IdentityMap::try_from(&[id("a", "agent-1", &["event:write"], false)][..]).unwrap(),
        );
        assert!(matches!(
            alone.decide(&req("/intake/v2/events", &[]), caller(Some(&cert))),
            Decision::Forward(Admission {
                identity: Identity::ClientCert { .. },
                ..
            })
        ));
        assert_eq!(
            status(&alone.decide(&req("/config/v1/agents", &[]), caller(Some(&cert)))),
            403
        );
        assert_eq!(
            status(&alone.decide(
                &req("/intake/v2/events", &["Bearer wrong"]),
                caller(Some(&cert))
            )),
            401
        );
        assert_eq!(
            status(&alone.decide(&req("/intake/v2/events", &[]), caller(None))),
            401
        );
        let second_factor = gate(
            1 << 20,
            IdentityMap::try_from(&[id("b", "agent-1", &["event:write"], true)][..]).unwrap(),
        );
        assert_eq!(
            status(&second_factor.decide(&req("/intake/v2/events", &[]), caller(Some(&cert)))),
            401
        );
        assert_eq!(
            status(&second_factor.decide(
                &req("/intake/v2/events", &["Bearer tok"]),
                caller(Some(&cert))
            )),
            0
        );
        // The token could, the certificate may not: both must hold the privilege.
        assert_eq!(
            status(&second_factor.decide(
                &req("/config/v1/agents", &["Bearer tok"]),
                caller(Some(&cert))
            )),
            403
        );
        let other = PeerCertificate {
            subject_cn: Some("agent-2".into()),
            ..cert.clone()
        };
        assert_eq!(
            status(&alone.decide(&req("/intake/v2/events", &[]), caller(Some(&other)))),
            401
        );
    }

    #[test]
    fn order_of_checks() {
        assert_eq!(status(&decide_now("/intake/v2/events", &["Bearer tok"])), 0);
        assert_eq!(
            status(&decide_now("/intake/v2/events", &["Bearer no"])),
            401
        );
        assert_eq!(status(&decide_now("/intake/v2/events", &[])), 401);
        assert_eq!(
            status(&decide_now(
                "/intake/v2/events",
                &["Bearer tok", "Bearer tok"]
            )),
            400
        );
        assert_eq!(
            status(&decide_now("/intake/v2/../v2/events", &["Bearer tok"])),
            400
        );
        assert_eq!(status(&decide_now("/debug/pprof/", &["Bearer tok"])), 404);
        assert_eq!(status(&decide_now("/", &["Bearer no"])), 200);
        assert_eq!(status(&decide_now("/", &["Bearer tok"])), 0);
        assert_eq!(status(&decide_now("/?x=%2e", &["Bearer tok"])), 0);
    }

    #[test]
    fn oversized_head_is_refused() {
        let mut r = req("/intake/v2/events", &["Bearer tok"]);
        r.insert_header("x-big", "a".repeat(2000)).unwrap();
        let d = gate(1000, IdentityMap::default()).decide(&r, caller(None));
        assert_eq!(status(&d), 431);
    }

    fn rum_gate(extra: &str) -> Gate {
        let text = format!("[auth]\nsecret_token = \"tok\"\n[rum]\nenabled = true\n{extra}");
        let file = ConfigFile::parse(&text).unwrap();
        let auth = AuthSettings::try_from(&file.auth).unwrap();
        let authenticator = Arc::new(Authenticator::new(CredentialStore::load(&auth).unwrap()));
        let settings = AdmissionSettings::try_from(&file).unwrap();
        let limiter = settings
            .anonymous
            .as_ref()
            .map(|a| Arc::new(RateLimiter::new(a.event_limit, a.ip_limit)));
        Gate::new(&settings, authenticator, IdentityMap::default(), limiter)
    }

    fn with_headers(method: &str, path: &str, headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build(method, path.as_bytes(), None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    fn header<'a>(d: &'a Decision, name: &str) -> Option<&'a str> {
        let reply = match d {
            Decision::Reply(r, _) => r,
            Decision::Forward(_) => return None,
        };
        reply
            .headers
            .iter()
            .find(|(n, _)| n.as_str().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn anonymous_callers_reach_only_their_endpoints() {
        let g = rum_gate("");
        let anon = g.decide(&req("/intake/v2/rum/events", &[]), caller(None));
        assert!(matches!(
            &anon,
            Decision::Forward(Admission {
                identity: Identity::Anonymous,
                slot: Some(_),
                ..
            })
        ));
        assert_eq!(
            status(&g.decide(&req("/intake/v2/events", &[]), caller(None))),
            401
        );
        assert_eq!(
            status(&g.decide(&req("/assets/v1/sourcemaps", &[]), caller(None))),
            401
        );
        let wrong = g.decide(
            &req("/intake/v2/rum/events", &["Bearer nope"]),
            caller(None),
        );
        assert_eq!(
            status(&wrong),
            401,
            "a wrong credential is never downgraded"
        );
        assert_eq!(status(&g.decide(&req("/", &[]), caller(None))), 200);
        let off = rum_gate("[auth.anonymous]\nenabled = false\n");
        assert_eq!(
            status(&off.decide(&req("/intake/v2/rum/events", &[]), caller(None))),
            401
        );
    }

    #[test]
    fn cors_runs_before_auth_on_rum_routes() {
        let g = rum_gate("allow_origins = [\"https://*.example.com\"]\n");
        let ok = [("Origin", "https://a.example.com")];
        let preflight = g.decide(
            &with_headers("OPTIONS", "/intake/v3/rum/events", &ok),
            caller(None),
        );
        assert_eq!(status(&preflight), 200);
        assert_eq!(
            header(&preflight, "access-control-allow-origin"),
            Some("https://a.example.com")
        );
        let bad = [("Origin", "https://evil.test")];
        let refused = g.decide(
            &with_headers("POST", "/intake/v2/rum/events", &bad),
            caller(None),
        );
        assert_eq!(
            refused,
            Decision::Reply(
                Reply::plain(Rejection::OriginNotAllowed(Some(
                    "https://evil.test".into()
                ))),
                None
            )
        );
        let mut with_token = ok.to_vec();
        with_token.push(("Authorization", "Bearer nope"));
        let unauthorized = g.decide(
            &with_headers("POST", "/intake/v2/rum/events", &with_token),
            caller(None),
        );
        assert_eq!(status(&unauthorized), 401);
        assert_eq!(
            header(&unauthorized, "access-control-allow-origin"),
            Some("https://a.example.com")
        );
        match g.decide(
            &with_headers("POST", "/intake/v2/rum/events", &ok),
            caller(None),
        ) {
            Decision::Forward(a) => {
                assert_eq!(a.cors_origin.as_deref(), Some("https://a.example.com"))
            }
            other => panic!("{other:?}"),
        }
        // Not a RUM route: no CORS decision at all.
        let backend = g.decide(
            &with_headers("POST", "/intake/v2/events", &bad),
            caller(None),
        );
        assert_eq!(status(&backend), 401);
    }

    #[test]
    fn anonymous_limits_per_ip() {
        let g = rum_gate("[auth.anonymous]\nmax_concurrent_requests = 1\n[auth.anonymous.rate_limit]\nevent_limit = 1\n");
        let held = g.decide(&req("/intake/v2/rum/events", &[]), caller(None));
        assert!(matches!(held, Decision::Forward(_)));
        let second = g.decide(&req("/intake/v2/rum/events", &[]), caller(None));
        assert_eq!(
            second,
            Decision::Reply(Reply::plain(Rejection::TooManyOpenRequests), None)
        );
        drop(held);
        // Burst 3: two tokens left after the first request and the refused one.
        for _ in 0..2 {
            assert_eq!(
                status(&g.decide(&req("/intake/v2/rum/events", &[]), caller(None))),
                0
            );
        }
        assert_eq!(
            g.decide(&req("/intake/v2/rum/events", &[]), caller(None)),
            Decision::Reply(Reply::plain(Rejection::RateLimited), None)
        );
        let mut elsewhere = caller(None);
        elsewhere.ip = "192.0.2.8".parse().unwrap();
        assert_eq!(
            status(&g.decide(&req("/intake/v2/rum/events", &[]), elsewhere)),
            0
        );
        // Credentialed callers are not limited.
        assert_eq!(
            status(&g.decide(&req("/intake/v2/rum/events", &["Bearer tok"]), caller(None))),
            0
        );
    }

    #[test]
    fn repeated_failures_from_one_ip_are_throttled() {
        let g = rum_gate("[auth.failed_attempts]\nmax_failures = 2\ncooldown = \"1m\"\n");
        for _ in 0..2 {
            assert_eq!(
                status(&g.decide(&req("/intake/v2/events", &["Bearer nope"]), caller(None))),
                401
            );
        }
        assert_eq!(
            g.decide(&req("/intake/v2/events", &["Bearer tok"]), caller(None)),
            Decision::Reply(Reply::plain(Rejection::AuthThrottled), None)
        );
        assert_eq!(
            status(&g.decide(&req("/intake/v2/rum/events", &[]), caller(None))),
            0,
            "anonymous calls carry no credential to throttle"
        );
        let mut elsewhere = caller(None);
        elsewhere.ip = "192.0.2.8".parse().unwrap();
        assert_eq!(
            status(&g.decide(&req("/intake/v2/events", &["Bearer tok"]), elsewhere)),
            0
        );
    }

    #[test]
    fn grpc_calls_are_routed_by_method_and_never_anonymous() {
        let call = |path: &str, auth: &[&str], version| {
            let mut r = req(path, auth);
            r.set_version(version);
            r.insert_header("content-type", "application/grpc").unwrap();
            r
        };
        let export = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
        let other = "/jaeger.api_v2.CollectorService/PostSpans";
        let h2 = http::Version::HTTP_2;
        let g = rum_gate("");
        let kind = |d: Decision| match d {
            Decision::Forward(a) => a.kind,
            Decision::Reply(r, _) => panic!("refused: {r:?}"),
        };
        assert_eq!(
            kind(g.decide(&call(export, &["Bearer tok"], h2), caller(None))),
            Some(EndpointKind::OtlpGrpc)
        );
        assert_eq!(
            kind(g.decide(&call(other, &["Bearer tok"], h2), caller(None))),
            Some(EndpointKind::Grpc)
        );
        // Anonymous access is on for RUM, never for gRPC (its body cannot be checked).
        let anonymous = g.decide(&call(export, &[], h2), caller(None));
        assert!(matches!(
            anonymous,
            Decision::Reply(ref r, None) if r.rejection == Rejection::MissingCredentials
        ));
        // The same path over HTTP/1.1 is no APM endpoint.
        assert_eq!(
            status(&g.decide(
                &call(export, &["Bearer tok"], http::Version::HTTP_11),
                caller(None)
            )),
            404
        );
        // A certificate allowed `event:write` may export, not call other methods.
        let cert = PeerCertificate {
            sha256: [2; 32],
            subject_cn: Some("collector".into()),
            san_dns: vec![],
            san_uri: vec![],
        };
        let identity = ClientIdentityConfig {
            name: "collector".into(),
            sha256: None,
            subject_cn: Some("collector".into()),
            san_dns: None,
            san_uri: None,
            privileges: vec!["event:write".into()],
            require_credential: false,
        };
        let g = gate(1 << 20, IdentityMap::try_from(&[identity][..]).unwrap());
        assert!(matches!(
            g.decide(&call(export, &[], h2), caller(Some(&cert))),
            Decision::Forward(_)
        ));
        assert_eq!(
            status(&g.decide(&call(other, &[], h2), caller(Some(&cert)))),
            403
        );
    }
}
