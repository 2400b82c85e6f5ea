//! Anonymous RUM access through the real proxy: CORS, anonymous endpoints, agent and service
//! allow-lists over v2/v3 bodies (plain, gzip, deflate, sniffed), per-IP event rate limits,
//! concurrency and size caps, failed-authentication throttling, service-bound API keys and
//! the anonymous agent-config trimming.

use std::time::{Duration, Instant};

use crate::support::*;

/// Client IPs are taken from `X-Forwarded-For` because the test client (127.0.0.1) is a
/// trusted proxy here: that is how each test gets independent per-IP limits.
const RUM: &str = r#"
[auth]
secret_token = "rum-agent-token-7c2e"
[rum]
enabled = true
[client_ip]
trusted_proxies = ["127.0.0.1"]
"#;

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

const ORIGIN: &str = "https://app.example.com";

#[test]
fn cors_preflight_origins_and_headers_on_every_answer() {
    let pki = pki();
    let upstream = Upstream::start();
    let cors = RUM.replace(
        "enabled = true\n",
        "enabled = true\nallow_origins = [\"https://*.example.com\"]\nallow_headers = [\"X-Custom\"]\n",
    );
    let proxy = Proxy::builder(&pki, &upstream.url()).config(&cors).start();
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
        assert_eq!(header_values(&h, "access-control-allow-origin"), [ORIGIN]);
        assert_eq!(header_values(&h, "access-control-max-age"), ["3600"]);
        assert_eq!(header_values(&h, "vary"), ["Origin"]);
        assert_eq!(
            header_values(&h, "access-control-allow-methods"),
            ["POST, OPTIONS"]
        );
        assert_eq!(
            header_values(&h, "access-control-allow-headers"),
            ["X-Custom, Content-Type, Content-Encoding, Accept"]
        );
        assert_eq!(header_values(&h, "access-control-expose-headers"), ["Etag"]);
        assert_eq!(header_values(&h, "content-length"), ["0"]);
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
        assert_eq!(a.header_values("access-control-allow-origin"), [ORIGIN]);
        // The proxy's own errors on RUM routes carry it too.
        let a = post(
            &c,
            &url,
            &[("Origin", ORIGIN), ("Authorization", "Bearer wrong")],
            v2("rum-js", "shop", 1),
        )
        .await;
        assert_eq!(a.status, 401);
        assert_eq!(a.header_values("access-control-allow-origin"), [ORIGIN]);
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
    let proxy = Proxy::builder(&pki, &upstream.url()).config(RUM).start();
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
        let full = get(
            &c,
            &url,
            &[("Authorization", "Bearer rum-agent-token-7c2e")],
        )
        .await;
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
    let off = Proxy::builder(&pki, &upstream.url())
        .token("rum-agent-token-7c2e")
        .start();
    // `auth.anonymous.enabled` alone opens the RUM endpoints, with `rum.enabled` unset.
    let on = Proxy::builder(&pki, &upstream.url())
        .token("rum-agent-token-7c2e")
        .config("[auth.anonymous]\nenabled = true\n")
        .start();
    rt().block_on(async {
        let url = off.url("/intake/v2/rum/events");
        let a = post(&off.client(false), &url, &[], v2("rum-js", "s", 1)).await;
        assert_eq!(a.status, 401);
        assert!(upstream.requests().is_empty());
        let url = on.url("/intake/v2/rum/events");
        let a = post(&on.client(false), &url, &[], v2("rum-js", "s", 1)).await;
        assert_eq!(a.status, 202, "{}", a.body);
    });
    assert_eq!(upstream.requests().len(), 1);
}

