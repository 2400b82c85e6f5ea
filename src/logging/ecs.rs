//! Elastic Common Schema for `log.format = "json"`: one JSON object per line with
//! `@timestamp`, `ecs.version`, `log.level`, `log.logger`, `log.origin.*`, `message`,
//! `service.*`, `host.name`, `process.pid` and `event.dataset` (`apm_auth_proxy.access`,
//! `.audit` or `.log`); access and audit lines with `event.kind`, `event.category`,
//! `event.type` and `event.outcome` (from the status: an APM Server 503 is a failure), their
//! fields under their ECS names, anything else under `apm_auth_proxy.*`. Lines from Pingora
//! (through the `log` crate) get the same shape. Filebeat and Elastic Agent ingest it as is.

use std::fmt;
use std::time::SystemTime;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

pub const ECS_VERSION: &str = "8.11.0";

/// The formatter, with what every line says about the process.
pub struct Ecs {
    host_name: Value,
    pid: Value,
}

impl Ecs {
    pub fn new() -> Ecs {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .map(|h| h.trim().to_string())
            .unwrap_or_default();
        Ecs {
            host_name: Value::from(host),
            pid: Value::from(std::process::id()),
        }
    }
}

/// The ECS name of a field of the access or audit log.
fn ecs_name(field: &str) -> Option<&'static str> {
    Some(match field {
        "message" => "message",
        "method" => "http.request.method",
        "path" => "url.path",
        "status" => "http.response.status_code",
        "client_ip" => "client.ip",
        "peer_ip" => "source.ip",
        "credential" => "user.id",
        "credential_name" => "user.name",
        "target_credential" => "user.target.id",
        "target_credential_name" => "user.target.name",
        "rejection" => "event.reason",
        "bytes_in" => "http.request.body.bytes",
        "bytes_out" => "http.response.body.bytes",
        "http_version" => "http.version",
        "server_name" => "tls.client.server_name",
        "request_id" => "http.request.id",
        "user_agent" => "user_agent.original",
        "error_type" => "error.type",
        "error" => "error.message",
        "action" => "event.action",
        // Bridged from the `log` crate (Pingora's lines).
        "log.target" => "log.logger",
        "log.line" => "log.origin.file.line",
        _ => return None,
    })
}

/// Milliseconds (a number, or the text format's fixed-precision string) as nanoseconds.
fn millis_as_nanos(value: &Value) -> Option<u64> {
    let ms = match value {
        Value::String(s) => s.parse::<f64>().ok()?,
        v => v.as_f64()?,
    };
    Some((ms * 1e6).round() as u64)
}

/// A source path as built (`/root/.cargo/registry/src/index…/pingora-core-0.9.1/src/x.rs`)
/// from its crate's directory on (`pingora-core-0.9.1/src/x.rs`).
fn source_file(path: &str) -> &str {
    match path.rfind("/src/") {
        Some(i) => {
            let crate_dir = path[..i].rfind('/').map_or(0, |j| j + 1);
            &path[crate_dir..]
        }
        None => path,
    }
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
                if let Some(ns) = millis_as_nanos(&value) {
                    self.0.insert("event.duration".into(), Value::from(ns));
                }
            }
            "upstream_ms" => {
                if let Some(ns) = millis_as_nanos(&value) {
                    let key = "apm_auth_proxy.upstream.duration";
                    self.0.insert(key.into(), Value::from(ns));
                }
            }
            "log.file" => {
                if let Some(path) = value.as_str() {
                    let file = source_file(path).to_string();
                    self.0
                        .insert("log.origin.file.name".into(), Value::from(file));
                }
            }
            "log.module_path" => {}
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
        let f = &mut fields.0;
        f.insert("event.dataset".into(), Value::from(dataset));
        f.insert("log.logger".into(), Value::from(meta.target()));
        if let Some(file) = meta.file() {
            f.insert(
                "log.origin.file.name".into(),
                Value::from(source_file(file)),
            );
        }
        if let Some(line) = meta.line() {
            f.insert("log.origin.file.line".into(), Value::from(line));
        }
        f.insert("service.name".into(), Value::from("apm-auth-proxy"));
        f.insert(
            "service.version".into(),
            Value::from(env!("CARGO_PKG_VERSION")),
        );
        f.insert("host.name".into(), self.host_name.clone());
        f.insert("process.pid".into(), self.pid.clone());
        // The line's own fields (a bridged `log` line's origin replaces the bridge's).
        event.record(&mut fields);
        let f = &mut fields.0;
        match dataset {
            "apm_auth_proxy.access" => classify_access(f),
            "apm_auth_proxy.audit" => classify_audit(f),
            _ => {}
        }
        if !f.contains_key("message") {
            f.insert("message".into(), Value::from(meta.target()));
        }
        let line = serde_json::to_string(&fields.0).map_err(|_| fmt::Error)?;
        writeln!(writer, "{line}")
    }
}

