//! The official agents through the real proxy: the Elastic APM Python agent (`elastic-apm`
//! from PyPI) with a secret token and with an API key, and the RUM agent (`@elastic/apm-rum`
//! from npm) in Debian's headless Chromium, anonymously. `scripts/setup.sh test` installs
//! them; each run is bounded in time.

use std::path::Path;
use std::time::Duration;

use base64::Engine;

use crate::support::*;

// --- the Python agent: a transaction, a span and an error, with no Authorization upstream ---

pub(crate) fn run_agent(proxy: &Proxy, credential: (&str, &str)) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/agents/python_agent.py");
    let out = bounded("python3", Duration::from_secs(120))
        .arg(script)
        .env("APM_URL", format!("https://localhost:{}", proxy.port))
        .env("APM_CA_FILE", proxy.ca_file())
        .env(credential.0, credential.1)
        .output()
        .expect("python3 runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("No module named 'elasticapm'"),
        "the elastic-apm package is missing: run scripts/test.sh, which installs it"
    );
    assert!(out.status.success(), "agent failed: {stderr}");
}

#[test]
fn python_agent_reports_through_the_proxy_with_token_and_api_key() {
    let pki = pki();
    let upstream = Upstream::start();
    let mut key = String::new();
    let proxy = Proxy::builder(&pki, &upstream.url())
        .token("python-token")
        .api_keys()
        .prepare(|dir| key = create_key(dir, "event:write,config_agent:read", &[]).1)
        .start();
    for credential in [
        ("APM_SECRET_TOKEN", "python-token"),
        ("APM_API_KEY", key.as_str()),
    ] {
        let before = upstream.requests().len();
        run_agent(&proxy, credential);
        let requests = upstream.requests().split_off(before);
        let events: String = requests
            .iter()
            .filter(|r| r.uri.starts_with("/intake/v2/events"))
            .map(decoded)
            .collect();
        for kind in [
            "{\"metadata\"",
            "{\"transaction\"",
            "{\"span\"",
            "{\"error\"",
        ] {
            assert!(
                events.contains(kind),
                "{}: no {kind} in {events}",
                credential.0
            );
        }
        assert!(events.contains("SELECT * FROM users") && events.contains("ZeroDivisionError"));
        for r in &requests {
            assert!(r.headers.get("authorization").is_none(), "{:?}", r.headers);
        }
    }
    let log = proxy.log_text();
    assert!(
        log.contains("credential=\"token:default\"") || log.contains("credential=token:default"),
        "{log}"
    );
    assert!(
        !log.contains("status=401"),
        "the agent was never refused: {log}"
    );
}

/// The official RUM agent on a page in headless Chromium, sending to `proxy` (with `jwt`: a
/// logged-in user's page whose `apmRequest` hook attaches the token); what the browser saw.
pub(crate) fn rum_page(proxy: &Proxy, pki: &Pki, jwt: Option<&str>) -> serde_json::Value {
    browser_page(proxy, pki, "rum_page.js", jwt.as_slice())
}

/// The OpenTelemetry JS web SDK on a page in headless Chromium, exporting one span of
/// `service` over OTLP/HTTP to `proxy` anonymously; what the browser saw.
pub(crate) fn otel_page(proxy: &Proxy, pki: &Pki, service: &str) -> serde_json::Value {
    browser_page(proxy, pki, "otel_page.js", &[service])
}

/// `tests/browser/<driver> <proxy url> <key pin> <args>`: its one JSON line.
fn browser_page(proxy: &Proxy, pki: &Pki, driver: &str, args: &[&str]) -> serde_json::Value {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let packages = [
        "playwright-core",
        "@elastic/apm-rum",
        "@opentelemetry/sdk-trace-web",
        "esbuild",
    ];
    assert!(
        packages
            .iter()
            .all(|p| dir.join("node_modules").join(p).is_dir()),
        "npm packages missing: run `scripts/setup.sh test` (or `npm ci --prefix tests/browser`)"
    );
    assert!(
        Path::new("/usr/bin/chromium").exists(),
        "Chromium missing: run `scripts/setup.sh test` (Debian package `chromium`)"
    );
    let mut node = bounded("node", Duration::from_secs(120));
    node.arg(dir.join(driver))
        .arg(proxy.url(""))
        .arg(spki_pin(&pki.cert))
        .args(args);
    let out = node.output().expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    let result: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| {
        panic!(
            "no result from the browser driver ({e}):\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    eprintln!("browser saw: {result}");
    result
}

// --- the RUM agent in Chromium: a page served on another loopback port sends its page-load
// transaction through the proxy; the CORS preflight must succeed, the events arrive ---

/// base64(SHA-256(SubjectPublicKeyInfo)) of the proxy's certificate: Chromium trusts exactly
/// this key (`--ignore-certificate-errors-spki-list`), nothing else.
fn spki_pin(cert_pem: &Path) -> String {
    let pem = std::fs::read(cert_pem).unwrap();
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).unwrap();
    let cert = pem.parse_x509().unwrap();
    let spki = cert.tbs_certificate.subject_pki.raw;
    base64::engine::general_purpose::STANDARD.encode(sha256(spki))
}

#[test]
fn the_official_rum_agent_in_chromium_reaches_the_upstream_anonymously() {
    let pki = pki();
    let upstream = Upstream::start();
    let proxy = Proxy::builder(&pki, &upstream.url())
        .token("rum-agent-token-7c2e")
        .config("[rum]\nenabled = true\nallow_origins = [\"http://127.0.0.1:*\"]\n")
        .start();
    let result = rum_page(&proxy, &pki, None);
    assert_eq!(result["preflight"], 200, "preflight: {result}");
    assert_eq!(
        result["intake"],
        202,
        "intake: {result}\n{}",
        proxy.log_text()
    );

    let intake = upstream
        .requests()
        .into_iter()
        .find(|r| r.uri.contains("/rum/events"))
        .expect("the upstream received the RUM events");
    assert!(intake.headers.get("authorization").is_none());
    let body = decoded(&intake);
    assert!(
        body.contains("browser-test"),
        "service name in metadata: {body}"
    );
    assert!(
        body.contains("page-load"),
        "a page-load transaction: {body}"
    );
}