#[test]
fn agent_and_service_allow_lists_over_every_encoding() {
    let pki = pki();
    let upstream = Upstream::start();
    let proxy = Proxy::builder(&pki, &upstream.url())
        .config(RUM)
        .config("[auth.anonymous]\nallow_service = [\"shop\"]\n")
        .start();
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
            (None, gzip(bad.as_bytes())), // sniffed, as for a RUM beacon
            (None, zlib(bad.as_bytes())),
        ] {
            let headers: Vec<(&str, &str)> =
                encoding.map(|e| ("Content-Encoding", e)).into_iter().collect();
            let a = post(&c, &url, &headers, body).await;
            assert_eq!((a.status, a.body.as_str()), (403, agent_msg), "{encoding:?}");
        }
        let a = post(&c, &url3, &[], v3("rum-js", "ads", 1)).await;
        assert_eq!(a.status, 403);
        assert!(a.body.contains("not permitted for service \\\"ads\\\""), "{}", a.body);
        // An override in a body read whole before forwarding: refused, nothing forwarded,
        // so nothing accepted.
        let mut small = v2("rum-js", "shop", 12);
        small.push_str(OVERRIDE_OTHER);
        let a = post(&c, &url, &[("Content-Encoding", "deflate")], zlib(small.as_bytes())).await;
        assert_eq!(a.status, 403);
        assert_eq!(
            a.body,
            "{\"accepted\":0,\"errors\":[{\"message\":\"unauthorized: anonymous access not permitted for service \\\"other\\\"\"}]}\n"
        );
        assert!(upstream.requests().is_empty(), "nothing forwarded for a refused read-ahead");

        // Allowed, compressed and sniffed: forwarded byte for byte.
        let good = gzip(v3("rum-js", "shop", 20).as_bytes());
        let a = post(&c, &url3, &[], good.clone()).await;
        assert_eq!(a.status, 202, "{}", a.body);
        let seen = upstream.requests();
        assert_eq!(seen.last().unwrap().body, good);
    });
    let seen = upstream.requests();
    assert!(!seen.is_empty());
    assert!(seen
        .iter()
        .all(|r| r.headers.get("authorization").is_none()));
}

const OVERRIDE_OTHER: &str =
    "{\"error\":{\"id\":\"e1\",\"context\":{\"service\":{\"name\":\"other\"}}}}\n";

/// The refusal the README promises for a stream already flowing: 12 events reach the
/// upstream, then an event overrides its service to a disallowed one. The answer counts the
/// 12 as accepted and the upstream's copy of the stream ends incomplete.
#[test]
fn a_later_event_overriding_the_service_ends_a_streaming_body() {
    let pki = pki();
    let upstream = Upstream::start();
    let proxy = Proxy::builder(&pki, &upstream.url())
        .config(RUM)
        .config("[auth.anonymous]\nallow_service = [\"shop\"]\n")
        .start();
    for h2 in [false, true] {
        let before = upstream.requests().len();
        let forwarded_before = upstream.body_bytes();
        let answer = rt().block_on(async {
            let (tx, request) = streamed_post(
                &proxy.client(h2),
                &proxy.url("/intake/v2/rum/events"),
                &[("X-Forwarded-For", "192.0.2.40")],
            );
            let good = v2("rum-js", "shop", 12);
            tx.send(Ok(good.clone().into_bytes())).await.unwrap();
            eventually("the 12 events at the upstream", || async {
                upstream.body_bytes() - forwarded_before >= good.len()
            })
            .await;
            tx.send(Ok(OVERRIDE_OTHER.as_bytes().to_vec()))
                .await
                .unwrap();
            let answer = request.await.unwrap();
            drop(tx);
            answer
        });
        assert_eq!(answer.status, 403, "h2={h2}");
        assert_eq!(
            answer.body,
            "{\"accepted\":12,\"errors\":[{\"message\":\"unauthorized: anonymous access not permitted for service \\\"other\\\"\"}]}\n",
            "h2={h2}"
        );
        let mut seen = Vec::new();
        eventually_blocking("the upstream's record of the cut stream", || {
            seen = upstream.requests().split_off(before);
            !seen.is_empty()
        });
        assert_eq!(seen.len(), 1);
        assert!(
            !seen[0].complete,
            "h2={h2}: the upstream's copy must end incomplete"
        );
        assert_eq!(
            events_received(&seen[0]),
            accepted_in(&answer.body),
            "h2={h2}: `accepted` is what the APM Server received"
        );
        assert!(
            !decoded(&seen[0]).contains("other"),
            "the refused event was not forwarded"
        );
    }
}

