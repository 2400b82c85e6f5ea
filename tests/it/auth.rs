//! Authentication and authorization through the real proxy: every outcome's exact status
//! and body, each endpoint against each privilege, expiry, revocation and token rotation.

use base64::Engine;

use crate::support::*;

const TOKENS: &str = r#"
[auth]
secret_token = "primary-token"
[[auth.secret_tokens]]
name = "next"
secret = { env = "APM_AUTH_PROXY_TEST_NEXT_TOKEN" }
[[auth.secret_tokens]]
name = "retired"
secret = "retired-token"
expires = "2020-01-01T00:00:00Z"
"#;

/// POST a small intake body with an optional credential and `Accept` (agents send none).
async fn intake(
    client: &reqwest::Client,
    url: &str,
    auth: Option<&str>,
    accept: Option<&str>,
) -> Answer {
    let mut headers = vec![("Accept", accept.unwrap_or("application/x-ndjson"))];
    if let Some(a) = auth {
        headers.push(("Authorization", a));
    }
    post(client, url, &headers, "{\"metadata\":{}}\n").await
}

const MISSING: &str = "authentication failed: missing or improperly formatted Authorization header: expected 'Authorization: Bearer secret_token' or 'Authorization: ApiKey base64(API key ID:API key)'";

#[test]
fn every_auth_outcome_has_apm_servers_status_and_body() {
    let pki = pki();
    let upstream = Upstream::start();
    let proxy = Proxy::builder(&pki, &upstream.url())
        .config(TOKENS)
        .api_keys()
        .env("APM_AUTH_PROXY_TEST_NEXT_TOKEN", "next-token")
        .prepare(|dir| {
            create_key(dir, "event:write", &[]);
        })
        .start();
    let client = proxy.client(false);
    let url = proxy.url("/intake/v2/events");
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let unknown_key = format!("ApiKey {}", b64("nosuchid:secret"));
    let no_colon = format!("ApiKey {}", b64("no-colon-here"));
    let cases: Vec<(Option<&str>, String)> = vec![
        (None, MISSING.to_string()),
        (Some("Bearer"), MISSING.to_string()),
        (Some("primary-token"), MISSING.to_string()),
        (Some("Bearer wrong-token"), "authentication failed".into()),
        (Some("Bearer retired-token"), "authentication failed".into()),
        (Some(unknown_key.as_str()), "authentication failed".into()),
        (
            Some("Basic dXNlcjpwYXNz"),
            "authentication failed: unknown Authentication header Basic: expected 'Authorization: Bearer secret_token' or 'Authorization: ApiKey base64(API key ID:API key)'".into(),
        ),
        (
            Some("bearer primary-token"),
            "authentication failed: unknown Authentication header bearer: expected 'Authorization: Bearer secret_token' or 'Authorization: ApiKey base64(API key ID:API key)'".into(),
        ),
        (
            Some("ApiKey not base64!"),
            "authentication failed: improperly encoded ApiKey credentials: expected base64(ID:APIKey): illegal base64 data at input byte 3".into(),
        ),
        (
            Some(no_colon.as_str()),
            "authentication failed: improperly formatted ApiKey credentials: expected base64(ID:APIKey)".into(),
        ),
    ];
    rt().block_on(async {
        for (auth, message) in &cases {
            // No JSON Accept (what agents send): compact JSON under text/plain.
            let a = intake(&client, &url, *auth, None).await;
            assert_eq!(a.status, 401, "{auth:?}");
            assert_eq!(
                a.body,
                format!("{}\n", serde_json::json!({ "error": message })),
                "{auth:?}"
            );
            assert_eq!(a.content_type.as_deref(), Some("text/plain; charset=utf-8"));
            assert_eq!(a.headers.get("x-content-type-options").unwrap(), "nosniff");
            assert!(a.headers.get("www-authenticate").is_none());
            // curl-style Accept: pretty JSON.
            let a = intake(&client, &url, *auth, Some("*/*")).await;
            assert_eq!(a.status, 401);
            assert_eq!(a.content_type.as_deref(), Some("application/json"));
            assert_eq!(
                a.body,
                format!(
                    "{}\n",
                    serde_json::to_string_pretty(&serde_json::json!({ "error": message })).unwrap()
                )
            );
        }
        for ok in ["Bearer primary-token", "Bearer next-token"] {
            assert_eq!(
                intake(&client, &url, Some(ok), None).await.status,
                202,
                "{ok}"
            );
        }
    });
    // Only the two accepted requests reached the APM Server.
    assert_eq!(upstream.requests().len(), 2);
}

