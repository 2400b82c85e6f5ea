//! The listener accepts private keys in PKCS#8, PKCS#1 (RSA) and SEC1 (EC) PEM form and
//! serves a full chain. Keys are converted with the `openssl` command (installed by
//! `scripts/setup.sh test`).

mod common;

use std::process::Command;

use common::*;

fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl is installed");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, and a leaf for localhost signed by it whose key is in the `key_kind` format.
fn leaf_with_key(
    dir: &std::path::Path,
    key_kind: &str,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let p = |n: &str| dir.join(n).to_str().unwrap().to_string();
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        &p("ca.key"),
        "-out",
        &p("ca.pem"),
        "-days",
        "2",
        "-subj",
        "/CN=test CA",
    ]);
    match key_kind {
        "rsa-pkcs1" => openssl(&["genrsa", "-traditional", "-out", &p("leaf.key"), "2048"]),
        "ec-sec1" => {
            openssl(&[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                &p("leaf.pkcs8"),
            ]);
            openssl(&["ec", "-in", &p("leaf.pkcs8"), "-out", &p("leaf.key")]);
        }
        _ => openssl(&[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            &p("leaf.key"),
        ]),
    }
    openssl(&[
        "req",
        "-new",
        "-key",
        &p("leaf.key"),
        "-out",
        &p("leaf.csr"),
        "-subj",
        "/CN=localhost",
    ]);
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        &p("leaf.csr"),
        "-CA",
        &p("ca.pem"),
        "-CAkey",
        &p("ca.key"),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        &p("ext.cnf"),
        "-out",
        &p("leaf.pem"),
    ]);
    (
        dir.join("leaf.pem"),
        dir.join("leaf.key"),
        dir.join("ca.pem"),
    )
}

#[test]
fn pkcs8_pkcs1_and_sec1_keys_are_served() {
    let upstream = Upstream::start();
    for (kind, header) in [
        ("ec-pkcs8", "-----BEGIN PRIVATE KEY-----"),
        ("rsa-pkcs1", "-----BEGIN RSA PRIVATE KEY-----"),
        ("ec-sec1", "-----BEGIN EC PRIVATE KEY-----"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key, ca) = leaf_with_key(dir.path(), kind);
        assert!(
            std::fs::read_to_string(&key).unwrap().starts_with(header),
            "{kind}"
        );
        let pki = Pki {
            ca_pem: std::fs::read_to_string(&ca).unwrap(),
            cert,
            key,
            dir,
        };
        let proxy = Proxy::start(&pki, &upstream.url(), "[auth]\nsecret_token = \"t\"\n");
        let status = rt().block_on(async {
            proxy
                .client(true)
                .get(proxy.url("/"))
                .header("Authorization", "Bearer t")
                .send()
                .await
                .unwrap()
                .status()
        });
        assert_eq!(status, 200, "{kind}");
    }
}
