//! OTLP as a first-class intake: credentials bound to services on OTLP/gRPC and OTLP/HTTP
//! (protobuf and JSON), mixed resources refused whole, anonymous browsers over OTLP/HTTP
//! with CORS and the anonymous rules, exports larger than Pingora's 64 KiB retry buffer, and
//! exporters that retry when told. Real clients: the OpenTelemetry Python SDK
//! (`tests/agents/otlp.py`) and the OpenTelemetry JS web SDK in headless Chromium
//! (`tests/browser/otel_page.js`).

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use serde_json::json;

use crate::support::*;

const TRACES: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// A trace export with one resource per `(service, spans)`, as a browser SDK sends it.
fn export(groups: &[(&str, usize)], padding: usize) -> ExportTraceServiceRequest {
    let text = |key: &str, value: &str| KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
    };
    ExportTraceServiceRequest {
        resource_spans: groups
            .iter()
            .map(|&(service, spans)| ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![
                        text("service.name", service),
                        text("telemetry.sdk.name", "opentelemetry"),
                        text("telemetry.sdk.language", "webjs"),
                    ],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans: (0..spans)
                        .map(|i| Span {
                            name: format!("{service}-span-{i}-{}", "x".repeat(padding)),
                            trace_id: vec![7; 16],
                            span_id: vec![9; 8],
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect(),
    }
}

fn otlp_requests(upstream: &Upstream) -> Vec<Recorded> {
    let otlp = |uri: &str| uri.starts_with("/v1/") || uri.starts_with("/opentelemetry.");
    upstream
        .requests()
        .into_iter()
        .filter(|r| otlp(&r.uri))
        .collect()
}

/// A key bound to the SDK's service sends traces, metrics and logs over gRPC, OTLP/HTTP
/// protobuf and OTLP/HTTP JSON, forwarded unchanged; a key bound to another service is
/// refused on every one of them (PERMISSION_DENIED / 403 with APM Server's text) and
/// nothing reaches the APM Server.
#[test]
fn service_bound_keys_send_their_own_services_and_no_other() {
    let pki = pki();
    let upstream = Upstream::start();
    let (mut own, mut other) = (String::new(), String::new());
    let proxy = Proxy::builder(&pki, &upstream.url())
        .api_keys()
        .prepare(|dir| {
            own = create_key(dir, "event:write", &["--services", "otlp-checkout"]).1;
            other = create_key(dir, "event:write", &["--services", "billing"]).1;
        })
        .start();
    let (own, other) = (format!("ApiKey {own}"), format!("ApiKey {other}"));
    let success = json!({"traces": "SUCCESS", "metrics": "SUCCESS", "logs": "SUCCESS"});
    assert_eq!(otlp(&proxy, &own, &[], &["sdk-grpc"]), success);
    assert_eq!(otlp(&proxy, &own, &[], &["sdk-http"]), success);
    let ok = json!({"traces": 200, "metrics": 200, "logs": 200});
    assert_eq!(otlp(&proxy, &own, &[], &["http-json"]), ok);
    let forwarded = otlp_requests(&upstream);
    assert_eq!(forwarded.len(), 9, "{forwarded:?}");
    for (i, request) in forwarded.iter().enumerate() {
        assert!(request.complete, "{request:?}");
        assert!(
            contains_text(&request.body, "otlp-checkout"),
            "{i}: {request:?}"
        );
        assert!(request.headers.get("authorization").is_none());
    }
    let json_traces = &forwarded[6];
    assert_eq!(json_traces.uri, "/v1/traces");
    assert!(
        contains_text(&json_traces.body, "\"resourceSpans\""),
        "JSON forwarded as sent"
    );

    let failure = json!({"traces": "FAILURE", "metrics": "FAILURE", "logs": "FAILURE"});
    assert_eq!(otlp(&proxy, &other, &[], &["sdk-grpc"]), failure);
    assert_eq!(otlp(&proxy, &other, &[], &["sdk-http"]), failure);
    let forbidden = json!({"traces": 403, "metrics": 403, "logs": 403});
    assert_eq!(otlp(&proxy, &other, &[], &["http-json"]), forbidden);
    let env = [
        ("OTHER_SERVICE", "otlp-checkout"),
        ("SERVICE_NAME", "billing"),
    ];
    let answer = otlp_env(&proxy, &other, &env, &["mixed"]);
    assert_eq!(answer["code"], "PERMISSION_DENIED", "{answer}");
    assert_eq!(
        answer["details"], "unauthorized: API Key not permitted for service \"otlp-checkout\"",
        "the resource the key may not send names the refusal"
    );
    assert_eq!(
        otlp_requests(&upstream).len(),
        9,
        "no refused export reached the APM Server"
    );
}

/// One resource the credential may not send refuses the whole export — over gRPC, OTLP/HTTP
/// protobuf and JSON, whichever resource comes first.
#[test]
fn mixed_resources_are_refused_whole() {
    let pki = pki();
    let upstream = Upstream::start();
    let mut key = String::new();
    let proxy = Proxy::builder(&pki, &upstream.url())
        .api_keys()
        .prepare(|dir| key = create_key(dir, "event:write", &["--services", "shop"]).1)
        .start();
    let auth = format!("ApiKey {key}");
    for env in [
        [("SERVICE_NAME", "shop"), ("OTHER_SERVICE", "billing")],
        [("SERVICE_NAME", "billing"), ("OTHER_SERVICE", "shop")],
    ] {
        let answer = otlp_env(&proxy, &auth, &env, &["mixed"]);
        assert_eq!(answer["code"], "PERMISSION_DENIED", "{answer}");
        assert_eq!(
            answer["details"],
            "unauthorized: API Key not permitted for service \"billing\""
        );
    }
    let mixed = export(&[("shop", 2), ("billing", 1)], 0);
    let json_body = serde_json::to_vec(&mixed).unwrap();
    rt().block_on(async {
        let c = proxy.client(true);
        let url = proxy.url("/v1/traces");
        for (content_type, body) in [
            ("application/x-protobuf", mixed.encode_to_vec()),
            ("application/json", json_body.clone()),
        ] {
            let headers = [("authorization", auth.as_str()), ("content-type", content_type)];
            let a = post(&c, &url, &headers, body).await;
            assert_eq!(a.status, 403, "{content_type}: {}", a.body);
            assert_eq!(
                a.body,
                "{\"accepted\":0,\"errors\":[{\"message\":\"unauthorized: API Key not permitted for service \\\"billing\\\"\"}]}\n"
            );
        }
        // The same export without the other resource passes.
        let own = export(&[("shop", 2)], 0).encode_to_vec();
        let headers = [
            ("authorization", auth.as_str()),
            ("content-type", "application/x-protobuf"),
        ];
        assert_eq!(post(&c, &url, &headers, own.clone()).await.status, 200);
        let forwarded = otlp_requests(&upstream);
        assert_eq!(forwarded.len(), 1, "{forwarded:?}");
        assert_eq!(forwarded[0].body, own, "forwarded byte for byte");
    });
}

/// Exports far larger than Pingora's 64 KiB retry buffer are read whole and replayed
/// upstream byte for byte, over HTTP/1.1, HTTP/2 and gRPC, gzip-compressed too; beyond
/// `server.max_otlp_size` they are refused (413, RESOURCE_EXHAUSTED) and never forwarded.
#[test]
fn large_exports_are_read_whole_and_forwarded_unchanged() {
    let pki = pki();
    let upstream = Upstream::start();
    let mut key = String::new();
    let proxy = Proxy::builder(&pki, &upstream.url())
        .api_keys()
        .config("[server]\nmax_otlp_size = 1048576\n")
        .prepare(|dir| key = create_key(dir, "event:write", &["--services", "shop"]).1)
        .start();
    let auth = format!("ApiKey {key}");
    // ≈ 600 KB: 2,000 spans with 300-byte names.
    let big = export(&[("shop", 2000)], 260).encode_to_vec();
    assert!(
        big.len() > 500_000 && big.len() < 1_048_576,
        "{}",
        big.len()
    );
    let gzipped = {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(&big).unwrap();
        e.finish().unwrap()
    };
    let too_big = export(&[("shop", 4000)], 260).encode_to_vec();
    assert!(too_big.len() > 1_048_576);
    let mut grpc_frame = vec![0u8];
    grpc_frame.extend_from_slice(&(big.len() as u32).to_be_bytes());
    grpc_frame.extend_from_slice(&big);
    rt().block_on(async {
        for h2 in [false, true] {
            let c = proxy.client(h2);
            let url = proxy.url("/v1/traces");
            let proto = [
                ("authorization", auth.as_str()),
                ("content-type", "application/x-protobuf"),
            ];
            let a = post(&c, &url, &proto, big.clone()).await;
            assert_eq!(a.status, 200, "h2 {h2}: {}", a.body);
            let gzip = [
                ("authorization", auth.as_str()),
                ("content-type", "application/x-protobuf"),
                ("content-encoding", "gzip"),
            ];
            let a = post(&c, &url, &gzip, gzipped.clone()).await;
            assert_eq!(a.status, 200, "h2 {h2} gzip: {}", a.body);
            let a = post(&c, &url, &proto, too_big.clone()).await;
            assert_eq!(a.status, 413, "h2 {h2}: {}", a.body);
        }
        let c = proxy.client(true);
        let grpc = [
            ("authorization", auth.as_str()),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
        ];
        let a = post(&c, &proxy.url(TRACES), &grpc, grpc_frame.clone()).await;
        assert_eq!(a.status, 200);
        assert_eq!(a.body, "\0\0\0\0\0", "the stand-in's empty answer message");
    });
    let forwarded = otlp_requests(&upstream);
    assert_eq!(forwarded.len(), 5, "{forwarded:?}");
    for request in &forwarded[..4] {
        let expected = match request.headers.get("content-encoding") {
            Some(_) => &gzipped,
            None => &big,
        };
        assert_eq!(request.body.len(), expected.len());
        assert!(request.body == *expected, "forwarded byte for byte");
    }
    assert_eq!(forwarded[4].uri, TRACES);
    assert!(
        forwarded[4].body == grpc_frame,
        "the gRPC message byte for byte"
    );
}

/// The RUM settings for browsers over OTLP/HTTP: anonymous on `/v1/traces` for the OTel JS
/// web SDK's agent name and one service, from one origin, with a small event limit.
pub(crate) const BROWSER_OTLP: &str = r#"
[rum]
enabled = true
allow_origins = ["http://127.0.0.1:*"]
[auth]
secret_token = "otlp-browser-token-51e0"
[auth.anonymous]
allow_endpoints = ["/v1/traces", "/intake/v2/rum/events"]
allow_agent = ["opentelemetry/webjs", "rum-js"]
allow_service = ["storefront"]
max_request_size = 65536
[auth.anonymous.rate_limit]
event_limit = 10
"#;

/// Browsers over OTLP/HTTP: the preflight is answered by the proxy, an allowed page's spans
/// are forwarded with `Access-Control-Allow-Origin`; another service, another agent, another
/// origin, a body over the anonymous size limit and spans beyond the per-IP event limit are
/// refused before anything is forwarded; an SDK that sends no `Origin` is served as before.
#[test]
fn anonymous_browsers_send_otlp_under_the_anonymous_rules() {
    let pki = pki();
    let upstream = Upstream::start();
    let proxy = Proxy::builder(&pki, &upstream.url())
        .config(BROWSER_OTLP)
        .start();
    let origin = "http://127.0.0.1:8080";
    let url = proxy.url("/v1/traces");
    rt().block_on(async {
        let c = proxy.client(true);
        let preflight = preflight(&c, &url, origin, "content-type").await;
        assert_eq!(preflight.status, 200);
        let h = &preflight.headers;
        assert_eq!(h["access-control-allow-origin"], origin);
        assert!(h["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("POST"));
        assert!(h["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .contains("Content-Type"));

        let json_type = ("content-type", "application/json");
        let page = [("origin", origin), json_type];
        let body = |groups: &[(&str, usize)]| serde_json::to_vec(&export(groups, 0)).unwrap();
        let a = post(&c, &url, &page, body(&[("storefront", 3)])).await;
        assert_eq!(a.status, 200, "{}", a.body);
        assert_eq!(a.headers["access-control-allow-origin"], origin);

        // Another service, even next to an allowed one.
        let a = post(&c, &url, &page, body(&[("storefront", 1), ("admin", 1)])).await;
        assert_eq!(a.status, 403, "{}", a.body);
        assert!(
            a.body
                .contains("anonymous access not permitted for service \\\"admin\\\""),
            "{}",
            a.body
        );
        assert_eq!(
            a.headers["access-control-allow-origin"], origin,
            "errors carry CORS too"
        );
        // Another agent: a Python SDK's export sent anonymously.
        let python = serde_json::to_vec(&json!({"resourceSpans": [{"resource": {"attributes": [
            {"key": "service.name", "value": {"stringValue": "storefront"}},
            {"key": "telemetry.sdk.language", "value": {"stringValue": "python"}},
            {"key": "telemetry.sdk.name", "value": {"stringValue": "opentelemetry"}}]},
            "scopeSpans": [{"spans": [{}]}]}]}))
        .unwrap();
        let a = post(&c, &url, &page, python).await;
        assert_eq!(a.status, 403);
        assert!(
            a.body
                .contains("not permitted for agent \\\"opentelemetry/python\\\""),
            "{}",
            a.body
        );
        // Another origin.
        let elsewhere = [("origin", "https://evil.example"), json_type];
        let a = post(&c, &url, &elsewhere, body(&[("storefront", 1)])).await;
        assert_eq!(a.status, 403, "{}", a.body);
        // Over the anonymous size limit (64 KiB).
        let a = post(&c, &url, &page, vec![b' '; 70_000]).await;
        assert_eq!(a.status, 413, "{}", a.body);
        // Anonymous OTLP is for OTLP/HTTP only: not for other endpoints, not for gRPC.
        let a = post(&c, &proxy.url("/v1/logs"), &page, b"{}".to_vec()).await;
        assert_eq!(a.status, 401, "{}", a.body);

        // The per-IP event limit (10/s, burst 30): 3 spans spent; 40 more are refused
        // with a Retry-After, as the OTLP specification asks.
        let a = post(&c, &url, &page, body(&[("storefront", 40)])).await;
        assert_eq!(a.status, 429, "{}", a.body);
        let retry: u64 = a.headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=5).contains(&retry), "{retry}");

        // An SDK outside a browser sends no Origin: CORS does not apply to it.
        let token = "Bearer otlp-browser-token-51e0";
        let server = [("authorization", token), json_type];
        let a = post(&c, &url, &server, body(&[("anything", 2)])).await;
        assert_eq!(a.status, 200, "{}", a.body);
        assert!(a.headers.get("access-control-allow-origin").is_none());
    });
    let forwarded = otlp_requests(&upstream);
    assert_eq!(forwarded.len(), 2, "{forwarded:?}");
    assert!(contains_text(&forwarded[0].body, "storefront-span-2"));
    assert!(contains_text(&forwarded[1].body, "anything"));
}

/// The OpenTelemetry JS web SDK in headless Chromium, anonymously: the preflight is answered,
/// the span arrives upstream as the SDK sent it; the same page with a service the operator
/// did not allow is refused (403, readable by the page) and nothing is forwarded.
#[test]
fn the_opentelemetry_web_sdk_in_chromium_sends_spans_anonymously() {
    let pki = pki();
    let upstream = Upstream::start();
    let proxy = Proxy::builder(&pki, &upstream.url())
        .config(BROWSER_OTLP)
        .start();
    let result = crate::agents::otel_page(&proxy, &pki, "storefront");
    assert_eq!(result["preflight"], 200, "{result}");
    assert_eq!(result["export"], 200, "{result}\n{}", proxy.log_text());
    let forwarded = otlp_requests(&upstream);
    assert_eq!(forwarded.len(), 1, "{forwarded:?}");
    let body = String::from_utf8_lossy(&forwarded[0].body);
    for expected in ["browser-otlp-span", "storefront", "\"webjs\""] {
        assert!(body.contains(expected), "{expected} in {body}");
    }
    assert!(forwarded[0].headers.get("origin").is_some());

    let refused = crate::agents::otel_page(&proxy, &pki, "admin-console");
    assert_eq!(refused["preflight"], 200, "{refused}");
    assert_eq!(refused["export"], 403, "{refused}");
    assert_eq!(
        otlp_requests(&upstream).len(),
        1,
        "nothing more was forwarded"
    );
}

/// Throttled exporters come back when told and their data arrives: the failed-attempts
/// cool-down (5 s) answers a valid credential 429 / RESOURCE_EXHAUSTED with the time left;
/// the Python SDK's OTLP/HTTP and gRPC exporters each wait that long (their own backoff
/// would retry after about 1 s and 3 s, and be refused again) — one refusal each, then
/// everything is delivered.
#[test]
fn throttled_exporters_retry_after_the_advertised_delay() {
    let pki = pki();
    let upstream = Upstream::start();
    let proxy = Proxy::builder(&pki, &upstream.url())
        .token("otlp-throttled-token-3c9d")
        .config("[auth.failed_attempts]\nmax_failures = 1\nwindow = \"60s\"\ncooldown = \"5s\"\n")
        .start();
    let auth = "Bearer otlp-throttled-token-3c9d";
    let env = [("EXPORT_TIMEOUT", "30"), ("SIGNALS", "traces")];
    let success = json!({"traces": "SUCCESS"});
    let mut before = 0.0;
    for mode in ["sdk-http", "sdk-grpc"] {
        // One wrong credential from this IP starts a 5 s cool-down.
        let wrong = rt().block_on(async {
            let c = proxy.client(false);
            let headers = [("authorization", "Bearer wrong-token")];
            post(&c, &proxy.url("/intake/v2/events"), &headers, "{}").await
        });
        assert_eq!(wrong.status, 401);
        assert_eq!(otlp_env(&proxy, auth, &env, &[mode]), success, "{mode}");
        // Counted once the answer is sent: wait for the first, then check there was one.
        let after = rt().block_on(async {
            let deadline = std::time::Instant::now() + PATIENCE;
            loop {
                let now = throttled(&proxy).await;
                if now > before || std::time::Instant::now() > deadline {
                    return now;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        });
        assert_eq!(
            after - before,
            1.0,
            "{mode}: one refusal, then the retry after the delay"
        );
        before = after;
    }
    let forwarded = otlp_requests(&upstream);
    assert_eq!(forwarded.len(), 2, "{forwarded:?}");
    assert!(forwarded
        .iter()
        .all(|r| contains_text(&r.body, "otlp-span-checkout")));
}

/// Requests the failed-attempts cool-down refused so far.
async fn throttled(proxy: &Proxy) -> f64 {
    let all = metric_samples(proxy).await;
    all.iter()
        .filter(|(k, _)| {
            k.starts_with("apm_auth_proxy_requests_total")
                && k.contains("reason=\"auth_throttled\"")
        })
        .map(|(_, v)| v)
        .sum()
}
