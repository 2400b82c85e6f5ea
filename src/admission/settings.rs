//! The admission layer's settings, typed: the head-size limit, trusted proxies, CORS, anonymous
//! access with its limits, failed-authentication throttling, and the body limits the intake
//! checks apply. Built from `[server]`, `[auth.anonymous]`, `[auth.failed_attempts]`, `[rum]`
//! and `[client_ip]` together, because APM Server derives anonymous access from `rum.enabled`.

use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::time::Duration;

use ipnet::IpNet;

use super::client_ip::ClientIpPolicy;
use super::cors::CorsPolicy;
use super::names::AnonymousPolicy;
use super::routes::{classify, Endpoint};
use crate::config::{ConfigFile, Problems};

/// Pingora refuses request heads larger than this; our own limit can only be lower.
pub const PINGORA_MAX_HEADER_SIZE: usize = 1_048_575;

#[derive(Debug, Clone)]
pub struct AdmissionSettings {
    pub max_header_size: usize,
    pub client_ip: ClientIpPolicy,
    pub cors: CorsPolicy,
    /// `None` when anonymous access is off.
    pub anonymous: Option<AnonymousSettings>,
    /// `None` when failed-authentication throttling is off.
    pub failed_attempts: Option<FailedAttemptsSettings>,
    pub body: BodyLimits,
}

#[derive(Debug, Clone)]
pub struct AnonymousSettings {
    pub policy: AnonymousPolicy,
    /// Events per second per client IP (burst 3×).
    pub event_limit: u32,
    pub ip_limit: NonZeroUsize,
    pub max_concurrent_requests: u32,
}

#[derive(Debug, Clone)]
pub struct FailedAttemptsSettings {
    pub max_failures: u32,
    pub window: Duration,
    pub cooldown: Duration,
    pub ip_limit: NonZeroUsize,
}

/// What the body checks allow.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    /// Longest decompressed intake line (`rum.max_event_size`).
    pub max_event_size: usize,
    /// Largest anonymous request body as sent (`auth.anonymous.max_request_size`).
    pub max_anonymous_request_size: u64,
    /// Largest anonymous request body decompressed (`auth.anonymous.max_decompressed_size`).
    pub max_anonymous_decompressed_size: u64,
    /// Largest OTLP export read whole, as sent and decompressed (`server.max_otlp_size`).
    pub max_otlp_size: u64,
}

fn positive(problems: &mut Problems, key: &str, value: u64) {
    if value == 0 {
        problems.add(key, "must be greater than zero");
    }
}

fn nonzero(n: usize) -> NonZeroUsize {
    NonZeroUsize::new(n).unwrap_or(NonZeroUsize::MIN)
}

pub fn parse_trusted_proxies(list: &[String]) -> Result<Vec<IpNet>, Problems> {
    let mut problems = Problems::default();
    let mut nets = Vec::new();
    for (i, text) in list.iter().enumerate() {
        let text = text.trim();
        match text
            .parse::<IpNet>()
            .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        {
            Ok(net) => nets.push(net),
            Err(_) => problems.add(
                format!("client_ip.trusted_proxies[{i}]"),
                format!("{text:?} is neither a CIDR (10.0.0.0/8) nor an IP address"),
            ),
        }
    }
    problems.finish(|| nets)
}

/// The headers a RUM preflight allows: `rum.allow_headers`, and `Authorization` when JWT
/// issuers are configured (a logged-in user's browser sends its token).
fn cors_headers(file: &ConfigFile) -> Vec<String> {
    let mut headers = file.rum.allow_headers.clone();
    let listed = headers
        .iter()
        .any(|h| h.eq_ignore_ascii_case("authorization"));
    if !file.auth.jwt.is_empty() && !listed {
        headers.push("Authorization".into());
    }
    headers
}

impl TryFrom<&ConfigFile> for AdmissionSettings {
    type Error = Problems;

