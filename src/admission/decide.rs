//! The admission decision for one request, from its header alone, in steps that each
//! answer one question and change nothing: is the request well formed and for which
//! endpoint, may its origin call it (CORS) ([`Gate::route`]); is a client that kept guessing
//! still in its cool-down; who is calling, may they, and what must its body be checked
//! against ([`Gate::admit`]). Only then are the limits charged,
//! once, from one [`Limits`] value: a failed authentication recorded, a credential's or an
//! anonymous IP's rate token taken, an anonymous request's open slot held. A plain function
//! over the request header and the proxy's state, so every rule is testable without a
//! socket. What needs the body (event names, a POSTed agent-config query) is checked later,
//! by `intake`.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use pingora::http::RequestHeader;

use super::cors::CorsPolicy;
use super::names::{AnonymousPolicy, NameRules};
use super::rejection::{Rejection, Reply};
use super::routes::{self, Endpoint, EndpointKind};
use super::settings::AdmissionSettings;
use crate::auth::{
    authorize, Action, AuthFailure, AuthOutcome, Authenticator, Identity, IdentityMap,
};
use crate::limits::{
    AuthThrottle, CredentialKey, CredentialRates, EventCharge, OpenRequests, RateLimiter, RateSpec,
    RateUnit, Slot,
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
    pub kind: EndpointKind,
    /// The allowed `Origin` of a RUM request, echoed as `Access-Control-Allow-Origin`.
    pub cors_origin: Option<String>,
    /// Held while an anonymous request is open (per-IP concurrency cap).
    pub slot: Option<Slot>,
    /// The service/agent rules its events must follow (anonymous, service-bound key).
    pub rules: Option<NameRules>,
    /// Whose tokens its events take as the body streams (an anonymous IP's, or the
    /// credential's own events limit).
    pub events: Option<EventCharge>,
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

/// Approximate size of the request head as sent (request line + header lines).
fn head_size(req: &RequestHeader) -> usize {
    let headers: usize = req
        .headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    req.raw_path().len() + req.method.as_str().len() + 12 + headers
}

/// Every limit admission charges, in one place.
struct Limits {
    /// Anonymous callers' per-IP event rate and open requests (`None`: anonymous is off).
    anonymous: Option<(Arc<RateLimiter>, OpenRequests)>,
    /// Failed authentications per IP (`None`: throttling is off).
    failed_attempts: Option<AuthThrottle>,
    /// The buckets of credentials with a `rate_limit` of their own.
    credential_rates: Arc<CredentialRates>,
}

/// What admitting a request costs, decided before anything is charged.
#[derive(Debug)]
enum Charge {
    Nothing,
    /// A request token from the credential's own bucket.
    Credential(CredentialKey, RateSpec),
    /// An open slot and a request token of the anonymous client's IP.
    Anonymous,
}

impl Limits {
    /// What is left of the cool-down of a client that kept guessing, if it is in one.
    fn throttled_for(&self, caller: &Caller<'_>) -> Option<Duration> {
        (self.failed_attempts.as_ref()).and_then(|t| t.blocked_for(caller.ip, caller.clock))
    }

    fn record_failure(&self, caller: &Caller<'_>) {
        if let Some(throttle) = &self.failed_attempts {
            if throttle.record_failure(caller.ip, caller.clock) {
                tracing::warn!(
                    client_ip = %caller.ip,
                    "too many failed authentications: refusing credentials from this \
                     address for the cool-down period"
                );
            }
        }
    }

    /// Take what `charge` says, all or nothing: the open slot held by an anonymous request
    /// whose rate token is refused is given back at once. A refusal says when to try again.
    fn charge(
        &self,
        charge: &Charge,
        caller: &Caller<'_>,
    ) -> Result<Option<Slot>, (Rejection, Duration)> {
        match charge {
            Charge::Nothing => Ok(None),
            Charge::Credential(who, spec) => {
                if self.credential_rates.allow(who, *spec, caller.clock) {
                    Ok(None)
                } else {
                    let wait = self
                        .credential_rates
                        .next_token_in(who, *spec, caller.clock);
                    Err((Rejection::CredentialRateLimited, wait))
                }
            }
            Charge::Anonymous => {
                let Some((limiter, open)) = &self.anonymous else {
                    return Ok(None);
                };
                // An open request's end cannot be foreseen: a second is the hint.
                let slot = (open.acquire(caller.ip))
                    .ok_or((Rejection::TooManyOpenRequests, Duration::from_secs(1)))?;
                if !limiter.allow(caller.ip, caller.clock) {
                    let wait = limiter.next_token_in(caller.ip, caller.clock);
                    return Err((Rejection::RateLimited, wait));
                }
                Ok(Some(slot))
            }
        }
    }

    /// Whose tokens an intake body's events take, per `charge` (`None`: nobody's).
    fn events(&self, charge: &Charge, kind: EndpointKind, ip: IpAddr) -> Option<EventCharge> {
        if !kind.counts_events() {
            return None;
        }
        match charge {
            Charge::Credential(who, spec) if spec.unit == RateUnit::Events => {
                Some(EventCharge::Credential {
                    rates: self.credential_rates.clone(),
                    who: who.clone(),
                    spec: *spec,
                })
            }
            Charge::Anonymous => self
                .anonymous
                .as_ref()
                .map(|(limiter, _)| EventCharge::PerIp {
                    limiter: limiter.clone(),
                    ip,
                }),
            _ => None,
        }
    }
}

/// Where a well-formed request is going ([`Gate::route`]).
struct Route<'r> {
    path: &'r str,
    endpoint: Endpoint,
    grpc: bool,
    /// The one `Authorization` header's value, if any.
    authorization: Option<&'r [u8]>,
    /// The allowed `Origin` of a RUM request.
    cors_origin: Option<String>,
}

