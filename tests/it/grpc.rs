//! OTLP over gRPC through the proxy, with the real OpenTelemetry Python SDK (its OTLP/gRPC and
//! OTLP/HTTP exporters, and raw calls on its grpcio) against a stand-in that serves gRPC over
//! h2c and HTTP/1.1 on one port, as APM Server does. `scripts/setup.sh test` installs the
//! packages; each run is bounded in time.

use serde_json::Value;

use crate::support::*;

const TOKEN: &str = "otlp-grpc-token-7a14";
const TRACES: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
const METRICS: &str = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";
const LOGS: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";

fn call(proxy: &Proxy, auth: &str, method: &str) -> Value {
    otlp(proxy, auth, &[], &["call", method])
}

fn grpc_requests(upstream: &Upstream) -> Vec<Recorded> {
    upstream
        .requests()
        .into_iter()
        .filter(|r| {
            r.headers
                .get("content-type")
                .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
        })
        .collect()
}

/// The SDK's gRPC exporters deliver spans, metrics and logs with a token and with an API key,
/// over h2c to the upstream, without the credential; its OTLP/HTTP exporters do the same
/// over HTTP/1.1 through the same proxy.
#[test]
fn the_sdk_exports_over_grpc_and_http_with_a_token_and_an_api_key() {
    let pki = pki();
    let upstream = Upstream::start();
    let mut key = String::new();
    let proxy = Proxy::builder(&pki, &upstream.url())
        .token(TOKEN)
        .api_keys()
        .prepare(|dir| key = create_key(dir, "event:write", &[]).1)
        .start();
    let everything =
        serde_json::json!({"traces": "SUCCESS", "metrics": "SUCCESS", "logs": "SUCCESS"});
    for auth in [format!("Bearer {TOKEN}"), format!("ApiKey {key}")] {
        let before = upstream.requests().len();
        assert_eq!(
            otlp(&proxy, &auth, &[], &["sdk-grpc"]),
            everything,
            "{auth}"
        );
        let calls = upstream.requests().split_off(before);
        let paths: Vec<&str> = calls.iter().map(|r| r.uri.as_str()).collect();
        assert_eq!(paths, [TRACES, METRICS, LOGS], "{auth}");
        for (r, name) in calls.iter().zip([
            "otlp-span-checkout",
            "otlp_metric_orders",
            "otlp-log-checkout",
        ]) {
            assert!(
                r.complete && contains_text(&r.body, name),
                "{name} not in {r:?}"
            );
            assert!(r.headers.get("authorization").is_none(), "{:?}", r.headers);
            assert_eq!(r.headers["content-type"], "application/grpc");
            assert_eq!(r.scheme.as_deref(), Some("http"), "h2c to the upstream");
        }
    }
    assert!(upstream.h2_connections() >= 1);

    let before = upstream.requests().len();
    let auth = format!("Bearer {TOKEN}");
    assert_eq!(otlp(&proxy, &auth, &[], &["sdk-http"]), everything);
    let calls = upstream.requests().split_off(before);
    let paths: Vec<&str> = calls.iter().map(|r| r.uri.as_str()).collect();
    assert_eq!(paths, ["/v1/traces", "/v1/metrics", "/v1/logs"]);
    for r in &calls {
        assert_eq!(r.headers["content-type"], "application/x-protobuf");
        assert!(r.headers.get("authorization").is_none());
    }
    assert!(contains_text(&calls[0].body, "otlp-span-checkout"));
}

