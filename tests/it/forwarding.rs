//! What reaches the upstream: no client credential, the proxy's own forwarding headers,
//! bodies streamed chunk by chunk and byte for byte; and what the client sees when the
//! request is ambiguous. Upstream failures are in `faults`.

use std::io::Write;
use std::time::Duration;

use crate::support::*;

const TOKEN: &str = "agent-token";
const AUTH: &[(&str, &str)] = &[("Authorization", "Bearer agent-token")];

fn proxy_with_token(pki: &Pki, upstream: &str) -> Proxy {
    Proxy::builder(pki, upstream).token(TOKEN).start()
}

fn post_request(client: &reqwest::Client, url: String) -> reqwest::RequestBuilder {
    client
        .post(url)
        .header("Authorization", "Bearer agent-token")
        .header("Content-Type", "application/x-ndjson")
}

/// POST an authenticated intake request over HTTP/1.1, as `finish` completes it; the status.
async fn post_intake(
    proxy: &Proxy,
    finish: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
) -> reqwest::StatusCode {
    finish(post_request(
        &proxy.client(false),
        proxy.url("/intake/v2/events"),
    ))
    .send()
    .await
    .unwrap()
    .status()
}

/// POST one small authenticated event over HTTP/1.1; the status code.
fn send_small_event(proxy: &Proxy) -> reqwest::StatusCode {
    rt().block_on(post_intake(proxy, |r| r.body("x")))
}