impl Decision {
    /// A refusal that tells the client when to try again.
    fn retry_after(self, wait: Duration) -> Decision {
        match self {
            Decision::Reply(reply, who) => Decision::Reply(reply.with_retry_after(Some(wait)), who),
            forward => forward,
        }
    }
}

impl Route<'_> {
    fn kind(&self) -> Option<EndpointKind> {
        match self.endpoint {
            Endpoint::Protected { kind, .. } => Some(kind),
            _ => None,
        }
    }

    /// The proxy's answer for `rejection` on this route: intake endpoints answer a 403
    /// (and a wrong method) in their stream shape; RUM answers carry the CORS header.
    fn answer(&self, rejection: Rejection, identity: Option<Identity>) -> Decision {
        let reply = match self.kind() {
            Some(k)
                if k.reports_stream_errors()
                    && (rejection.status() == http::StatusCode::FORBIDDEN
                        || rejection == Rejection::OnlyPost) =>
            {
                Reply::intake(rejection, 0)
            }
            _ => Reply::plain(rejection),
        };
        Decision::Reply(reply.with_cors(self.cors_origin.as_deref()), identity)
    }
}

/// A request that passed every check but the limits, and what it would cost.
struct Admissible {
    identity: Identity,
    kind: EndpointKind,
    rules: Option<NameRules>,
    charge: Charge,
}

/// Why [`Gate::admit`] refused, and whom, when known.
struct Refusal {
    rejection: Rejection,
    identity: Option<Identity>,
    /// A credential was presented and failed (counted by the failed-attempts throttle, also
    /// where the answer does not say so: `GET /` answers without the server's version).
    failed_authentication: bool,
}

impl Refusal {
    fn of(rejection: Rejection, identity: Option<&Identity>) -> Refusal {
        let failed_authentication = matches!(rejection, Rejection::AuthenticationFailed(_));
        Refusal {
            rejection,
            identity: identity.cloned(),
            failed_authentication,
        }
    }
}

