//! The credential lifecycle: usage per credential (counted, served by the admin listener,
//! saved to the state file, shown by `apikey list` and `token list`, continued after a
//! restart) and warnings for credentials about to expire.

use std::path::Path;
use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::support::*;

const TOKEN: &str = "credentials-token-91c4";

fn record<'a>(usage: &'a Value, kind: &str, name: &str) -> &'a Value {
    usage["credentials"]
        .as_array()
        .and_then(|all| all.iter().find(|c| c["kind"] == kind && c["name"] == name))
        .unwrap_or_else(|| panic!("no {kind} {name} in {usage}"))
}

fn saved(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap_or_default()).unwrap_or_default()
}

/// Two events after the metadata line, uncompressed.
const BODY: &str = "{\"metadata\":{}}\n{\"span\":{}}\n{\"error\":{}}\n";

#[test]
fn usage_per_credential_is_counted_listed_and_survives_a_restart() {
    let pki = pki();
    let upstream = Upstream::start();
    let state = tempfile::tempdir().unwrap();
    let usage_file = state.path().join("usage.json");
    let usage_config = format!(
        "[usage]\nfile = {:?}\nflush_interval = \"200ms\"\n",
        usage_file.to_str().unwrap()
    );
    let mut key = (String::new(), String::new());
    let mut proxy = Proxy::builder(&pki, &upstream.url())
        .token(TOKEN)
        .api_keys()
        .config(&usage_config)
        .prepare(|dir| key = create_key(dir, "event:write", &[]))
        .start();
    let (key_id, key_credential) = key.clone();
    rt().block_on(async {
        let send = |client: reqwest::Client, path: &str, auth: String| {
            let url = proxy.url(path);
            async move {
                client
                    .post(url)
                    .header("Authorization", auth)
                    .body(BODY)
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            }
        };
        for _ in 0..3 {
            let status = send(
                proxy.client(false),
                "/intake/v2/events",
                format!("Bearer {TOKEN}"),
            );
            assert_eq!(status.await, 202);
        }
        let from_2 = proxy.client_from([127, 0, 0, 2].into());
        let key_auth = format!("ApiKey {key_credential}");
        assert_eq!(
            send(from_2.clone(), "/intake/v2/events", key_auth.clone()).await,
            202
        );
        // The key lacks config_agent:read: refused, and counted as such.
        assert_eq!(send(from_2, "/config/v1/agents", key_auth).await, 403);
        // A wrong token is nobody's usage.
        let wrong = send(
            proxy.client(false),
            "/intake/v2/events",
            "Bearer wrong".into(),
        );
        assert_eq!(wrong.await, 401);

        let (status, body) = admin_get(&proxy, "/usage").await;
        assert_eq!(status, 200, "{body}");
        let usage: Value = serde_json::from_str(&body).unwrap();
        let token = record(&usage, "token", "default");
        assert_eq!(token["requests_accepted"], 3, "{usage}");
        assert_eq!(token["requests_refused"], 0);
        assert_eq!(token["events_accepted"], 6);
        assert_eq!(token["last_client_ip"], "127.0.0.1");
        // An RFC 3339 time, as `apikey list --json` gives it.
        let last_used = token["last_used"].as_str().unwrap();
        let at = humantime::parse_rfc3339(last_used).unwrap();
        let ago = SystemTime::now().duration_since(at).unwrap_or_default();
        assert!(ago < Duration::from_secs(60), "{token}");
        let k = record(&usage, "api_key", &key_id);
        assert_eq!(k["requests_accepted"], 1, "{usage}");
        assert_eq!(k["requests_refused"], 1);
        assert_eq!(k["last_client_ip"], "127.0.0.2");
        assert_eq!(usage["credentials"].as_array().unwrap().len(), 2);
    });

    eventually_blocking("the usage state saved", || {
        saved(&usage_file)["credentials"]
            .as_array()
            .is_some_and(|c| c.len() == 2)
    });
    let text = std::fs::read_to_string(&usage_file).unwrap();
    assert!(!text.contains(TOKEN) && !text.contains(&key_credential));

    // The lists read the running proxy's state file.
    let config = proxy.dir.path().join("proxy.toml");
    let config = config.to_str().unwrap();
    let (code, out, err) = run_cli(&["apikey", "--config", config, "list"]);
    assert_eq!(code, 0, "{err}");
    let line = out.lines().find(|l| l.starts_with(&key_id)).unwrap();
    assert!(
        line.contains(" ago)") && line.trim_end().ends_with(" 1        1"),
        "{out}"
    );
    assert!(out.lines().next().unwrap().contains("LAST USED"), "{out}");
    let (code, out, err) = run_cli(&["apikey", "--config", config, "list", "--json"]);
    assert_eq!(code, 0, "{err}");
    let keys: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(keys[0]["usage"]["requests_refused"], 1, "{keys}");
    let (code, out, err) = run_cli(&["token", "--config", config, "list"]);
    assert_eq!(code, 0, "{err}");
    let line = out.lines().find(|l| l.starts_with("default")).unwrap();
    assert!(line.trim_end().ends_with(" 3        0"), "{out}");

    // A restart continues from the file; SIGTERM saves what was not saved yet.
    let bearer = format!("Bearer {TOKEN}");
    let one_more = |proxy: &Proxy| {
        let url = proxy.url("/intake/v2/events");
        let answer = rt().block_on(post(&proxy.client(false), url, &bearer, BODY.into()));
        assert_eq!(answer.status, 202, "{answer:?}");
    };
    one_more(&proxy);
    proxy.signal("TERM");
    assert!(proxy.wait_exit(Duration::from_secs(20)).is_some());
    let token_saved = |file: &Value| {
        file["credentials"]
            .as_array()
            .and_then(|all| all.iter().find(|c| c["kind"] == "token").cloned())
            .unwrap_or_default()
    };
    assert_eq!(token_saved(&saved(&usage_file))["requests_accepted"], 4);
    let restarted = Proxy::builder(&pki, &upstream.url())
        .token(TOKEN)
        .config(&usage_config)
        .start();
    one_more(&restarted);
    rt().block_on(async {
        let (_, body) = admin_get(&restarted, "/usage").await;
        let usage: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(record(&usage, "token", "default")["requests_accepted"], 5);
        assert_eq!(record(&usage, "token", "default")["events_accepted"], 10);
        // The key's history is kept though this proxy has no keys file.
        assert_eq!(record(&usage, "api_key", &key_id)["requests_refused"], 1);
    });
}

