#![no_main]
//! The proxy's OTLP field walker against a full decode by the OpenTelemetry protos' own
//! types (prost): whenever the full decode accepts a message, the walker reads the same
//! names (by APM Server's rules, from the decoded attributes) and the same counts.
use apm_auth_proxy::fuzzing::{otlp_names, otlp_signal, otlp_walk, Signal};
use libfuzzer_sys::fuzz_target;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::metrics::v1::metric;
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;

fn names(resource: &Option<Resource>) -> (String, String) {
    let attributes: Vec<(&[u8], Option<&[u8]>)> = resource
        .iter()
        .flat_map(|r| &r.attributes)
        .map(|kv| {
            let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(any_value::Value::StringValue(s)) => Some(s.as_bytes()),
                _ => None,
            };
            (kv.key.as_bytes(), value)
        })
        .collect();
    otlp_names(&attributes)
}

fn decoded(message: &[u8], signal: Signal) -> Option<(Vec<(String, String)>, u64)> {
    let (mut resources, mut items) = (Vec::new(), 0u64);
    match signal {
        Signal::Traces => {
            for group in ExportTraceServiceRequest::decode(message).ok()?.resource_spans {
                resources.push(names(&group.resource));
                items += group.scope_spans.iter().map(|s| s.spans.len() as u64).sum::<u64>();
            }
        }
        Signal::Metrics => {
            for group in ExportMetricsServiceRequest::decode(message).ok()?.resource_metrics {
                resources.push(names(&group.resource));
                for m in group.scope_metrics.iter().flat_map(|s| &s.metrics) {
                    items += match &m.data {
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
            for group in ExportLogsServiceRequest::decode(message).ok()?.resource_logs {
                resources.push(names(&group.resource));
                items += group.scope_logs.iter().map(|s| s.log_records.len() as u64).sum::<u64>();
            }
        }
    }
    Some((resources, items))
}

// First byte: the signal (mod 3); the rest: a protobuf export message.
fuzz_target!(|data: &[u8]| {
    let Some((&mode, message)) = data.split_first() else {
        return;
    };
    let signal = otlp_signal(mode);
    if let Some(full) = decoded(message, signal) {
        assert_eq!(otlp_walk(message, signal), Some(full), "{message:?}");
    }
});