/// A rate-limit sequence whose steps must come within a second of each other (1 event/s):
/// each attempt runs on a fresh proxy and measures itself, and a slow one is run again.
#[test]
fn event_rate_limit_per_client_ip_trips_and_recovers() {
    let pki = pki();
    let upstream = Upstream::start();
    let runtime = rt();
    let (ip1, ip2, ip3) = ("198.51.100.1", "198.51.100.2", "198.51.100.3");
    let mut attempts = 0;
    let proxy = loop {
        attempts += 1;
        assert!(
            attempts <= 5,
            "the machine was too slow for the sequence in 5 tries"
        );
        // One event per second, burst 3; two client IPs remembered.
        let proxy = Proxy::builder(&pki, &upstream.url())
            .config(RUM)
            .config("[auth.anonymous.rate_limit]\nevent_limit = 1\nip_limit = 2\n")
            .start();
        let url = proxy.url("/intake/v2/rum/events");
        let c = proxy.client(false);
        let recorded_before = upstream.requests().len();
        let held = runtime.block_on(async {
            let started = Instant::now();
            // Burst 3: the request's token and 2 events drain the bucket.
            let first = post(&c, &url, &[("X-Forwarded-For", ip1)], v2("rum-js", "s", 2)).await;
            let second = post(&c, &url, &[("X-Forwarded-For", ip1)], v2("rum-js", "s", 1)).await;
            // Another IP has its own bucket; 10 events need 8 more tokens than it holds.
            let mid = post(&c, &url, &[("X-Forwarded-For", ip2)], v2("rum-js", "s", 12)).await;
            // A third IP evicts the least recently used one (ip1) and inherits its bucket.
            let third = post(&c, &url, &[("X-Forwarded-For", ip3)], v2("rum-js", "s", 1)).await;
            // Slower than a token's refill: the sequence proves nothing, run it again.
            (started.elapsed() < Duration::from_millis(900)).then_some((first, second, mid, third))
        });
        let Some((first, second, mid, third)) = held else {
            continue;
        };
        assert_eq!(first.status, 202, "{}", first.body);
        assert_eq!(second.status, 429);
        assert_eq!(
            second.body,
            "{\"error\":\"too many requests: rate limit exceeded\"}\n"
        );
        assert_eq!(mid.status, 429);
        assert_eq!(
            mid.body,
            "{\"accepted\":0,\"errors\":[{\"message\":\"rate limit exceeded\"}]}\n"
        );
        assert_eq!(
            mid.header_values("connection"),
            ["close"],
            "a stream refused mid-way is not reused, and the answer says so"
        );
        assert_eq!(third.status, 429, "a new IP does not get a fresh bucket");
        // What reached the APM Server of the stream cut at its first batch: `accepted`.
        let from_ip2: Vec<_> = upstream.requests()[recorded_before..]
            .iter()
            .filter(|r| {
                (r.headers.get("x-forwarded-for"))
                    .is_some_and(|v| v.to_str().unwrap().contains(ip2))
            })
            .map(events_received)
            .collect();
        assert!(from_ip2.len() <= 1, "{from_ip2:?}");
        assert_eq!(
            from_ip2.iter().sum::<usize>(),
            accepted_in(&mid.body),
            "events at the upstream vs {}",
            mid.body
        );
        break proxy;
    };
    let url = proxy.url("/intake/v2/rum/events");
    runtime.block_on(async {
        let c = proxy.client(false);
        // Tokens come back at 1/s.
        let headers = [("X-Forwarded-For", ip3)];
        let one = v2("rum-js", "s", 1);
        let (every, limit) = (Duration::from_millis(300), Duration::from_secs(10));
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
        let headers = [
            ("X-Forwarded-For", ip3),
            ("Authorization", "Bearer rum-agent-token-7c2e"),
        ];
        let a = post(&c, &url, &headers, v2("rum-js", "s", 50)).await;
        assert_eq!(a.status, 202);
    });
}

