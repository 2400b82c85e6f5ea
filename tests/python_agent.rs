//! The official Elastic APM Python agent (`elastic-apm` from PyPI, installed by
//! `scripts/test.sh`) sends a transaction, a span and an error through the proxy, once with
//! a secret token and once with an API key; the stand-in APM Server receives all three,
//! with no `Authorization` header.

mod common;

use std::io::Read;
use std::process::Command;

use common::*;

fn run_agent(proxy: &Proxy, credential: (&str, &str)) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/agents/python_agent.py");
    let out = Command::new("python3")
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

/// The ndjson the agent sent, decompressed.
fn ndjson(r: &Recorded) -> String {
    let mut text = String::new();
    match r
        .headers
        .get("content-encoding")
        .map(|v| v.to_str().unwrap())
    {
        Some("gzip") => {
            flate2::read::GzDecoder::new(&r.body[..])
                .read_to_string(&mut text)
                .unwrap();
        }
        Some("deflate") => {
            flate2::read::ZlibDecoder::new(&r.body[..])
                .read_to_string(&mut text)
                .unwrap();
        }
        _ => text = String::from_utf8(r.body.clone()).unwrap(),
    }
    text
}

#[test]
fn python_agent_reports_through_the_proxy_with_token_and_api_key() {
    let pki = pki();
    let upstream = Upstream::start();
    let mut key = String::new();
    let extra = format!("[auth]\nsecret_token = \"python-token\"\n{API_KEYS}");
    let proxy = Proxy::start_with(&pki, &upstream.url(), &extra, |dir| {
        key = create_key(dir, "event:write,config_agent:read", &[]).1;
    });
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
            .map(ndjson)
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
