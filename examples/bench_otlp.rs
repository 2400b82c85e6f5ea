//! What reading an OTLP export costs the proxy, for `bench/otlp.sh`, in a tight loop on one
//! core: the proxy's field walker (`intake::otlp::read_body`) on a trace export in protobuf
//! and in JSON, against a full decode of the same bytes by the OpenTelemetry protos' own
//! types (prost for protobuf, serde for JSON) — the two ways issue 25 asked to weigh.
//! Prints `<name>_ns` lines (nanoseconds per export) and the export's size.
//! `bench_otlp --write <file>` instead writes the protobuf export, for the end-to-end run.

use std::hint::black_box;
use std::time::Instant;

use apm_auth_proxy::intake::otlp::{read_body, Carrier, Compression, Signal};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;

/// An SDK's batch: one resource, 100 server spans with the attributes HTTP instrumentation
/// sets (≈ 30 KB in protobuf).
fn export() -> ExportTraceServiceRequest {
    let kv = |key: &str, value: any_value::Value| KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
    };
    let text = |key: &str, value: &str| kv(key, any_value::Value::StringValue(value.into()));
    let resource = Resource {
        attributes: vec![
            text("service.name", "checkout"),
            text("service.version", "1.4.2"),
            text("deployment.environment", "production"),
            text("telemetry.sdk.name", "opentelemetry"),
            text("telemetry.sdk.language", "python"),
            text("telemetry.sdk.version", "1.27.0"),
            text("host.name", "checkout-7d9f8c6b5-x2x4k"),
            kv("process.pid", any_value::Value::IntValue(4242)),
        ],
        ..Default::default()
    };
    let spans = (0..100u64)
        .map(|i| Span {
            trace_id: (i as u128 * 0x9e37_79b9_7f4a_7c15).to_be_bytes().to_vec(),
            span_id: (i * 0x2545_f491_4f6c_dd1d).to_be_bytes().to_vec(),
            name: "GET /api/orders/{id}".into(),
            kind: 2,
            start_time_unix_nano: 1_700_000_000_000_000_000 + i * 1_000_000,
            end_time_unix_nano: 1_700_000_000_000_000_000 + i * 1_000_000 + 12_500_000,
            attributes: vec![
                text("http.request.method", "GET"),
                text("url.path", &format!("/api/orders/{i}")),
                text("url.scheme", "https"),
                text("server.address", "shop.example.com"),
                kv("http.response.status_code", any_value::Value::IntValue(200)),
                text("http.route", "/api/orders/{id}"),
                text(
                    "user_agent.original",
                    "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0",
                ),
                text("network.protocol.version", "1.1"),
            ],
            ..Default::default()
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// Nanoseconds per call of `f`, the best of 5 runs of `n` calls.
fn ns_per(n: u32, mut f: impl FnMut()) -> f64 {
    (0..5)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..n {
                f();
            }
            start.elapsed().as_nanos() as f64 / f64::from(n)
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    let request = export();
    let protobuf = request.encode_to_vec();
    let json = serde_json::to_vec(&request).expect("json");
    let args: Vec<String> = std::env::args().collect();
    if let [_, flag, file] = args.as_slice() {
        assert_eq!(flag, "--write", "usage: bench_otlp [--write <file>]");
        std::fs::write(file, &protobuf).expect("write");
        return;
    }
    let none = Some(Compression::None);
    let walk = |body: &[u8], carrier| {
        let summary = read_body(body, Signal::Traces, carrier, none, 1 << 24).expect("read");
        assert_eq!(summary.items, 100);
        black_box(summary);
    };
    println!("protobuf_bytes {}", protobuf.len());
    println!("json_bytes {}", json.len());
    let n = 2000;
    println!(
        "walker_protobuf_ns {:.0}",
        ns_per(n, || walk(black_box(&protobuf), Carrier::HttpProtobuf))
    );
    println!(
        "prost_decode_ns {:.0}",
        ns_per(n, || {
            black_box(ExportTraceServiceRequest::decode(black_box(&protobuf[..])).expect("decode"));
        })
    );
    println!(
        "walker_json_ns {:.0}",
        ns_per(n / 4, || walk(black_box(&json), Carrier::HttpJson))
    );
    println!(
        "serde_decode_ns {:.0}",
        ns_per(n / 4, || {
            let full: ExportTraceServiceRequest =
                serde_json::from_slice(black_box(&json)).expect("decode");
            black_box(full);
        })
    );
}
