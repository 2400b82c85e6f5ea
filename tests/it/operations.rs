//! Operating the proxy: the admin listener (liveness, readiness, Prometheus metrics), ECS
//! logs, credentials reloaded without a signal, the `health` command, and the drain on
//! SIGTERM that ends when the last request does.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::support::*;

const TOKEN: &str = "operations-token-3d81";

fn intake(proxy: &Proxy, auth: &str) -> reqwest::RequestBuilder {
    proxy
        .client(false)
        .post(proxy.url("/intake/v2/events"))
        .header("Authorization", auth)
        .body("{\"metadata\":{}}\n")
}

#[test]
fn metrics_count_what_was_sent_and_readiness_follows_the_upstream() {
    let pki = pki();
    let mut upstream = Upstream::start();
    let addr = upstream.addr;
    let proxy = Proxy::builder(&pki, &upstream.url())
        .token(TOKEN)
        .config("[upstream.health_check]\ninterval = \"100ms\"\n")
        .start();
    let runtime = rt();
    runtime.block_on(async {
        // Before any request: the process's own metrics, and every known counter at 0 so
        // that `increase()` and alerts see its first event.
        let m = metric_samples(&proxy).await;
        for limit in [
            "rate",
            "credential_rate",
            "concurrency",
            "failed_auth",
            "connections",
            "connections_per_ip",
            "header_timeout",
        ] {
            let key = format!("apm_auth_proxy_limited_total{{limit=\"{limit}\"}}");
            assert_eq!(sample(&m, &key), 0.0, "{key}");
        }
        for file in ["certificates", "credentials"] {
            for result in ["success", "failure"] {
                let key = format!("apm_auth_proxy_reloads_total{{file=\"{file}\",result=\"{result}\"}}");
                assert_eq!(sample(&m, &key), 0.0, "{key}");
            }
        }
        let unreachable_errors =
            "apm_auth_proxy_upstream_errors_total{pool=\"default\",reason=\"upstream_unreachable\"}";
        assert_eq!(sample(&m, unreachable_errors), 0.0);
        assert!(sample(&m, "process_resident_memory_bytes") > 1e6);
        assert!(sample(&m, "process_open_fds") >= 3.0);
        assert!(sample(&m, "process_max_fds") >= 1024.0);
        assert!(sample(&m, "process_start_time_seconds") > 1.7e9);
        assert!(m.contains_key("process_cpu_seconds_total"));
        eventually("readiness once the upstream answered", || async {
            admin_get(&proxy, "/readyz").await == (200, "ready\n".to_string())
        })
        .await;
        assert_eq!(admin_get(&proxy, "/livez").await.0, 200);
        let client = proxy.client(false);
        for _ in 0..3 {
            let auth = format!("Bearer {TOKEN}");
            let a = post(&client, &proxy.url("/intake/v2/events"), &[("Authorization", &auth)], "{}\n").await;
            assert_eq!(a.status, 202);
        }
        for _ in 0..2 {
            let a = post(&client, &proxy.url("/intake/v2/events"), &[("Authorization", "Bearer wrong-secret")], "x").await;
            assert_eq!(a.status, 401);
        }
        let a = get(&client, &proxy.url("/no/such/endpoint"), &[]).await;
        assert_eq!(a.status, 404);
        let m = samples_with(
            &proxy,
            "apm_auth_proxy_requests_total{endpoint=\"other\",outcome=\"rejected\",reason=\"not_found\",status=\"404\"}",
            1.0,
        )
        .await;
        let requests = |endpoint: &str, outcome: &str, reason: &str, status: u16| {
            sample(&m, &format!(
                "apm_auth_proxy_requests_total{{endpoint=\"{endpoint}\",outcome=\"{outcome}\",reason=\"{reason}\",status=\"{status}\"}}"
            ))
        };
        assert_eq!(requests("/intake/v2/events", "forwarded", "", 202), 3.0);
        assert_eq!(requests("/intake/v2/events", "rejected", "invalid_credentials", 401), 2.0);
        assert_eq!(requests("other", "rejected", "not_found", 404), 1.0);
        // Per method only: one series per credential would grow for ever (`/usage` has them).
        assert_eq!(sample(&m, "apm_auth_proxy_authentications_total{method=\"token\"}"), 3.0);
        assert!(!m.keys().any(|k| k.contains("credential=")), "no per-credential series");
        let duration = |outcome: &str| {
            let key = format!("apm_auth_proxy_request_duration_seconds_count{{endpoint=\"/intake/v2/events\",outcome=\"{outcome}\"}}");
            sample(&m, &key)
        };
        assert_eq!((duration("forwarded"), duration("rejected")), (3.0, 2.0));
        // Refusals take well under a millisecond: the lowest bucket is 100 µs.
        assert!(m.contains_key("apm_auth_proxy_request_duration_seconds_bucket{endpoint=\"/intake/v2/events\",outcome=\"rejected\",le=\"0.0001\"}"));
        assert_eq!(sample(&m, "apm_auth_proxy_upstream_duration_seconds_count{pool=\"default\"}"), 3.0);
        assert!(sample(&m, "apm_auth_proxy_request_bytes_total") >= 9.0);
        // When the served certificate expires, as a Unix time (the test's: a year from now).
        let not_after = sample(&m, "apm_auth_proxy_certificate_not_after_timestamp_seconds{server_name=\"default\"}");
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
        assert!(not_after > now + 3600.0, "{not_after} vs now {now}");
        // The client's kept-alive connections (it may hold more than one: its pool opens
        // another when one is not back yet; exact counts are tested with one connection per
        // client in `connection_caps_count_only_the_proxy_s_own_connections`).
        assert!(sample(&m, "apm_auth_proxy_client_connections") >= 1.0);
        let build = m.iter().find(|(k, _)| k.starts_with("apm_auth_proxy_build_info{")).unwrap();
        assert!(build.0.contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION"))), "{build:?}");
        assert!(build.0.contains("revision=\""), "{build:?}");
        assert_eq!(*build.1, 1.0);
        drop(client);
    });
    // The upstream goes away: readiness says so, and requests are still sent to it (a lone
    // APM Server is never shut out): its refused connect is a quick 502, counted as an
    // upstream error.
    upstream.stop();
    runtime.block_on(async {
        eventually("503 while the upstream is down", || async {
            admin_get(&proxy, "/readyz").await == (503, "not ready: upstream unreachable\n".to_string())
        })
        .await;
        let a = post(&proxy.client(false), &proxy.url("/intake/v2/events"), &[("Authorization", &format!("Bearer {TOKEN}"))], "x").await;
        assert_eq!((a.status, a.body.as_str()), (502, "{\"error\":\"bad gateway: the APM Server is unreachable\"}\n"));
        let unreachable = "apm_auth_proxy_requests_total{endpoint=\"/intake/v2/events\",outcome=\"upstream_error\",reason=\"upstream_unreachable\",status=\"502\"}";
        let m = samples_with(&proxy, unreachable, 1.0).await;
        assert_eq!(sample(&m, unreachable), 1.0);
        let errors = "apm_auth_proxy_upstream_errors_total{pool=\"default\",reason=\"upstream_unreachable\"}";
        assert_eq!(sample(&m, errors), 1.0, "the same error by pool, counted from 0");
        assert_eq!(
            sample(&m, &format!("apm_auth_proxy_upstream_member_up{{member=\"{addr}\",pool=\"default\"}}")),
            0.0
        );
    });
    let upstream = Upstream::start_on(addr);
    runtime.block_on(eventually(
        "200 again once the upstream is back",
        || async { admin_get(&proxy, "/readyz").await.0 == 200 },
    ));
    assert!(
        upstream.checks() > 0,
        "readiness came from the proxy's own checks"
    );
    assert!(
        upstream.requests().is_empty(),
        "checks are not proxied requests"
    );
}

/// The JSON log as an operator reads it: ECS on every line, an APM Server error a failure,
/// one credential named the same way in access and audit lines (also when its secret is
/// wrong), the request id sent upstream, and no query string anywhere.
#[test]
fn ecs_logs_are_json_with_the_required_fields() {
    let pki = pki();
    let upstream = Upstream::start();
    let mut key = (String::new(), String::new());
    let proxy = Proxy::builder(&pki, &upstream.url())
        .token(TOKEN)
        .api_keys()
        .config("[log]\nformat = \"json\"\n[auth]\nreload_interval = \"100ms\"\n")
        .prepare(|dir| key = create_key(dir, "event:write", &[]))
        .start();
    let (key_id, credential) = key;
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    // A key added while the proxy runs is an audit line; then it is used.
    let (new_id, new_credential) = create_key(proxy.dir.path(), "event:write", &[]);
    rt().block_on(async {
        let client = proxy.client(false);
        let url = |q: &str| proxy.url(&format!("/intake/v2/events{q}"));
        let auth = format!("ApiKey {credential}");
        let traceparent = format!("00-{trace}-00f067aa0ba902b7-01");
        let headers = [
            ("Authorization", auth.as_str()),
            ("User-Agent", "elasticapm-go/2.6.0"),
            ("traceparent", traceparent.as_str()),
        ];
        let q = "?secretquery=q-marker-7f3a";
        assert_eq!(post(&client, &url(q), &headers, "{}\n").await.status, 202);
        // APM Server overloaded: its 503 passes through, and is a failure in the log.
        let overloaded = [("Authorization", auth.as_str()), (STATUS, "503")];
        assert_eq!(
            post(&client, &url(q), &overloaded, "{}\n").await.status,
            503
        );
        let wrong = [("Authorization", "Bearer not-the-token")];
        assert_eq!(post(&client, &url(q), &wrong, "x").await.status, 401);
        // The known key with a wrong secret: the same 401, the key named in the log.
        let forged = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("{key_id}:not-its-secret"),
        );
        let forged = format!("ApiKey {forged}");
        register_presented(&forged);
        let forged = [("Authorization", forged.as_str())];
        assert_eq!(post(&client, &url(q), &forged, "x").await.status, 401);
        let new_auth = format!("ApiKey {new_credential}");
        let new_key = [("Authorization", new_auth.as_str())];
        eventually("the new key loaded", || async {
            post(&client, &url(""), &new_key, "{}\n").await.status == 202
        })
        .await;
    });
    // The last request's line (the new key's 202) is written after its answer.
    let new_key_line = format!("\"user.id\":\"api_key:{new_id}\"");
    eventually_blocking("every access line, the new key's last", || {
        let log = proxy.log_text();
        log.contains(&new_key_line) && log.matches("apm_auth_proxy.access").count() >= 5
    });
    let log = proxy.log_text();
    assert!(
        !log.contains("q-marker-7f3a"),
        "a query string in the log:\n{log}"
    );
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    for line in &lines {
        for field in [
            "@timestamp",
            "ecs.version",
            "log.level",
            "log.logger",
            "message",
            "event.dataset",
            "service.name",
            "service.version",
            "host.name",
            "process.pid",
        ] {
            assert!(line.get(field).is_some(), "{field} missing in {line}");
        }
        assert_ne!(
            line["log.logger"], "log",
            "a bridged line keeps its logger: {line}"
        );
        // At `info`, Pingora's start-up chatter is left out.
        let logger = line["log.logger"].as_str().unwrap();
        assert!(
            !(logger.starts_with("pingora") && line["log.level"] == "info"),
            "{line}"
        );
    }
    let access: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["event.dataset"] == "apm_auth_proxy.access")
        .collect();
    let status = |code: u64| {
        access
            .iter()
            .filter(move |l| l["http.response.status_code"] == code)
    };
    let accepted = status(202).next().unwrap();
    assert_eq!(accepted["message"], "POST /intake/v2/events 202");
    assert_eq!(accepted["http.request.method"], "POST");
    assert_eq!(accepted["url.path"], "/intake/v2/events");
    assert_eq!(accepted["http.version"], "1.1");
    assert_eq!(accepted["http.request.id"], trace);
    assert_eq!(accepted["tls.client.server_name"], "localhost");
    assert_eq!(accepted["source.ip"], "127.0.0.1");
    assert_eq!(accepted["client.ip"], "127.0.0.1");
    assert_eq!(accepted["user.id"], format!("api_key:{key_id}"));
    assert_eq!(accepted["user.name"], "test");
    assert_eq!(accepted["event.outcome"], "success");
    assert_eq!(accepted["event.kind"], "event");
    assert_eq!(
        accepted["event.type"],
        serde_json::json!(["access", "allowed"])
    );
    assert_eq!(accepted["tls.version"], "1.3");
    assert_eq!(accepted["user_agent.original"], "elasticapm-go/2.6.0");
    assert!(accepted["event.duration"].as_u64().unwrap() > 0);
    assert!(
        accepted["apm_auth_proxy.upstream.duration"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert_eq!(accepted["http.request.body.bytes"], 3);
    let sent = upstream.requests();
    assert_eq!(
        sent[0]
            .headers
            .get("x-request-id")
            .map(|v| v.to_str().unwrap()),
        Some(trace),
        "the request id travels upstream"
    );
    let overloaded = status(503).next().unwrap();
    assert_eq!(overloaded["event.outcome"], "failure", "{overloaded}");
    assert_eq!(overloaded["apm_auth_proxy.outcome"], "forwarded");
    // The wrong token, the forged key, and the new key until it was loaded.
    let refused: Vec<_> = status(401).collect();
    assert!(refused.len() >= 2, "{refused:?}");
    for r in &refused {
        assert_eq!(r["event.outcome"], "failure");
        assert_eq!(r["event.reason"], "invalid_credentials");
        assert_eq!(r["event.type"], serde_json::json!(["access", "denied"]));
    }
    assert!(
        refused[0].get("user.id").is_none(),
        "an unknown token names nobody: {}",
        refused[0]
    );
    assert_eq!(
        refused[1]["user.id"],
        format!("api_key:{key_id}"),
        "a known key with a wrong secret is named"
    );
    // The audit line names the added key as its access lines do.
    let audit = lines
        .iter()
        .find(|l| l["event.dataset"] == "apm_auth_proxy.audit" && l["event.action"] == "added")
        .unwrap();
    assert_eq!(audit["user.target.id"], format!("api_key:{new_id}"));
    assert_eq!(audit["user.target.name"], "test");
    assert_eq!(audit["event.category"], serde_json::json!(["iam"]));
    assert_eq!(audit["event.type"], serde_json::json!(["creation"]));
    assert!(
        access
            .iter()
            .any(|l| l["user.id"] == audit["user.target.id"]),
        "access and audit lines join on the credential's id"
    );
}

#[test]
fn api_keys_take_effect_without_a_signal_and_a_broken_keys_file_keeps_the_last_good_set() {
    let pki = pki();
    let upstream = Upstream::start();
    let proxy = Proxy::builder(&pki, &upstream.url())
        .api_keys()
        .config("[auth]\nreload_interval = \"100ms\"\n")
        .prepare(|dir| std::fs::write(dir.join("keys.toml"), "").unwrap())
        .start();
    let dir = proxy.dir.path().to_path_buf();
    let cli_config = dir.join("keys-cli.toml");
    let runtime = rt();
    // Created after the proxy started, and no SIGHUP: it works within the reload interval.
    let (id, credential) = create_key(&dir, "event:write", &[]);
    let auth = format!("ApiKey {credential}");
    runtime.block_on(eventually("the new key accepted", || async {
        intake(&proxy, &auth).send().await.unwrap().status() == 202
    }));
    let (_, second) = create_key(&dir, "event:write", &[]);
    let second_auth = format!("ApiKey {second}");
    runtime.block_on(eventually("the second key accepted", || async {
        intake(&proxy, &second_auth).send().await.unwrap().status() == 202
    }));
    // Revoked with the CLI: refused within the interval.
    let (code, _, err) = run_cli(&[
        "apikey",
        "--config",
        cli_config.to_str().unwrap(),
        "revoke",
        &id,
    ]);
    assert_eq!(code, 0, "{err}");
    runtime.block_on(eventually("the revoked key refused", || async {
        intake(&proxy, &auth).send().await.unwrap().status() == 401
    }));
    // A broken keys file: logged with its key, counted, and the last good keys stay.
    std::fs::write(dir.join("keys.toml"), "[[keys]]\nid = 5\n").unwrap();
    eventually_blocking("the reload failure in the log", || {
        proxy.log_text().contains("credential reload failed")
    });
    runtime.block_on(async {
        assert_eq!(
            intake(&proxy, &second_auth).send().await.unwrap().status(),
            202
        );
        assert_eq!(intake(&proxy, &auth).send().await.unwrap().status(), 401);
        let m = metric_samples(&proxy).await;
        assert!(
            sample(
                &m,
                "apm_auth_proxy_reloads_total{file=\"credentials\",result=\"success\"}"
            ) >= 3.0
        );
        assert_eq!(
            sample(
                &m,
                "apm_auth_proxy_reloads_total{file=\"credentials\",result=\"failure\"}"
            ),
            1.0
        );
    });
    let log = proxy.log_text();
    let failure = log
        .lines()
        .find(|l| l.contains("credential reload failed"))
        .unwrap();
    assert!(
        failure.contains("auth.api_key.keys_file"),
        "names the file: {failure}"
    );
    assert!(
        log.contains("credential added") && log.contains("credential revoked"),
        "{log}"
    );
}

#[test]
fn health_command_exits_by_readiness() {
    let pki = pki();
    let mut upstream = Upstream::start();
    let mut proxy = Proxy::builder(&pki, &upstream.url())
        .token(TOKEN)
        .config("[upstream.health_check]\ninterval = \"100ms\"\n")
        .start();
    let config = proxy.dir.path().join("proxy.toml");
    let admin = proxy.admin_url();
    eventually_blocking("health 0 when ready (by the config)", || {
        run_cli(&["health", "--config", config.to_str().unwrap()]).0 == 0
    });
    let (code, out, _) = run_cli(&["health", "--admin", &admin]);
    assert_eq!((code, out.trim()), (0, "ready"));
    upstream.stop();
    eventually_blocking("health 1 while the upstream is down", || {
        run_cli(&["health", "--admin", &admin]).0 == 1
    });
    let (_, _, err) = run_cli(&["health", "--admin", &admin]);
    assert!(err.contains("503 not ready: upstream unreachable"), "{err}");
    proxy.signal("KILL");
    assert!(proxy.wait_exit(PATIENCE).is_some());
    let (code, _, err) = run_cli(&["health", "--admin", &admin]);
    assert_eq!(code, 1);
    assert!(
        err.contains("cannot connect to the admin listener"),
        "{err}"
    );
}

/// An agent's event stream, flowing (its metadata line at the upstream): the sender that
/// continues or ends it, and its answer to come. Call inside a runtime.
async fn stream_at_upstream(
    proxy: &Proxy,
    upstream: &Upstream,
) -> (
    tokio::sync::mpsc::Sender<Result<Vec<u8>, std::io::Error>>,
    tokio::task::JoinHandle<Answer>,
) {
    let auth = format!("Bearer {TOKEN}");
    let (tx, upload) = streamed_post(
        &proxy.client(false),
        &proxy.url("/intake/v2/events"),
        &[("Authorization", &auth)],
    );
    tx.send(Ok(b"{\"metadata\":{}}\n".to_vec())).await.unwrap();
    eventually("the stream at the upstream", || async {
        upstream.body_bytes() > 0
    })
    .await;
    (tx, upload)
}

/// `shutdown_grace_period` is the upper bound: a stream that outlasts it is cut when it ends,
/// and the process exits then — not when the stream would have ended, and not before.
#[test]
fn the_grace_period_cuts_a_stream_that_outlasts_it() {
    let pki = pki();
    let upstream = Upstream::start();
    let mut proxy = Proxy::builder(&pki, &upstream.url())
        .token(TOKEN)
        .config("[server]\nshutdown_grace_period = \"2s\"\n")
        .start();
    let runtime = rt();
    let (tx, upload) = runtime.block_on(stream_at_upstream(&proxy, &upstream));
    proxy.signal("TERM");
    let signalled = Instant::now();
    // Still running while the stream is open within the grace…
    assert!(
        proxy.wait_exit(Duration::from_millis(500)).is_none(),
        "exited before the grace"
    );
    // …and gone once the grace is over, with the stream still open.
    let exit = proxy
        .wait_exit(Duration::from_secs(20))
        .expect("the process exited at the end of the grace period");
    assert!(
        signalled.elapsed() >= Duration::from_secs(2),
        "{:?}",
        signalled.elapsed()
    );
    assert!(exit.success(), "{exit:?}");
    let answer = runtime.block_on(async {
        drop(tx);
        tokio::time::timeout(PATIENCE, upload).await
    });
    // The client's stream was cut: no 202 for it.
    if let Ok(Ok(a)) = answer {
        assert_ne!(a.status, 202, "a cut stream is not accepted");
    }
    let recorded = upstream.requests();
    assert!(
        recorded.iter().all(|r| !r.complete),
        "the upstream's copy of the stream ends incomplete: {recorded:?}"
    );
}

/// A drained proxy with a long agent stream in flight: SIGTERM turns readiness 503 and
/// closes the listener at once, the stream runs to its end (202), and the process exits as
/// soon as it has — not after the 30 s grace period.
#[test]
fn sigterm_drains_a_streaming_upload_and_exits_when_it_ends() {
    let pki = pki();
    let upstream = Upstream::start();
    let mut proxy = Proxy::builder(&pki, &upstream.url())
        .token(TOKEN)
        .config("[server]\nshutdown_grace_period = \"30s\"\n[upstream.health_check]\ninterval = \"100ms\"\n")
        .start();
    let port = proxy.port;
    let runtime = rt();
    let (status, upload_ended) = runtime.block_on(async {
        let (tx, upload) = stream_at_upstream(&proxy, &upstream).await;
        proxy.signal("TERM");
        eventually("readiness 503 while draining", || async {
            admin_get(&proxy, "/readyz").await == (503, "not ready: draining\n".to_string())
        })
        .await;
        eventually("new connections refused", || async {
            TcpStream::connect(("127.0.0.1", port)).is_err()
        })
        .await;
        // The agent keeps streaming for 10 seconds in all.
        for i in 0..19 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            tx.send(Ok(
                format!("{{\"transaction\":{{\"id\":\"{i}\"}}}}\n").into_bytes()
            ))
            .await
            .unwrap();
        }
        drop(tx);
        (upload.await.unwrap().status, Instant::now())
    });
    assert_eq!(status, 202, "the upload in flight completed");
    let exit = proxy
        .wait_exit(Duration::from_secs(10))
        .expect("the process exited");
    let after = upload_ended.elapsed();
    assert!(exit.success(), "exit status {exit:?}");
    // Not held for the 30 s grace period (a third of it is the bound on a loaded machine).
    assert!(
        after < Duration::from_secs(10),
        "exited {after:?} after the last request ended"
    );
    let rec = upstream.requests().pop().unwrap();
    assert!(rec.complete);
    assert_eq!(rec.body.iter().filter(|&&b| b == b'\n').count(), 20);
}

