//! TLS lifecycle through the real proxy: certificate reload under traffic (file change,
//! Kubernetes-style symlink swap, broken file), SNI, client certificates in each mode and
//! as credentials, and the protocol/cipher policy.

use std::path::Path;
use std::time::Duration;

use crate::support::*;

const TOKEN: &str = "tls-token";

/// A proxy with the test token and `ssl` lines added to its `[ssl]` section.
fn proxy_with_ssl(pki: &Pki, upstream: &Upstream, ssl: &str) -> Proxy {
    Proxy::builder(pki, &upstream.url())
        .token(TOKEN)
        .config(&format!("[ssl]\n{ssl}\n"))
        .start()
}

async fn status(client: &reqwest::Client, url: &str, token: bool) -> Result<u16, reqwest::Error> {
    let mut req = client.post(url).body("{\"metadata\":{}}\n");
    if token {
        req = req.header("Authorization", "Bearer tls-token");
    }
    req.send().await.map(|r| r.status().as_u16())
}

/// Replace `path` atomically with `content`, as deployment tools do.
fn replace(path: &Path, content: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Wait until new connections are served a certificate signed by `ca`.
async fn wait_for_certificate_from(ca: &Ca, url: &str) {
    eventually("the new certificate", || async {
        status(&client_for(&ca.pem, false, None), url, true)
            .await
            .is_ok()
    })
    .await;
}

#[test]
fn reload_under_traffic_keeps_open_connections_and_falls_back_on_broken_files() {
    let (ca_a, ca_b) = (Ca::new("CA A"), Ca::new("CA B"));
    let pki = ca_a.server_pki(&["localhost"]);
    let upstream = Upstream::start();
    let proxy = proxy_with_ssl(&pki, &upstream, "reload_interval = \"200ms\"");
    let url = proxy.url("/intake/v2/events");
    let old_client = client_for(&ca_a.pem, false, None);
    rt().block_on(async {
        // A kept-alive connection, and an upload in flight, both on certificate A.
        assert_eq!(status(&old_client, &url, true).await.unwrap(), 202);
        let streamed = upstream.body_bytes();
        let upload = {
            let (client, url) = (old_client.clone(), url.clone());
            tokio::spawn(async move {
                let chunks = futures_util::stream::unfold(0u32, |i| async move {
                    if i == 8 {
                        return None;
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    Some((
                        Ok::<_, std::io::Error>(bytes::Bytes::from(format!("{{\"n\":{i}}}\n"))),
                        i + 1,
                    ))
                });
                client
                    .post(url)
                    .header("Authorization", "Bearer tls-token")
                    .body(reqwest::Body::wrap_stream(chunks))
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
            })
        };
        // The upload's connection is open and flowing (its first line at the upstream)
        // before the certificate changes.
        eventually("the upload at the upstream", || async {
            upstream.body_bytes() > streamed
        })
        .await;
        let (cert_b, key_b) = ca_b.issue("server", &["localhost"], false);
        replace(&pki.key, &key_b);
        replace(&pki.cert, &cert_b);
        let new_b = client_for(&ca_b.pem, false, None);
        eventually("certificate B on new connections", || async {
            status(&new_b, &url, true).await.is_ok()
        })
        .await;
        // New connections no longer get A ...
        assert!(status(&client_for(&ca_a.pem, false, None), &url, true)
            .await
            .is_err());
        // ... but the open ones carry on.
        assert_eq!(upload.await.unwrap().unwrap(), 202);
        assert_eq!(status(&old_client, &url, true).await.unwrap(), 202);

        // A broken file: the last good certificate stays.
        replace(
            &pki.cert,
            "-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n",
        );
        eventually("the reload failure in the log", || async {
            proxy.log_text().contains("certificate reload failed")
        })
        .await;
        assert_eq!(
            status(&client_for(&ca_b.pem, false, None), &url, true)
                .await
                .unwrap(),
            202
        );
        // The broken file stays for five polls (200 ms each; the scenario, not a wait for
        // something): it is one failed reload, not one per poll. Then the poller is proven
        // still running: a good certificate C written now is picked up by a later poll.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let failures = "apm_auth_proxy_reloads_total{file=\"certificates\",result=\"failure\"}";
        assert_eq!(sample(&metric_samples(&proxy).await, failures), 1.0);
        let ca_c = Ca::new("CA C");
        let (cert_c, key_c) = ca_c.issue("server", &["localhost"], false);
        replace(&pki.key, &key_c);
        replace(&pki.cert, &cert_c);
        wait_for_certificate_from(&ca_c, &url).await;
    });
    let log = proxy.log_text();
    let failure = log
        .lines()
        .find(|l| l.contains("certificate reload failed"))
        .unwrap();
    assert!(
        failure.contains(pki.cert.to_str().unwrap()),
        "names the file: {failure}"
    );
    assert_eq!(
        log.matches("certificate reload failed").count(),
        1,
        "reported once, not at every poll"
    );
}

#[test]
fn kubernetes_secret_symlink_swap_is_picked_up() {
    let (ca_a, ca_b) = (Ca::new("CA A"), Ca::new("CA B"));
    let upstream = Upstream::start();
    // The layout a Secret volume has: files are links through `..data` to a timestamped dir.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let write_version = |name: &str, ca: &Ca| {
        std::fs::create_dir(d.join(name)).unwrap();
        let (c, k) = ca.issue("server", &["localhost"], false);
        std::fs::write(d.join(name).join("tls.crt"), c).unwrap();
        std::fs::write(d.join(name).join("tls.key"), k).unwrap();
    };
    write_version("..2026_11_22_v1", &ca_a);
    std::os::unix::fs::symlink("..2026_11_22_v1", d.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/tls.crt", d.join("tls.crt")).unwrap();
    std::os::unix::fs::symlink("..data/tls.key", d.join("tls.key")).unwrap();
    let pki = Pki {
        ca_pem: ca_a.pem.clone(),
        cert: d.join("tls.crt"),
        key: d.join("tls.key"),
        dir: tempfile::tempdir().unwrap(),
    };
    let proxy = proxy_with_ssl(&pki, &upstream, "reload_interval = \"200ms\"");
    let url = proxy.url("/intake/v2/events");
    rt().block_on(async {
        assert_eq!(
            status(&client_for(&ca_a.pem, false, None), &url, true)
                .await
                .unwrap(),
            202
        );
        write_version("..2026_11_22_v2", &ca_b);
        std::os::unix::fs::symlink("..2026_11_22_v2", d.join("..data_tmp")).unwrap();
        std::fs::rename(d.join("..data_tmp"), d.join("..data")).unwrap();
        wait_for_certificate_from(&ca_b, &url).await;
    });
}

#[test]
fn sni_selects_the_certificate_by_server_name() {
    let (ca_default, ca_sni) = (Ca::new("default CA"), Ca::new("SNI CA"));
    let pki = ca_default.server_pki(&["localhost"]);
    let (c, k) = ca_sni.issue("apm", &["apm.example.test"], false);
    std::fs::write(pki.dir.path().join("apm.pem"), c).unwrap();
    std::fs::write(pki.dir.path().join("apm-key.pem"), k).unwrap();
    let ssl = format!(
        "[[ssl.sni]]\nserver_names = [\"apm.example.test\"]\ncertificate = {:?}\nkey = {:?}\n",
        pki.dir.path().join("apm.pem"),
        pki.dir.path().join("apm-key.pem")
    );
    let upstream = Upstream::start();
    // `[[ssl.sni]]` is an array of tables: it can follow the harness's sections.
    let proxy = Proxy::builder(&pki, &upstream.url())
        .token(TOKEN)
        .config(&ssl)
        .start();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", proxy.port).parse().unwrap();
    rt().block_on(async {
        let sni_client = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(ca_sni.pem.as_bytes()).unwrap())
            .tls_built_in_root_certs(false)
            .resolve("apm.example.test", addr)
            .build()
            .unwrap();
        let url = format!("https://apm.example.test:{}/intake/v2/events", proxy.port);
        assert_eq!(status(&sni_client, &url, true).await.unwrap(), 202);
        // localhost gets the default certificate, which the SNI CA did not sign.
        assert!(status(&sni_client, &proxy.url("/intake/v2/events"), true)
            .await
            .is_err());
        let default_client = client_for(&ca_default.pem, true, None);
        assert_eq!(
            status(&default_client, &proxy.url("/intake/v2/events"), true)
                .await
                .unwrap(),
            202
        );
    });
}

/// (proxy, client CA PEM, a good client identity, an untrusted one)
fn mtls_proxy(
    mode: &str,
    identities: &str,
    upstream: &Upstream,
) -> (Proxy, Ca, (String, String), (String, String)) {
    let server_ca = Ca::new("server CA");
    let pki = server_ca.server_pki(&["localhost"]);
    let client_ca = Ca::new("client CA");
    let rogue_ca = Ca::new("rogue CA");
    let good = client_ca.issue(
        "agent-1",
        &["agent-1.example", "spiffe://apm/agent-1"],
        true,
    );
    let rogue = rogue_ca.issue("agent-1", &["agent-1.example"], true);
    let ca_file = pki.dir.path().join("client-ca.pem");
    std::fs::write(&ca_file, &client_ca.pem).unwrap();
    let proxy = Proxy::builder(&pki, &upstream.url())
        .token(TOKEN)
        .config(&format!(
            "[ssl]\ncertificate_authorities = [{ca_file:?}]\n{mode}\n"
        ))
        .config(identities)
        .start();
    (proxy, server_ca, good, rogue)
}

#[test]
fn client_certificate_modes() {
    let upstream = Upstream::start();
    for mode in [
        "client_authentication = \"required\"",
        "",
        "client_authentication = \"optional\"",
        "client_authentication = \"none\"",
    ] {
        let (proxy, server_ca, good, rogue) = mtls_proxy(mode, "", &upstream);
        let url = proxy.url("/intake/v2/events");
        let required = mode.is_empty() || mode.contains("required");
        rt().block_on(async {
            let none = status(&client_for(&server_ca.pem, false, None), &url, true).await;
            let good = status(
                &client_for(&server_ca.pem, false, Some((&good.0, &good.1))),
                &url,
                true,
            )
            .await;
            let rogue = status(
                &client_for(&server_ca.pem, false, Some((&rogue.0, &rogue.1))),
                &url,
                true,
            )
            .await;
            assert_eq!(
                good.unwrap(),
                202,
                "{mode:?}: a CA-signed client certificate is accepted"
            );
            if mode.contains("none") {
                assert_eq!(none.unwrap(), 202, "{mode:?}");
                assert_eq!(rogue.unwrap(), 202, "{mode:?}: no certificate is requested");
            } else {
                assert!(
                    rogue.is_err(),
                    "{mode:?}: an untrusted certificate fails the handshake"
                );
                if required {
                    assert!(
                        none.is_err(),
                        "{mode:?}: no certificate fails the handshake"
                    );
                } else {
                    assert_eq!(none.unwrap(), 202, "{mode:?}");
                }
            }
        });
    }
}

#[test]
fn mapped_client_certificate_is_a_credential_and_cannot_be_impersonated() {
    let upstream = Upstream::start();
    let identities = "[[ssl.client_identities]]\nname = \"agent-one\"\nsan_uri = \"spiffe://apm/agent-1\"\nprivileges = [\"event:write\"]\n";
    let (proxy, server_ca, good, _) = mtls_proxy(
        "client_authentication = \"optional\"",
        identities,
        &upstream,
    );
    let url = proxy.url("/intake/v2/events");
    rt().block_on(async {
        let with_cert = client_for(&server_ca.pem, true, Some((&good.0, &good.1)));
        let resp = with_cert
            .post(&url)
            .header("X-Forwarded-Client-Cert", "Hash=forged;Subject=\"CN=admin\"")
            .header("X-SSL-Client-DN", "CN=admin")
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 202, "the certificate alone authorises event:write");
        let resp = with_cert.get(proxy.url("/config/v1/agents")).header("Accept", "text/plain").send().await.unwrap();
        assert_eq!(resp.status(), 403);
        assert_eq!(
            resp.text().await.unwrap(),
            "{\"error\":\"unauthorized: client certificate not permitted action \\\"config_agent:read\\\"\"}\n"
        );
        // Without the certificate the same request needs a credential.
        let anonymous = client_for(&server_ca.pem, true, None);
        assert_eq!(status(&anonymous, &url, false).await.unwrap(), 401);
    });
    let r = &upstream.requests()[0];
    assert!(r.headers.get("x-forwarded-client-cert").is_none());
    assert!(r.headers.get("x-ssl-client-dn").is_none());
    assert!(r.headers.get("authorization").is_none());
    assert!(proxy.log_text().contains("client_cert:agent-one"));
}

