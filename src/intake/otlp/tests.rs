//! The OTLP reader against the OpenTelemetry protos' own types (`opentelemetry-proto`,
//! `prost`): requests built and encoded by them, and a differential check of the walker's
//! names and counts against a full decode of the same bytes, valid and mutated.

use std::io::Write;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics,
    ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;

use super::names::{AttrValue, ResourceAttributes};
use super::*;

const MAX: u64 = 1 << 20;

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
    }
}

fn text(key: &str, value: &str) -> KeyValue {
    kv(key, any_value::Value::StringValue(value.into()))
}

fn resource(attributes: Vec<KeyValue>) -> Option<Resource> {
    Some(Resource {
        attributes,
        ..Default::default()
    })
}

fn web(service: &str) -> Vec<KeyValue> {
    vec![
        text("service.name", service),
        text("telemetry.sdk.name", "opentelemetry"),
        text("telemetry.sdk.language", "webjs"),
        kv("process.pid", any_value::Value::IntValue(7)),
    ]
}

fn traces(groups: &[(&str, usize)]) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: groups
            .iter()
            .map(|&(service, spans)| ResourceSpans {
                resource: resource(web(service)),
                scope_spans: vec![ScopeSpans {
                    spans: (0..spans)
                        .map(|i| Span {
                            name: format!("span-{i}"),
                            trace_id: vec![1; 16],
                            span_id: vec![2; 8],
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

fn names(service: &str, agent: &str) -> ResourceNames {
    ResourceNames {
        service: service.into(),
        agent: agent.into(),
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn grpc_frame(compressed: bool, message: &[u8]) -> Vec<u8> {
    let mut frame = vec![u8::from(compressed)];
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(message);
    frame
}

#[test]
fn traces_in_every_carrier_give_the_same_summary() {
    let request = traces(&[("shop", 3), ("cart", 2)]);
    let expected = Summary {
        resources: vec![
            names("shop", "opentelemetry/webjs"),
            names("cart", "opentelemetry/webjs"),
        ],
        items: 5,
    };
    let proto = request.encode_to_vec();
    let json = serde_json::to_vec(&request).unwrap();
    let none = Some(Compression::None);
    let gz = Some(Compression::Gzip);
    let read = |body: &[u8], carrier, compression| {
        read_body(body, Signal::Traces, carrier, compression, MAX)
    };
    assert_eq!(
        read(&proto, Carrier::HttpProtobuf, none),
        Ok(expected.clone())
    );
    assert_eq!(
        read(&gzip(&proto), Carrier::HttpProtobuf, gz),
        Ok(expected.clone())
    );
    assert_eq!(read(&json, Carrier::HttpJson, none), Ok(expected.clone()));
    assert_eq!(
        read(&gzip(&json), Carrier::HttpJson, gz),
        Ok(expected.clone())
    );
    let frame = grpc_frame(false, &proto);
    assert_eq!(read(&frame, Carrier::Grpc, None), Ok(expected.clone()));
    let frame = grpc_frame(true, &gzip(&proto));
    assert_eq!(read(&frame, Carrier::Grpc, gz), Ok(expected.clone()));
    // A compressed frame in an encoding the proxy cannot read.
    assert_eq!(
        read(&frame, Carrier::Grpc, None),
        Err(OtlpError::UnsupportedEncoding)
    );
    // Not exactly one message.
    let mut two = grpc_frame(false, &proto);
    two.extend(grpc_frame(false, &proto));
    assert_eq!(read(&two, Carrier::Grpc, None), Err(OtlpError::Malformed));
    assert_eq!(
        read(&[0, 0, 0], Carrier::Grpc, None),
        Err(OtlpError::Malformed)
    );
}

#[test]
fn metrics_count_data_points_and_logs_count_records() {
    let point = NumberDataPoint::default();
    let request = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: resource(vec![text("service.name", "api")]),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![
                    Metric {
                        name: "a".into(),
                        data: Some(metric::Data::Gauge(Gauge {
                            data_points: vec![point.clone(); 3],
                        })),
                        ..Default::default()
                    },
                    Metric {
                        name: "b".into(),
                        data: Some(metric::Data::Sum(Sum {
                            data_points: vec![point; 2],
                            ..Default::default()
                        })),
                        ..Default::default()
                    },
                    Metric {
                        name: "c".into(),
                        data: Some(metric::Data::Histogram(Histogram {
                            data_points: vec![HistogramDataPoint::default(); 4],
                            ..Default::default()
                        })),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let expected = Summary {
        resources: vec![names("api", "otlp")],
        items: 9,
    };
    for (body, carrier) in [
        (request.encode_to_vec(), Carrier::HttpProtobuf),
        (serde_json::to_vec(&request).unwrap(), Carrier::HttpJson),
    ] {
        let got = read_body(
            &body,
            Signal::Metrics,
            carrier,
            Some(Compression::None),
            MAX,
        );
        assert_eq!(got, Ok(expected.clone()), "{carrier:?}");
    }
    let logs = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource(vec![text("service.name", "worker")]),
            scope_logs: vec![ScopeLogs {
                log_records: vec![LogRecord::default(); 6],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let expected = Summary {
        resources: vec![names("worker", "otlp")],
        items: 6,
    };
    for (body, carrier) in [
        (logs.encode_to_vec(), Carrier::HttpProtobuf),
        (serde_json::to_vec(&logs).unwrap(), Carrier::HttpJson),
    ] {
        let got = read_body(&body, Signal::Logs, carrier, Some(Compression::None), MAX);
        assert_eq!(got, Ok(expected.clone()), "{carrier:?}");
    }
}

#[test]
fn json_takes_both_spellings_and_refuses_a_key_given_twice() {
    let read = |body: &str| {
        read_body(
            body.as_bytes(),
            Signal::Traces,
            Carrier::HttpJson,
            Some(Compression::None),
            MAX,
        )
    };
    let snake = r#"{"resource_spans":[{"resource":{"attributes":[
        {"key":"service.name","value":{"string_value":"shop"}}]},
        "scope_spans":[{"spans":[{},{}]}]}]}"#;
    assert_eq!(
        read(snake),
        Ok(Summary {
            resources: vec![names("shop", "otlp")],
            items: 2
        })
    );
    // The member given last is the value, as pdata reads it.
    let last = r#"{"resourceSpans":[{"resource":{"attributes":[
        {"key":"service.name","value":{"stringValue":"shop","intValue":"5"}}]}}]}"#;
    assert_eq!(read(last).unwrap().resources, [names("unknown", "otlp")]);
    let twice = r#"{"resourceSpans":[],"resource_spans":[{}]}"#;
    assert_eq!(read(twice), Err(OtlpError::Malformed));
    assert_eq!(
        read(r#"{"resourceSpans":[{"scopeSpans":[{"spans":7}]}]}"#),
        Err(OtlpError::Malformed)
    );
    assert_eq!(read("[]"), Err(OtlpError::Malformed));
    assert_eq!(read("{}"), Ok(Summary::default()));
}

#[test]
fn sizes_are_bounded_before_and_after_decompression() {
    let request = traces(&[("shop", 200)]).encode_to_vec();
    let read = |body: &[u8], compression, max| {
        read_body(
            body,
            Signal::Traces,
            Carrier::HttpProtobuf,
            Some(compression),
            max,
        )
    };
    let len = request.len() as u64;
    assert!(read(&request, Compression::None, len).is_ok());
    assert_eq!(
        read(&request, Compression::None, len - 1),
        Err(OtlpError::TooLarge)
    );
    let small = gzip(&request);
    assert!((small.len() as u64) < len / 4);
    assert_eq!(
        read(&small, Compression::Gzip, len - 1),
        Err(OtlpError::TooLarge)
    );
    assert_eq!(
        read(&small[..small.len() / 2], Compression::Gzip, MAX),
        Err(OtlpError::Compression)
    );
    assert_eq!(
        Carrier::of_content_type(Some(b"Application/JSON; charset=utf-8")),
        Some(Carrier::HttpJson)
    );
    assert_eq!(Carrier::of_content_type(Some(b"text/plain")), None);
    assert_eq!(Compression::of_header(Some(b"zstd")), None);
}

/// What a full decode says of the same bytes: the names by the same rules, from the
/// decoded attributes, and the items counted from the decoded messages.
pub(crate) fn decoded_summary(bytes: &[u8], signal: Signal) -> Option<Summary> {
    fn resource_names(resource: &Option<Resource>) -> ResourceNames {
        let mut attributes = ResourceAttributes::default();
        for kv in resource.iter().flat_map(|r| &r.attributes) {
            let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(any_value::Value::StringValue(s)) => AttrValue::Str(s.as_bytes()),
                _ => AttrValue::Other,
            };
            attributes.set(kv.key.as_bytes(), value);
        }
        attributes.names()
    }
    let mut summary = Summary::default();
    match signal {
        Signal::Traces => {
            for group in ExportTraceServiceRequest::decode(bytes)
                .ok()?
                .resource_spans
            {
                summary.resources.push(resource_names(&group.resource));
                summary.items += group
                    .scope_spans
                    .iter()
                    .map(|s| s.spans.len() as u64)
                    .sum::<u64>();
            }
        }
        Signal::Metrics => {
            for group in ExportMetricsServiceRequest::decode(bytes)
                .ok()?
                .resource_metrics
            {
                summary.resources.push(resource_names(&group.resource));
                for metric in group.scope_metrics.iter().flat_map(|s| &s.metrics) {
                    summary.items += match &metric.data {
                        Some(metric::Data::Gauge(d)) => d.data_points.len(),
                        Some(metric::Data::Sum(d)) => d.data_points.len(),
                        Some(metric::Data::Histogram(d)) => d.data_points.len(),
                        Some(metric::Data::ExponentialHistogram(d)) => d.data_points.len(),
                        Some(metric::Data::Summary(d)) => d.data_points.len(),
                        None => 0,
                    } as u64;
                }
            }
        }
        Signal::Logs => {
            for group in ExportLogsServiceRequest::decode(bytes).ok()?.resource_logs {
                summary.resources.push(resource_names(&group.resource));
                summary.items += group
                    .scope_logs
                    .iter()
                    .map(|s| s.log_records.len() as u64)
                    .sum::<u64>();
            }
        }
    }
    Some(summary)
}

/// A small deterministic generator (no randomness crate for one test).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % below
    }
}