/// A token that expires within two weeks is warned about by `check` and in the log.
#[test]
fn credentials_about_to_expire_are_warned_about() {
    let pki = pki();
    let upstream = Upstream::start();
    let in_three_days = SystemTime::now() + Duration::from_secs(3 * 86_400 + 3600);
    let expires = humantime::format_rfc3339_seconds(in_three_days);
    let proxy = Proxy::builder(&pki, &upstream.url())
        .config(&format!(
            "[[auth.secret_tokens]]\nname = \"rotating\"\nsecret = \"rotating-secret-5d1e\"\n\
             expires = \"{expires}\"\n"
        ))
        .start();
    let config = proxy.dir.path().join("proxy.toml");
    let (code, _, err) = run_cli(&["check", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("warning: secret token \"rotating\" expires in 3 days"),
        "{err}"
    );
    eventually_blocking("a WARN line for the expiring token", || {
        proxy.log_text().lines().any(|l| {
            l.contains("credential expires soon") && l.contains("rotating") && l.contains("WARN")
        })
    });
    let (code, out, _) = run_cli(&["token", "--config", config.to_str().unwrap(), "list"]);
    assert_eq!(code, 0);
    let line = out.lines().find(|l| l.starts_with("rotating")).unwrap();
    assert!(line.contains("expires soon"), "{out}");
}

async fn post(client: &reqwest::Client, url: String, auth: &str, body: String) -> Answer {
    let resp = client
        .post(url)
        .header("Authorization", auth)
        .body(body)
        .send()
        .await
        .unwrap();
    Answer::from(resp).await
}

/// Per-credential limits: a token limited to requests trips (429) and recovers without
/// touching another token; a key limited to events is cut mid-stream with the events that
/// went before; both are counted under `limited_total{limit="credential_rate"}`.
#[test]
fn per_credential_limits_trip_and_recover_without_touching_other_credentials() {
    let pki = pki();
    let upstream = Upstream::start();
    let mut key = String::new();
    let proxy = Proxy::builder(&pki, &upstream.url())
        .api_keys()
        .config(
            "[[auth.secret_tokens]]\nname = \"noisy\"\nsecret = \"noisy-secret-8e2a\"\n\
             rate_limit = \"1 requests/s burst 2\"\n\
             [[auth.secret_tokens]]\nname = \"quiet\"\nsecret = \"quiet-secret-3b7c\"\n",
        )
        .prepare(|dir| key = create_key(dir, "event:write", &["--rate-limit", "5/s burst 10"]).1)
        .start();
    let url = || proxy.url("/intake/v2/events");
    let small = || "{\"metadata\":{}}\n{\"span\":{}}\n".to_string();
    rt().block_on(async {
        let client = proxy.client(false);
        // Three requests inside a second (faster than a token's refill); on a machine too
        // loaded for that, the bucket is let fill up again and the sequence run again.
        let mut statuses = Vec::new();
        for attempt in 0..3 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(2100)).await;
            }
            let started = std::time::Instant::now();
            statuses.clear();
            for _ in 0..3 {
                statuses.push(post(&client, url(), "Bearer noisy-secret-8e2a", small()).await);
            }
            if started.elapsed() < Duration::from_millis(900) {
                break;
            }
        }
        let codes: Vec<u16> = statuses.iter().map(|a| a.status).collect();
        assert_eq!(codes, [202, 202, 429], "{statuses:?}");
        assert!(statuses[2]
            .body
            .contains("too many requests: rate limit exceeded"));
        let quiet = post(&client, url(), "Bearer quiet-secret-3b7c", small()).await;
        assert_eq!(quiet.status, 202, "another token is not limited");
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let again = post(&client, url(), "Bearer noisy-secret-8e2a", small()).await;
        assert_eq!(again.status, 202, "refilled: {again:?}");

        // Events at 5/s with a burst of 10: the first ten pass and are forwarded; the next
        // twenty would wait two seconds for tokens, more than APM Server's one: refused.
        let auth = format!("ApiKey {key}");
        let before = upstream.body_bytes();
        let (tx, answer) = streamed_post(&client, &url(), &[("Authorization", &auth)]);
        let first = format!("{{\"metadata\":{{}}}}\n{}", "{\"span\":{}}\n".repeat(10));
        tx.send(Ok(first.into_bytes())).await.unwrap();
        eventually("the first ten events upstream", || async {
            upstream.body_bytes() > before
        })
        .await;
        let _ = tx.send(Ok("{\"span\":{}}\n".repeat(20).into_bytes())).await;
        drop(tx);
        let cut = answer.await.unwrap();
        assert_eq!(cut.status, 429, "{cut:?}");
        assert!(
            cut.body.contains("\"accepted\":10") && cut.body.contains("rate limit exceeded"),
            "{cut:?}"
        );
        let cut_stream = || {
            upstream
                .requests()
                .into_iter()
                .find(|r| r.headers.get("content-length").is_none() && !r.complete)
        };
        eventually("the upstream's record of the cut stream", || async {
            cut_stream().is_some()
        })
        .await;
        let stream = cut_stream();
        assert_eq!(
            events_received(stream.as_ref().unwrap()),
            accepted_in(&cut.body),
            "`accepted` is what the APM Server received"
        );
        let limited = "apm_auth_proxy_limited_total{limit=\"credential_rate\"}";
        let counted = samples_with(&proxy, limited, 2.0).await;
        assert_eq!(sample(&counted, limited), 2.0);
        let (_, usage) = admin_get(&proxy, "/usage").await;
        let usage: Value = serde_json::from_str(&usage).unwrap();
        assert_eq!(record(&usage, "token", "noisy")["requests_refused"], 1);
        assert_eq!(record(&usage, "token", "quiet")["requests_refused"], 0);
    });
}