/// Refusals are gRPC statuses with APM Server's messages, never HTTP JSON, and nothing
/// reaches the upstream: no credential on any method, anonymous RUM access on or not, or a
/// wrong one (UNAUTHENTICATED), a key without
/// `event:write`, another method without every privilege (PERMISSION_DENIED). (Keys bound
/// to services: `otlp.rs`.)
#[test]
fn refusals_are_grpc_statuses_and_reach_nothing_upstream() {
    let pki = pki();
    let upstream = Upstream::start();
    let (mut config_key, mut event_key, mut full_key): (String, String, String) =
        Default::default();
    let proxy = Proxy::builder(&pki, &upstream.url())
        .token(TOKEN)
        .api_keys()
        // Anonymous access is for the RUM endpoints only, never for gRPC.
        .config("[rum]\nenabled = true\n")
        .prepare(|dir| {
            config_key = create_key(dir, "config_agent:read", &[]).1;
            event_key = create_key(dir, "event:write", &[]).1;
            full_key = create_key(dir, "event:write,config_agent:read,sourcemap:write", &[]).1;
        })
        .start();
    let refused = |auth: &str, method: &str, code: &str, details: &str| {
        let answer = call(&proxy, auth, method);
        assert_eq!(answer["code"], code, "{auth} {method}: {answer}");
        assert_eq!(answer["details"], details, "{auth} {method}: {answer}");
    };
    for method in [TRACES, METRICS, LOGS] {
        refused(
            "",
            method,
            "UNAUTHENTICATED",
            "authentication failed: missing or improperly formatted Authorization header: expected \
             'Authorization: Bearer secret_token' or 'Authorization: ApiKey base64(API key ID:API key)'",
        );
    }
    refused(
        "Bearer wrong",
        METRICS,
        "UNAUTHENTICATED",
        "authentication failed",
    );
    refused(
        &format!("ApiKey {config_key}"),
        LOGS,
        "PERMISSION_DENIED",
        "unauthorized: API Key not permitted action \"event:write\"",
    );
    let sampling = "/jaeger.api_v2.SamplingManager/GetSamplingStrategy";
    refused(
        &format!("ApiKey {event_key}"),
        sampling,
        "PERMISSION_DENIED",
        "unauthorized: API Key not permitted action \"config_agent:read\"",
    );
    assert!(
        grpc_requests(&upstream).is_empty(),
        "{:?}",
        upstream.requests()
    );
    // The same methods are forwarded for a credential that grants everything.
    for auth in [format!("Bearer {TOKEN}"), format!("ApiKey {full_key}")] {
        assert_eq!(call(&proxy, &auth, sampling)["code"], "OK", "{auth}");
    }
    assert_eq!(grpc_requests(&upstream).len(), 2);
}

/// The upstream's own statuses, messages and trailers reach the client unchanged; an upstream
/// that is down is UNAVAILABLE, one that is too slow DEADLINE_EXCEEDED.
#[test]
fn upstream_outcomes_are_grpc_statuses_with_trailers_kept() {
    let pki = pki();
    let mut upstream = Upstream::start();
    let proxy = Proxy::builder(&pki, &upstream.url())
        .token(TOKEN)
        .config("[upstream]\nread_timeout = \"1s\"\n")
        .start();
    let auth = format!("Bearer {TOKEN}");
    let ok = call(&proxy, &auth, TRACES);
    assert_eq!(ok["code"], "OK", "{ok}");
    assert_eq!(ok["trailers"][GRPC_TRAILER.0], GRPC_TRAILER.1, "{ok}");

    let no = otlp(&proxy, &auth, &[(GRPC_STATUS, "9")], &["call", TRACES]);
    assert_eq!(no["code"], "FAILED_PRECONDITION", "{no}");
    assert_eq!(no["details"], "upstream says no");
    assert_eq!(no["trailers"][GRPC_TRAILER.0], GRPC_TRAILER.1, "{no}");

    let slow = otlp(&proxy, &auth, &[(DELAY_MS, "3000")], &["call", TRACES]);
    assert_eq!(slow["code"], "DEADLINE_EXCEEDED", "{slow}");
    assert!(
        slow["details"]
            .as_str()
            .unwrap()
            .starts_with("gateway timeout"),
        "{slow}"
    );

    // A client-streaming call: every message reaches the upstream, in order, in one call.
    let method = "/test.Ingest/ClientStream";
    let streamed = otlp(&proxy, &auth, &[], &["stream", method, "5"]);
    assert_eq!(streamed["code"], "OK", "{streamed}");
    let r = upstream
        .requests()
        .into_iter()
        .find(|r| r.uri == method)
        .unwrap();
    let expected: Vec<u8> = (0..5)
        .flat_map(|i| {
            let m = format!("message {i}");
            let mut frame = vec![0u8];
            frame.extend_from_slice(&(m.len() as u32).to_be_bytes());
            frame.extend_from_slice(m.as_bytes());
            frame
        })
        .collect();
    assert!(r.complete && r.body == expected, "{r:?}");

    upstream.stop();
    let down = call(&proxy, &auth, TRACES);
    assert_eq!(down["code"], "UNAVAILABLE", "{down}");
}

