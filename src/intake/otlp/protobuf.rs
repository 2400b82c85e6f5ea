//! OTLP export requests in protobuf, read for what the proxy's rules need: each resource's
//! attributes, and the count of spans, metric data points or log records. Field numbers from
//! opentelemetry-proto (`collector/*/v1/*_service.proto`, `trace/v1`, `metrics/v1`,
//! `logs/v1`, `resource/v1`, `common/v1`); every field is walked in order, so a repeated
//! embedded message merges as protobuf merges it.

use super::names::{AttrValue, ResourceAttributes};
use super::wire::fields;
use super::{OtlpError, Signal, Summary};

/// `Export*ServiceRequest { repeated Resource* resource_* = 1; }`
pub fn read(message: &[u8], signal: Signal) -> Result<Summary, OtlpError> {
    let mut summary = Summary::default();
    for field in fields(message) {
        if let (1, value) = field? {
            read_resource_group(value.bytes()?, signal, &mut summary)?;
        }
    }
    Ok(summary)
}

/// `Resource{Spans,Metrics,Logs} { Resource resource = 1; repeated Scope* scope_* = 2; }`
fn read_resource_group(
    message: &[u8],
    signal: Signal,
    summary: &mut Summary,
) -> Result<(), OtlpError> {
    let mut attributes = ResourceAttributes::default();
    for field in fields(message) {
        match field? {
            (1, value) => read_resource(value.bytes()?, &mut attributes)?,
            (2, value) => summary.items += count_in_scope(value.bytes()?, signal)?,
            _ => {}
        }
    }
    summary.resources.push(attributes.names());
    Ok(())
}

/// `Resource { repeated KeyValue attributes = 1; }`
fn read_resource<'a>(
    message: &'a [u8],
    attributes: &mut ResourceAttributes<'a>,
) -> Result<(), OtlpError> {
    for field in fields(message) {
        match field? {
            (1, value) => {
                let (key, value) = read_key_value(value.bytes()?)?;
                attributes.set(key, value);
            }
            (2, value) => value.varint()?,
            _ => {}
        }
    }
    Ok(())
}

/// `KeyValue { string key = 1; AnyValue value = 2; }`
fn read_key_value(message: &[u8]) -> Result<(&[u8], AttrValue<'_>), OtlpError> {
    let (mut key, mut value) = (&b""[..], AttrValue::Other);
    for field in fields(message) {
        match field? {
            (1, v) => key = v.bytes()?,
            // Messages merge: the last `oneof` member set wins.
            (2, v) => {
                if let Some(last) = read_any_value(v.bytes()?)? {
                    value = last;
                }
            }
            _ => {}
        }
    }
    Ok((key, value))
}

/// `AnyValue { oneof value { string string_value = 1; bool = 2; int64 = 3; double = 4;
/// ArrayValue = 5; KeyValueList = 6; bytes = 7; } }`: the member set last, if any.
fn read_any_value(message: &[u8]) -> Result<Option<AttrValue<'_>>, OtlpError> {
    let mut value = None;
    for field in fields(message) {
        value = match field? {
            (1, v) => Some(AttrValue::Str(v.bytes()?)),
            (2 | 3, v) => v.varint().map(|()| Some(AttrValue::Other))?,
            (4, v) => v.fixed64().map(|()| Some(AttrValue::Other))?,
            (5..=7, v) => v.bytes().map(|_| Some(AttrValue::Other))?,
            _ => value,
        };
    }
    Ok(value)
}

/// `Scope{Spans,Metrics,Logs} { InstrumentationScope scope = 1; repeated Span spans = 2 |
/// Metric metrics = 2 | LogRecord log_records = 2; }`: the events it holds.
fn count_in_scope(message: &[u8], signal: Signal) -> Result<u64, OtlpError> {
    let mut count = 0;
    for field in fields(message) {
        if let (2, value) = field? {
            let item = value.bytes()?;
            count += match signal {
                Signal::Traces | Signal::Logs => 1,
                Signal::Metrics => data_points(item)?,
            };
        }
    }
    Ok(count)
}

/// `Metric { oneof data { Gauge gauge = 5; Sum sum = 7; Histogram histogram = 9;
/// ExponentialHistogram exponential_histogram = 10; Summary summary = 11; } }`, each with
/// `repeated … data_points = 1`: the data points of the member set last.
fn data_points(metric: &[u8]) -> Result<u64, OtlpError> {
    let mut data = (0, 0);
    for field in fields(metric) {
        if let (number @ (5 | 7 | 9 | 10 | 11), value) = field? {
            let mut points = 0;
            for inner in fields(value.bytes()?) {
                if let (1, point) = inner? {
                    point.bytes()?;
                    points += 1;
                }
            }
            // The same member again merges (its points add up); another replaces it.
            data = match data {
                (n, before) if n == number => (number, before + points),
                _ => (number, points),
            };
        }
    }
    Ok(data.1)
}
