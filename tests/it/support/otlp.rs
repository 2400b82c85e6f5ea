//! `tests/agents/otlp.py`: the OpenTelemetry Python SDK (its exporters, its encoders, raw
//! calls on its grpcio) run against the proxy, bounded in time; its JSON answer.

use std::time::Duration;

use serde_json::Value;

use super::{bounded, Proxy};

/// `otlp.py <args>` against `proxy` with `authorization: <auth>` (none when empty) and
/// `extra` metadata, over TLS.
pub fn otlp(proxy: &Proxy, auth: &str, extra: &[(&str, &str)], args: &[&str]) -> Value {
    otlp_run(proxy, true, auth, extra, &[], args)
}

/// `otlp`, with the script's own settings (`SERVICE_NAME`, `EXPORT_TIMEOUT`, …) in `env`.
pub fn otlp_env(proxy: &Proxy, auth: &str, env: &[(&str, &str)], args: &[&str]) -> Value {
    otlp_run(proxy, true, auth, &[], env, args)
}

/// `otlp`, over TLS or (`tls` false) cleartext h2c.
pub fn otlp_over(
    proxy: &Proxy,
    tls: bool,
    auth: &str,
    extra: &[(&str, &str)],
    args: &[&str],
) -> Value {
    otlp_run(proxy, tls, auth, extra, &[], args)
}

fn otlp_run(
    proxy: &Proxy,
    tls: bool,
    auth: &str,
    extra: &[(&str, &str)],
    env: &[(&str, &str)],
    args: &[&str],
) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/agents/otlp.py");
    let extra: serde_json::Map<String, Value> = extra
        .iter()
        .map(|(k, v)| (k.to_string(), Value::from(*v)))
        .collect();
    let mut command = bounded("python3", Duration::from_secs(120));
    command
        .arg(script)
        .args(args)
        .env("OTLP_ADDRESS", format!("localhost:{}", proxy.port))
        .env("CA_FILE", proxy.ca_file())
        .env("AUTH", auth)
        .env("EXTRA_METADATA", Value::Object(extra).to_string())
        // requests prefers these to the exporter's own CA file when they are set.
        .env_remove("REQUESTS_CA_BUNDLE")
        .env_remove("CURL_CA_BUNDLE")
        .env("PLAINTEXT", if tls { "" } else { "1" });
    for (name, value) in env {
        command.env(name, value);
    }
    let out = command.output().expect("python3 runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("No module named 'opentelemetry"),
        "the OpenTelemetry packages are missing: run scripts/test.sh, which installs them"
    );
    assert!(out.status.success(), "otlp.py {args:?} failed: {stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("otlp.py {args:?} printed no JSON ({e}): {stdout}\n{stderr}"))
}