/// What the gate needs to decide.
pub struct Gate {
    authenticator: Arc<Authenticator>,
    identities: IdentityMap,
    max_header_size: usize,
    cors: CorsPolicy,
    /// `None` when anonymous access is off.
    anonymous: Option<Arc<AnonymousPolicy>>,
    limits: Limits,
}

impl Gate {
    /// The gate `settings` describe, over the given credentials.
    pub fn new(
        settings: &AdmissionSettings,
        authenticator: Arc<Authenticator>,
        identities: IdentityMap,
    ) -> Gate {
        let anonymous = settings.anonymous.as_ref();
        let failed_attempts = settings
            .failed_attempts
            .as_ref()
            .map(|f| AuthThrottle::new(f.max_failures, f.window, f.cooldown, f.ip_limit));
        Gate {
            authenticator,
            identities,
            max_header_size: settings.max_header_size,
            cors: settings.cors.clone(),
            anonymous: anonymous.map(|a| Arc::new(a.policy.clone())),
            limits: Limits {
                // One bucket per IP for anonymous requests and their events.
                anonymous: anonymous.map(|a| {
                    (
                        Arc::new(RateLimiter::new(a.event_limit, a.ip_limit)),
                        OpenRequests::new(a.max_concurrent_requests),
                    )
                }),
                failed_attempts,
                credential_rates: Arc::default(),
            },
        }
    }

    /// Decide on a request from its header and what is known about the caller.
    pub fn decide(&self, req: &RequestHeader, caller: Caller<'_>) -> Decision {
        let route = match self.route(req) {
            Ok(route) => route,
            Err(reply) => return Decision::Reply(reply, None),
        };
        // A client that keeps guessing is not even checked until its cool-down is over.
        if let Some(left) = route.authorization.and(self.limits.throttled_for(&caller)) {
            return route
                .answer(Rejection::AuthThrottled, None)
                .retry_after(left);
        }
        let admissible = match self.admit(req, &route, &caller) {
            Ok(admissible) => admissible,
            Err(refusal) => {
                if refusal.failed_authentication {
                    self.limits.record_failure(&caller);
                }
                return route.answer(refusal.rejection, refusal.identity);
            }
        };
        let slot = match self.limits.charge(&admissible.charge, &caller) {
            Ok(slot) => slot,
            // Anonymous refusals name nobody: there is no credential to record usage for.
            Err((rejection, wait)) => {
                let named = !matches!(admissible.identity, Identity::Anonymous);
                let refused = route.answer(rejection, named.then_some(admissible.identity));
                return refused.retry_after(wait);
            }
        };
        let events = (self.limits).events(&admissible.charge, admissible.kind, caller.ip);
        Decision::Forward(Admission {
            identity: admissible.identity,
            kind: admissible.kind,
            cors_origin: route.cors_origin,
            slot,
            rules: admissible.rules,
            events,
        })
    }