fn generated(rng: &mut Lcg) -> (Signal, Vec<u8>) {
    fn attributes(rng: &mut Lcg) -> Option<Resource> {
        let services = ["shop", "cart", "a b", "x/y", "", "ünï"];
        let mut list = Vec::new();
        for _ in 0..rng.next(5) {
            let key = [
                "service.name",
                "telemetry.sdk.language",
                "telemetry.sdk.name",
                "telemetry.distro.name",
                "other",
            ][rng.next(5) as usize];
            let value = match rng.next(3) {
                0 => any_value::Value::IntValue(rng.next(100) as i64),
                _ => any_value::Value::StringValue(services[rng.next(6) as usize].into()),
            };
            list.push(kv(key, value));
        }
        resource(list)
    }
    match rng.next(3) {
        0 => {
            let request = ExportTraceServiceRequest {
                resource_spans: (0..rng.next(4))
                    .map(|_| ResourceSpans {
                        resource: attributes(rng),
                        scope_spans: (0..rng.next(3))
                            .map(|_| ScopeSpans {
                                spans: vec![Span::default(); rng.next(4) as usize],
                                ..Default::default()
                            })
                            .collect(),
                        ..Default::default()
                    })
                    .collect(),
            };
            (Signal::Traces, request.encode_to_vec())
        }
        1 => {
            let request = ExportMetricsServiceRequest {
                resource_metrics: (0..rng.next(4))
                    .map(|_| ResourceMetrics {
                        resource: attributes(rng),
                        scope_metrics: vec![ScopeMetrics {
                            metrics: (0..rng.next(3))
                                .map(|_| Metric {
                                    data: Some(metric::Data::Gauge(Gauge {
                                        data_points: vec![
                                            NumberDataPoint::default();
                                            rng.next(4) as usize
                                        ],
                                    })),
                                    ..Default::default()
                                })
                                .collect(),
                            ..Default::default()
                        }],
                        ..Default::default()
                    })
                    .collect(),
            };
            (Signal::Metrics, request.encode_to_vec())
        }
        _ => {
            let request = ExportLogsServiceRequest {
                resource_logs: (0..rng.next(4))
                    .map(|_| ResourceLogs {
                        resource: attributes(rng),
                        scope_logs: vec![ScopeLogs {
                            log_records: vec![LogRecord::default(); rng.next(4) as usize],
                            ..Default::default()
                        }],
                        ..Default::default()
                    })
                    .collect(),
            };
            (Signal::Logs, request.encode_to_vec())
        }
    }
}

