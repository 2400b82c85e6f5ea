//! The official RUM agent (`@elastic/apm-rum`, npm) in Debian's headless Chromium, driven by
//! `playwright-core`: a page served on another loopback port sends its page-load transaction
//! through the proxy, anonymously. The CORS preflight must succeed and the stand-in upstream
//! must receive the events. `scripts/setup.sh test` installs Chromium and the npm packages.

mod common;

use std::io::Read;
use std::path::Path;
use std::process::Command;

use base64::Engine;
use common::*;

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
    let driver = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    assert!(
        driver.join("node_modules/playwright-core").is_dir()
            && driver.join("node_modules/@elastic/apm-rum").is_dir(),
        "npm packages missing: run `scripts/setup.sh test` (or `npm ci --prefix tests/browser`)"
    );
    assert!(
        Path::new("/usr/bin/chromium").exists(),
        "Chromium missing: run `scripts/setup.sh test` (Debian package `chromium`)"
    );
    let pki = pki();
    let upstream = Upstream::start();
    let proxy = Proxy::start(
        &pki,
        &upstream.url(),
        "[auth]\nsecret_token = \"tok\"\n[rum]\nenabled = true\nallow_origins = [\"http://127.0.0.1:*\"]\n",
    );
    let out = Command::new("node")
        .arg(driver.join("rum_page.js"))
        .arg(proxy.url(""))
        .arg(spki_pin(&pki.cert))
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    let result: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| {
        panic!(
            "no result from the browser driver ({e}):\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    eprintln!("browser saw: {result}");
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
    let mut body = String::new();
    match intake
        .headers
        .get("content-encoding")
        .map(|v| v.to_str().unwrap())
    {
        Some("gzip") => {
            flate2::read::MultiGzDecoder::new(&intake.body[..])
                .read_to_string(&mut body)
                .unwrap();
        }
        _ => body = String::from_utf8(intake.body.clone()).unwrap(),
    }
    assert!(
        body.contains("browser-test"),
        "service name in metadata: {body}"
    );
    assert!(
        body.contains("page-load"),
        "a page-load transaction: {body}"
    );
}