/// Fifty calls at once share a few upstream h2c connections.
#[test]
fn concurrent_calls_share_upstream_connections() {
    let pki = pki();
    let upstream = Upstream::start();
    let proxy = Proxy::builder(&pki, &upstream.url()).token(TOKEN).start();
    let auth = format!("Bearer {TOKEN}");
    let answer = otlp(&proxy, &auth, &[(DELAY_MS, "200")], &["concurrent", "50"]);
    assert_eq!(answer["codes"], serde_json::json!({"OK": 50}), "{answer}");
    assert_eq!(grpc_requests(&upstream).len(), 51);
    let connections = upstream.h2_connections();
    assert!(
        (1..=3).contains(&connections),
        "50 calls took {connections} upstream connections"
    );
}

/// The caller's `grpc-timeout` bounds how long the proxy waits for the upstream, below
/// `upstream.read_timeout`: a call due in 300 ms to an upstream that answers in 3 s (within
/// the 5 s read timeout) is DEADLINE_EXCEEDED, from the proxy; without it, the same call is OK.
#[test]
fn the_callers_grpc_timeout_bounds_the_wait_for_the_upstream() {
    let pki = pki();
    let upstream = Upstream::start();
    let proxy = Proxy::builder(&pki, &upstream.url()).token(TOKEN).start();
    let status = |deadline: Option<&str>| {
        rt().block_on(async {
            let mut req = proxy
                .client(true)
                .post(proxy.url(TRACES))
                .header("content-type", "application/grpc")
                .header("te", "trailers")
                .header("authorization", format!("Bearer {TOKEN}"))
                .header(DELAY_MS, "3000")
                .body(vec![0u8; 5]);
            if let Some(d) = deadline {
                req = req.header("grpc-timeout", d);
            }
            let resp = req.send().await.unwrap();
            assert_eq!(resp.status(), 200);
            // A trailers-only answer has its status in the headers; an answered call (OK)
            // has it in the trailers, which reqwest does not show.
            resp.headers()
                .get("grpc-status")
                .map(|v| v.to_str().unwrap().to_string())
        })
    };
    assert_eq!(status(Some("300m")).as_deref(), Some("4"));
    assert_eq!(status(None), None, "answered by the upstream");
    assert_eq!(grpc_requests(&upstream).len(), 2);
}

/// A client that keeps presenting wrong credentials is throttled: RESOURCE_EXHAUSTED, even
/// for a right one, until its cool-down ends; nothing reaches the upstream.
#[test]
fn throttled_callers_get_resource_exhausted() {
    let pki = pki();
    let upstream = Upstream::start();
    let proxy = Proxy::builder(&pki, &upstream.url())
        .token(TOKEN)
        .config("[auth.failed_attempts]\nmax_failures = 2\n")
        .start();
    for _ in 0..2 {
        assert_eq!(
            call(&proxy, "Bearer wrong", TRACES)["code"],
            "UNAUTHENTICATED"
        );
    }
    let throttled = call(&proxy, &format!("Bearer {TOKEN}"), TRACES);
    assert_eq!(throttled["code"], "RESOURCE_EXHAUSTED", "{throttled}");
    assert_eq!(
        throttled["details"],
        "too many requests: too many failed authentication attempts"
    );
    assert!(grpc_requests(&upstream).is_empty());
}

