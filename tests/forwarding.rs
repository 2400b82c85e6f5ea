//! What reaches the upstream: no client credential, the proxy's own forwarding headers,
//! bodies streamed chunk by chunk and byte for byte; and what the client sees when the
//! upstream is gone or the request is ambiguous.

mod common;

use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

const TOKEN: &str = "[auth]\nsecret_token = \"agent-token\"\n";

fn post(client: &reqwest::Client, url: String) -> reqwest::RequestBuilder {
    client
        .post(url)
        .header("Authorization", "Bearer agent-token")
        .header("Content-Type", "application/x-ndjson")
}

/// POST one small authenticated event over HTTP/1.1; the status code.
fn send_small_event(proxy: &Proxy) -> reqwest::StatusCode {
    rt().block_on(async {
        post(&proxy.client(false), proxy.url("/intake/v2/events"))
            .body("x")
            .send()
            .await
            .unwrap()
            .status()
    })
}

#[test]
fn credentials_never_reach_the_upstream_over_h1_or_h2() {
    let pki = pki();
    let upstream = Upstream::start();
    let extra = format!("{TOKEN}{API_KEYS}[log]\nlevel = \"trace\"\n");
    let mut key = String::new();
    let proxy = Proxy::start_with(&pki, &upstream.url(), &extra, |dir| {
        key = create_key(dir, "event:write", &[]).1;
    });
    rt().block_on(async {
        for h2 in [false, true] {
            let client = proxy.client(h2);
            for auth in ["Bearer agent-token".to_string(), format!("ApiKey {key}")] {
                let resp = client
                    .post(proxy.url("/intake/v2/events"))
                    .header("Authorization", &auth)
                    .header("Proxy-Authorization", "Basic c2VjcmV0")
                    .body("{\"metadata\":{}}\n")
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), 202);
                assert_eq!(resp.version() == reqwest::Version::HTTP_2, h2);
            }
        }
    });
    let requests = upstream.requests();
    assert_eq!(requests.len(), 4);
    for r in &requests {
        assert!(r.headers.get("authorization").is_none(), "{:?}", r.headers);
        assert!(r.headers.get("proxy-authorization").is_none());
        assert_eq!(r.body, b"{\"metadata\":{}}\n");
    }
    // Not in any log line either, even at trace level.
    let log = proxy.log_text();
    assert!(log.contains("api_key:"), "access log names the key id");
    let secret = String::from_utf8(
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &key).unwrap(),
    )
    .unwrap();
    let secret = secret.split(':').nth(1).unwrap();
    for needle in ["agent-token", key.as_str(), secret, "c2VjcmV0"] {
        let leaks: Vec<&str> = log.lines().filter(|l| l.contains(needle)).collect();
        assert!(
            leaks.is_empty(),
            "log contains a credential {needle}: {leaks:#?}"
        );
    }
}

#[test]
fn upstream_token_replaces_the_client_credential() {
    let pki = pki();
    let upstream = Upstream::start();
    // Keys before the first table header land in the harness's [upstream] section.
    let extra = format!(
        "secret_token = {{ file = \"upstream-token\" }}\n{TOKEN}[log]\nlevel = \"debug\"\n"
    );
    let proxy = Proxy::start_with(&pki, &upstream.url(), &extra, |dir| {
        std::fs::write(dir.join("upstream-token"), "internal-secret\n").unwrap();
    });
    let status = send_small_event(&proxy);
    assert_eq!(status, 202);
    let r = &upstream.requests()[0];
    assert_eq!(r.headers.get_all("authorization").iter().count(), 1);
    assert_eq!(
        r.headers.get("authorization").unwrap(),
        "Bearer internal-secret"
    );
    assert!(!proxy.log_text().contains("internal-secret"));
}

