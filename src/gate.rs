//! The admission decision for one request, from its header alone: is the request well
//! formed, which endpoint is it for, may its origin call it (CORS), who is calling, may they,
//! and — for anonymous callers — are they within their rate and concurrency limits. A plain
//! function over the request header and the proxy's state, so every rule is testable
//! without a socket. What needs the body (event names) is checked later, as it streams.

use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use pingora::http::RequestHeader;

use crate::auth::anonymous::AnonymousPolicy;
use crate::auth::client_cert::IdentityMap;
use crate::auth::{self, AuthOutcome, Authenticator, Identity};
use crate::concurrency::{PerIpConcurrency, Slot};
use crate::cors::CorsPolicy;
use crate::event_rules::NameRules;
use crate::ratelimit::RateLimiter;
use crate::response::Reply;
use crate::routes::{self, Endpoint, EndpointKind};
use crate::throttle::AuthThrottle;
use crate::tls::client::PeerCertificate;

#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Forward upstream.
    Forward(Admission),
    /// Answer here; the `&str` is a short reason for the access log.
    Reply(Reply, &'static str),
    /// Authenticated, but not allowed to do this.
    Forbidden(Reply, Identity),
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
pub struct AnonymousAccess {
    pub policy: Arc<AnonymousPolicy>,
    pub limiter: RateLimiter,
    pub concurrency: PerIpConcurrency,
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
    pub authenticator: Arc<Authenticator>,
    pub identities: IdentityMap,
    pub max_header_size: usize,
    pub cors: CorsPolicy,
    /// `None` when anonymous access is off.
    pub anonymous: Option<AnonymousAccess>,
    /// `None` when failed-authentication throttling is off.
    pub failed_attempts: Option<AuthThrottle>,
}

pub const RATE_LIMITED: &str = "too many requests: rate limit exceeded";
pub const TOO_MANY_FAILURES: &str = "too many requests: too many failed authentication attempts";
pub const TOO_MANY_OPEN: &str = "too many requests: too many concurrent requests";

impl Gate {
    /// The gate `config` describes, over the given credentials.
    pub fn from_config(
        config: &crate::config::Config,
        authenticator: Arc<Authenticator>,
        identities: IdentityMap,
    ) -> Gate {
        let nonzero = |n: usize| NonZeroUsize::new(n).unwrap_or(NonZeroUsize::MIN);
        let a = &config.auth.anonymous;
        let anonymous = AnonymousPolicy::from_config(config).map(|policy| AnonymousAccess {
            policy: Arc::new(policy),
            limiter: RateLimiter::new(a.rate_limit.event_limit, nonzero(a.rate_limit.ip_limit)),
            concurrency: PerIpConcurrency::new(a.max_concurrent_requests),
        });
        let f = &config.auth.failed_attempts;
        let failed_attempts = f.enabled.then(|| {
            AuthThrottle::new(
                f.max_failures,
                f.window.0,
                f.cooldown.0,
                nonzero(f.ip_limit),
            )
        });
        Gate {
            authenticator,
            identities,
            max_header_size: config.server.max_header_size,
            cors: CorsPolicy::new(config.rum.allow_origins.clone(), &config.rum.allow_headers),
            anonymous,
            failed_attempts,
        }
    }

    /// Decide on a request from its header and what is known about the caller.
    pub fn decide(&self, req: &RequestHeader, caller: Caller<'_>) -> Decision {
        if head_size(req) > self.max_header_size {
            return Decision::Reply(
                Reply::error(431, "request header fields too large"),
                "header_too_large",
            );
        }
        let path = match routes::check_path(routes::path_of(req.raw_path())) {
            Ok(path) => path,
            Err(why) => {
                return Decision::Reply(
                    Reply::error(400, format!("invalid request path: {why}")),
                    "ambiguous_path",
                )
            }
        };
        let mut authorization = req.headers.get_all(http::header::AUTHORIZATION).iter();
        let header = authorization.next().map(|v| v.as_bytes());
        if authorization.next().is_some() {
            return Decision::Reply(
                Reply::error(400, "invalid request: more than one Authorization header"),
                "duplicate_authorization",
            );
        }
        let endpoint = routes::classify(path);
        let kind = match endpoint {
            Endpoint::NotFound => return Decision::Reply(Reply::not_found(), "not_found"),
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
                let mut reply = Reply::empty(200);
                for (name, value) in self.cors.preflight_headers(origin.as_deref()) {
                    reply = reply.with_header(name, value);
                }
                return Decision::Reply(reply, "cors_preflight");
            }
            if !self.cors.allows(origin.as_deref()) {
                return Decision::Reply(
                    Reply::error(403, CorsPolicy::forbidden_message(origin.as_deref())),
                    "origin_not_allowed",
                );
            }
            cors_origin = origin;
        }
        let with_cors = |reply: Reply| match &cors_origin {
            Some(origin) => reply.with_header("Access-Control-Allow-Origin", origin.clone()),
            None => reply,
        };

        // A client that keeps guessing is not even checked until its cool-down is over.
        if let Some(throttle) = &self.failed_attempts {
            if header.is_some() && throttle.is_blocked(caller.ip, caller.clock) {
                return Decision::Reply(
                    with_cors(Reply::error(429, TOO_MANY_FAILURES)),
                    "auth_throttled",
                );
            }
        }

        let certificate = caller.peer_cert.and_then(|c| self.identities.lookup(c));
        let anonymous = self
            .anonymous
            .as_ref()
            .filter(|_| self.anonymous_allowed(path));
        // Who is calling: the credential, the certificate, both, or nobody (anonymous).
        // A wrong credential is never ignored, even when the certificate alone would do,
        // and never downgraded to anonymous.
        let (credential, cert_identity) = match (
            self.authenticator.authenticate(header, caller.now),
            certificate,
        ) {
            (AuthOutcome::Failed(f), _) => {
                if let Some(throttle) = &self.failed_attempts {
                    if throttle.record_failure(caller.ip, caller.clock) {
                        tracing::warn!(
                            client_ip = %caller.ip,
                            "too many failed authentications: refusing credentials from \
                             this address for the cool-down period"
                        );
                    }
                }
                (Err((f.message(), f.reason())), None)
            }
            (AuthOutcome::Missing, Some(c)) if !c.require_credential => {
                (Ok(None), Some(&c.identity))
            }
            (AuthOutcome::Missing, _) if anonymous.is_some() => {
                (Ok(Some(Identity::Anonymous)), None)
            }
            (AuthOutcome::Missing, _) => {
                (Err((auth::missing_message(), "missing_credentials")), None)
            }
            (AuthOutcome::Authenticated(id), c) => (Ok(Some(id)), c.map(|c| &c.identity)),
        };
        let Endpoint::Protected { action, kind } = endpoint else {
            // `GET /`: never 401. Only authenticated callers see the server's version.
            return match (credential, cert_identity) {
                (Ok(Some(identity)), _) => Decision::Forward(Admission::root(identity)),
                (Ok(None), Some(identity)) => Decision::Forward(Admission::root(identity.clone())),
                _ => Decision::Reply(Reply::empty(200), "root_anonymous"),
            };
        };
        let credential = match credential {
            Ok(c) => c,
            Err((message, reason)) => {
                return Decision::Reply(with_cors(Reply::error(401, message)), reason)
            }
        };
        let forbidden = |message: String, identity: &Identity| {
            let reply = if kind.reports_stream_errors() {
                Reply::stream_error(403, message)
            } else {
                Reply::error(403, message)
            };
            Decision::Forbidden(with_cors(reply), identity.clone())
        };
        // Every identity involved must hold the privilege.
        for identity in credential.iter().chain(cert_identity) {
            if let Err(message) = auth::authorize(identity, action) {
                return forbidden(message, identity);
            }
        }
        let identity = match (credential, cert_identity) {
            (Some(identity), _) => identity,
            (None, Some(identity)) => identity.clone(),
            (None, None) => {
                return Decision::Reply(
                    with_cors(Reply::error(401, auth::missing_message())),
                    "missing_credentials",
                )
            }
        };

        let mut slot = None;
        if let (Identity::Anonymous, Some(access)) = (&identity, anonymous) {
            // Anonymous callers may hold only so many requests open, and are rate limited
            // per IP (one token per request here, then per event as the body streams).
            slot = access.concurrency.acquire(caller.ip);
            if slot.is_none() {
                return Decision::Reply(
                    with_cors(Reply::error(429, TOO_MANY_OPEN)),
                    "too_many_open",
                );
            }
            if !access.limiter.allow(caller.ip, caller.clock) {
                return Decision::Reply(with_cors(Reply::error(429, RATE_LIMITED)), "rate_limited");
            }
        }
        let rules = match &identity {
            Identity::Anonymous => anonymous.map(|a| NameRules::Anonymous(a.policy.clone())),
            Identity::ApiKey { services, .. } if !services.is_empty() => {
                Some(NameRules::BoundKey(services.clone()))
            }
            _ => None,
        };
        if let Some(refusal) = service_refusal(rules.as_ref(), kind, req) {
            return forbidden(refusal, &identity);
        }
        Decision::Forward(Admission {
            identity,
            kind: Some(kind),
            cors_origin,
            slot,
            rules,
        })
    }

    fn anonymous_allowed(&self, path: &str) -> bool {
        self.anonymous
            .as_ref()
            .is_some_and(|a| a.policy.allows_endpoint(path))
    }
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
        }
    }
}

