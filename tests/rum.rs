//! Anonymous RUM access through the real proxy: CORS, anonymous endpoints, agent and service
//! allow-lists over v2/v3 bodies (plain, gzip, deflate, sniffed), per-IP event rate limits,
//! concurrency and size caps, failed-authentication throttling, service-bound API keys and
//! the anonymous agent-config trimming.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::*;

/// Client IPs are taken from `X-Forwarded-For` because the test client (127.0.0.1) is a
/// trusted proxy here: that is how each test gets independent per-IP limits.
const RUM: &str = r#"
[auth]
secret_token = "tok"
[rum]
enabled = true
[client_ip]
trusted_proxies = ["127.0.0.1"]
"#;

struct Answer {
    status: u16,
    body: String,
    headers: reqwest::header::HeaderMap,
}

async fn post(
    client: &reqwest::Client,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<reqwest::Body>,
) -> Answer {
    send(client.post(url).body(body.into()), headers).await
}

async fn get(client: &reqwest::Client, url: &str, headers: &[(&str, &str)]) -> Answer {
    send(client.get(url), headers).await
}

/// Agents send no JSON `Accept`, so answers come compact (reqwest would send `*/*`).
async fn send(mut req: reqwest::RequestBuilder, headers: &[(&str, &str)]) -> Answer {
    req = req.header("Accept", "text/plain");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    Answer {
        status: resp.status().as_u16(),
        headers: resp.headers().clone(),
        body: resp.text().await.unwrap(),
    }
}

/// Post `body` every `every` until it is accepted (202), with only 429s meanwhile; panics
/// with `what` after `limit`.
async fn until_accepted(
    client: &reqwest::Client,
    url: &str,
    headers: &[(&str, &str)],
    body: &str,
    every: Duration,
    limit: Duration,
    what: &str,
) {
    let deadline = Instant::now() + limit;
    loop {
        let a = post(client, url, headers, body.to_string()).await;
        if a.status == 202 {
            return;
        }
        assert_eq!(a.status, 429, "{}", a.body);
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(every).await;
    }
}

fn v2(agent: &str, service: &str, events: usize) -> String {
    let mut body = format!(
        "{{\"metadata\":{{\"service\":{{\"name\":\"{service}\",\"agent\":{{\"name\":\"{agent}\",\"version\":\"5.0.0\"}}}}}}}}\n"
    );
    for i in 0..events {
        body.push_str(&format!(
            "{{\"transaction\":{{\"id\":\"{i:016x}\",\"trace_id\":\"0123456789abcdef0123456789abcdef\",\"type\":\"page-load\",\"duration\":1.5,\"span_count\":{{\"started\":0}}}}}}\n"
        ));
    }
    body
}

fn v3(agent: &str, service: &str, events: usize) -> String {
    let mut body = format!(
        "{{\"m\":{{\"se\":{{\"n\":\"{service}\",\"a\":{{\"n\":\"{agent}\",\"ve\":\"5\"}}}}}}}}\n"
    );
    for i in 0..events {
        body.push_str(&format!(
            "{{\"x\":{{\"id\":\"{i:016x}\",\"tid\":\"0123456789abcdef0123456789abcdef\",\"t\":\"page-load\",\"d\":1.5,\"yc\":{{\"sd\":0}}}}}}\n"
        ));
    }
    body
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn zlib(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn one_header<'a>(h: &'a reqwest::header::HeaderMap, name: &str) -> Vec<&'a str> {
    h.get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect()
}

const ORIGIN: &str = "https://app.example.com";

