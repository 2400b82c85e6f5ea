//! Prometheus metrics, prefix `apm_auth_proxy_`, in a registry of the proxy's own, made once
//! by `server` and handed to what records into it (no global). Requests
//! are recorded once each, from the access-log hook; reloads and TLS handshake failures where
//! they happen; gauges that describe the present (connections, certificate expiry) are set
//! when `/metrics` is scraped, so they cost nothing per request.

use std::time::Duration;

use prometheus::core::Collector;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// How a request ended, as the metrics and the ECS log (`event.outcome`) count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Forwarded and answered by the upstream.
    Forwarded,
    /// Answered by the proxy itself (a `Rejection` from the request).
    Rejected,
    /// The upstream could not be reached or failed mid-way.
    UpstreamError,
}

impl Outcome {
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Forwarded => "forwarded",
            Outcome::Rejected => "rejected",
            Outcome::UpstreamError => "upstream_error",
        }
    }
}

/// One finished request.
pub struct RequestRecord<'a> {
    /// The endpoint's path for APM endpoints, `other` for anything else.
    pub endpoint: &'static str,
    pub status: u16,
    pub outcome: Outcome,
    /// The rejection's label, `""` when forwarded.
    pub reason: &'static str,
    /// The limit that refused it (`limited_total`'s label), if a limit did.
    pub limit: Option<&'static str>,
    /// `token`, `api_key`, `client_cert`, `anonymous` or `none`.
    pub auth_method: &'static str,
    pub duration: Duration,
    /// The upstream pool chosen for it.
    pub pool: &'a str,
    /// The time from its head sent upstream to the end of the upstream's answer; `None`
    /// when it was not sent.
    pub upstream_duration: Option<Duration>,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// Every value of `limited_total`'s `limit` label, present from the start at 0.
pub const LIMITS: [&str; 7] = [
    "rate",
    "credential_rate",
    "concurrency",
    "failed_auth",
    "connections",
    "connections_per_ip",
    "header_timeout",
];

/// What `reloads_total` counts (its `file` label), each present from the start at 0.
pub const RELOADED: [&str; 2] = ["certificates", "credentials"];

/// Every value of `upstream_errors_total`'s `reason` label (the rejections' labels), present
/// at 0 for each pool from the start.
pub const UPSTREAM_ERRORS: [&str; 4] = [
    "upstream_unreachable",
    "upstream_closed",
    "upstream_timeout",
    "no_healthy_upstream",
];

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    authentications: IntCounterVec,
    limited: IntCounterVec,
    request_duration: HistogramVec,
    upstream_duration: HistogramVec,
    bytes_in: IntCounter,
    bytes_out: IntCounter,
    reloads: IntCounterVec,
    upstream_requests: IntCounterVec,
    upstream_errors: IntCounterVec,
    jwks_fetches: IntCounterVec,
    jwks_keys: IntGaugeVec,
    /// Set at scrape time: 1 for a member taking requests, 0 for one that is not.
    upstream_member_up: IntGaugeVec,
    tls_handshake_failures: IntCounter,
    /// Set at scrape time.
    pub client_connections: IntGauge,
    certificate_not_after: IntGaugeVec,
    pub in_flight: IntGauge,
}

/// From 100 µs (a refusal takes 40–300 µs) to a minute (a long agent stream).
const DURATION_BUCKETS: [f64; 18] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0,
];

/// The source revision the binary was built from (`build.rs`), `unknown` outside a checkout.
const REVISION: &str = match option_env!("APM_AUTH_PROXY_REVISION") {
    Some(r) => r,
    None => "unknown",
};

fn name(short: &str) -> String {
    format!("apm_auth_proxy_{short}")
}