/// Without TLS on the listener, gRPC clients speak h2c with prior knowledge: served the same
/// way, while HTTP/1.1 on the same port still works.
#[test]
fn cleartext_listeners_take_h2c_calls_and_http1() {
    let pki = pki();
    let upstream = Upstream::start();
    let proxy = Proxy::builder(&pki, &upstream.url())
        .token(TOKEN)
        .config("[ssl]\nenabled = false\n")
        .start();
    let auth = format!("Bearer {TOKEN}");
    let ok = otlp_over(&proxy, false, &auth, &[], &["call", TRACES]);
    assert_eq!(ok["code"], "OK", "{ok}");
    let refused = otlp_over(&proxy, false, "Bearer wrong", &[], &["call", TRACES]);
    assert_eq!(refused["code"], "UNAUTHENTICATED", "{refused}");
    let status = rt().block_on(async {
        reqwest::Client::new()
            .post(format!("http://127.0.0.1:{}/intake/v2/events", proxy.port))
            .header("authorization", &auth)
            .body("{\"metadata\":{}}\n")
            .send()
            .await
            .unwrap()
            .status()
    });
    assert_eq!(status, 202);
    let paths: Vec<String> = upstream.requests().into_iter().map(|r| r.uri).collect();
    assert_eq!(paths, [TRACES, "/intake/v2/events"]);
}

/// Throttled OTLP clients are told when to come back: a 429 on OTLP/HTTP carries
/// `Retry-After` (the limiter's next token, in whole seconds), a gRPC RESOURCE_EXHAUSTED a
/// `google.rpc.RetryInfo` in `grpc-status-details-bin`; an intake endpoint's 429 stays as APM
/// Server writes it (no header).
#[test]
fn throttled_otlp_clients_are_told_when_to_retry() {
    let pki = pki();
    let upstream = Upstream::start();
    let proxy = Proxy::builder(&pki, &upstream.url())
        .config(
            "[[auth.secret_tokens]]\nname = \"slow\"\nsecret = \"slow-token-7a6b5c4d\"\n\
             rate_limit = \"1 requests/s burst 1\"\n[auth.failed_attempts]\nenabled = false\n",
        )
        .start();
    let auth = "Bearer slow-token-7a6b5c4d";
    rt().block_on(async {
        let client = proxy.client(true);
        let http = |path: &'static str| {
            client
                .post(proxy.url(path))
                .header("authorization", auth)
                .header("content-type", "application/x-protobuf")
                .body(vec![0u8; 4])
                .send()
        };
        let intake = || {
            client
                .post(proxy.url("/intake/v2/events"))
                .header("authorization", auth)
                .body("{\"metadata\":{}}\n")
                .send()
        };
        let grpc = || {
            client
                .post(proxy.url(TRACES))
                .header("content-type", "application/grpc")
                .header("te", "trailers")
                .header("authorization", auth)
                .body(vec![0u8; 5])
                .send()
        };
        // Spend the one token, then three refusals in a row (bounded attempts: a second
        // passing in between would refill the bucket; then wait for it to be full again).
        let mut seen = None;
        for _ in 0..5 {
            http("/v1/traces").await.unwrap();
            let (h, i, g) = (
                http("/v1/traces").await.unwrap(),
                intake().await.unwrap(),
                grpc().await.unwrap(),
            );
            if h.status() == 429 && i.status() == 429 && g.headers().get("grpc-status").is_some() {
                seen = Some((h, i, g));
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        }
        let (h, i, g) = seen.expect("three refusals in a row within five tries");
        assert_eq!(h.headers()["retry-after"], "1");
        assert!(
            i.headers().get("retry-after").is_none(),
            "intake answers as APM Server"
        );
        assert_eq!(g.headers()["grpc-status"], "8");
        let details = g.headers()["grpc-status-details-bin"].to_str().unwrap();
        let bytes = base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD_NO_PAD,
            details.trim_end_matches('='),
        )
        .unwrap();
        assert!(
            contains_text(&bytes, "type.googleapis.com/google.rpc.RetryInfo"),
            "{bytes:?}"
        );
    });
}