#[test]
fn spoofed_forwarding_headers_are_replaced_unless_the_peer_is_trusted() {
    let pki = pki();
    let upstream = Upstream::start();
    let untrusted = Proxy::start(&pki, &upstream.url(), TOKEN);
    let trusted = Proxy::start(
        &pki,
        &upstream.url(),
        &format!("{TOKEN}[client_ip]\ntrusted_proxies = [\"127.0.0.0/8\", \"::1\"]\n"),
    );
    rt().block_on(async {
        for proxy in [&untrusted, &trusted] {
            let client = proxy.client(false);
            let resp = post(&client, proxy.url("/intake/v2/events"))
                .header("X-Forwarded-For", "6.6.6.6, 203.0.113.9")
                .header("X-Real-IP", "7.7.7.7")
                .header("X-Forwarded-Proto", "http")
                .body("x")
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 202);
            let resp = post(&client, proxy.url("/intake/v2/events"))
                .header("Forwarded", "for=6.6.6.6, for=\"[2001:db8::7]\"")
                .body("x")
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 202);
        }
    });
    let r = upstream.requests();
    let expect = [
        ("127.0.0.1", "for=127.0.0.1;proto=https"),
        ("127.0.0.1", "for=127.0.0.1;proto=https"),
        // Trusted peer: X-Real-IP outranks X-Forwarded-For, as in APM Server.
        ("7.7.7.7", "for=7.7.7.7;proto=https"),
        ("2001:db8::7", "for=\"[2001:db8::7]\";proto=https"),
    ];
    for (rec, (ip, fwd)) in r.iter().zip(expect) {
        assert_eq!(rec.headers.get_all("x-forwarded-for").iter().count(), 1);
        assert_eq!(rec.headers.get("x-forwarded-for").unwrap(), ip);
        assert_eq!(rec.headers.get("x-real-ip").unwrap(), ip);
        assert_eq!(rec.headers.get("forwarded").unwrap(), fwd);
        assert_eq!(rec.headers.get("x-forwarded-proto").unwrap(), "https");
    }
}

#[test]
fn slow_chunked_upload_streams_chunk_by_chunk() {
    let pki = pki();
    let upstream = Upstream::start();
    let proxy = Proxy::start(&pki, &upstream.url(), TOKEN);
    for h2 in [false, true] {
        let client = proxy.client(h2);
        let (finished_sending, status) = rt().block_on(async {
            let chunks = futures_util::stream::unfold(0u32, |i| async move {
                if i == 5 {
                    return None;
                }
                if i > 0 {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                let line = format!("{{\"transaction\":{{\"id\":\"{i}\"}}}}\n");
                Some((Ok::<_, std::io::Error>(bytes::Bytes::from(line)), i + 1))
            });
            let resp = post(&client, proxy.url("/intake/v2/events"))
                .body(reqwest::Body::wrap_stream(chunks))
                .send()
                .await
                .unwrap();
            (Instant::now(), resp.status())
        });
        assert_eq!(status, 202);
        let rec = upstream.requests().pop().unwrap();
        assert!(rec.complete);
        assert_eq!(rec.body.iter().filter(|&&b| b == b'\n').count(), 5);
        // The first chunk reached the APM Server long before the client finished sending
        // (1.2 s of pauses; a buffering proxy would deliver everything at the end).
        let first = rec.chunk_times[0];
        assert!(
            finished_sending.duration_since(first) >= Duration::from_millis(600),
            "h2={h2}: the upload was buffered ({:?} between first upstream chunk and end)",
            finished_sending.duration_since(first)
        );
        assert!(
            rec.chunk_times.len() >= 4,
            "h2={h2}: {} chunks",
            rec.chunk_times.len()
        );
    }
}

#[test]
fn hundred_megabyte_upload_and_gzip_body_arrive_byte_identical() {
    let pki = pki();
    let upstream = Upstream::start();
    let proxy = Proxy::start(&pki, &upstream.url(), TOKEN);
    let big: Vec<u8> = (0..100 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    for i in 0..2000 {
        writeln!(
            gz,
            "{{\"span\":{{\"id\":\"{i:016x}\",\"name\":\"SELECT\"}}}}"
        )
        .unwrap();
    }
    let gz = gz.finish().unwrap();
    rt().block_on(async {
        let resp = post(&proxy.client(false), proxy.url("/intake/v2/events"))
            .body(big.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 202);
        let resp = post(&proxy.client(true), proxy.url("/intake/v2/events"))
            .header("Content-Encoding", "gzip")
            .body(gz.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 202);
    });
    let r = upstream.requests();
    assert_eq!(r[0].body_len, big.len());
    assert_eq!(r[0].body_sha256, sha256(&big));
    assert_eq!(r[1].body, gz);
    assert_eq!(r[1].headers.get("content-encoding").unwrap(), "gzip");
}

#[test]
fn upstream_down_gives_json_502_and_recovers() {
    let pki = pki();
    let mut upstream = Upstream::start();
    let addr = upstream.addr;
    let proxy = Proxy::start(&pki, &upstream.url(), TOKEN);
    let client = proxy.client(false);
    assert_eq!(send_small_event(&proxy), 202);
    upstream.stop();
    rt().block_on(async {
        let started = Instant::now();
        let resp = post(&client, proxy.url("/intake/v2/events"))
            .header("Accept", "text/plain")
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 502);
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(
            resp.text().await.unwrap(),
            "{\"error\":\"bad gateway: the APM Server is unreachable\"}\n"
        );
    });
    let upstream = Upstream::start_on(addr);
    assert_eq!(send_small_event(&proxy), 202);
    assert_eq!(upstream.requests().len(), 1);
}

#[test]
fn upstream_that_never_answers_gives_504() {
    let pki = pki();
    // Accepts connections, reads, never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in silent.incoming().take(4).flatten() {
            held.push(s);
        }
        std::thread::sleep(Duration::from_secs(30));
    });
    let proxy = Proxy::start(&pki, &format!("http://{addr}"), TOKEN);
    let status = send_small_event(&proxy);
    assert_eq!(status, 504);
}

