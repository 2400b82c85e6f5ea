//! OTLP export requests in JSON (OTLP/HTTP `application/json`), read for the same facts as
//! the protobuf form. Keys as APM Server's decoder (the collector's `pdata`) takes them:
//! lowerCamelCase or the proto's snake_case, exactly; unknown keys ignored. A key given twice
//! (in either spelling) is refused: `pdata` would merge what serde cannot tell apart.

use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use super::names::{AttrValue, ResourceAttributes};
use super::{OtlpError, Signal, Summary};

pub fn read(body: &[u8], signal: Signal) -> Result<Summary, OtlpError> {
    // An export request is an object (serde would also take a struct written as an array,
    // which APM Server refuses; nested ones it refuses too, so nothing passes that way).
    if body.trim_ascii_start().first() != Some(&b'{') {
        return Err(OtlpError::Malformed);
    }
    let mut summary = Summary::default();
    let parse_error = |_| OtlpError::Malformed;
    match signal {
        Signal::Traces => {
            let request: Traces = serde_json::from_slice(body).map_err(parse_error)?;
            for group in request.groups.unwrap_or_default() {
                let items = group.scopes.iter().flatten().map(|s| s.spans.count());
                add(&mut summary, group.resource.as_ref(), items.sum());
            }
        }
        Signal::Metrics => {
            let request: Metrics = serde_json::from_slice(body).map_err(parse_error)?;
            for group in request.groups.unwrap_or_default() {
                let metrics = group.scopes.iter().flatten();
                let items = metrics.flat_map(|s| s.metrics.iter().flatten());
                add(
                    &mut summary,
                    group.resource.as_ref(),
                    items.map(Metric::points).sum(),
                );
            }
        }
        Signal::Logs => {
            let request: Logs = serde_json::from_slice(body).map_err(parse_error)?;
            for group in request.groups.unwrap_or_default() {
                let items = group.scopes.iter().flatten().map(|s| s.records.count());
                add(&mut summary, group.resource.as_ref(), items.sum());
            }
        }
    }
    Ok(summary)
}

fn add(summary: &mut Summary, resource: Option<&Resource>, items: u64) {
    let mut attributes = ResourceAttributes::default();
    for kv in resource.iter().flat_map(|r| r.attributes.iter().flatten()) {
        let value = match &kv.value {
            Some(AnyValue::Str(s)) => AttrValue::Str(s.as_bytes()),
            _ => AttrValue::Other,
        };
        attributes.set(kv.key.as_bytes(), value);
    }
    summary.resources.push(attributes.names());
    summary.items += items;
}

#[derive(Deserialize)]
struct Traces {
    #[serde(default, rename = "resourceSpans", alias = "resource_spans")]
    groups: Option<Vec<ResourceSpans>>,
}

#[derive(Deserialize)]
struct ResourceSpans {
    #[serde(default)]
    resource: Option<Resource>,
    #[serde(default, rename = "scopeSpans", alias = "scope_spans")]
    scopes: Option<Vec<ScopeSpans>>,
}

#[derive(Deserialize)]
struct ScopeSpans {
    #[serde(default)]
    spans: Count,
}

#[derive(Deserialize)]
struct Metrics {
    #[serde(default, rename = "resourceMetrics", alias = "resource_metrics")]
    groups: Option<Vec<ResourceMetrics>>,
}

#[derive(Deserialize)]
struct ResourceMetrics {
    #[serde(default)]
    resource: Option<Resource>,
    #[serde(default, rename = "scopeMetrics", alias = "scope_metrics")]
    scopes: Option<Vec<ScopeMetrics>>,
}

#[derive(Deserialize)]
struct ScopeMetrics {
    #[serde(default)]
    metrics: Option<Vec<Metric>>,
}

/// One metric: its data is one of five kinds, each holding `dataPoints`.
#[derive(Deserialize)]
struct Metric {
    #[serde(default)]
    gauge: Option<DataPoints>,
    #[serde(default)]
    sum: Option<DataPoints>,
    #[serde(default)]
    histogram: Option<DataPoints>,
    #[serde(
        default,
        rename = "exponentialHistogram",
        alias = "exponential_histogram"
    )]
    exponential_histogram: Option<DataPoints>,
    #[serde(default)]
    summary: Option<DataPoints>,
}

impl Metric {
    /// The data points of its data. APM Server keeps the kind written last when several
    /// are given; their sum bounds that from above (what the rate limit charges).
    fn points(&self) -> u64 {
        [
            &self.gauge,
            &self.sum,
            &self.histogram,
            &self.exponential_histogram,
            &self.summary,
        ]
        .into_iter()
        .flatten()
        .map(|d| d.points.count())
        .sum()
    }
}

#[derive(Deserialize)]
struct DataPoints {
    #[serde(default, rename = "dataPoints", alias = "data_points")]
    points: Count,
}

#[derive(Deserialize)]
struct Logs {
    #[serde(default, rename = "resourceLogs", alias = "resource_logs")]
    groups: Option<Vec<ResourceLogs>>,
}

#[derive(Deserialize)]
struct ResourceLogs {
    #[serde(default)]
    resource: Option<Resource>,
    #[serde(default, rename = "scopeLogs", alias = "scope_logs")]
    scopes: Option<Vec<ScopeLogs>>,
}

#[derive(Deserialize)]
struct ScopeLogs {
    #[serde(default, rename = "logRecords", alias = "log_records")]
    records: Count,
}

#[derive(Deserialize)]
struct Resource {
    #[serde(default)]
    attributes: Option<Vec<KeyValue>>,
}

#[derive(Deserialize)]
struct KeyValue {
    #[serde(default)]
    key: String,
    #[serde(default)]
    value: Option<AnyValue>,
}

/// An attribute's value: the member given last, as `pdata` reads it.
enum AnyValue {
    Str(String),
    Other,
}

impl<'de> Deserialize<'de> for AnyValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = AnyValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an OTLP AnyValue object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<AnyValue, A::Error> {
                let mut value = AnyValue::Other;
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    match &*key {
                        "stringValue" | "string_value" => {
                            value = AnyValue::Str(map.next_value::<String>()?);
                        }
                        "boolValue" | "bool_value" | "intValue" | "int_value" | "doubleValue"
                        | "double_value" | "arrayValue" | "array_value" | "kvlistValue"
                        | "kvlist_value" | "bytesValue" | "bytes_value" => {
                            map.next_value::<IgnoredAny>()?;
                            value = AnyValue::Other;
                        }
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(value)
            }
        }
        d.deserialize_map(V)
    }
}

/// The length of a JSON array (`null` or absent: none), its elements skipped.
#[derive(Default)]
struct Count(u64);

impl Count {
    fn count(&self) -> u64 {
        self.0
    }
}

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Count;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Count, A::Error> {
                let mut n = 0;
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    n += 1;
                }
                Ok(Count(n))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Count, E> {
                Ok(Count(0))
            }
        }
        d.deserialize_any(V)
    }
}