#[test]
fn cors_preflight_origins_and_headers_on_every_answer() {
    let pki = pki();
    let upstream = Upstream::start();
    let cors = RUM.replace(
        "enabled = true\n",
        "enabled = true\nallow_origins = [\"https://*.example.com\"]\nallow_headers = [\"X-Custom\"]\n",
    );
    let proxy = Proxy::start(&pki, &upstream.url(), &cors);
    rt().block_on(async {
        let c = proxy.client(false);
        let url = proxy.url("/intake/v2/rum/events");
        // No Origin at all only matches `*` (APM Server's rule).
        let a = post(&c, &url, &[], v2("rum-js", "shop", 1)).await;
        assert_eq!(a.status, 403);
        assert_eq!(
            a.body,
            "{\"error\":\"forbidden request: origin: '' is not allowed\"}\n"
        );
        // Preflight: answered by the proxy, APM Server's headers, nothing forwarded.
        let resp = c
            .request(reqwest::Method::OPTIONS, &url)
            .header("Origin", ORIGIN)
            .header("Access-Control-Request-Method", "POST")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let h = resp.headers().clone();
        assert_eq!(one_header(&h, "access-control-allow-origin"), [ORIGIN]);
        assert_eq!(one_header(&h, "access-control-max-age"), ["3600"]);
        assert_eq!(one_header(&h, "vary"), ["Origin"]);
        assert_eq!(
            one_header(&h, "access-control-allow-methods"),
            ["POST, OPTIONS"]
        );
        assert_eq!(
            one_header(&h, "access-control-allow-headers"),
            ["X-Custom, Content-Type, Content-Encoding, Accept"]
        );
        assert_eq!(one_header(&h, "access-control-expose-headers"), ["Etag"]);
        assert_eq!(one_header(&h, "content-length"), ["0"]);
        assert!(resp.text().await.unwrap().is_empty());
        // A disallowed origin's preflight gets no Allow-Origin (the browser then stops).
        let resp = c
            .request(reqwest::Method::OPTIONS, &url)
            .header("Origin", "https://evil.test")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert!(resp.headers().get("access-control-allow-origin").is_none());

        // The actual request from a disallowed origin: 403 before any auth.
        let a = post(
            &c,
            &url,
            &[("Origin", "https://evil.test")],
            v2("rum-js", "shop", 1),
        )
        .await;
        assert_eq!(a.status, 403);
        assert_eq!(
            a.body,
            "{\"error\":\"forbidden request: origin: 'https://evil.test' is not allowed\"}\n"
        );
        // Allowed: forwarded, and Allow-Origin appears once, with the caller's origin.
        let a = post(&c, &url, &[("Origin", ORIGIN)], v2("rum-js", "shop", 2)).await;
        assert_eq!(a.status, 202, "{}", a.body);
        assert_eq!(
            one_header(&a.headers, "access-control-allow-origin"),
            [ORIGIN]
        );
        // The proxy's own errors on RUM routes carry it too.
        let a = post(
            &c,
            &url,
            &[("Origin", ORIGIN), ("Authorization", "Bearer wrong")],
            v2("rum-js", "shop", 1),
        )
        .await;
        assert_eq!(a.status, 401);
        assert_eq!(
            one_header(&a.headers, "access-control-allow-origin"),
            [ORIGIN]
        );
    });
    let seen = upstream.requests();
    assert_eq!(
        seen.len(),
        1,
        "only the allowed request reached the upstream"
    );
    assert!(seen[0].headers.get("authorization").is_none());
}

#[test]
fn anonymous_reaches_only_its_endpoints_and_wrong_credentials_are_never_downgraded() {
    let pki = pki();
    let upstream = Upstream::start();
    let proxy = Proxy::start(&pki, &upstream.url(), RUM);
    rt().block_on(async {
        let c = proxy.client(true);
        for path in ["/intake/v2/rum/events", "/intake/v3/rum/events"] {
            let body = if path.contains("v3") {
                v3("rum-js", "shop", 3)
            } else {
                v2("rum-js", "shop", 3)
            };
            let a = post(&c, &proxy.url(path), &[], body).await;
            assert_eq!(a.status, 202, "{path}: {}", a.body);
        }
        // Not an anonymous endpoint: the plain 401.
        for path in [
            "/intake/v2/events",
            "/config/v1/agents",
            "/assets/v1/sourcemaps",
        ] {
            let a = post(&c, &proxy.url(path), &[], v2("rum-js", "shop", 1)).await;
            assert_eq!(a.status, 401, "{path}");
            assert!(
                a.body.contains("missing or improperly formatted"),
                "{}",
                a.body
            );
        }
        // A wrong credential on an anonymous endpoint stays a failure.
        let a = post(
            &c,
            &proxy.url("/intake/v2/rum/events"),
            &[("Authorization", "Bearer nope")],
            v2("rum-js", "shop", 1),
        )
        .await;
        assert_eq!(
            (a.status, a.body.as_str()),
            (401, "{\"error\":\"authentication failed\"}\n")
        );
        // Agent config: anonymous callers see only the sample rate; the token sees it all.
        let url = proxy.url("/config/v1/rum/agents?service.name=shop");
        for client in [&c, &proxy.client(false)] {
            // HTTP/2 and HTTP/1.1 (where the trimmed answer is re-framed as chunked).
            let anon = get(client, &url, &[]).await;
            assert_eq!(anon.status, 200);
            assert_eq!(anon.body, "{\"transaction_sample_rate\":\"0.5\"}\n");
        }
        let full = get(&c, &url, &[("Authorization", "Bearer tok")]).await;
        assert!(full.body.contains("sanitize_field_names"), "{}", full.body);
        // Root stays blank for anonymous callers.
        let root = get(&c, &proxy.url("/"), &[]).await;
        assert_eq!((root.status, root.body.as_str()), (200, ""));
    });
    let seen = upstream.requests();
    let anonymous_config = seen
        .iter()
        .find(|r| {
            r.uri.contains("/config/v1/rum/agents") && r.headers.get("x-forwarded-for").is_some()
        })
        .unwrap();
    assert!(anonymous_config.headers.get("authorization").is_none());
    assert_eq!(
        seen.iter().filter(|r| r.uri.starts_with("/intake")).count(),
        2
    );
}

