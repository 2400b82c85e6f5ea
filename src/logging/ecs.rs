//! Elastic Common Schema for `log.format = "json"`: one JSON object per line with
//! `@timestamp`, `ecs.version`, `log.level`, `message` and `event.dataset`
//! (`apm_auth_proxy.access`, `.audit` or `.log`), the access and audit fields under their ECS
//! names, anything else under `apm_auth_proxy.*`. Filebeat and Elastic Agent ingest it as is.

use std::fmt;
use std::time::SystemTime;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

pub const ECS_VERSION: &str = "8.11.0";

pub struct Ecs;

/// The ECS name of a field of the access or audit log.
fn ecs_name(field: &str) -> Option<&'static str> {
    Some(match field {
        "message" => "message",
        "method" => "http.request.method",
        "path" => "url.path",
        "status" => "http.response.status_code",
        "client_ip" => "client.ip",
        "peer_ip" => "source.ip",
        "credential" => "user.name",
        "rejection" => "event.reason",
        "bytes_in" => "http.request.bytes",
        "bytes_out" => "http.response.bytes",
        "user_agent" => "user_agent.original",
        "error" => "error.type",
        "action" => "event.action",
        _ => return None,
    })
}

struct Fields(Map<String, Value>);

impl Fields {
    fn put(&mut self, field: &Field, value: Value) {
        let name = field.name();
        // "-" stands for "none" in the text format: absent in ECS.
        if value.as_str() == Some("-") {
            return;
        }
        match name {
            "duration_ms" => {
                if let Some(ms) = value.as_f64() {
                    self.0
                        .insert("event.duration".into(), Value::from((ms * 1e6) as u64));
                }
            }
            "tls_version" => {
                if let Some(v) = value.as_str() {
                    let number: String = v
                        .chars()
                        .filter(|c| c.is_ascii_digit() || *c == '.' || *c == '_')
                        .map(|c| if c == '_' { '.' } else { c })
                        .collect();
                    self.0.insert("tls.version".into(), Value::from(number));
                    self.0
                        .insert("tls.version_protocol".into(), Value::from("tls"));
                }
            }
            "outcome" => {
                let success = value.as_str() == Some("forwarded");
                self.0.insert(
                    "event.outcome".into(),
                    Value::from(if success { "success" } else { "failure" }),
                );
                self.0.insert("apm_auth_proxy.outcome".into(), value);
            }
            _ => {
                let key = ecs_name(name)
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("apm_auth_proxy.{name}"));
                self.0.insert(key, value);
            }
        }
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::from(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::from(value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let text = format!("{value:?}");
        // `?`-recorded strings (the path, the user agent) come Debug-quoted.
        self.put(field, Value::from(unquote_debug(&text).unwrap_or(text)));
    }
}

/// The string a Rust `Debug` rendering of a `str` stands for.
fn unquote_debug(text: &str) -> Option<String> {
    let inner = text.strip_prefix('"')?.strip_suffix('"')?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next()? {
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            '0' => out.push('\0'),
            'u' => {
                let hex: String = chars
                    .by_ref()
                    .skip_while(|c| *c == '{')
                    .take_while(|c| *c != '}')
                    .collect();
                out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
            }
            other => out.push(other),
        }
    }
    Some(out)
}

impl<S, N> FormatEvent<S, N> for Ecs
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut fields = Fields(Map::new());
        fields.0.insert(
            "@timestamp".into(),
            Value::from(humantime::format_rfc3339_millis(SystemTime::now()).to_string()),
        );
        fields.0.insert(
            "log.level".into(),
            Value::from(meta.level().as_str().to_ascii_lowercase()),
        );
        fields
            .0
            .insert("ecs.version".into(), Value::from(ECS_VERSION));
        let dataset = match meta.target() {
            "access" => "apm_auth_proxy.access",
            "audit" => "apm_auth_proxy.audit",
            _ => "apm_auth_proxy.log",
        };
        fields
            .0
            .insert("event.dataset".into(), Value::from(dataset));
        fields
            .0
            .insert("log.logger".into(), Value::from(meta.target()));
        event.record(&mut fields);
        if !fields.0.contains_key("message") {
            fields
                .0
                .insert("message".into(), Value::from(meta.target()));
        }
        let line = serde_json::to_string(&fields.0).map_err(|_| fmt::Error)?;
        writeln!(writer, "{line}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_quoted_strings_come_back() {
        assert_eq!(
            unquote_debug("\"/intake/v2/events\"").unwrap(),
            "/intake/v2/events"
        );
        assert_eq!(
            unquote_debug("\"a\\\"b\\n\\u{1b}\"").unwrap(),
            "a\"b\n\u{1b}"
        );
        assert_eq!(unquote_debug("plain"), None);
    }

    #[test]
    fn an_access_line_in_ecs() {
        use tracing_subscriber::layer::SubscriberExt;
        let buffer = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let writer = {
            let buffer = buffer.clone();
            move || TestWriter(buffer.clone())
        };
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .event_format(Ecs)
                .with_writer(writer),
        );
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(
                target: "access",
                method = "POST",
                path = ?"/intake/v2/events",
                status = 202u64,
                client_ip = "192.0.2.1",
                peer_ip = "127.0.0.1",
                credential = "api_key:k1",
                outcome = "forwarded",
                rejection = "-",
                bytes_in = 10u64,
                bytes_out = 0u64,
                duration_ms = 1.5f64,
                tls_version = "TLSv1_3",
                user_agent = ?"elasticapm-go/2.0",
                error = "-",
            );
        });
        let text = String::from_utf8(buffer.lock().unwrap().clone()).unwrap();
        let v: Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(v["event.dataset"], "apm_auth_proxy.access");
        assert_eq!(v["ecs.version"], ECS_VERSION);
        assert_eq!(v["log.level"], "info");
        assert_eq!(v["http.request.method"], "POST");
        assert_eq!(v["url.path"], "/intake/v2/events");
        assert_eq!(v["http.response.status_code"], 202);
        assert_eq!(v["source.ip"], "127.0.0.1");
        assert_eq!(v["client.ip"], "192.0.2.1");
        assert_eq!(v["user.name"], "api_key:k1");
        assert_eq!(v["event.outcome"], "success");
        assert_eq!(v["event.duration"], 1_500_000);
        assert_eq!(v["tls.version"], "1.3");
        assert_eq!(v["user_agent.original"], "elasticapm-go/2.0");
        assert!(v.get("event.reason").is_none() && v.get("error.type").is_none());
        assert!(v["@timestamp"].as_str().unwrap().ends_with('Z'));
    }

    struct TestWriter(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for TestWriter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}