    /// Step 1: is the request well formed, for which endpoint, and may its origin call it?
    /// `Err` is the answer (a CORS preflight is answered here too).
    fn route<'r>(&self, req: &'r RequestHeader) -> Result<Route<'r>, Reply> {
        if head_size(req) > self.max_header_size {
            return Err(Reply::plain(Rejection::HeaderTooLarge));
        }
        let path = routes::check_path(routes::path_of(req.raw_path()))
            .map_err(|why| Reply::plain(Rejection::AmbiguousPath(why)))?;
        let mut authorization = req.headers.get_all(http::header::AUTHORIZATION).iter();
        let header = authorization.next().map(|v| v.as_bytes());
        if authorization.next().is_some() {
            return Err(Reply::plain(Rejection::DuplicateAuthorization));
        }
        let grpc = routes::is_grpc(req);
        let endpoint = if grpc {
            routes::classify_grpc(path)
        } else {
            routes::classify(path)
        };
        let mut route = Route {
            path,
            endpoint,
            grpc,
            authorization: header,
            cors_origin: None,
        };
        // Browsers call OTLP/HTTP too (the OpenTelemetry JS web SDK): CORS applies to the
        // requests that are a browser's (a preflight, or an `Origin`); SDKs elsewhere send
        // none and are served as before, whatever the allowed origins.
        let browser_otlp = route.kind() == Some(EndpointKind::OtlpHttp)
            && (req.method == http::Method::OPTIONS
                || req.headers.contains_key(http::header::ORIGIN));
        match route.kind() {
            None if endpoint == Endpoint::NotFound => Err(Reply::plain(Rejection::NotFound)),
            // CORS comes first on the RUM routes, before auth, as in APM Server.
            Some(kind) if kind.is_rum() || browser_otlp => {
                let origin = req
                    .headers
                    .get(http::header::ORIGIN)
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
                if req.method == http::Method::OPTIONS {
                    let mut reply = Reply::plain(Rejection::CorsPreflight);
                    reply.headers = self.cors.preflight_headers(origin.as_deref());
                    return Err(reply);
                }
                if !self.cors.allows(origin.as_deref()) {
                    return Err(Reply::plain(Rejection::OriginNotAllowed(origin)));
                }
                route.cors_origin = origin;
                Ok(route)
            }
            _ => Ok(route),
        }
    }

    /// Step 2: who is calling, may they call this endpoint with this method, what must its
    /// body follow, and what would admitting it cost. Changes nothing.
    fn admit(
        &self,
        req: &RequestHeader,
        route: &Route<'_>,
        caller: &Caller<'_>,
    ) -> Result<Admissible, Refusal> {
        let certificate = caller.peer_cert.and_then(|c| self.identities.lookup(c));
        let anonymous = self
            .anonymous
            .as_ref()
            // A gRPC body is protobuf, which the allow-lists cannot be checked against.
            .filter(|a| !route.grpc && a.allows_endpoint(route.path));
        // Who is calling: the credential, the certificate, both, or nobody (anonymous).
        // A wrong credential is never ignored, even when the certificate alone would do,
        // and never downgraded to anonymous.
        // A known key refused is named in the refusal (log, usage), never told apart in the
        // answer.
        let mut refused_key = None;
        let outcome = (self.authenticator).authenticate(route.authorization, caller.now);
        let (credential, cert_identity) = match (outcome, certificate) {
            (AuthOutcome::Failed(failure), _) => {
                (Err(Rejection::AuthenticationFailed(failure)), None)
            }
            (AuthOutcome::KeyRefused(key), _) => {
                refused_key = Some(key);
                let failure = AuthFailure::InvalidCredentials;
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
        let Endpoint::Protected { action, kind } = route.endpoint else {
            // `GET /`: never 401. Only authenticated callers see the server's version.
            let identity = match (credential, cert_identity) {
                (Ok(Some(identity)), _) => identity,
                (Ok(None), Some(identity)) => identity.clone(),
                (Err(failed), _) => {
                    return Err(Refusal {
                        failed_authentication: matches!(failed, Rejection::AuthenticationFailed(_)),
                        ..Refusal::of(Rejection::RootWithoutCredentials, None)
                    })
                }
                _ => return Err(Refusal::of(Rejection::RootWithoutCredentials, None)),
            };
            return Ok(Admissible {
                identity,
                kind: EndpointKind::ServerInfo,
                rules: None,
                charge: Charge::Nothing,
            });
        };
        let credential =
            credential.map_err(|rejection| Refusal::of(rejection, refused_key.as_ref()))?;
        // Every identity involved must hold the privilege; a gRPC method that is not an OTLP
        // export, every privilege there is.
        let required = match kind {
            EndpointKind::Grpc => &Action::ALL[..],
            _ => std::slice::from_ref(&action),
        };
        for identity in credential.iter().chain(cert_identity) {
            for &action in required {
                if let Err(refused) = authorize(identity, action) {
                    return Err(Refusal::of(
                        Rejection::ActionNotPermitted(refused),
                        Some(identity),
                    ));
                }
            }
        }
        let identity = match (credential, cert_identity) {
            (Some(identity), _) => identity,
            (None, Some(identity)) => identity.clone(),
            (None, None) => return Err(Refusal::of(Rejection::MissingCredentials, None)),
        };

        // The endpoint's methods, checked where APM Server's handlers check them: after auth.
        if let Some(refused) = method_refusal(kind, &req.method) {
            return Err(Refusal::of(refused, Some(&identity)));
        }
        let rules = match &identity {
            Identity::Anonymous => anonymous.map(|a| NameRules::Anonymous(a.clone())),
            Identity::ApiKey { services, .. } | Identity::Jwt { services, .. }
                if !services.is_empty() =>
            {
                Some(NameRules::BoundKey(services.clone()))
            }
            _ => None,
        };
        // A key bound to services cannot use endpoints whose bodies the proxy does not read.
        if matches!(rules, Some(NameRules::BoundKey(_))) && !kind.service_checkable() {
            return Err(Refusal::of(
                Rejection::KeyRestrictedEndpoint,
                Some(&identity),
            ));
        }
        // The credential's own limit: a token per request (and, for events, per batch of
        // events as the body streams), as the anonymous per-IP limit works.
        let charge = match (&identity, identity.rate_limit()) {
            (_, Some((who, spec))) => Charge::Credential(who, spec),
            (Identity::Anonymous, None) => Charge::Anonymous,
            _ => Charge::Nothing,
        };
        // Read only to count events against the credential's limit.
        let counts_events = matches!(&charge, Charge::Credential(_, spec)
            if spec.unit == RateUnit::Events && kind.counts_events());
        let rules = rules.or(counts_events.then_some(NameRules::Any));
        Ok(Admissible {
            identity,
            kind,
            rules,
            charge,
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
            limits: Limits {
                anonymous: None,
                failed_attempts: None,
                credential_rates: Arc::default(),
            },
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
        Gate::new(&settings, authenticator, IdentityMap::default())
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
        // An open request's end cannot be foreseen: the hint is a second.
        let one_second = Some(Duration::from_secs(1));
        assert_eq!(
            second,
            Decision::Reply(
                Reply::plain(Rejection::TooManyOpenRequests).with_retry_after(one_second),
                None
            )
        );
        drop(held);
        // Burst 3: two tokens left after the first request and the refused one.
        for _ in 0..2 {
            assert_eq!(
                status(&g.decide(&req("/intake/v2/rum/events", &[]), caller(None))),
                0
            );
        }
        // Refused, told when the IP's next token comes (one a second).
        match g.decide(&req("/intake/v2/rum/events", &[]), caller(None)) {
            Decision::Reply(reply, None) => {
                assert_eq!(reply.rejection, Rejection::RateLimited);
                let wait = reply.retry_after.unwrap();
                assert!(
                    wait > Duration::ZERO && wait <= Duration::from_secs(1),
                    "{wait:?}"
                );
            }
            other => panic!("{other:?}"),
        }
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
        // Refused until the cool-down ends, and told when that is.
        match g.decide(&req("/intake/v2/events", &["Bearer tok"]), caller(None)) {
            Decision::Reply(reply, None) => {
                assert_eq!(reply.rejection, Rejection::AuthThrottled);
                let left = reply.retry_after.unwrap();
                assert!(
                    left > Duration::from_secs(50) && left <= Duration::from_secs(60),
                    "{left:?}"
                );
            }
            other => panic!("{other:?}"),
        }
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
            EndpointKind::OtlpGrpc
        );
        assert_eq!(
            kind(g.decide(&call(other, &["Bearer tok"], h2), caller(None))),
            EndpointKind::Grpc
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