/// Service rules that the header alone can decide: an agent-config query names its service
/// in the query string (a POST names it in the body, checked when the body is read); a key
/// bound to services cannot use endpoints whose bodies the proxy does not read.
fn service_refusal(
    rules: Option<&NameRules>,
    kind: EndpointKind,
    req: &RequestHeader,
) -> Option<String> {
    let rules = rules?;
    if kind.is_agent_config() {
        if req.method == http::Method::POST {
            return None;
        }
        let service = query_param(req.uri.query().unwrap_or(""), "service.name");
        return rules.check_service(service.as_deref()).err();
    }
    match rules {
        NameRules::BoundKey(_) if !kind.is_ndjson_intake() => Some(
            "unauthorized: API Key restricted to services cannot be used on this endpoint"
                .to_string(),
        ),
        _ => None,
    }
}

/// The first value of `name` in a query string, percent- and `+`-decoded as Go's
/// `url.ParseQuery` does.
pub fn query_param(query: &str, name: &str) -> Option<String> {
    query.split(['&', ';']).find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (decode_component(key) == name).then(|| decode_component(value))
    })
}

fn decode_component(text: &str) -> String {
    let plus_as_space = text.replace('+', " ");
    percent_encoding::percent_decode_str(&plus_as_space)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn authenticator() -> Authenticator {
        let mut config = Config::parse("[auth]\nsecret_token = \"tok\"\n").unwrap();
        config.base_dir = ".".into();
        Authenticator::new(auth::CredentialStore::load(&config).unwrap())
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
            Decision::Reply(r, _) | Decision::Forbidden(r, _) => r.status,
        }
    }

    #[test]
    fn client_certificates_as_credentials() {
        use crate::config::ClientIdentityConfig;
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
            IdentityMap::from_config(&[id("a", "agent-1", &["event:write"], false)]).unwrap(),
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
            IdentityMap::from_config(&[id("b", "agent-1", &["event:write"], true)]).unwrap(),
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
        let mut config = Config::parse(&text).unwrap();
        config.base_dir = ".".into();
        let authenticator = Arc::new(Authenticator::new(
            auth::CredentialStore::load(&config).unwrap(),
        ));
        Gate::from_config(&config, authenticator, IdentityMap::default())
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
            Decision::Reply(r, _) | Decision::Forbidden(r, _) => r,
            Decision::Forward(_) => return None,
        };
        reply
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
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
                Reply::error(
                    403,
                    "forbidden request: origin: 'https://evil.test' is not allowed"
                ),
                "origin_not_allowed"
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
            Decision::Reply(Reply::error(429, TOO_MANY_OPEN), "too_many_open")
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
            Decision::Reply(Reply::error(429, RATE_LIMITED), "rate_limited")
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
            Decision::Reply(Reply::error(429, TOO_MANY_FAILURES), "auth_throttled")
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
    fn agent_config_queries_are_checked_by_service() {
        let g = rum_gate("[auth.anonymous]\nallow_service = [\"shop\"]\n");
        let get = |q: &str| with_headers("GET", &format!("/config/v1/rum/agents{q}"), &[]);
        assert_eq!(
            status(&g.decide(&get("?service.name=shop"), caller(None))),
            0
        );
        assert_eq!(
            status(&g.decide(&get("?service.name=sh%6Fp&x=1"), caller(None))),
            0
        );
        let other = g.decide(&get("?service.name=ads"), caller(None));
        assert_eq!(status(&other), 403);
        assert_eq!(status(&g.decide(&get(""), caller(None))), 403);
        assert_eq!(
            query_param("a=1&service.name=my+svc%21", "service.name").as_deref(),
            Some("my svc!")
        );
        assert_eq!(query_param("service.namex=1", "service.name"), None);
    }
}
