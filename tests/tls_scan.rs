//! Scan the listener with a real TLS scanner (sslyze, from PyPI, installed by
//! `scripts/setup.sh test`): nothing below TLS 1.2, and only forward-secret AEAD suites.

mod common;

use common::*;

#[test]
fn sslyze_finds_no_old_protocol_and_no_weak_cipher() {
    let upstream = Upstream::start();
    let pki = pki();
    let proxy = Proxy::start(&pki, &upstream.url(), "[auth]\nsecret_token = \"t\"\n");
    let out_file = proxy.dir.path().join("scan.json");
    let out = std::process::Command::new("python3")
        .args([
            "-m",
            "sslyze",
            "--mozilla_config=disable",
            "--sslv2",
            "--sslv3",
            "--tlsv1",
        ])
        .args([
            "--tlsv1_1",
            "--tlsv1_2",
            "--tlsv1_3",
            "--heartbleed",
            "--openssl_ccs",
            "--compression",
        ])
        .arg(format!("--json_out={}", out_file.display()))
        .arg(format!("127.0.0.1:{}", proxy.port))
        .output()
        .expect("python3 runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("No module named sslyze"),
        "sslyze is missing: run scripts/test.sh, which installs it"
    );
    assert!(out.status.success(), "sslyze failed: {stderr}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out_file).unwrap()).unwrap();
    let result = &report["server_scan_results"][0]["scan_result"];
    let accepted = |scan: &str| -> Vec<(String, u64)> {
        assert_eq!(result[scan]["status"], "COMPLETED", "{scan}");
        result[scan]["result"]["accepted_cipher_suites"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["cipher_suite"]["name"].as_str().unwrap().to_string(),
                    c["cipher_suite"]["key_size"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    for old in [
        "ssl_2_0_cipher_suites",
        "ssl_3_0_cipher_suites",
        "tls_1_0_cipher_suites",
        "tls_1_1_cipher_suites",
    ] {
        assert_eq!(accepted(old), vec![], "{old} must be refused");
    }
    let tls12 = accepted("tls_1_2_cipher_suites");
    let tls13 = accepted("tls_1_3_cipher_suites");
    assert!(!tls12.is_empty() && !tls13.is_empty());
    for (name, bits) in tls12.iter().chain(&tls13) {
        let forward_secret = name.starts_with("TLS_ECDHE_") || !name.contains("_WITH_");
        let aead = name.contains("_GCM_") || name.contains("CHACHA20_POLY1305");
        assert!(
            forward_secret && aead && *bits >= 128,
            "weak suite offered: {name} ({bits} bits)"
        );
    }
    for vuln in ["heartbleed", "openssl_ccs_injection", "tls_compression"] {
        assert_eq!(result[vuln]["status"], "COMPLETED", "{vuln}");
    }
    assert_eq!(
        result["heartbleed"]["result"]["is_vulnerable_to_heartbleed"],
        false
    );
    assert_eq!(
        result["tls_compression"]["result"]["supports_compression"],
        false
    );
}
