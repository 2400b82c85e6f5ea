//! Prometheus metrics, prefix `apm_auth_proxy_`, in a registry of the proxy's own, made once
//! by `server` and handed to what records into it (no global). Requests
//! are recorded once each, from the access-log hook; reloads and TLS handshake failures where
//! they happen; gauges that describe the present (connections, certificate expiry) are set
//! when `/metrics` is scraped, so they cost nothing per request.

use std::time::Duration;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
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
    /// The credential's name or key id (never a secret); `-` when none.
    pub credential: &'a str,
    pub duration: Duration,
    /// From the request head sent upstream to the response head received.
    pub upstream_duration: Option<Duration>,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    authentications: IntCounterVec,
    limited: IntCounterVec,
    request_duration: HistogramVec,
    upstream_duration: Histogram,
    bytes_in: IntCounter,
    bytes_out: IntCounter,
    reloads: IntCounterVec,
    upstream_requests: IntCounterVec,
    /// Set at scrape time: 1 for a member taking requests, 0 for one that is not.
    pub upstream_member_up: IntGaugeVec,
    tls_handshake_failures: IntCounter,
    /// Set at scrape time.
    pub client_connections: IntGauge,
    pub certificate_expiry_seconds: IntGauge,
    pub in_flight: IntGauge,
}

const DURATION_BUCKETS: [f64; 14] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

fn name(short: &str) -> String {
    format!("apm_auth_proxy_{short}")
}

impl Metrics {
    pub fn new() -> prometheus::Result<Metrics> {
        let registry = Registry::new();
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
        let requests = counter_vec(
            "requests_total",
            "Requests by endpoint, status, outcome and rejection reason.",
            &["endpoint", "status", "outcome", "reason"],
        )?;
        let authentications = counter_vec(
            "authentications_total",
            "Authenticated requests by method and credential name (never a secret).",
            &["method", "credential"],
        )?;
        let limited = counter_vec(
            "limited_total",
            "Requests or connections refused by a limit: rate, credential_rate, concurrency, failed-authentication throttling, connections (total or per IP), a request head not complete within header_timeout.",
            &["limit"],
        )?;
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                name("request_duration_seconds"),
                "Time from the request head to the end of the response.",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
            &["endpoint"],
        )?;
        registry.register(Box::new(request_duration.clone()))?;
        let upstream_duration = Histogram::with_opts(
            HistogramOpts::new(
                name("upstream_duration_seconds"),
                "Time from the request head sent upstream to the response head received.",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
        )?;
        registry.register(Box::new(upstream_duration.clone()))?;
        let build_info = IntGaugeVec::new(
            Opts::new(name("build_info"), "Always 1; the version in a label."),
            &["version"],
        )?;
        registry.register(Box::new(build_info.clone()))?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        Ok(Metrics {
            requests,
            authentications,
            limited,
            request_duration,
            upstream_duration,
            bytes_in: counter("request_bytes_total", "Request body bytes read from clients.")?,
            bytes_out: counter("response_bytes_total", "Response body bytes sent to clients.")?,
            reloads: counter_vec(
                "reloads_total",
                "Reloads of watched files (certificates, keys file, secret files) by file and result.",
                &["file", "result"],
            )?,
            upstream_requests: counter_vec(
                "upstream_requests_total",
                "Requests sent to each upstream member, by pool.",
                &["pool", "member"],
            )?,
            upstream_member_up: {
                let g = IntGaugeVec::new(
                    Opts::new(name("upstream_member_up"), "1 while an upstream member takes requests (healthy, not ejected)."),
                    &["pool", "member"],
                )?;
                registry.register(Box::new(g.clone()))?;
                g
            },
            tls_handshake_failures: counter(
                "tls_handshake_failures_total",
                "Failed TLS handshakes (untrusted certificate, old protocol, scans).",
            )?,
            client_connections: gauge(
                "client_connections",
                "Open client connections on the agents' listener (each counted from accept to close).",
            )?,
            certificate_expiry_seconds: gauge(
                "certificate_expiry_seconds",
                "Seconds until the earliest served certificate expires.",
            )?,
            in_flight: gauge("requests_in_flight", "Requests being served.")?,
            registry,
        })
    }

    pub fn record(&self, r: &RequestRecord<'_>) {
        // `http`'s own text for a status (no allocation); "0" when there was none.
        let code = http::StatusCode::from_u16(r.status).ok();
        let status = code.as_ref().map_or("0", http::StatusCode::as_str);
        self.requests
            .with_label_values(&[r.endpoint, status, r.outcome.label(), r.reason])
            .inc();
        if r.auth_method != "none" {
            self.authentications
                .with_label_values(&[r.auth_method, r.credential])
                .inc();
        }
        if let Some(limit) = r.limit {
            self.limited.with_label_values(&[limit]).inc();
        }
        self.request_duration
            .with_label_values(&[r.endpoint])
            .observe(r.duration.as_secs_f64());
        if let Some(d) = r.upstream_duration {
            self.upstream_duration.observe(d.as_secs_f64());
        }
        self.bytes_in.inc_by(r.bytes_in);
        self.bytes_out.inc_by(r.bytes_out);
    }

    pub fn upstream_request(&self, pool: &str, member: std::net::SocketAddr) {
        self.upstream_requests
            .with_label_values(&[pool, &member.to_string()])
            .inc();
    }

    /// A reload of `file` (a path, or `credentials`) succeeded or failed.
    pub fn reload(&self, file: &str, ok: bool) {
        let result = if ok { "success" } else { "failure" };
        self.reloads.with_label_values(&[file, result]).inc();
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
            credential: "-",
            duration: Duration::from_millis(3),
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
            text.contains("apm_auth_proxy_build_info{version=\""),
            "{text}"
        );
    }
}