#[test]
fn anonymous_is_off_unless_rum_or_the_setting_turns_it_on() {
    let pki = pki();
    let upstream = Upstream::start();
    let proxy = Proxy::start(&pki, &upstream.url(), "[auth]\nsecret_token = \"tok\"\n");
    rt().block_on(async {
        let c = proxy.client(false);
        let a = post(
            &c,
            &proxy.url("/intake/v2/rum/events"),
            &[],
            v2("rum-js", "s", 1),
        )
        .await;
        assert_eq!(a.status, 401);
    });
    assert!(upstream.requests().is_empty());
}

#[test]
fn agent_and_service_allow_lists_over_every_encoding() {
    let pki = pki();
    let upstream = Upstream::start();
    let extra = format!("{RUM}\n[auth.anonymous]\nallow_service = [\"shop\"]\n");
    let proxy = Proxy::start(&pki, &upstream.url(), &extra);
    let url = proxy.url("/intake/v2/rum/events");
    let url3 = proxy.url("/intake/v3/rum/events");
    rt().block_on(async {
        let c = proxy.client(false);
        // Disallowed metadata: 403 before anything is forwarded, whatever the encoding.
        let bad = v2("python", "shop", 2);
        let agent_msg = "{\"accepted\":0,\"errors\":[{\"message\":\"unauthorized: anonymous access not permitted for agent \\\"python\\\"\"}]}\n";
        for (encoding, body) in [
            (None, bad.as_bytes().to_vec()),
            (Some("gzip"), gzip(bad.as_bytes())),
            (Some("deflate"), zlib(bad.as_bytes())),
            (None, gzip(bad.as_bytes())),  // sniffed, as for a RUM beacon
            (None, zlib(bad.as_bytes())),
        ] {
            let headers: Vec<(&str, &str)> = encoding.map(|e| ("Content-Encoding", e)).into_iter().collect();
            let a = post(&c, &url, &headers, body).await;
            assert_eq!((a.status, a.body.as_str()), (403, agent_msg), "{encoding:?}");
        }
        let a = post(&c, &url3, &[], v3("rum-js", "ads", 1)).await;
        assert_eq!(a.status, 403);
        assert!(a.body.contains("not permitted for service \\\"ads\\\""), "{}", a.body);
        assert!(upstream.requests().is_empty(), "nothing forwarded for a refused metadata line");

        // Allowed, compressed and sniffed: forwarded byte for byte.
        let good = gzip(v3("rum-js", "shop", 20).as_bytes());
        let a = post(&c, &url3, &[], good.clone()).await;
        assert_eq!(a.status, 202, "{}", a.body);
        let seen = upstream.requests();
        assert_eq!(seen.last().unwrap().body, good);

        // A per-event override naming another service ends the stream with the error.
        let mut body = v2("rum-js", "shop", 12);
        body.push_str("{\"error\":{\"id\":\"e1\",\"context\":{\"service\":{\"name\":\"other\"}}}}\n");
        let a = post(&c, &url, &[("Content-Encoding", "deflate")], zlib(body.as_bytes())).await;
        assert_eq!(a.status, 403);
        assert!(
            a.body.contains("anonymous access not permitted for service \\\"other\\\""),
            "{}",
            a.body
        );
    });
    let seen = upstream.requests();
    assert!(seen
        .iter()
        .all(|r| r.headers.get("authorization").is_none()));
}