#[test]
fn protocol_and_cipher_policy_is_enforced() {
    let upstream = Upstream::start();
    let pki = pki();
    let tls13_only = proxy_with_ssl(&pki, &upstream, "supported_protocols = [\"TLSv1.3\"]");
    assert_eq!(curl_status(&tls13_only, &["--tlsv1.3"]), "200");
    assert_eq!(
        curl_status(&tls13_only, &["--tlsv1.2", "--tls-max", "1.2"]),
        "000"
    );
    let one_suite = proxy_with_ssl(
        &pki,
        &upstream,
        "cipher_suites = [\"TLS13_AES_256_GCM_SHA384\", \"TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384\"]",
    );
    assert_eq!(
        curl_status(
            &one_suite,
            &["--tlsv1.3", "--tls13-ciphers", "TLS_AES_256_GCM_SHA384"]
        ),
        "200"
    );
    assert_eq!(
        curl_status(
            &one_suite,
            &["--tlsv1.3", "--tls13-ciphers", "TLS_AES_128_GCM_SHA256"]
        ),
        "000"
    );
    assert_eq!(
        curl_status(
            &one_suite,
            &[
                "--tls-max",
                "1.2",
                "--ciphers",
                "ECDHE-ECDSA-AES256-GCM-SHA384"
            ]
        ),
        "200"
    );
    assert_eq!(
        curl_status(
            &one_suite,
            &[
                "--tls-max",
                "1.2",
                "--ciphers",
                "ECDHE-ECDSA-AES128-GCM-SHA256"
            ]
        ),
        "000"
    );
}