impl Metrics {
    pub fn new() -> prometheus::Result<Metrics> {
        let registry = Registry::new();
        // CPU, resident memory, open descriptors and their limit, start time (Linux).
        #[cfg(target_os = "linux")]
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        let counter_vec = |short: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name(short), help), labels)?;
            registry.register(Box::new(c.clone()))?;
            Ok::<_, prometheus::Error>(c)
        };
        let counter = |short: &str, help: &str| {
            let c = IntCounter::new(name(short), help)?;
            registry.register(Box::new(c.clone()))?;
            Ok::<_, prometheus::Error>(c)
        };
        let gauge = |short: &str, help: &str| {
            let g = IntGauge::new(name(short), help)?;
            registry.register(Box::new(g.clone()))?;
            Ok::<_, prometheus::Error>(g)
        };
        let gauge_vec = |short: &str, help: &str, labels: &[&str]| {
            let g = IntGaugeVec::new(Opts::new(name(short), help), labels)?;
            registry.register(Box::new(g.clone()))?;
            Ok::<_, prometheus::Error>(g)
        };
        let histogram_vec = |short: &str, help: &str, labels: &[&str]| {
            let h = HistogramVec::new(
                HistogramOpts::new(name(short), help).buckets(DURATION_BUCKETS.to_vec()),
                labels,
            )?;
            registry.register(Box::new(h.clone()))?;
            Ok::<_, prometheus::Error>(h)
        };
        let limited = counter_vec(
            "limited_total",
            "Requests or connections refused by a limit: rate, credential_rate, concurrency, failed-authentication throttling, connections (total or per IP), a request head not complete within header_timeout.",
            &["limit"],
        )?;
        for limit in LIMITS {
            limited.with_label_values(&[limit]);
        }
        let reloads = counter_vec(
            "reloads_total",
            "Reloads of the certificates or the credentials (keys file, secret files) by result.",
            &["file", "result"],
        )?;
        for file in RELOADED {
            for result in ["success", "failure"] {
                reloads.with_label_values(&[file, result]);
            }
        }
        let build_info = gauge_vec(
            "build_info",
            "Always 1; the version and source revision in labels.",
            &["version", "revision"],
        )?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION"), REVISION])
            .set(1);
        Ok(Metrics {
            requests: counter_vec(
                "requests_total",
                "Requests by endpoint, status, outcome and rejection reason.",
                &["endpoint", "status", "outcome", "reason"],
            )?,
            authentications: counter_vec(
                "authentications_total",
                "Authenticated requests by method (per credential: the admin listener's /usage).",
                &["method"],
            )?,
            limited,
            request_duration: histogram_vec(
                "request_duration_seconds",
                "Time from the request head to the end of the response, by endpoint and outcome.",
                &["endpoint", "outcome"],
            )?,
            upstream_duration: histogram_vec(
                "upstream_duration_seconds",
                "Time from the request head sent upstream to the end of the upstream's answer, by pool.",
                &["pool"],
            )?,
            bytes_in: counter("request_bytes_total", "Request body bytes read from clients.")?,
            bytes_out: counter("response_bytes_total", "Response body bytes sent to clients.")?,
            reloads,
            upstream_requests: counter_vec(
                "upstream_requests_total",
                "Requests sent to each upstream member, by pool (members gone from the pool are removed).",
                &["pool", "member"],
            )?,
            upstream_errors: counter_vec(
                "upstream_errors_total",
                "Requests the upstream failed, by pool and reason: unreachable, closed the connection, timed out, no member answering.",
                &["pool", "reason"],
            )?,
            jwks_fetches: counter_vec(
                "jwks_fetches_total",
                "Fetches of a JWT issuer's keys, by issuer and result (a failure keeps the last good set).",
                &["issuer", "result"],
            )?,
            jwks_keys: gauge_vec(
                "jwks_keys",
                "Usable signing keys of each JWT issuer, as last fetched.",
                &["issuer"],
            )?,
            upstream_member_up: gauge_vec(
                "upstream_member_up",
                "1 while an upstream member takes requests (healthy, not ejected).",
                &["pool", "member"],
            )?,
            tls_handshake_failures: counter(
                "tls_handshake_failures_total",
                "Failed TLS handshakes (untrusted certificate, old protocol, scans).",
            )?,
            client_connections: gauge(
                "client_connections",
                "Open client connections on the agents' listener (each counted from accept to close).",
            )?,
            certificate_not_after: gauge_vec(
                "certificate_not_after_timestamp_seconds",
                "Unix time at which each served certificate expires, by the server name it serves (`default`: the certificate for any other name).",
                &["server_name"],
            )?,
            in_flight: gauge("requests_in_flight", "Requests being served.")?,
            registry,
        })
    }

    pub fn record(&self, r: &RequestRecord<'_>) {
        // `http`'s own text for a status (no allocation); "0" when there was none.
        let code = http::StatusCode::from_u16(r.status).ok();
        let status = code.as_ref().map_or("0", http::StatusCode::as_str);
        let outcome = r.outcome.label();
        self.requests
            .with_label_values(&[r.endpoint, status, outcome, r.reason])
            .inc();
        if r.auth_method != "none" {
            self.authentications
                .with_label_values(&[r.auth_method])
                .inc();
        }
        if let Some(limit) = r.limit {
            self.limited.with_label_values(&[limit]).inc();
        }
        self.request_duration
            .with_label_values(&[r.endpoint, outcome])
            .observe(r.duration.as_secs_f64());
        if let Some(took) = r.upstream_duration {
            self.upstream_duration
                .with_label_values(&[r.pool])
                .observe(took.as_secs_f64());
        }
        if r.outcome == Outcome::UpstreamError {
            self.upstream_errors
                .with_label_values(&[r.pool, r.reason])
                .inc();
        }
        self.bytes_in.inc_by(r.bytes_in);
        self.bytes_out.inc_by(r.bytes_out);
    }

    /// The JWT issuers there are: their fetch counters start at 0.
    pub fn init_issuers<'a>(&self, issuers: impl IntoIterator<Item = &'a str>) {
        for issuer in issuers {
            for result in ["success", "failure"] {
                self.jwks_fetches.with_label_values(&[issuer, result]);
            }
            self.jwks_keys.with_label_values(&[issuer]).set(0);
        }
    }

    /// A fetch of `issuer`'s keys, and how many usable keys it gave.
    pub fn jwks_fetched(&self, issuer: &str, ok: bool, keys: usize) {
        let result = if ok { "success" } else { "failure" };
        self.jwks_fetches.with_label_values(&[issuer, result]).inc();
        if ok {
            self.jwks_keys
                .with_label_values(&[issuer])
                .set(i64::try_from(keys).unwrap_or(i64::MAX));
        }
    }

    /// The pools there are: their error counters start at 0.
    pub fn init_pools<'a>(&self, pools: impl IntoIterator<Item = &'a str>) {
        for pool in pools {
            for reason in UPSTREAM_ERRORS {
                self.upstream_errors.with_label_values(&[pool, reason]);
            }
        }
    }

    pub fn upstream_request(&self, pool: &str, member: std::net::SocketAddr) {
        self.upstream_requests
            .with_label_values(&[pool, &member.to_string()])
            .inc();
    }

    /// The upstream members as they are now, `(pool, member, up)`: the up gauge set for each,
    /// and the series of members no longer in any pool (DNS dropped them) removed.
    pub fn set_upstream_members<'a>(
        &self,
        members: impl IntoIterator<Item = (&'a str, String, bool)>,
    ) {
        self.upstream_member_up.reset();
        let mut present = std::collections::HashSet::new();
        for (pool, member, up) in members {
            self.upstream_member_up
                .with_label_values(&[pool, &member])
                .set(i64::from(up));
            present.insert((pool.to_string(), member));
        }
        for family in self.upstream_requests.collect() {
            for metric in family.get_metric() {
                let labels = metric.get_label();
                let value = |name: &str| {
                    labels
                        .iter()
                        .find(|l| l.name() == name)
                        .map_or(String::new(), |l| l.value().to_string())
                };
                let (pool, member) = (value("pool"), value("member"));
                if !present.contains(&(pool.clone(), member.clone())) {
                    let _ = self
                        .upstream_requests
                        .remove_label_values(&[&pool, &member]);
                }
            }
        }
    }

    /// The served certificates' expiry, `(server name, notAfter)`, replacing what was there.
    pub fn set_certificates(&self, served: &[(String, i64)]) {
        self.certificate_not_after.reset();
        for (name, not_after) in served {
            self.certificate_not_after
                .with_label_values(&[name])
                .set(*not_after);
        }
    }

    /// A reload of `what` (one of [`RELOADED`]) succeeded or failed.
    pub fn reload(&self, what: &str, ok: bool) {
        let result = if ok { "success" } else { "failure" };
        self.reloads.with_label_values(&[what, result]).inc();
    }

    /// A client connection closed at accept by `limit` (`connections`, `connections_per_ip`).
    pub fn connection_refused(&self, limit: &str) {
        self.limited.with_label_values(&[limit]).inc();
    }

    /// A client connection closed mid-request by `limit` (`header_timeout`).
    pub fn connection_closed(&self, limit: &str) {
        self.limited.with_label_values(&[limit]).inc();
    }

    pub fn tls_handshake_failed(&self) {
        self.tls_handshake_failures.inc();
    }

    /// Failed handshakes since start.
    pub fn tls_handshake_failures(&self) -> u64 {
        self.tls_handshake_failures.get()
    }

    /// The text exposition format.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_counted_with_its_labels() {
        let m = Metrics::new().unwrap();
        m.record(&RequestRecord {
            endpoint: "/intake/v2/events",
            status: 429,
            outcome: Outcome::Rejected,
            reason: "rate_limited",
            limit: Some("rate"),
            auth_method: "anonymous",
            duration: Duration::from_millis(3),
            pool: "default",
            upstream_duration: None,
            bytes_in: 10,
            bytes_out: 20,
        });
        let text = String::from_utf8(m.encode()).unwrap();
        assert!(text.contains(
            "apm_auth_proxy_requests_total{endpoint=\"/intake/v2/events\",outcome=\"rejected\",reason=\"rate_limited\",status=\"429\"} 1"
        ), "{text}");
        assert!(
            text.contains("apm_auth_proxy_limited_total{limit=\"rate\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("apm_auth_proxy_request_bytes_total 10"),
            "{text}"
        );
        assert!(
            text.contains("apm_auth_proxy_build_info{revision=\""),
            "{text}"
        );
    }

    #[test]
    fn every_limit_a_rejection_names_is_known_from_the_start() {
        use crate::admission::Rejection;
        let m = Metrics::new().unwrap();
        let text = String::from_utf8(m.encode()).unwrap();
        for limit in LIMITS {
            let zero = format!("apm_auth_proxy_limited_total{{limit=\"{limit}\"}} 0");
            assert!(text.contains(&zero), "{zero}: {text}");
        }
        for r in [
            Rejection::RateLimited,
            Rejection::EventRateLimited,
            Rejection::CredentialRateLimited,
            Rejection::CredentialEventRateLimited,
            Rejection::TooManyOpenRequests,
            Rejection::AuthThrottled,
        ] {
            assert!(LIMITS.contains(&r.limit().unwrap()), "{r:?}");
        }
        for r in [
            Rejection::UpstreamUnreachable,
            Rejection::UpstreamClosed,
            Rejection::UpstreamTimeout,
            Rejection::NoHealthyUpstream,
        ] {
            assert!(
                r.is_upstream_failure() && UPSTREAM_ERRORS.contains(&r.label()),
                "{r:?}"
            );
        }
    }

    #[test]
    fn members_gone_from_the_pools_lose_their_series() {
        let m = Metrics::new().unwrap();
        let a: std::net::SocketAddr = "10.0.0.1:8200".parse().unwrap();
        let b: std::net::SocketAddr = "10.0.0.2:8200".parse().unwrap();
        m.upstream_request("default", a);
        m.upstream_request("default", b);
        m.set_upstream_members([("default", b.to_string(), true)]);
        let text = String::from_utf8(m.encode()).unwrap();
        assert!(!text.contains("10.0.0.1"), "{text}");
        assert!(text.contains("apm_auth_proxy_upstream_requests_total{member=\"10.0.0.2:8200\",pool=\"default\"} 1"), "{text}");
        assert!(
            text.contains(
                "apm_auth_proxy_upstream_member_up{member=\"10.0.0.2:8200\",pool=\"default\"} 1"
            ),
            "{text}"
        );
    }
}