#[test]
fn event_rate_limit_per_client_ip_trips_and_recovers() {
    let pki = pki();
    let upstream = Upstream::start();
    // One event per second, burst 3: slow enough that no step below depends on timing.
    let extra = format!("{RUM}\n[auth.anonymous.rate_limit]\nevent_limit = 1\nip_limit = 2\n");
    let proxy = Proxy::start(&pki, &upstream.url(), &extra);
    let url = proxy.url("/intake/v2/rum/events");
    rt().block_on(async {
        let c = proxy.client(false);
        let ip = |n: u8| format!("198.51.100.{n}");
        let (a1, a2, a3) = (ip(1), ip(2), ip(3));
        // Burst 3: one request token + 2 events pass, and the bucket is empty.
        let a = post(&c, &url, &[("X-Forwarded-For", &a1)], v2("rum-js", "s", 2)).await;
        assert_eq!(a.status, 202, "{}", a.body);
        let a = post(&c, &url, &[("X-Forwarded-For", &a1)], v2("rum-js", "s", 1)).await;
        assert_eq!(a.status, 429);
        assert_eq!(
            a.body,
            "{\"error\":\"too many requests: rate limit exceeded\"}\n"
        );
        // Another IP has its own bucket; a batch of events beyond it is refused mid-stream.
        let a = post(&c, &url, &[("X-Forwarded-For", &a2)], v2("rum-js", "s", 12)).await;
        assert_eq!(a.status, 429);
        assert_eq!(
            a.body,
            "{\"accepted\":0,\"errors\":[{\"message\":\"rate limit exceeded\"}]}\n"
        );
        assert_eq!(
            one_header(&a.headers, "connection"),
            ["close"],
            "a stream refused mid-way is not reused, and the answer says so"
        );
        // A third IP evicts the least recently used one and inherits its (empty) bucket.
        let a = post(&c, &url, &[("X-Forwarded-For", &a3)], v2("rum-js", "s", 1)).await;
        assert_eq!(a.status, 429, "a new IP does not get a fresh bucket");
        // Tokens come back at 1/s.
        let one = v2("rum-js", "s", 1);
        let (every, limit) = (Duration::from_millis(300), Duration::from_secs(10));
        let headers = [("X-Forwarded-For", a3.as_str())];
        until_accepted(
            &c,
            &url,
            &headers,
            &one,
            every,
            limit,
            "the rate limit never recovered",
        )
        .await;
        // Authenticated traffic is never rate limited.
        let a = post(
            &c,
            &url,
            &[("X-Forwarded-For", &a3), ("Authorization", "Bearer tok")],
            v2("rum-js", "s", 50),
        )
        .await;
        assert_eq!(a.status, 202);
    });
}