#[test]
fn the_walker_agrees_with_a_full_decode() {
    let mut rng = Lcg(0x5eed);
    let (mut compared, mut mutated_compared) = (0, 0);
    for _ in 0..2000 {
        let (signal, mut bytes) = generated(&mut rng);
        let walked = protobuf::read(&bytes, signal);
        assert_eq!(walked.ok(), decoded_summary(&bytes, signal));
        compared += 1;
        // The same bytes, one changed: whenever the full decode accepts them, the walker
        // reads the same names and counts (it may refuse more: it never accepts less).
        if !bytes.is_empty() {
            let at = rng.next(bytes.len() as u64) as usize;
            bytes[at] = rng.next(256) as u8;
            if let Some(decoded) = decoded_summary(&bytes, signal) {
                assert_eq!(protobuf::read(&bytes, signal), Ok(decoded), "{bytes:?}");
                mutated_compared += 1;
            }
        }
    }
    assert_eq!(compared, 2000);
    assert!(
        mutated_compared > 200,
        "only {mutated_compared} mutated messages compared"
    );
}

#[test]
fn repeated_embedded_messages_merge_as_protobuf_merges_them() {
    // Two `resource` fields in one ResourceSpans: protobuf merges them; the later
    // service.name wins. Two AnyValues for one key: the later member wins.
    let first = Resource {
        attributes: vec![text("service.name", "allowed")],
        ..Default::default()
    };
    let second = Resource {
        attributes: vec![text("service.name", "other")],
        ..Default::default()
    };
    let mut group = Vec::new();
    for r in [&first, &second] {
        prost::encoding::message::encode(1, r, &mut group);
    }
    let mut request = Vec::new();
    prost::encoding::bytes::encode(1, &group, &mut request);
    let walked = protobuf::read(&request, Signal::Traces).unwrap();
    assert_eq!(walked.resources, [names("other", "otlp")]);
    assert_eq!(decoded_summary(&request, Signal::Traces), Some(walked));
}