#[test]
fn each_endpoint_requires_its_privilege() {
    let pki = pki();
    let upstream = Upstream::start();
    let mut keys = Vec::new();
    let proxy = Proxy::builder(&pki, &upstream.url())
        .api_keys()
        .prepare(|dir| {
            for p in ["event:write", "config_agent:read", "sourcemap:write"] {
                keys.push((p, create_key(dir, p, &[]).1));
            }
        })
        .start();
    let endpoints = [
        ("/intake/v2/events", "event:write", true),
        ("/intake/v2/rum/events", "event:write", true),
        ("/intake/v3/rum/events", "event:write", true),
        ("/intake/v2/profile", "event:write", true),
        ("/v1/traces", "event:write", true),
        ("/v1/metrics", "event:write", true),
        ("/v1/logs", "event:write", true),
        ("/config/v1/agents", "config_agent:read", false),
        ("/config/v1/rum/agents", "config_agent:read", false),
        ("/assets/v1/sourcemaps", "sourcemap:write", false),
    ];
    let client = proxy.client(true);
    rt().block_on(async {
        // Without a credential, every endpoint of the table: APM Server's 401.
        for (path, _, _) in endpoints {
            let a = intake(&client, &proxy.url(path), None, None).await;
            assert_eq!(a.status, 401, "{path}");
            assert_eq!(
                a.body,
                format!("{}\n", serde_json::json!({ "error": MISSING })),
                "{path}"
            );
        }
        assert!(upstream.requests().is_empty());
        let mut forwarded = 0;
        for (path, needed, stream_shape) in endpoints {
            for (privilege, credential) in &keys {
                let auth = format!("ApiKey {credential}");
                let a = intake(&client, &proxy.url(path), Some(&auth), None).await;
                if *privilege == needed {
                    assert!(a.status < 300, "{path} with {privilege}: {}", a.status);
                    forwarded += 1;
                    assert_eq!(upstream.requests().last().unwrap().uri, path);
                } else {
                    let message =
                        format!("unauthorized: API Key not permitted action \"{needed}\"");
                    let expected = if stream_shape {
                        serde_json::json!({ "accepted": 0, "errors": [{ "message": message }] })
                    } else {
                        serde_json::json!({ "error": message })
                    };
                    assert_eq!(a.status, 403, "{path} with {privilege}");
                    assert_eq!(a.body, format!("{expected}\n"), "{path} with {privilege}");
                }
            }
        }
        assert_eq!(upstream.requests().len(), forwarded);
    });
}