/// `event.*` of an access line: a web access, allowed or denied, its outcome from the status
/// (`unknown` when no answer was written).
fn classify_access(f: &mut Map<String, Value>) {
    let status = f.get("http.response.status_code").and_then(Value::as_u64);
    let outcome = match status {
        None | Some(0) => "unknown",
        Some(s) if s < 400 => "success",
        Some(_) => "failure",
    };
    let mut category = vec!["web"];
    if f.contains_key("user.id") {
        category.push("authentication");
    }
    let verdict = match f.get("apm_auth_proxy.outcome").and_then(Value::as_str) {
        Some("rejected") => "denied",
        Some("upstream_error") => "error",
        _ => "allowed",
    };
    f.insert("event.kind".into(), Value::from("event"));
    f.insert("event.category".into(), Value::from(category));
    f.insert("event.type".into(), Value::from(vec!["access", verdict]));
    f.insert("event.outcome".into(), Value::from(outcome));
}

/// `event.*` of an audit line: a change to a credential (identity and access management).
fn classify_audit(f: &mut Map<String, Value>) {
    let kind = match f.get("event.action").and_then(Value::as_str) {
        Some("added") => "creation",
        Some("removed") => "deletion",
        _ => "change",
    };
    f.insert("event.kind".into(), Value::from("event"));
    f.insert("event.category".into(), Value::from(vec!["iam"]));
    f.insert("event.type".into(), Value::from(vec![kind]));
    f.insert("event.outcome".into(), Value::from("success"));
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

    /// The JSON lines `emit` writes through the formatter.
    fn lines(emit: impl FnOnce()) -> Vec<Value> {
        use tracing_subscriber::layer::SubscriberExt;
        let buffer = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let writer = {
            let buffer = buffer.clone();
            move || TestWriter(buffer.clone())
        };
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .event_format(Ecs::new())
                .with_writer(writer),
        );
        tracing::subscriber::with_default(subscriber, emit);
        let text = String::from_utf8(buffer.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn access(status: u64, outcome: &str) -> Value {
        let mut all = lines(|| {
            tracing::info!(
                target: "access",
                method = "POST",
                path = ?"/intake/v2/events",
                status,
                client_ip = "192.0.2.1",
                peer_ip = "127.0.0.1",
                credential = "api_key:k1",
                credential_name = ?"shop-frontend",
                outcome,
                rejection = "-",
                bytes_in = 10u64,
                bytes_out = 0u64,
                duration_ms = "1.500",
                upstream_ms = "1.250",
                http_version = "1.1",
                tls_version = "TLSv1_3",
                server_name = ?"apm.example.com",
                request_id = ?"4bf92f3577b34da6a3ce929d0e0e4736",
                user_agent = ?"elasticapm-go/2.0",
                error_type = "-",
                error = "-",
                "POST /intake/v2/events {status}"
            );
        });
        all.pop().unwrap()
    }

    #[test]
    fn an_access_line_in_ecs() {
        let v = access(202, "forwarded");
        assert_eq!(v["event.dataset"], "apm_auth_proxy.access");
        assert_eq!(v["ecs.version"], ECS_VERSION);
        assert_eq!(v["log.level"], "info");
        assert_eq!(v["message"], "POST /intake/v2/events 202");
        assert_eq!(v["http.request.method"], "POST");
        assert_eq!(v["url.path"], "/intake/v2/events");
        assert_eq!(v["http.response.status_code"], 202);
        assert_eq!(v["http.request.body.bytes"], 10);
        assert_eq!(v["http.version"], "1.1");
        assert_eq!(v["http.request.id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(v["source.ip"], "127.0.0.1");
        assert_eq!(v["client.ip"], "192.0.2.1");
        assert_eq!(v["user.id"], "api_key:k1");
        assert_eq!(v["user.name"], "shop-frontend");
        assert_eq!(v["event.outcome"], "success");
        assert_eq!(v["event.kind"], "event");
        assert_eq!(
            v["event.category"],
            serde_json::json!(["web", "authentication"])
        );
        assert_eq!(v["event.type"], serde_json::json!(["access", "allowed"]));
        assert_eq!(v["event.duration"], 1_500_000);
        assert_eq!(v["apm_auth_proxy.upstream.duration"], 1_250_000);
        assert_eq!(v["tls.version"], "1.3");
        assert_eq!(v["tls.client.server_name"], "apm.example.com");
        assert_eq!(v["user_agent.original"], "elasticapm-go/2.0");
        assert_eq!(v["service.name"], "apm-auth-proxy");
        assert_eq!(v["process.pid"], std::process::id());
        assert!(v["host.name"].is_string());
        assert!(v.get("event.reason").is_none() && v.get("error.type").is_none());
        assert!(v["@timestamp"].as_str().unwrap().ends_with('Z'));
        assert_eq!(v["log.origin.file.name"], "src/logging/ecs.rs");
    }

    #[test]
    fn an_apm_server_error_is_a_failure_and_no_answer_is_unknown() {
        assert_eq!(access(503, "forwarded")["event.outcome"], "failure");
        let refused = access(401, "rejected");
        assert_eq!(refused["event.outcome"], "failure");
        assert_eq!(
            refused["event.type"],
            serde_json::json!(["access", "denied"])
        );
        assert_eq!(access(0, "upstream_error")["event.outcome"], "unknown");
    }

    #[test]
    fn an_audit_line_names_the_changed_credential_as_access_lines_do() {
        let v = lines(|| {
            tracing::info!(
                target: "audit",
                action = "added",
                credential_kind = "api_key",
                target_credential = "api_key:k1",
                target_credential_name = ?"shop-frontend",
                "credential added: api_key:k1"
            );
        })
        .pop()
        .unwrap();
        assert_eq!(v["event.dataset"], "apm_auth_proxy.audit");
        assert_eq!(v["user.target.id"], "api_key:k1");
        assert_eq!(v["user.target.name"], "shop-frontend");
        assert!(
            v.get("user.name").is_none(),
            "the changed credential is not the user"
        );
        assert_eq!(v["event.category"], serde_json::json!(["iam"]));
        assert_eq!(v["event.type"], serde_json::json!(["creation"]));
    }

    #[test]
    fn a_line_from_pingora_through_the_log_crate_has_the_same_shape() {
        // How tracing-log hands over a `log` record: its origin in `log.*` fields.
        let v = lines(|| {
            tracing::warn!(
                log.target = "pingora_core::protocols::tls",
                log.module_path = "pingora_core::protocols::tls",
                log.file = "/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/pingora-core-0.9.1/src/protocols/tls/mod.rs",
                log.line = 42u32,
                "a warning"
            );
        })
        .pop()
        .unwrap();
        assert_eq!(v["log.logger"], "pingora_core::protocols::tls");
        assert_eq!(
            v["log.origin.file.name"],
            "pingora-core-0.9.1/src/protocols/tls/mod.rs"
        );
        assert_eq!(v["log.origin.file.line"], 42);
        assert_eq!(v["event.dataset"], "apm_auth_proxy.log");
        assert!(v
            .as_object()
            .unwrap()
            .keys()
            .all(|k| !k.starts_with("apm_auth_proxy.log")));
    }

    #[test]
    fn build_paths_are_cut_to_the_crate() {
        assert_eq!(
            source_file("/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/pingora-core-0.9.1/src/protocols/tls/mod.rs"),
            "pingora-core-0.9.1/src/protocols/tls/mod.rs"
        );
        assert_eq!(source_file("src/main.rs"), "src/main.rs");
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