#[test]
fn concurrent_and_oversized_anonymous_requests_are_capped() {
    let pki = pki();
    let upstream = Upstream::start();
    let extra =
        format!("{RUM}\n[auth.anonymous]\nmax_concurrent_requests = 1\nmax_request_size = 20000\n");
    let proxy = Proxy::start(&pki, &upstream.url(), &extra);
    let url = proxy.url("/intake/v2/rum/events");
    rt().block_on(async {
        let c = proxy.client(false);
        // One request held open (metadata sent, the rest pending)…
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        let held = {
            let c = c.clone();
            let url = url.clone();
            tokio::spawn(async move {
                c.post(&url)
                    .header("X-Forwarded-For", "203.0.113.9")
                    .body(reqwest::Body::wrap_stream(stream))
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            })
        };
        tx.send(Ok(v2("rum-js", "s", 1).into_bytes()))
            .await
            .unwrap();
        // Once the proxy has admitted it (its head reached the upstream), a second request
        // from the same IP is refused.
        let deadline = Instant::now() + Duration::from_secs(10);
        while upstream.started() == 0 {
            assert!(!held.is_finished(), "the held request ended early");
            assert!(
                Instant::now() < deadline,
                "the held request never reached the upstream"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let headers = [("X-Forwarded-For", "203.0.113.9")];
        let a = post(&c, &url, &headers, v2("rum-js", "s", 1)).await;
        assert_eq!(
            (a.status, a.body.as_str()),
            (
                429,
                "{\"error\":\"too many requests: too many concurrent requests\"}\n"
            )
        );
        let other = post(
            &c,
            &url,
            &[("X-Forwarded-For", "203.0.113.10")],
            v2("rum-js", "s", 1),
        )
        .await;
        assert_eq!(other.status, 202, "another IP is not affected");
        drop(tx);
        assert_eq!(held.await.unwrap(), 202);
        // The slot is released when the request ends (just after its answer is sent).
        let one = v2("rum-js", "s", 1);
        let (every, limit) = (Duration::from_millis(20), Duration::from_secs(5));
        until_accepted(
            &c,
            &url,
            &headers,
            &one,
            every,
            limit,
            "the slot was never released",
        )
        .await;

        // Bigger than max_request_size: 413.
        let a = post(
            &c,
            &url,
            &[("X-Forwarded-For", "203.0.113.11")],
            v2("rum-js", "s", 200),
        )
        .await;
        assert_eq!(a.status, 413);
        assert_eq!(a.body, "{\"error\":\"request body too large\"}\n");
    });
}

#[test]
fn repeated_failed_authentication_is_throttled_per_ip() {
    let pki = pki();
    let upstream = Upstream::start();
    let extra = format!(
        "{RUM}\n[auth.failed_attempts]\nmax_failures = 3\nwindow = \"1m\"\ncooldown = \"2s\"\n"
    );
    let proxy = Proxy::start(&pki, &upstream.url(), &extra);
    let url = proxy.url("/intake/v2/events");
    rt().block_on(async {
        let c = proxy.client(false);
        let guesser = ("X-Forwarded-For", "192.0.2.66");
        for _ in 0..3 {
            let a = post(
                &c,
                &url,
                &[guesser, ("Authorization", "Bearer guess")],
                v2("go", "s", 1),
            )
            .await;
            assert_eq!(a.status, 401);
        }
        // Now even the right token from that address waits out the cool-down…
        let a = post(
            &c,
            &url,
            &[guesser, ("Authorization", "Bearer tok")],
            v2("go", "s", 1),
        )
        .await;
        assert_eq!(a.status, 429);
        assert_eq!(
            a.body,
            "{\"error\":\"too many requests: too many failed authentication attempts\"}\n"
        );
        // …while everyone else is unaffected.
        let a = post(
            &c,
            &url,
            &[
                ("X-Forwarded-For", "192.0.2.67"),
                ("Authorization", "Bearer tok"),
            ],
            v2("go", "s", 1),
        )
        .await;
        assert_eq!(a.status, 202);
        let one = v2("go", "s", 1);
        let (every, limit) = (Duration::from_millis(500), Duration::from_secs(10));
        let headers = [guesser, ("Authorization", "Bearer tok")];
        until_accepted(
            &c,
            &url,
            &headers,
            &one,
            every,
            limit,
            "the cool-down never ended",
        )
        .await;
    });
    assert!(proxy.log_text().contains("too many failed authentications"));
}

#[test]
fn service_bound_api_keys() {
    let pki = pki();
    let upstream = Upstream::start();
    let mut credential = String::new();
    let proxy = Proxy::start_with(&pki, &upstream.url(), &format!("{RUM}{API_KEYS}"), |dir| {
        credential = create_key(
            dir,
            "event:write,config_agent:read",
            &["--services", "shop,ads"],
        )
        .1;
    });
    let auth = format!("ApiKey {credential}");
    let auth = ("Authorization", auth.as_str());
    rt().block_on(async {
        let c = proxy.client(true);
        let url = proxy.url("/intake/v2/events");
        let a = post(&c, &url, &[auth], v2("go", "shop", 3)).await;
        assert_eq!(a.status, 202, "{}", a.body);
        let a = post(&c, &url, &[auth], gzip(v2("go", "billing", 3).as_bytes())).await;
        assert_eq!(a.status, 403);
        assert_eq!(
            a.body,
            "{\"accepted\":0,\"errors\":[{\"message\":\"unauthorized: API Key not permitted for service \\\"billing\\\"\"}]}\n"
        );
        let mut body = v2("go", "shop", 1);
        body.push_str("{\"span\":{\"id\":\"s\",\"context\":{\"service\":{\"name\":\"billing\"}}}}\n");
        let a = post(&c, &url, &[auth], body).await;
        assert_eq!(a.status, 403, "a per-event override is checked too");
        let cfg = get(&c, &proxy.url("/config/v1/agents?service.name=billing"), &[auth]).await;
        assert_eq!(cfg.status, 403);
        let cfg = get(&c, &proxy.url("/config/v1/agents?service.name=ads"), &[auth]).await;
        assert_eq!(cfg.status, 200);
        assert!(cfg.body.contains("sanitize_field_names"), "keys see the whole config");
        let otlp = post(&c, &proxy.url("/v1/traces"), &[auth], vec![0u8; 16]).await;
        assert_eq!(otlp.status, 403, "bodies the proxy cannot read are refused to bound keys");
    });
    let intake: Vec<_> = upstream
        .requests()
        .into_iter()
        .filter(|r| r.uri.starts_with("/intake"))
        .collect();
    assert!(intake[0].complete);
    assert!(
        intake
            .iter()
            .skip(1)
            .all(|r| !r.complete || r.body.is_empty()),
        "refused streams never complete upstream"
    );
}

/// A body far larger than `max_event_size` streams through with flat memory; a single line
/// over the limit is refused.
#[test]
fn large_bodies_stream_through_the_reader_with_flat_memory() {
    let pki = pki();
    let upstream = Upstream::start();
    let mut credential = String::new();
    let extra = format!(
        "[auth]\nsecret_token = \"tok\"\n{API_KEYS}[rum]\nenabled = true\nmax_event_size = 4096\n"
    );
    let proxy = Proxy::start_with(&pki, &upstream.url(), &extra, |dir| {
        credential = create_key(dir, "event:write", &["--services", "shop"]).1;
    });
    let auth = format!("ApiKey {credential}");
    let rss = |field: &str| -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", proxy.pid())).unwrap();
        status
            .lines()
            .find(|l| l.starts_with(field))
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap()
            .parse()
            .unwrap()
    };
    rt().block_on(async {
        let c = proxy.client(false);
        let url = proxy.url("/intake/v2/events");
        // Warm up (TLS, pools) before the baseline.
        let a = post(&c, &url, &[("Authorization", &auth)], v2("go", "shop", 10)).await;
        assert_eq!(a.status, 202);
        let baseline = rss("VmRSS:");
        // 64 MB of events (16,000 × max_event_size), generated as it is sent.
        let line = v2("go", "shop", 1).lines().nth(1).unwrap().to_string() + "\n";
        let chunk: Vec<u8> = line.repeat(64 * 1024 / line.len()).into_bytes();
        let meta = v2("go", "shop", 0).into_bytes();
        let chunks = 64 * 1024 * 1024 / chunk.len();
        let total = meta.len() + chunks * chunk.len();
        let stream = futures_util::stream::iter(
            std::iter::once(meta)
                .chain(std::iter::repeat_n(chunk, chunks))
                .map(Ok::<_, std::io::Error>),
        );
        let a = post(
            &c,
            &url,
            &[("Authorization", &auth)],
            reqwest::Body::wrap_stream(stream),
        )
        .await;
        assert_eq!(a.status, 202, "{}", a.body);
        let peak = rss("VmHWM:");
        assert!(
            peak < baseline + 40 * 1024,
            "memory grew with the body: baseline {baseline} kB, peak {peak} kB"
        );
        let seen = upstream.requests();
        assert_eq!(seen.last().unwrap().body_len, total);

        let huge = format!(
            "{}{{\"transaction\":{{\"id\":\"{}\"}}}}\n",
            v2("go", "shop", 0),
            "a".repeat(5000)
        );
        let a = post(&c, &url, &[("Authorization", &auth)], huge).await;
        assert_eq!(a.status, 400);
        assert!(
            a.body.contains("event exceeded the permitted size"),
            "{}",
            a.body
        );
    });
}