#[test]
fn expired_and_revoked_keys_are_refused_and_sighup_applies_revocation() {
    let pki = pki();
    let upstream = Upstream::start();
    let (mut live, mut expired, mut revoked) = (String::new(), String::new(), String::new());
    let proxy = Proxy::builder(&pki, &upstream.url())
        .api_keys()
        // No polling: only the signal can apply the revocation.
        .config("[auth]\nreload_interval = \"0s\"\n")
        .prepare(|dir| {
            live = create_key(dir, "event:write", &[]).1;
            expired = create_key(dir, "event:write", &["--expires-in", "1s"]).1;
            let (id, cred) = create_key(dir, "event:write", &[]);
            revoked = cred;
            let cfg = dir.join("keys-cli.toml");
            let (code, _, err) =
                run_cli(&["apikey", "--config", cfg.to_str().unwrap(), "revoke", &id]);
            assert_eq!(code, 0, "{err}");
            // The one-second key must have expired before the proxy is asked.
            std::thread::sleep(std::time::Duration::from_millis(1100));
        })
        .start();
    let client = proxy.client(false);
    let url = proxy.url("/intake/v2/events");
    rt().block_on(async {
        assert_eq!(
            intake(&client, &url, Some(&format!("ApiKey {live}")), None)
                .await
                .status,
            202
        );
        for dead in [&expired, &revoked] {
            let a = intake(&client, &url, Some(&format!("ApiKey {dead}")), None).await;
            assert_eq!(
                (a.status, a.body.as_str()),
                (401, "{\"error\":\"authentication failed\"}\n")
            );
        }
    });
    // Revoke the live key with the CLI; SIGHUP makes the running proxy see it.
    let cfg = proxy.dir.path().join("keys-cli.toml");
    let (_, list, _) = run_cli(&["apikey", "--config", cfg.to_str().unwrap(), "list"]);
    assert!(
        list.contains("revoked") && list.contains("expired") && list.contains("active"),
        "{list}"
    );
    let live_id = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(&live)
            .unwrap(),
    )
    .unwrap()
    .split(':')
    .next()
    .unwrap()
    .to_string();
    let (code, _, err) = run_cli(&[
        "apikey",
        "--config",
        cfg.to_str().unwrap(),
        "revoke",
        &live_id,
    ]);
    assert_eq!(code, 0, "{err}");
    let live_auth = format!("ApiKey {live}");
    rt().block_on(async {
        let a = intake(&client, &url, Some(&live_auth), None).await;
        assert_eq!(a.status, 202, "no reload before the signal");
    });
    // A token added to proxy.toml itself: SIGHUP does not re-read that file (README).
    let late = "late-token-4e5f6a7b";
    register_secret(late);
    let config = proxy.dir.path().join("proxy.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "\n[[auth.secret_tokens]]\nname = \"late\"\nsecret = \"{late}\"\n"
    ));
    std::fs::write(&config, text).unwrap();
    proxy.signal("HUP");
    rt().block_on(eventually(
        "the revocation applied after SIGHUP",
        || async { intake(&client, &url, Some(&live_auth), None).await.status == 401 },
    ));
    assert!(proxy.log_text().contains("credentials reloaded"));
    let late = format!("Bearer {late}");
    rt().block_on(async {
        let a = intake(&client, &url, Some(&late), None).await;
        assert_eq!(a.status, 401, "proxy.toml is read at start only");
    });
}

#[test]
fn root_is_blank_for_anonymous_and_real_for_authenticated_callers() {
    let pki = pki();
    let upstream = Upstream::start();
    let proxy = Proxy::builder(&pki, &upstream.url())
        .token("rum-agent-token-7c2e")
        .start();
    let client = proxy.client(false);
    rt().block_on(async {
        for auth in [None, Some("Bearer wrong"), Some("Basic x")] {
            let mut req = client.get(proxy.url("/")).header("Accept", "text/plain");
            if let Some(a) = auth {
                req = req.header("Authorization", a);
            }
            let resp = req.send().await.unwrap();
            assert_eq!(resp.status(), 200);
            assert!(resp.headers().get("content-type").is_none());
            assert_eq!(resp.text().await.unwrap(), "");
        }
        assert!(
            upstream.requests().is_empty(),
            "anonymous GET / is answered by the proxy"
        );
        let resp = client
            .get(proxy.url("/"))
            .header("Authorization", "Bearer rum-agent-token-7c2e")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert!(resp
            .text()
            .await
            .unwrap()
            .contains("\"version\":\"7.17.0\""));
        // Unknown paths and the debug endpoints are never forwarded, whatever the credential.
        for path in [
            "/debug/pprof/",
            "/debug/vars",
            "/intake/v2/events/",
            "/nope",
        ] {
            let resp = client
                .get(proxy.url(path))
                .header("Accept", "text/plain")
                .header("Authorization", "Bearer rum-agent-token-7c2e")
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 404, "{path}");
            assert_eq!(
                resp.text().await.unwrap(),
                "{\"error\":\"404 page not found\"}\n"
            );
        }
    });
    assert_eq!(upstream.requests().len(), 1);
}