    fn try_from(file: &ConfigFile) -> Result<AdmissionSettings, Problems> {
        let mut problems = Problems::default();
        let max_header_size = file.server.max_header_size;
        if max_header_size == 0 || max_header_size > PINGORA_MAX_HEADER_SIZE {
            problems.add(
                "server.max_header_size",
                format!("must be between 1 and {PINGORA_MAX_HEADER_SIZE} bytes"),
            );
        }
        let trusted = problems.take(parse_trusted_proxies(&file.client_ip.trusted_proxies));
        for (i, h) in file.rum.allow_headers.iter().enumerate() {
            if http::HeaderName::from_bytes(h.as_bytes()).is_err() {
                problems.add(
                    format!("rum.allow_headers[{i}]"),
                    format!("{h:?} is not a valid header name"),
                );
            }
        }
        let a = &file.auth.anonymous;
        for (i, path) in a.allow_endpoints.iter().enumerate() {
            let key = format!("auth.anonymous.allow_endpoints[{i}]");
            match classify(path) {
                Endpoint::Protected { kind, .. } if kind.anonymous_checkable() => {}
                Endpoint::Protected { .. } => problems.add(
                    key,
                    format!(
                        "{path:?}: the proxy cannot check anonymous requests to it against \
                         allow_agent/allow_service (it reads ndjson intake, OTLP/HTTP and \
                         agent-config queries)"
                    ),
                ),
                _ => problems.add(key, format!("{path:?} is not an APM Server agent endpoint")),
            }
        }
        let f = &file.auth.failed_attempts;
        for (key, value) in [
            (
                "auth.anonymous.rate_limit.event_limit",
                u64::from(a.rate_limit.event_limit),
            ),
            (
                "auth.anonymous.rate_limit.ip_limit",
                a.rate_limit.ip_limit as u64,
            ),
            (
                "auth.anonymous.max_concurrent_requests",
                u64::from(a.max_concurrent_requests),
            ),
            ("auth.anonymous.max_request_size", a.max_request_size),
            (
                "auth.anonymous.max_decompressed_size",
                a.max_decompressed_size,
            ),
            ("rum.max_event_size", file.rum.max_event_size as u64),
            ("server.max_otlp_size", file.server.max_otlp_size),
            (
                "auth.failed_attempts.max_failures",
                u64::from(f.max_failures),
            ),
            ("auth.failed_attempts.ip_limit", f.ip_limit as u64),
        ] {
            positive(&mut problems, key, value);
        }
        if a.rate_limit.event_limit > 1_000_000 {
            problems.add(
                "auth.anonymous.rate_limit.event_limit",
                "must be at most 1000000 events per second",
            );
        }
        let anonymous = file.anonymous_enabled().then(|| AnonymousSettings {
            policy: AnonymousPolicy::new(&a.allow_endpoints, &a.allow_agent, &a.allow_service),
            event_limit: a.rate_limit.event_limit,
            ip_limit: nonzero(a.rate_limit.ip_limit),
            max_concurrent_requests: a.max_concurrent_requests,
        });
        let failed_attempts = f.enabled.then(|| FailedAttemptsSettings {
            max_failures: f.max_failures,
            window: f.window.0,
            cooldown: f.cooldown.0,
            ip_limit: nonzero(f.ip_limit),
        });
        let Some(trusted) = trusted else {
            return Err(problems);
        };
        problems.finish(|| AdmissionSettings {
            max_header_size,
            client_ip: ClientIpPolicy::new(trusted),
            cors: CorsPolicy::new(file.rum.allow_origins.clone(), &cors_headers(file)),
            anonymous,
            failed_attempts,
            body: BodyLimits {
                max_event_size: file.rum.max_event_size,
                max_anonymous_request_size: a.max_request_size,
                max_anonymous_decompressed_size: a.max_decompressed_size,
                max_otlp_size: file.server.max_otlp_size,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(text: &str) -> Result<AdmissionSettings, String> {
        AdmissionSettings::try_from(&ConfigFile::parse(text).unwrap()).map_err(|e| e.to_string())
    }

    #[test]
    fn every_problem_names_its_key_at_once() {
        let err = settings(
            "[server]\nmax_header_size = 2000000\n\
             [client_ip]\ntrusted_proxies = [\"10.0.0.0/33\"]\n\
             [auth.anonymous]\nallow_endpoints = [\"/assets/v1/sourcemaps\", \"/nope\"]\nmax_concurrent_requests = 0\n",
        )
        .unwrap_err();
        let keys: Vec<&str> = err.lines().map(|l| l.split(':').next().unwrap()).collect();
        assert_eq!(
            keys,
            [
                "server.max_header_size",
                "client_ip.trusted_proxies[0]",
                "auth.anonymous.allow_endpoints[0]",
                "auth.anonymous.allow_endpoints[1]",
                "auth.anonymous.max_concurrent_requests",
            ],
            "{err}"
        );
    }

    #[test]
    fn anonymous_follows_rum_unless_set() {
        assert!(settings("").unwrap().anonymous.is_none());
        assert!(settings("[rum]\nenabled = true")
            .unwrap()
            .anonymous
            .is_some());
        assert!(settings("[auth.anonymous]\nenabled = true")
            .unwrap()
            .anonymous
            .is_some());
        let forced = settings("[auth.anonymous]\nenabled = false\n[rum]\nenabled = true\n");
        assert!(forced.unwrap().anonymous.is_none());
    }

    #[test]
    fn trusted_proxies_accept_ips_and_cidrs() {
        let nets = parse_trusted_proxies(&["10.0.0.0/8".into(), "::1".into()]).unwrap();
        assert_eq!(nets.len(), 2);
        assert!(nets[1].contains(&"::1".parse::<IpAddr>().unwrap()));
    }
}