#[test]
fn sigterm_on_an_idle_proxy_exits_at_once() {
    let pki = pki();
    let upstream = Upstream::start();
    let mut proxy = Proxy::builder(&pki, &upstream.url())
        .token(TOKEN)
        .config("[server]\nshutdown_grace_period = \"30s\"\n")
        .start();
    // An idle kept-alive connection does not hold the drain up: one request on a raw TLS
    // connection, answered, then the connection held open and idle across the SIGTERM.
    let runtime = rt();
    let mut idle = runtime.block_on(async {
        use tokio::io::AsyncWriteExt;
        let mut tls = raw_tls(&proxy).await;
        let body = "{\"metadata\":{}}\n";
        let request = format!(
            "POST /intake/v2/events HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {TOKEN}\r\n\
             Content-Type: application/x-ndjson\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        tls.write_all(request.as_bytes()).await.unwrap();
        assert_eq!(read_response(&mut tls).await.unwrap().0, 202);
        tls
    });
    proxy.signal("TERM");
    let signalled = Instant::now();
    let exit = proxy
        .wait_exit(Duration::from_secs(10))
        .expect("the process exited");
    assert!(exit.success(), "{exit:?}");
    // Far inside the 30 s grace: the idle connection was not waited for.
    assert!(
        signalled.elapsed() < Duration::from_secs(10),
        "took {:?}",
        signalled.elapsed()
    );
    // And it was closed, not left behind.
    let closed = runtime.block_on(async {
        use tokio::io::AsyncReadExt;
        let mut byte = [0u8; 1];
        matches!(idle.read(&mut byte).await, Ok(0) | Err(_))
    });
    assert!(closed, "the idle kept-alive connection was closed");
}

#[test]
fn a_second_sigterm_exits_without_waiting_for_the_stream() {
    let pki = pki();
    let upstream = Upstream::start();
    let mut proxy = Proxy::builder(&pki, &upstream.url())
        .token(TOKEN)
        .config("[server]\nshutdown_grace_period = \"60s\"\n")
        .start();
    rt().block_on(async {
        let (tx, body) = channel_body();
        let client = proxy.client(false);
        let url = proxy.url("/intake/v2/events");
        let auth = format!("Bearer {TOKEN}");
        let upload = tokio::spawn(async move {
            client
                .post(url)
                .header("Authorization", auth)
                .body(body)
                .send()
                .await
        });
        tx.send(Ok(b"{\"metadata\":{}}\n".to_vec())).await.unwrap();
        eventually("the stream at the upstream", || async {
            upstream.body_bytes() > 0
        })
        .await;
        proxy.signal("TERM");
        eventually("draining", || async {
            admin_get(&proxy, "/readyz").await.0 == 503
        })
        .await;
        proxy.signal("TERM");
        let exit = proxy
            .wait_exit(PATIENCE)
            .expect("the second SIGTERM ends the process");
        assert!(exit.success(), "{exit:?}");
        assert!(
            upload.await.unwrap().is_err(),
            "the stream was cut, not completed"
        );
        drop(tx);
    });
    eventually_blocking("the stand-in's record of the cut stream", || {
        upstream.requests().len() == 1
    });
    assert!(!upstream.requests()[0].complete);
}

/// With a drain delay, readiness turns 503 at once while new connections are still served
/// (each answer closing its connection); when the delay is over the listener closes — not
/// before — while a stream in flight runs on to its 202, and the process exits when it ends.
#[test]
fn drain_delay_keeps_serving_then_closes_the_listener() {
    const DELAY: Duration = Duration::from_secs(3);
    let pki = pki();
    let upstream = Upstream::start();
    let mut proxy = Proxy::builder(&pki, &upstream.url())
        .token(TOKEN)
        .config("[server]\ndrain_delay = \"3s\"\nshutdown_grace_period = \"60s\"\n")
        .start();
    let port = proxy.port;
    let status = rt().block_on(async {
        let (tx, upload) = stream_at_upstream(&proxy, &upstream).await;
        proxy.signal("TERM");
        let signalled = Instant::now();
        eventually("readiness 503", || async {
            admin_get(&proxy, "/readyz").await.0 == 503
        })
        .await;
        // A new connection during the delay is served, and told the connection closes.
        let client = proxy.client(false);
        let auth = format!("Bearer {TOKEN}");
        let a = post(
            &client,
            &proxy.url("/intake/v2/events"),
            &[("Authorization", &auth)],
            "{}\n",
        )
        .await;
        assert_eq!(a.status, 202, "still served during the drain delay");
        assert_eq!(a.header_values("connection"), ["close"]);
        eventually("new connections refused after the delay", || async {
            TcpStream::connect(("127.0.0.1", port)).is_err()
        })
        .await;
        assert!(
            signalled.elapsed() >= DELAY,
            "the listener closed {:?} after SIGTERM, before the drain delay",
            signalled.elapsed()
        );
        tx.send(Ok(b"{\"transaction\":{\"id\":\"late\"}}\n".to_vec()))
            .await
            .unwrap();
        drop(tx);
        upload.await.unwrap().status
    });
    assert_eq!(
        status, 202,
        "the stream in flight completed after the listener closed"
    );
    let exit = proxy.wait_exit(PATIENCE).expect("the process exited");
    assert!(exit.success(), "{exit:?}");
    let stream = upstream.requests().into_iter().find(|r| r.body.len() > 3);
    let stream = stream.expect("the stream at the upstream");
    assert!(stream.complete);
    assert!(String::from_utf8_lossy(&stream.body).contains("late"));
}

/// Each proxy counts its own connections: another process's sockets on the same port
/// number (a second proxy on another address of the host) never count against its caps, and a
/// connection's place is freed when it closes.
#[test]
fn connection_caps_count_only_the_proxy_s_own_connections() {
    let pki = pki();
    let upstream = Upstream::start();
    let capped = Proxy::builder(&pki, &upstream.url())
        .token(TOKEN)
        .config("[server]\nmax_connections = 3\n")
        .start();
    // Another proxy on the same port number, on 127.0.0.2, holding twelve connections.
    let neighbour = Proxy::builder(&pki, &upstream.url())
        .token(TOKEN)
        .listen_on(([127, 0, 0, 2], capped.port).into())
        .start();
    let held: Vec<TcpStream> = (0..12)
        .map(|_| TcpStream::connect((neighbour.host, neighbour.port)).unwrap())
        .collect();
    let auth = format!("Bearer {TOKEN}");
    rt().block_on(async {
        client_connections_become(&neighbour, 12.0, "the neighbour counts its twelve").await;
        client_connections_become(&capped, 0.0, "the capped proxy's start-up probe closed").await;
        // Three agents of its own, each on its own connection, all served.
        let agents: Vec<reqwest::Client> = (0..3).map(|_| capped.client(false)).collect();
        for agent in &agents {
            let a = post(
                agent,
                &capped.url("/intake/v2/events"),
                &[("Authorization", &auth)],
                "{}\n",
            )
            .await;
            assert_eq!(a.status, 202);
        }
        assert_eq!(
            sample(
                &metric_samples(&capped).await,
                "apm_auth_proxy_client_connections"
            ),
            3.0
        );
        // A fourth is over its cap; once one of the three closes, a new one is served.
        let fourth = capped.client(false);
        assert!(fourth
            .post(capped.url("/intake/v2/events"))
            .header("Authorization", &auth)
            .body("{}\n")
            .send()
            .await
            .is_err());
        drop(agents);
        client_connections_become(&capped, 0.0, "the closed connections' places freed").await;
        let again = post(
            &capped.client(false),
            &capped.url("/intake/v2/events"),
            &[("Authorization", &auth)],
            "{}\n",
        )
        .await;
        assert_eq!(again.status, 202);
    });
    drop(held);
}

/// `server.max_connections` and `max_connections_per_ip`: a connection over a cap is closed
/// before its handshake, the open ones keep being served, each refusal is counted by its
/// cap, and a place freed is taken again.
#[test]
fn connections_over_the_caps_are_closed_counted_and_freed() {
    let pki = pki();
    let upstream = Upstream::start();
    let proxy = Proxy::builder(&pki, &upstream.url())
        .token(TOKEN)
        .config("[server]\nmax_connections = 3\nmax_connections_per_ip = 2\n")
        .start();
    let ip = |last: u8| std::net::IpAddr::from([127, 0, 0, last]);
    let auth = format!("Bearer {TOKEN}");
    rt().block_on(async {
        let send = |client: &reqwest::Client| {
            client
                .post(proxy.url("/intake/v2/events"))
                .header("Authorization", &auth)
                .body("{\"metadata\":{}}\n")
                .send()
        };
        // The harness's start-up probe was a connection too: its place is freed as it closes.
        client_connections_become(&proxy, 0.0, "the start-up probe's connection closed").await;
        // Two from 127.0.0.1 fill its per-IP cap; each keeps its connection.
        let (a, b) = (proxy.client_from(ip(1)), proxy.client_from(ip(1)));
        for client in [&a, &b] {
            assert_eq!(send(client).await.unwrap().status(), 202);
        }
        // A third from 127.0.0.1 is over the per-IP cap (not the total: 3).
        assert!(send(&proxy.client_from(ip(1))).await.is_err());
        // One from 127.0.0.2 fills the total; one from 127.0.0.3 is over it.
        let d = proxy.client_from(ip(2));
        assert_eq!(send(&d).await.unwrap().status(), 202);
        assert!(send(&proxy.client_from(ip(3))).await.is_err());
        // The open connections are served as before (a new one would have been refused).
        for client in [&a, &b, &d] {
            assert_eq!(send(client).await.unwrap().status(), 202);
        }
        let counted = metric_samples(&proxy).await;
        assert_eq!(
            sample(
                &counted,
                "apm_auth_proxy_limited_total{limit=\"connections_per_ip\"}"
            ),
            1.0
        );
        assert_eq!(
            sample(
                &counted,
                "apm_auth_proxy_limited_total{limit=\"connections\"}"
            ),
            1.0
        );
        // Closing one frees its place once the open connections are recounted.
        drop(a);
        eventually("a freed place taken by a new connection", || async {
            send(&proxy.client_from(ip(1)))
                .await
                .is_ok_and(|r| r.status() == 202)
        })
        .await;
    });
    assert!(proxy
        .log_text()
        .contains("connection refused: too many open connections"));
}