/// `apikey rotate`: the running proxy accepts the new secret and, for the grace period, the
/// old one; after it, only the new one. The id, and so the key's usage, stays.
#[test]
fn a_rotated_key_accepts_both_secrets_for_the_grace_period_then_only_the_new_one() {
    let pki = pki();
    let upstream = Upstream::start();
    let mut key = (String::new(), String::new());
    let proxy = Proxy::builder(&pki, &upstream.url())
        .api_keys()
        .config("[auth]\nreload_interval = \"100ms\"\n")
        .prepare(|dir| key = create_key(dir, "event:write", &[]))
        .start();
    let (id, old) = key;
    let config = proxy.dir.path().join("proxy.toml");
    let rotated_at = std::time::Instant::now();
    let (code, out, err) = run_cli(&[
        "apikey",
        "--config",
        config.to_str().unwrap(),
        "rotate",
        &id,
        "--grace",
        "4s",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let rotated: Value = serde_json::from_str(&out).unwrap();
    let new = rotated["credentials"].as_str().unwrap().to_string();
    register_secret(&new);
    register_secret(rotated["api_key"].as_str().unwrap());
    assert!(rotated["previous_valid_until"].is_string(), "{rotated}");
    let status = |credential: &str| {
        let body = "{\"metadata\":{}}\n".to_string();
        let auth = format!("ApiKey {credential}");
        rt().block_on(post(
            &proxy.client(false),
            proxy.url("/intake/v2/events"),
            &auth,
            body,
        ))
        .status
    };
    eventually_blocking("the new secret accepted", || status(&new) == 202);
    assert_eq!(status(&old), 202, "the old secret within its grace period");
    assert!(
        rotated_at.elapsed() < Duration::from_secs(3),
        "the reload took {:?}: too slow to see the grace period",
        rotated_at.elapsed()
    );
    std::thread::sleep(
        Duration::from_secs(4).saturating_sub(rotated_at.elapsed()) + Duration::from_millis(300),
    );
    // The old secret past its grace: refused, and counted to the key (its id is known), as
    // the README says. (Its usage is saved at once on the admin listener's view.)
    let refused = || {
        rt().block_on(async {
            let (_, body) = admin_get(&proxy, "/usage").await;
            let usage: Value = serde_json::from_str(&body).unwrap();
            record(&usage, "api_key", &id)["requests_refused"]
                .as_u64()
                .unwrap()
        })
    };
    let before = refused();
    assert_eq!(status(&old), 401, "the old secret after its grace period");
    assert_eq!(status(&new), 202);
    eventually_blocking("the refusal in the key's usage", || refused() == before + 1);
    let (code, out, _) = run_cli(&["apikey", "--config", config.to_str().unwrap(), "list"]);
    assert_eq!(code, 0);
    assert_eq!(
        out.lines().filter(|l| l.starts_with(&id)).count(),
        1,
        "{out}"
    );
}

/// Tokens kept out of the config file: `{ file = … }` is read again when the file changes
/// (the new token accepted and the old one refused, no signal), and `{ sha256 = … }` holds
/// only a digest (the token accepted, the digest itself refused as a token).
#[test]
fn file_and_sha256_tokens_work_end_to_end() {
    let pki = pki();
    let upstream = Upstream::start();
    let (first, second, hashed) = (
        "file-token-1b2c3d4e",
        "file-token-5f6a7b8c",
        "sha-token-9d0e1f2a",
    );
    for secret in [first, second, hashed] {
        register_secret(secret);
    }
    let digest: String = ring::digest::digest(&ring::digest::SHA256, hashed.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let proxy = Proxy::builder(&pki, &upstream.url())
        .file("token.txt", format!("{first}\n"))
        .config(&format!(
            "[auth]\nreload_interval = \"100ms\"\n\
             [[auth.secret_tokens]]\nname = \"from-file\"\nsecret = {{ file = \"token.txt\" }}\n\
             [[auth.secret_tokens]]\nname = \"hashed\"\nsecret = {{ sha256 = \"{digest}\" }}\n"
        ))
        .start();
    let status = |token: &str| {
        let auth = format!("Bearer {token}");
        rt().block_on(post(
            &proxy.client(false),
            proxy.url("/intake/v2/events"),
            &auth,
            "{\"metadata\":{}}\n".to_string(),
        ))
        .status
    };
    assert_eq!(status(first), 202);
    assert_eq!(status(hashed), 202);
    assert_eq!(status(&digest), 401, "the digest is not a token");
    std::fs::write(proxy.dir.path().join("token.txt"), format!("{second}\n")).unwrap();
    eventually_blocking("the rewritten token file read again", || {
        status(second) == 202
    });
    assert_eq!(status(first), 401, "the token the file no longer holds");
    assert_eq!(status(hashed), 202);
    assert_eq!(upstream.requests().len(), 4);
}