/// A client that really offers TLS 1.0 or 1.1 (OpenSSL with its security level lowered, as
/// old agents' runtimes do) is refused by the proxy with a handshake-failure alert — not by the
/// client itself — while the same client on TLS 1.2 is served.
#[test]
fn old_protocols_offered_by_a_real_client_are_refused_by_the_proxy() {
    let upstream = Upstream::start();
    let pki = pki();
    let proxy = Proxy::builder(&pki, &upstream.url()).token(TOKEN).start();
    let s_client = |version: &str| {
        let out = bounded("openssl", Duration::from_secs(30))
            .args(["s_client", version, "-cipher", "DEFAULT@SECLEVEL=0"])
            .args(["-connect", &format!("127.0.0.1:{}", proxy.port)])
            .args([
                "-servername",
                "localhost",
                "-CAfile",
                proxy.ca_file().to_str().unwrap(),
            ])
            .stdin(std::process::Stdio::null())
            .output()
            .expect("openssl is installed");
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    for old in ["-tls1", "-tls1_1"] {
        let said = s_client(old);
        // The alert comes from the server: the client offered the version and was told no.
        assert!(said.contains("alert handshake failure"), "{old}: {said}");
        assert!(said.contains("Cipher is (NONE)"), "{old}: {said}");
    }
    let said = s_client("-tls1_2");
    assert!(said.contains("New, TLSv1.2, Cipher is ECDHE"), "{said}");
    assert!(upstream.requests().is_empty());
}

#[test]
fn failed_handshakes_do_not_flood_the_log() {
    let upstream = Upstream::start();
    let pki = pki();
    let proxy = Proxy::builder(&pki, &upstream.url()).token(TOKEN).start();
    // Clients that do not trust the certificate, and clients with too old a protocol.
    for i in 0..20 {
        let args: &[&str] = if i % 2 == 0 {
            &[]
        } else {
            &["-k", "--tls-max", "1.1"]
        };
        assert_eq!(
            curl_status(
                &proxy,
                &["--cacert", "/dev/null"]
                    .iter()
                    .chain(args)
                    .copied()
                    .collect::<Vec<_>>()
            ),
            "000"
        );
    }
    assert_eq!(curl_status(&proxy, &[]), "200", "the proxy still serves");
    let log = proxy.log_text();
    assert!(
        !log.contains("handshake error"),
        "one line per failed handshake: {log}"
    );
}

/// Failed handshakes are counted where they fail (the connection's owner), not from log
/// lines: the count holds with logging off.
#[test]
fn failed_handshakes_are_counted_with_logging_off() {
    let upstream = Upstream::start();
    let pki = pki();
    let proxy = Proxy::builder(&pki, &upstream.url())
        .token(TOKEN)
        .config("[log]\nlevel = \"off\"\n")
        .start();
    let failures = || {
        rt().block_on(async {
            sample(
                &metric_samples(&proxy).await,
                "apm_auth_proxy_tls_handshake_failures_total",
            )
        })
    };
    // (The harness's start-up probe, a connection closed before any TLS, may be one.)
    let before = failures();
    for _ in 0..4 {
        assert_eq!(curl_status(&proxy, &["--cacert", "/dev/null"]), "000");
    }
    assert_eq!(curl_status(&proxy, &[]), "200", "the proxy still serves");
    assert_eq!(failures() - before, 4.0);
    assert_eq!(proxy.log_text(), "", "logging is off");
}

/// Clients that send an IP address as SNI (OpenSSL-based ones, agents configured with
/// `https://10.0.0.5:8200`) are served, and rustls' warning about it is not written for every
/// connection.
#[test]
fn ip_address_sni_is_served_without_a_warning_per_connection() {
    let upstream = Upstream::start();
    let pki = pki();
    let proxy = Proxy::builder(&pki, &upstream.url()).token(TOKEN).start();
    for _ in 0..3 {
        let out = bounded("openssl", Duration::from_secs(30))
            .args([
                "s_client",
                "-brief",
                "-connect",
                &format!("127.0.0.1:{}", proxy.port),
            ])
            .args([
                "-servername",
                "127.0.0.1",
                "-CAfile",
                proxy.ca_file().to_str().unwrap(),
            ])
            .stdin(std::process::Stdio::null())
            .output()
            .expect("openssl is installed");
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(said.contains("Verification: OK"), "{said}");
    }
    assert_eq!(curl_status(&proxy, &[]), "200", "the proxy still serves");
    let log = proxy.log_text();
    assert!(!log.contains("Illegal SNI"), "{log}");
}

/// With polling off, only SIGHUP reloads. A control proxy polling every 200 ms is given the
/// same change: once it has reloaded, the proxy without polling must still serve the old
/// certificate — decided by the order of events, not by a wait.
#[test]
fn sighup_reloads_certificates_when_polling_is_off() {
    let (ca_a, ca_b) = (Ca::new("CA A"), Ca::new("CA B"));
    let pki = ca_a.server_pki(&["localhost"]);
    let control_pki = ca_a.server_pki(&["localhost"]);
    let upstream = Upstream::start();
    let proxy = proxy_with_ssl(&pki, &upstream, "reload_interval = \"0s\"");
    let control = proxy_with_ssl(&control_pki, &upstream, "reload_interval = \"200ms\"");
    let url = proxy.url("/intake/v2/events");
    for p in [&pki, &control_pki] {
        let (cert_b, key_b) = ca_b.issue("server", &["localhost"], false);
        replace(&p.key, &key_b);
        replace(&p.cert, &cert_b);
    }
    rt().block_on(async {
        wait_for_certificate_from(&ca_b, &control.url("/intake/v2/events")).await;
        // Two more control polls' worth, so a poll of the other would have happened too.
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(
            status(&client_for(&ca_a.pem, false, None), &url, true)
                .await
                .unwrap(),
            202,
            "no reload without a signal"
        );
        proxy.signal("HUP");
        wait_for_certificate_from(&ca_b, &url).await;
    });
}

#[test]
fn check_warns_about_a_certificate_that_expires_soon() {
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(1);
    params.not_after = time::OffsetDateTime::now_utc() + time::Duration::hours(5 * 24 + 6);
    let cert = params.self_signed(&key).unwrap();
    std::fs::write(dir.path().join("c.pem"), cert.pem()).unwrap();
    std::fs::write(dir.path().join("k.pem"), key.serialize_pem()).unwrap();
    let cfg = dir.path().join("proxy.toml");
    std::fs::write(
        &cfg,
        "[ssl]\ncertificate = \"c.pem\"\nkey = \"k.pem\"\n[auth]\nsecret_token = \"t\"\n",
    )
    .unwrap();
    let (code, _, err) = run_cli(&["check", "--config", cfg.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("warning: a served certificate expires in 5 days "),
        "{err}"
    );
}

// --- private key formats: PKCS#8, PKCS#1 (RSA), SEC1 (EC), converted with `openssl` ---

fn openssl(args: &[&str]) {
    let out = bounded("openssl", Duration::from_secs(60))
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
        let proxy = Proxy::builder(&pki, &upstream.url())
            .token("format-test-token-91b3")
            .start();
        let status = rt().block_on(async {
            proxy
                .client(true)
                .get(proxy.url("/"))
                .header("Authorization", "Bearer format-test-token-91b3")
                .send()
                .await
                .unwrap()
                .status()
        });
        assert_eq!(status, 200, "{kind}");
    }
}

/// Scan the listener with a real TLS scanner (sslyze, from PyPI, installed by
/// `scripts/setup.sh test`): nothing below TLS 1.2, and only forward-secret AEAD suites.
#[test]
fn sslyze_finds_no_old_protocol_and_no_weak_cipher() {
    let upstream = Upstream::start();
    let pki = pki();
    let proxy = Proxy::builder(&pki, &upstream.url())
        .token("format-test-token-91b3")
        .start();
    let out_file = proxy.dir.path().join("scan.json");
    let out = bounded("python3", Duration::from_secs(300))
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