/// Each endpoint takes the methods APM Server's handler takes; others are answered here, as
/// APM Server answers them, after authentication, and never forwarded.
#[test]
fn other_methods_are_refused_as_apm_server_refuses_them() {
    let pki = pki();
    let upstream = Upstream::start();
    let proxy = Proxy::builder(&pki, &upstream.url())
        .token("method-token-5c1e")
        .start();
    let auth = [("Authorization", "Bearer method-token-5c1e")];
    rt().block_on(async {
        let c = proxy.client(false);
        for (method, path, status, body) in [
            ("GET", "/intake/v2/events", 400, "{\"accepted\":0,\"errors\":[{\"message\":\"only POST requests are supported\"}]}\n"),
            ("PUT", "/intake/v2/rum/events", 400, "{\"accepted\":0,\"errors\":[{\"message\":\"only POST requests are supported\"}]}\n"),
            ("PUT", "/config/v1/agents", 405, "{\"error\":\"method not supported: PUT\"}\n"),
            ("DELETE", "/v1/traces", 405, "{\"error\":\"method not supported: DELETE\"}\n"),
            ("GET", "/assets/v1/sourcemaps", 405, "{\"error\":\"method not supported: GET\"}\n"),
        ] {
            let req = c.request(method.parse().unwrap(), proxy.url(path));
            let a = send(req, &auth).await;
            assert_eq!((a.status, a.body.as_str()), (status, body), "{method} {path}");
        }
        // Unauthenticated, the same request is a 401 first, as in APM Server.
        let a = send(c.get(proxy.url("/intake/v2/events")), &[]).await;
        assert_eq!(a.status, 401);
        // The methods each endpoint takes still pass.
        assert_eq!(send(c.get(proxy.url("/config/v1/agents?service.name=s")), &auth).await.status, 200);
    });
    assert_eq!(
        upstream.requests().len(),
        1,
        "only the agent-config GET was forwarded"
    );
}

/// A request refused from its head is answered by the connection layer: the same answer,
/// access line and metrics as any refusal, and its connection, when the body was small
/// enough to read past, serves the client's next request; a client that asked to close gets
/// its answer, then the close.
#[test]
fn a_refusal_keeps_its_connection_for_the_next_request() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let pki = pki();
    let upstream = Upstream::start();
    let proxy = Proxy::builder(&pki, &upstream.url())
        .token("primary-token")
        .start();
    let request = |token: &str, connection: &str, body: &str| {
        format!(
            "POST /intake/v2/events HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/x-ndjson\r\nContent-Length: {}\r\n{connection}\r\n{body}",
            body.len()
        )
    };
    let body = "{\"metadata\":{\"service\":{\"name\":\"kept\"}}}\n";
    rt().block_on(async {
        let mut tls = raw_tls(&proxy).await;
        for _ in 0..2 {
            tls.write_all(request("wrong-token", "", body).as_bytes())
                .await
                .unwrap();
            let (status, answer) = read_response(&mut tls).await.unwrap();
            assert_eq!(status, 401);
            assert_eq!(answer, "{\"error\":\"authentication failed\"}\n");
        }
        tls.write_all(request("primary-token", "", body).as_bytes())
            .await
            .unwrap();
        assert_eq!(read_response(&mut tls).await.unwrap().0, 202);
        let closing = request("wrong-token", "Connection: close\r\n", body);
        tls.write_all(closing.as_bytes()).await.unwrap();
        assert_eq!(read_response(&mut tls).await.unwrap().0, 401);
        let mut rest = [0u8; 64];
        let after =
            tokio::time::timeout(std::time::Duration::from_secs(10), tls.read(&mut rest)).await;
        assert!(
            matches!(after, Ok(Ok(0)) | Ok(Err(_))),
            "closed after the answer: {after:?}"
        );
    });
    let received = upstream.requests();
    assert_eq!(received.len(), 1, "only the accepted request went upstream");
    assert_eq!(received[0].body, body.as_bytes());
    assert!(received[0].headers.get("authorization").is_none());
    let refusals = "apm_auth_proxy_requests_total{endpoint=\"/intake/v2/events\",outcome=\"rejected\",reason=\"invalid_credentials\",status=\"401\"}";
    let metrics = rt().block_on(samples_with(&proxy, refusals, 3.0));
    let rejected: Vec<_> = metrics
        .iter()
        .filter(|(k, _)| k.contains("rejected"))
        .collect();
    assert_eq!(metrics.get(refusals), Some(&3.0), "{rejected:?}");
    let log = proxy.log_text();
    let refused = log
        .lines()
        .filter(|l| l.contains("outcome=\"rejected\"") || l.contains("outcome=rejected"));
    assert_eq!(refused.count(), 3, "one access line per refusal:\n{log}");
}