#[test]
fn credentials_never_reach_the_upstream_over_h1_or_h2() {
    let pki = pki();
    let upstream = Upstream::start();
    let mut key = String::new();
    let proxy = Proxy::builder(&pki, &upstream.url())
        .token(TOKEN)
        .api_keys()
        .config("[log]\nlevel = \"trace\"\n")
        .prepare(|dir| key = create_key(dir, "event:write", &[]).1)
        .start();
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
    let proxy = Proxy::builder(&pki, &upstream.url())
        .token(TOKEN)
        .config(
            "[upstream]\nsecret_token = { file = \"upstream-token\" }\n[log]\nlevel = \"debug\"\n",
        )
        .file("upstream-token", "internal-secret\n")
        .start();
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
    let untrusted = proxy_with_token(&pki, &upstream.url());
    let trusted = Proxy::builder(&pki, &upstream.url())
        .token(TOKEN)
        .config("[client_ip]\ntrusted_proxies = [\"127.0.0.0/8\", \"::1\"]\n")
        .start();
    rt().block_on(async {
        for proxy in [&untrusted, &trusted] {
            let client = proxy.client(false);
            let resp = post_request(&client, proxy.url("/intake/v2/events"))
                .header("X-Forwarded-For", "6.6.6.6, 203.0.113.9")
                .header("X-Real-IP", "7.7.7.7")
                .header("X-Forwarded-Proto", "http")
                .header("X-Forwarded-Host", "apm.example.com")
                .body("x")
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 202);
            let resp = post_request(&client, proxy.url("/intake/v2/events"))
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
    assert_eq!(r.len(), expect.len());
    for (i, (rec, (ip, fwd))) in r.iter().zip(expect).enumerate() {
        assert_eq!(rec.headers.get_all("x-forwarded-for").iter().count(), 1);
        assert_eq!(rec.headers.get("x-forwarded-for").unwrap(), ip);
        assert_eq!(rec.headers.get("x-real-ip").unwrap(), ip);
        assert_eq!(rec.headers.get("forwarded").unwrap(), fwd);
        assert_eq!(rec.headers.get("x-forwarded-proto").unwrap(), "https");
        // The host a client asked a trusted proxy for is kept; from anyone else, dropped.
        let host = rec
            .headers
            .get("x-forwarded-host")
            .map(|v| v.to_str().unwrap());
        match i {
            2 => assert_eq!(host, Some("apm.example.com")),
            _ => assert_eq!(host, None, "request {i}"),
        }
    }
}

/// The client sends each chunk only after the upstream has received the one before: a
/// proxy that buffered the body would never deliver the first, and the upload would stall.
/// A head larger than the connection layer's first read buffer (2 KiB) is read in more
/// steps, and the upstream receives it whole, with the body that followed it.
#[test]
fn a_head_larger_than_the_first_read_buffer_is_forwarded_whole() {
    let pki = pki();
    let upstream = Upstream::start();
    let proxy = proxy_with_token(&pki, &upstream.url());
    let padding = "p".repeat(6000);
    let body = "{\"metadata\":{}}\n".repeat(100);
    let status = rt().block_on(post_intake(&proxy, |r| {
        r.header("x-padding", padding.as_str()).body(body.clone())
    }));
    assert_eq!(status, 202);
    let r = &upstream.requests()[0];
    assert_eq!(r.headers.get("x-padding").unwrap(), padding.as_str());
    assert_eq!(r.body, body.as_bytes());
}

#[test]
fn upload_streams_chunk_by_chunk() {
    let pki = pki();
    let upstream = Upstream::start();
    let proxy = proxy_with_token(&pki, &upstream.url());
    for h2 in [false, true] {
        let client = proxy.client(h2);
        let before = upstream.body_bytes();
        let status = rt().block_on(async {
            let (tx, upload) = streamed_post(&client, &proxy.url("/intake/v2/events"), AUTH);
            let mut sent = 0;
            for i in 0..5 {
                let line = format!("{{\"transaction\":{{\"id\":\"{i}\"}}}}\n");
                sent += line.len();
                tx.send(Ok(line.into_bytes())).await.unwrap();
                eventually(
                    &format!("h2={h2}: chunk {i} at the upstream before the next is sent"),
                    || async { upstream.body_bytes() - before >= sent },
                )
                .await;
            }
            drop(tx);
            upload.await.unwrap().status
        });
        assert_eq!(status, 202);
        let rec = upstream.requests().pop().unwrap();
        assert!(rec.complete);
        assert_eq!(rec.body.iter().filter(|&&b| b == b'\n').count(), 5);
    }
}

/// The upstream sends each chunk of its answer only after the client has read the one
/// before: a proxy that buffered the response would stall it.
#[test]
fn response_streams_to_the_client_chunk_by_chunk() {
    let pki = pki();
    let upstream = Upstream::start();
    let proxy = proxy_with_token(&pki, &upstream.url());
    for h2 in [false, true] {
        let client = proxy.client(h2);
        let received = rt().block_on(async {
            let mut resp = client
                .get(proxy.url("/config/v1/agents?service.name=s"))
                .header("Authorization", "Bearer agent-token")
                .header(STREAM_RESPONSE, "4")
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
            let mut text = String::new();
            while let Some(chunk) = tokio::time::timeout(PATIENCE, resp.chunk())
                .await
                .unwrap_or_else(|_| panic!("h2={h2}: the response stalled after {text:?}"))
                .unwrap()
            {
                text.push_str(std::str::from_utf8(&chunk).unwrap());
                // Release the next chunk for every complete line received.
                for _ in 0..chunk.iter().filter(|&&b| b == b'\n').count() {
                    upstream.ack();
                }
            }
            text
        });
        assert_eq!(received, "chunk 0\nchunk 1\nchunk 2\nchunk 3\n");
    }
}

#[test]
fn hundred_megabyte_upload_and_gzip_body_arrive_byte_identical() {
    let pki = pki();
    let upstream = Upstream::start();
    let proxy = proxy_with_token(&pki, &upstream.url());
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
        let resp = post_request(&proxy.client(false), proxy.url("/intake/v2/events"))
            .body(big.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 202);
        let resp = post_request(&proxy.client(true), proxy.url("/intake/v2/events"))
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
fn ambiguous_paths_and_duplicate_credentials_are_rejected_with_curl() {
    let pki = pki();
    let upstream = Upstream::start();
    let proxy = proxy_with_token(&pki, &upstream.url());
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
    let proxy = proxy_with_token(&pki, &upstream.url());
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
    let proxy = proxy_with_token(&pki, &upstream.url());
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
    let out = bounded("python3", Duration::from_secs(60))
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
    let proxy = proxy_with_token(&pki, &upstream.url());
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
        post_intake(&proxy, |r| r.body(reqwest::Body::wrap_stream(chunks))).await
    });
    assert_eq!(status, 202);
    let r = &upstream.requests()[0];
    assert!(r.complete);
    assert_eq!(r.body.iter().filter(|&&b| b == b'\n').count(), 16);
}

/// `server.body_deadline`: a body trickled in, each piece well within `read_timeout`, is cut
/// with 408 once it has taken longer than the deadline; the upstream sees its copy end
/// incomplete, never a complete request.
#[test]
fn a_body_trickling_past_the_body_deadline_is_answered_408() {
    let pki = pki();
    let upstream = Upstream::start();
    let proxy = Proxy::builder(&pki, &upstream.url())
        .token(TOKEN)
        .config("[server]\nbody_deadline = \"1s\"\n")
        .start();
    let answer = rt().block_on(async {
        let client = proxy.client(false);
        let (tx, answer) = streamed_post(&client, &proxy.url("/intake/v2/events"), AUTH);
        // A line every 100 ms for at most 10 s: each in time, the whole far past the deadline.
        for _ in 0..100 {
            let line = b"{\"metadata\":{}}\n".to_vec();
            if answer.is_finished() || tx.send(Ok(line)).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        drop(tx);
        answer.await.unwrap()
    });
    assert_eq!(answer.status, 408, "{answer:?}");
    assert!(answer.body.contains("request timed out"), "{answer:?}");
    eventually_blocking("the upstream's copy ends", || {
        upstream.requests().len() == 1
    });
    assert!(!upstream.requests()[0].complete);
    assert!(
        upstream.body_bytes() > 0,
        "the body was streamed until the deadline"
    );
}

/// `server.read_timeout` bounds each wait for the body, not the body: a body streamed a line
/// every 300 ms for twice the timeout is forwarded whole, and once it stalls it is answered
/// 408 (the body reads share one timer, re-armed as the stream goes on: vendor change 13).
#[test]
fn a_streamed_body_is_cut_only_when_it_stalls_past_the_read_timeout() {
    let pki = pki();
    let upstream = Upstream::start();
    let proxy = Proxy::builder(&pki, &upstream.url())
        .token(TOKEN)
        .config("[server]\nread_timeout = \"1s\"\n")
        .start();
    let (answer, sent) = rt().block_on(async {
        let client = proxy.client(false);
        let (tx, answer) = streamed_post(&client, &proxy.url("/intake/v2/events"), AUTH);
        let mut sent = 0;
        for n in 0..7 {
            let line = format!("{{\"n\":{n}}}\n").into_bytes();
            if answer.is_finished() || tx.send(Ok(line)).await.is_err() {
                break;
            }
            sent += 1;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        // Then nothing, the body unfinished: the sender stays open until the answer.
        let answer = tokio::time::timeout(Duration::from_secs(30), answer)
            .await
            .expect("an answer to the stalled body")
            .unwrap();
        drop(tx);
        (answer, sent)
    });
    assert_eq!(
        sent, 7,
        "the proxy answered while the body still flowed: {answer:?}"
    );
    assert_eq!(answer.status, 408, "{answer:?}");
    assert!(answer.body.contains("request timed out"), "{answer:?}");
    eventually_blocking("the upstream's copy ends", || {
        upstream.requests().len() == 1
    });
    let r = &upstream.requests()[0];
    assert!(!r.complete);
    assert_eq!(
        r.body.iter().filter(|&&b| b == b'\n').count(),
        7,
        "every line sent in time reached the upstream"
    );
}

#[test]
fn only_tls_1_2_and_1_3_are_accepted() {
    let pki = pki();
    let upstream = Upstream::start();
    let proxy = proxy_with_token(&pki, &upstream.url());
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
    let proxy = proxy_with_token(&pki, &upstream.url());
    rt().block_on(async {
        let client = proxy.client(false);
        let (tx, upload) = streamed_post(&client, &proxy.url("/intake/v2/events"), AUTH);
        tx.send(Ok(b"{\"n\":0}\n".to_vec())).await.unwrap();
        eventually("the first chunk at the upstream", || async {
            upstream.body_bytes() > 0
        })
        .await;
        // The client gives up mid-body: the connection goes away with the body unfinished.
        upload.abort();
        let _ = upload.await;
        drop(tx);
    });
    let mut access = String::new();
    eventually_blocking("an access log line for the aborted request", || {
        let log = proxy.log_text();
        log.lines()
            .find(|l| l.contains(" access: "))
            .map(|l| access = l.to_string())
            .is_some()
    });
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
    let proxy = proxy_with_token(&pki, &upstream.url());
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