/// Mid-stream, a batch of ten events that finds too few tokens waits for them (up to a
/// second) instead of failing: 38 events at 10/s with a burst of 30 need 9 tokens more
/// than the bucket holds, which come back within 0.9 s.
#[test]
fn a_batch_of_events_waits_for_tokens() {
    let pki = pki();
    let upstream = Upstream::start();
    let proxy = Proxy::builder(&pki, &upstream.url())
        .config(RUM)
        .config("[auth.anonymous.rate_limit]\nevent_limit = 10\n")
        .start();
    let url = proxy.url("/intake/v2/rum/events");
    let answer = rt().block_on(async {
        let headers = [("X-Forwarded-For", "192.0.2.90")];
        post(&proxy.client(false), &url, &headers, v2("rum-js", "s", 38)).await
    });
    assert_eq!(answer.status, 202, "{}", answer.body);
    let seen = upstream.requests();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].complete);
    assert_eq!(decoded(&seen[0]).lines().count(), 39);
}

#[test]
fn concurrent_and_oversized_anonymous_requests_are_capped() {
    let pki = pki();
    let upstream = Upstream::start();
    let proxy = Proxy::builder(&pki, &upstream.url())
        .config(RUM)
        .config("[auth.anonymous]\nmax_concurrent_requests = 1\nmax_request_size = 20000\n")
        .start();
    let url = proxy.url("/intake/v2/rum/events");
    rt().block_on(async {
        let c = proxy.client(false);
        // One request held open (metadata sent, the rest pending)…
        let (tx, held) = streamed_post(&c, &url, &[("X-Forwarded-For", "203.0.113.9")]);
        tx.send(Ok(v2("rum-js", "s", 1).into_bytes()))
            .await
            .unwrap();
        // Once the proxy has admitted it (its head reached the upstream), a second request
        // from the same IP is refused.
        eventually("the held request at the upstream", || async {
            assert!(!held.is_finished(), "the held request ended early");
            upstream.started() > 0
        })
        .await;
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
        assert_eq!(held.await.unwrap().status, 202);
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

/// The proxy reads at most 64 KiB ahead for the metadata line; a body that has not
/// finished it by then is refused with 413, and nothing is forwarded.
#[test]
fn the_metadata_line_must_come_within_the_read_ahead_limit() {
    let pki = pki();
    let upstream = Upstream::start();
    let proxy = Proxy::builder(&pki, &upstream.url()).config(RUM).start();
    let answer = rt().block_on(async {
        // One metadata line of 70 KiB (under max_event_size's 300 KB, over the read-ahead).
        let padding = "x".repeat(70 * 1024);
        let body = format!(
            "{{\"metadata\":{{\"service\":{{\"name\":\"s\",\"agent\":{{\"name\":\"rum-js\",\"version\":\"{padding}\"}}}}}}}}\n"
        );
        let url = proxy.url("/intake/v2/rum/events");
        post(&proxy.client(false), &url, &[("X-Forwarded-For", "192.0.2.70")], body).await
    });
    assert_eq!(answer.status, 413);
    assert_eq!(
        answer.body,
        "{\"accepted\":0,\"errors\":[{\"message\":\"request body too large: the metadata line must come within the first 64 KiB\"}]}\n"
    );
    assert_eq!(upstream.started(), 0, "nothing forwarded");
}

/// Three wrong credentials start a cool-down for that IP. The step that must land inside
/// the 2 s cool-down measures itself and runs again, on a fresh IP, when the machine was slow.
#[test]
fn repeated_failed_authentication_is_throttled_per_ip() {
    let pki = pki();
    let upstream = Upstream::start();
    let proxy = Proxy::builder(&pki, &upstream.url())
        .config(RUM)
        .config("[auth.failed_attempts]\nmax_failures = 3\nwindow = \"1m\"\ncooldown = \"2s\"\n")
        .start();
    let url = proxy.url("/intake/v2/events");
    rt().block_on(async {
        let c = proxy.client(false);
        let guesser = with_timing("the cool-down sequence", 5, |attempt| {
            let (c, url) = (c.clone(), url.clone());
            async move {
                let ip = format!("192.0.2.{}", 60 + attempt);
                for _ in 0..3 {
                    let headers = [
                        ("X-Forwarded-For", ip.as_str()),
                        ("Authorization", "Bearer guess"),
                    ];
                    let a = post(&c, &url, &headers, v2("go", "s", 1)).await;
                    assert_eq!(a.status, 401);
                }
                let blocked_at = Instant::now();
                // Now even the right token from that address waits out the cool-down…
                let headers = [
                    ("X-Forwarded-For", ip.as_str()),
                    ("Authorization", "Bearer rum-agent-token-7c2e"),
                ];
                let a = post(&c, &url, &headers, v2("go", "s", 1)).await;
                if blocked_at.elapsed() >= Duration::from_millis(1500) {
                    return None;
                }
                assert_eq!(a.status, 429);
                assert_eq!(
                    a.body,
                    "{\"error\":\"too many requests: too many failed authentication attempts\"}\n"
                );
                Some(ip)
            }
        })
        .await;
        // …while everyone else is unaffected.
        let a = post(
            &c,
            &url,
            &[
                ("X-Forwarded-For", "192.0.2.99"),
                ("Authorization", "Bearer rum-agent-token-7c2e"),
            ],
            v2("go", "s", 1),
        )
        .await;
        assert_eq!(a.status, 202);
        let one = v2("go", "s", 1);
        let (every, limit) = (Duration::from_millis(500), Duration::from_secs(10));
        let headers = [
            ("X-Forwarded-For", guesser.as_str()),
            ("Authorization", "Bearer rum-agent-token-7c2e"),
        ];
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
    let proxy = Proxy::builder(&pki, &upstream.url())
        .config(RUM)
        .api_keys()
        .prepare(|dir| {
            credential = create_key(
                dir,
                "event:write,config_agent:read,sourcemap:write",
                &["--services", "shop,ads"],
            )
            .1;
        })
        .start();
    let auth = format!("ApiKey {credential}");
    let auth = ("Authorization", auth.as_str());
    let mut cut_accepted = usize::MAX;
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
        // A per-event override is checked too: streamed so the stream is already flowing.
        let (tx, request) = streamed_post(&c, &url, &[auth]);
        let start = upstream.body_bytes();
        let first = v2("go", "shop", 1);
        tx.send(Ok(first.clone().into_bytes())).await.unwrap();
        eventually("the first event at the upstream", || async {
            upstream.body_bytes() - start >= first.len()
        })
        .await;
        tx.send(Ok(b"{\"span\":{\"id\":\"s\",\"context\":{\"service\":{\"name\":\"billing\"}}}}\n".to_vec()))
            .await
            .unwrap();
        let a = request.await.unwrap();
        drop(tx);
        assert_eq!(a.status, 403, "a per-event override is checked too");
        assert!(a.body.starts_with("{\"accepted\":1,"), "{}", a.body);
        cut_accepted = accepted_in(&a.body);

        // Agent config: by query string, and by a POSTed query body.
        let cfg = get(&c, &proxy.url("/config/v1/agents?service.name=billing"), &[auth]).await;
        assert_eq!(cfg.status, 403);
        let cfg = get(&c, &proxy.url("/config/v1/agents?service.name=ads"), &[auth]).await;
        assert_eq!(cfg.status, 200);
        assert!(cfg.body.contains("sanitize_field_names"), "keys see the whole config");
        let config_url = proxy.url("/config/v1/agents");
        let posted = post(&c, &config_url, &[auth], r#"{"service":{"name":"billing"}}"#).await;
        assert_eq!(posted.status, 403);
        assert_eq!(
            posted.body,
            "{\"error\":\"unauthorized: API Key not permitted for service \\\"billing\\\"\"}\n"
        );
        let posted = post(&c, &config_url, &[auth], r#"{"service":{"name":"shop"}}"#).await;
        assert_eq!(posted.status, 200, "{}", posted.body);

        // An OTLP body the proxy cannot read (no OTLP content type) is refused, unforwarded.
        let a = post(&c, &proxy.url("/v1/traces"), &[auth], vec![0u8; 16]).await;
        assert_eq!(a.status, 415, "{}", a.body);
        // Bodies the proxy cannot read are refused to bound keys, with APM's message.
        for path in ["/intake/v2/profile", "/assets/v1/sourcemaps"] {
            let a = post(&c, &proxy.url(path), &[auth], vec![0u8; 16]).await;
            assert_eq!(a.status, 403, "{path}");
            assert!(
                a.body.contains("unauthorized: API Key restricted to services cannot be used on this endpoint"),
                "{path}: {}",
                a.body
            );
        }
    });
    let intake: Vec<_> = upstream
        .requests()
        .into_iter()
        .filter(|r| r.uri.starts_with("/intake"))
        .collect();
    // The accepted stream, and the one cut mid-way (the refused metadata never left).
    assert_eq!(intake.len(), 2, "{intake:?}");
    assert!(intake[0].complete);
    assert!(
        !intake[1].complete,
        "a refused stream never completes upstream"
    );
    assert_eq!(
        events_received(&intake[1]),
        cut_accepted,
        "`accepted` is what the APM Server received"
    );
    let configs: Vec<_> = upstream
        .requests()
        .into_iter()
        .filter(|r| r.uri.starts_with("/config"))
        .collect();
    assert_eq!(configs.len(), 2, "the refused queries were not forwarded");
    assert_eq!(configs[1].method, "POST");
    assert_eq!(
        configs[1].body, br#"{"service":{"name":"shop"}}"#,
        "the POSTed query is replayed"
    );
}

/// Limits are charged once a request has passed every check: a service-bound key with a
/// one-request burst (refilled in a second) refused on endpoints it may not use (and with a method the endpoint
/// does not take) still has its token for the request it may make.
#[test]
fn refused_requests_spend_no_rate_tokens() {
    let pki = pki();
    let upstream = Upstream::start();
    let mut credential = String::new();
    let proxy = Proxy::builder(&pki, &upstream.url())
        .config(RUM)
        .api_keys()
        .prepare(|dir| {
            let limit = ["--services", "shop", "--rate-limit", "1 requests/s burst 1"];
            credential = create_key(dir, "event:write", &limit).1;
        })
        .start();
    let auth = format!("ApiKey {credential}");
    let auth = [("Authorization", auth.as_str())];
    rt().block_on(async {
        let c = proxy.client(true);
        for path in ["/assets/v1/sourcemaps", "/intake/v2/profile"] {
            let a = post(&c, &proxy.url(path), &auth, vec![0u8; 16]).await;
            assert_eq!(a.status, 403, "{path}: {}", a.body);
        }
        let a = get(&c, &proxy.url("/intake/v2/events"), &auth).await;
        assert_eq!(a.status, 400, "{}", a.body);
        let url = proxy.url("/intake/v2/events");
        let a = post(&c, &url, &auth, v2("go", "shop", 2)).await;
        assert_eq!(a.status, 202, "the one token was still there: {}", a.body);
        let a = post(&c, &url, &auth, v2("go", "shop", 2)).await;
        assert_eq!(a.status, 429, "and now it is spent: {}", a.body);
    });
    let forwarded = upstream.requests();
    assert_eq!(forwarded.len(), 1, "{forwarded:?}");
    assert_eq!(events_received(&forwarded[0]), 2);
}

/// A body far larger than `max_event_size` streams through with flat memory; a single line
/// over the limit is refused.
#[test]
fn large_bodies_stream_through_the_reader_with_flat_memory() {
    let pki = pki();
    let upstream = Upstream::start();
    let mut credential = String::new();
    let extra = format!(
        "[auth]\nsecret_token = \"rum-agent-token-7c2e\"\n{API_KEYS}[rum]\nenabled = true\nmax_event_size = 4096\n"
    );
    let proxy = Proxy::builder(&pki, &upstream.url())
        .config(&extra)
        .prepare(|dir| credential = create_key(dir, "event:write", &["--services", "shop"]).1)
        .start();
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

/// The anonymous allow-lists read a body as APM Server's decoder does: keys in any case, the
/// first key typing the line, only `m` metadata on v3. What two readers could read differently
/// is refused with 400; nothing of it is forwarded.
#[test]
fn the_intake_reader_reads_keys_as_apm_server_does() {
    let pki = pki();
    let upstream = Upstream::start();
    let proxy = Proxy::builder(&pki, &upstream.url())
        .config(RUM)
        .config("[auth.anonymous]\nallow_service = [\"shop\"]\n")
        .start();
    let v2_url = proxy.url("/intake/v2/rum/events");
    let v3_url = proxy.url("/intake/v3/rum/events");
    let meta = r#"{"metadata":{"service":{"name":"shop","agent":{"name":"rum-js"}}}}"#;
    let cases: Vec<(&str, String, u16, &str)> = vec![
        // Both spellings of a key: APM Server and a case-sensitive reader would differ.
        (&v2_url, r#"{"metadata":{"service":{"name":"shop","agent":{"name":"rum-js"}},"Service":{"name":"evil"}}}"#.to_string() + "\n", 400, "data decoding error"),
        (&v2_url, r#"{"metadata":{"service":{"name":"shop","Name":"evil","agent":{"name":"rum-js"}}}}"#.to_string() + "\n", 400, "data decoding error"),
        // Two event keys in one line: refused, whichever APM Server would take.
        (&v2_url, format!("{meta}\n{}\n", r#"{"span":{"context":{"service":{"name":"evil"}}},"transaction":{}}"#), 400, "data decoding error"),
        // Keys in another case are the same keys: the override is seen and refused.
        (&v2_url, format!("{meta}\n{}\n", r#"{"Transaction":{"Context":{"SERVICE":{"NAME":"evil"}}}}"#), 403, "not permitted for service \\\"evil\\\""),
        (&v3_url, "{\"m\":{\"se\":{\"n\":\"shop\",\"a\":{\"n\":\"rum-js\"}}}}\n{\"x\":{\"C\":{\"se\":{\"n\":\"evil\"}}}}\n".to_string(), 403, "not permitted for service \\\"evil\\\""),
        // v3 reads only `m`: allowed names under `metadata` do not hide disallowed ones.
        (&v3_url, "{\"m\":{\"se\":{\"n\":\"evil\",\"a\":{\"n\":\"rum-js\"}}},\"metadata\":{\"service\":{\"name\":\"shop\"}}}\n".to_string(), 403, "not permitted for service \\\"evil\\\""),
        (&v3_url, format!("{meta}\n"), 400, "the first line must be a metadata object"),
    ];
    rt().block_on(async {
        let c = proxy.client(false);
        for (url, body, status, message) in &cases {
            let a = post(&c, url, &[], body.clone()).await;
            assert_eq!(a.status, *status, "{body}: {}", a.body);
            assert!(a.body.contains(message), "{body}: {}", a.body);
        }
        // The unambiguous, allowed forms still pass.
        let ok = format!(
            "{meta}\n{}\n",
            r#"{"TRANSACTION":{"context":{"service":{"name":"shop"}}}}"#
        );
        assert_eq!(post(&c, &v2_url, &[], ok).await.status, 202);
    });
    assert_eq!(
        upstream.requests().len(),
        1,
        "only the allowed body was forwarded"
    );
}

/// A client that stalls while the proxy reads ahead for the metadata line gets 408 after one
/// `server.read_timeout`, as a stalled body anywhere else does.
#[test]
fn a_stalled_body_during_read_ahead_is_answered_408() {
    use std::io::{Read, Write};
    let pki = pki();
    let upstream = Upstream::start();
    let proxy = Proxy::builder(&pki, &upstream.url())
        .config(RUM)
        .config("[server]\nread_timeout = \"1s\"\n")
        .start();
    let out = bounded("openssl", std::time::Duration::from_secs(30))
        .args([
            "s_client",
            "-quiet",
            "-connect",
            &format!("127.0.0.1:{}", proxy.port),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut child = out;
    let mut stdin = child.stdin.take().unwrap();
    // The head and half a metadata line, then nothing.
    write!(
        stdin,
        "POST /intake/v2/rum/events HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000\r\n\r\n{{\"metadata\":"
    )
    .unwrap();
    stdin.flush().unwrap();
    let mut answer = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut answer)
        .unwrap();
    drop(stdin);
    let _ = child.wait();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request timed out"), "{answer}");
    assert!(!proxy.log_text().contains("ERROR"), "{}", proxy.log_text());
    assert_eq!(upstream.started(), 0);
}

/// `Expect: 100-continue` on an empty anonymous body: no `100 Continue` is promised for a body
/// that does not come; the empty body is APM Server's to judge (8.x accepts it) and the client
/// gets its answer.
#[test]
fn expect_continue_without_a_body_gets_an_answer() {
    let pki = pki();
    let upstream = Upstream::start();
    let proxy = Proxy::builder(&pki, &upstream.url()).config(RUM).start();
    let (out, err) = curl(&[
        "-s",
        "-i",
        "--http1.1",
        "--cacert",
        proxy.ca_file().to_str().unwrap(),
        "-H",
        "Expect: 100-continue",
        "-H",
        "Content-Type: application/x-ndjson",
        "-X",
        "POST",
        "-H",
        "Content-Length: 0",
        &proxy.url("/intake/v2/rum/events"),
    ]);
    assert!(!out.contains("100 Continue"), "{out}");
    let status = out.lines().next().unwrap_or_default();
    assert!(status.starts_with("HTTP/1.1 202"), "{out}{err}");
    let forwarded = upstream.requests();
    assert_eq!(forwarded.len(), 1);
    assert!(
        forwarded[0].headers.get("expect").is_none(),
        "{:?}",
        forwarded[0].headers
    );
    assert!(forwarded[0].body.is_empty());
}

/// A small compressed body cannot cost unbounded work: what it decompresses to is bounded
/// (413), and blank lines are charged to the rate limit like events (429).
#[test]
fn compressed_bodies_are_bounded_and_blank_lines_are_charged() {
    let pki = pki();
    let upstream = Upstream::start();
    let bomb = {
        let mut body = v2("rum-js", "s", 1).into_bytes();
        body.extend(std::iter::repeat_n(b'\n', 8 << 20));
        gzip(&body)
    };
    assert!(bomb.len() < 64 * 1024, "{} bytes compressed", bomb.len());
    let bounded = Proxy::builder(&pki, &upstream.url())
        .config(RUM)
        .config("[auth.anonymous]\nmax_decompressed_size = 1048576\n[auth.anonymous.rate_limit]\nevent_limit = 1000000\n")
        .start();
    let charged = Proxy::builder(&pki, &upstream.url())
        .config(RUM)
        .config("[auth.anonymous.rate_limit]\nevent_limit = 10\n")
        .start();
    rt().block_on(async {
        let headers = [
            ("Content-Encoding", "gzip"),
            ("X-Forwarded-For", "192.0.2.77"),
        ];
        let url = bounded.url("/intake/v2/rum/events");
        let a = post(&bounded.client(false), &url, &headers, bomb.clone()).await;
        assert_eq!(a.status, 413, "{}", a.body);
        assert!(a.body.contains("request body too large"), "{}", a.body);
        let url = charged.url("/intake/v2/rum/events");
        let a = post(&charged.client(false), &url, &headers, bomb.clone()).await;
        assert_eq!(a.status, 429, "{}", a.body);
        assert!(a.body.contains("rate limit exceeded"), "{}", a.body);
    });
    assert!(
        upstream.requests().iter().all(|r| !r.complete),
        "no bomb completed upstream"
    );
}