fn curl(args: &[&str]) -> (String, String) {
    let out = Command::new("curl")
        .args(args)
        .output()
        .expect("curl is installed");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn ambiguous_paths_and_duplicate_credentials_are_rejected_with_curl() {
    let pki = pki();
    let upstream = Upstream::start();
    let proxy = Proxy::start(&pki, &upstream.url(), TOKEN);
    let ca = proxy.ca_file();
    let ca = ca.to_str().unwrap();
    for path in [
        "/intake/v2/rum/events/../events",
        "/intake/v2/rum/events/%2e%2e/events",
        "/intake%2Fv2/events",
        "/intake/v2/%65vents",
        "//intake/v2/events",
        "/intake/v2/./events",
    ] {
        let url = proxy.url(path);
        let (out, err) = curl(&[
            "-s",
            "--http1.1",
            "--path-as-is",
            "--cacert",
            ca,
            "-H",
            "Authorization: Bearer agent-token",
            "-H",
            "Accept:",
            "-d",
            "x",
            "-w",
            "\n%{http_code}",
            &url,
        ]);
        assert!(out.ends_with("\n400"), "{path}: {out} {err}");
        assert!(
            out.starts_with("{\"error\":\"invalid request path: "),
            "{path}: {out}"
        );
    }
    let url = proxy.url("/intake/v2/events");
    let (out, _) = curl(&[
        "-s",
        "--cacert",
        ca,
        "-H",
        "Authorization: Bearer agent-token",
        "-H",
        "Authorization: Bearer agent-token",
        "-d",
        "x",
        "-w",
        "\n%{http_code}",
        &url,
    ]);
    assert!(out.ends_with("\n400"), "{out}");
    assert!(
        upstream.requests().is_empty(),
        "nothing ambiguous was forwarded"
    );
}

#[test]
fn connection_stays_open_after_a_rejection() {
    let pki = pki();
    let upstream = Upstream::start();
    let proxy = Proxy::start(&pki, &upstream.url(), TOKEN);
    let ca = proxy.ca_file();
    let url = proxy.url("/intake/v2/events");
    // One curl, two requests on one connection: a 401 with a body, then an accepted one.
    let (out, err) = curl(&[
        "-s",
        "--http1.1",
        "--cacert",
        ca.to_str().unwrap(),
        "-d",
        "{\"metadata\":{}}",
        "-H",
        "Authorization: Bearer wrong",
        "-w",
        "%{http_code} %{num_connects}\n",
        "-o",
        "/dev/null",
        &url,
        "--next",
        "--http1.1",
        "--cacert",
        ca.to_str().unwrap(),
        "-d",
        "{\"metadata\":{}}",
        "-H",
        "Authorization: Bearer agent-token",
        "-w",
        "%{http_code} %{num_connects}\n",
        "-o",
        "/dev/null",
        &url,
    ]);
    assert_eq!(out, "401 1\n202 0\n", "{err}");
}

#[test]
fn client_that_reads_only_after_sending_sees_the_rejection() {
    let pki = pki();
    let upstream = Upstream::start();
    let proxy = Proxy::start(&pki, &upstream.url(), TOKEN);
    // Python's http.client sends the whole body before reading the response.
    let script = format!(
        r#"
import http.client, ssl
ctx = ssl.create_default_context(cafile={ca:?})
c = http.client.HTTPSConnection("localhost", {port}, context=ctx, timeout=20)
c.request("POST", "/intake/v2/events", body=b"x" * (8 * 1024 * 1024), headers={{"Authorization": "Bearer wrong"}})
r = c.getresponse()
print(r.status, r.read().decode())
"#,
        ca = proxy.ca_file(),
        port = proxy.port
    );
    let out = Command::new("python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.trim(),
        "401 {\"error\":\"authentication failed\"}",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(upstream.requests().is_empty());
}

#[test]
fn upload_longer_than_the_upstream_read_timeout_completes() {
    // The harness sets upstream.read_timeout = 5s: it bounds upstream *silence*, and an
    // agent streaming events for longer than that must not be cut off.
    let pki = pki();
    let upstream = Upstream::start();
    let proxy = Proxy::start(&pki, &upstream.url(), TOKEN);
    let status = rt().block_on(async {
        let chunks = futures_util::stream::unfold(0u32, |i| async move {
            if i == 16 {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(450)).await;
            Some((
                Ok::<_, std::io::Error>(bytes::Bytes::from(format!("{{\"n\":{i}}}\n"))),
                i + 1,
            ))
        });
        post(&proxy.client(false), proxy.url("/intake/v2/events"))
            .body(reqwest::Body::wrap_stream(chunks))
            .send()
            .await
            .unwrap()
            .status()
    });
    assert_eq!(status, 202);
    let r = &upstream.requests()[0];
    assert!(r.complete);
    assert_eq!(r.body.iter().filter(|&&b| b == b'\n').count(), 16);
}

#[test]
fn only_tls_1_2_and_1_3_are_accepted() {
    let pki = pki();
    let upstream = Upstream::start();
    let proxy = Proxy::start(&pki, &upstream.url(), TOKEN);
    let attempt = |args: &[&str]| curl_status(&proxy, args);
    assert_eq!(attempt(&["--tlsv1.2", "--tls-max", "1.2"]), "200");
    assert_eq!(attempt(&["--tlsv1.3"]), "200");
    assert_eq!(
        attempt(&["--tlsv1.0", "--tls-max", "1.1"]),
        "000",
        "TLS 1.0/1.1 must be refused"
    );
    // ALPN offers h2 and http/1.1.
    // The later `-w` wins: print the negotiated HTTP version.
    let h2 = curl_status(&proxy, &["-w", "%{http_version}"]);
    assert_eq!(h2, "2");
}

#[test]
fn client_hanging_up_mid_upload_is_not_an_error_line() {
    let pki = pki();
    let upstream = Upstream::start();
    let proxy = Proxy::start(&pki, &upstream.url(), TOKEN);
    rt().block_on(async {
        let chunks = futures_util::stream::unfold(0u32, |i| async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            Some((
                Ok::<_, std::io::Error>(bytes::Bytes::from(format!("{{\"n\":{i}}}\n"))),
                i + 1,
            ))
        });
        let request = post(&proxy.client(false), proxy.url("/intake/v2/events"))
            .body(reqwest::Body::wrap_stream(chunks))
            .send();
        // The client gives up after half a second, mid-body.
        assert!(tokio::time::timeout(Duration::from_millis(500), request)
            .await
            .is_err());
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let access = loop {
        let log = proxy.log_text();
        if let Some(line) = log.lines().find(|l| l.contains(" access: ")) {
            break line.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no access log line for the aborted request: {log}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        !access.contains("error=\"-\""),
        "the access log records the failure: {access}"
    );
    assert!(
        !proxy.log_text().contains("ERROR"),
        "no ERROR line for a client hang-up"
    );
}

#[test]
fn http2_rejection_of_a_request_with_a_body_reaches_curl() {
    // A reply sent while the request body is still unread used to end in RST_STREAM, which
    // curl reported as a failed transfer (http_code 000) instead of the 401.
    let pki = pki();
    let upstream = Upstream::start();
    let proxy = Proxy::start(&pki, &upstream.url(), TOKEN);
    let (ca, url) = (proxy.ca_file(), proxy.url("/intake/v2/events"));
    for _ in 0..20 {
        let (code, err) = curl(&[
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{http_version}",
            "--http2",
            "--cacert",
            ca.to_str().unwrap(),
            "-H",
            "Authorization: Bearer wrong",
            "-d",
            "{\"metadata\":{}}",
            &url,
        ]);
        assert_eq!(code, "401 2", "{err}");
    }
}
