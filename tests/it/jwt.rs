//! Identity beyond shared secrets: signed tokens of the user's identity provider
//! (`[[auth.jwt]]`), checked against a stand-in provider on loopback (OIDC discovery and a
//! JWKS the test rotates) with tokens minted at test time (RSA, EC P-256, Ed25519).

use serde_json::{json, Value};

use crate::support::*;

const AUTH_FAILED: &str = "{\"error\":\"authentication failed\"}\n";

/// The issuer's configuration, fetching its keys every second, with `extra` lines of its own.
fn issuer(idp: &IdentityProvider, extra: &str) -> String {
    issuer_refreshing(idp, "1s", extra)
}

fn issuer_refreshing(idp: &IdentityProvider, every: &str, extra: &str) -> String {
    format!(
        "[[auth.jwt]]\nname = \"idp\"\nissuer = {:?}\ndiscovery = true\naudiences = [\"apm\"]\n\
         refresh_interval = {every:?}\nmin_refresh_interval = \"1s\"\n{extra}",
        idp.issuer()
    )
}

fn start(pki: &Pki, upstream: &Upstream, config: &str) -> Proxy {
    let proxy = Proxy::builder(pki, &upstream.url()).config(config).start();
    rt().block_on(eventually("ready (the issuer's keys fetched)", || async {
        admin_get(&proxy, "/readyz").await.0 == 200
    }));
    proxy
}

async fn send(proxy: &Proxy, client: &reqwest::Client, token: &str, body: String) -> Answer {
    let auth = format!("Bearer {token}");
    register_presented(&auth);
    post(
        client,
        &proxy.url("/intake/v2/events"),
        &[("Authorization", &auth)],
        body,
    )
    .await
}

fn events(service: &str) -> String {
    format!(
        "{{\"metadata\":{{\"service\":{{\"name\":\"{service}\",\"agent\":{{\"name\":\"go\",\"version\":\"2.0\"}}}}}}}}\n{{\"transaction\":{{}}}}\n"
    )
}

#[test]
fn tokens_of_an_oidc_issuer_are_credentials_and_every_refusal_is_apm_servers_401() {
    let pki = pki();
    let upstream = Upstream::start();
    let (rsa, ec, ed, stranger) = (
        SigningKey::rsa("r1"),
        SigningKey::ec("e1"),
        SigningKey::ed25519("d1"),
        SigningKey::ec("e1"),
    );
    let idp = IdentityProvider::start(&[&rsa, &ec, &ed]);
    let config = issuer(
        &idp,
        "algorithms = [\"RS256\", \"ES256\", \"EdDSA\"]\nmax_lifetime = \"1h\"\n",
    );
    let usage = "[usage]\nfile = \"usage.json\"\nflush_interval = \"200ms\"\n";
    let proxy = start(&pki, &upstream, &format!("{config}{usage}"));
    assert!(idp.discovery_fetches() >= 1 && idp.jwks_fetches() >= 1);
    let now = unix_now();
    let client = proxy.client(false);
    rt().block_on(async {
        for (key, sub) in [(&rsa, "alice"), (&ec, "bob"), (&ed, "carol")] {
            let token = key.sign(&idp.claims(sub, json!({})));
            let a = send(&proxy, &client, &token, events("shop")).await;
            assert_eq!(a.status, 202, "{:?}: {}", key.alg, a.body);
        }
        let head = |h: Value| {
            base64::Engine::encode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                h.to_string(),
            )
        };
        let body = head(idp.claims("mallory", json!({})));
        let refused = [
            (
                "expired",
                ec.sign(&idp.claims("x", json!({"exp": now - 3600, "iat": now - 4000}))),
            ),
            (
                "not yet valid",
                ec.sign(&idp.claims("x", json!({"nbf": now + 3600}))),
            ),
            (
                "another audience",
                ec.sign(&idp.claims("x", json!({"aud": "grafana"}))),
            ),
            (
                "another issuer",
                ec.sign(&idp.claims("x", json!({"iss": "https://evil.example.com"}))),
            ),
            ("no exp", ec.sign(&idp.claims("x", json!({"exp": null})))),
            (
                "too long-lived",
                ec.sign(&idp.claims("x", json!({"exp": now + 7200}))),
            ),
            (
                "a stranger's signature",
                stranger.sign(&idp.claims("x", json!({}))),
            ),
            (
                "alg none",
                format!("{}.{body}.", head(json!({"alg": "none", "kid": "e1"}))),
            ),
            (
                "crit",
                format!(
                    "{}.{body}.c2ln",
                    head(json!({"alg": "ES256", "kid": "e1", "crit": ["x"]}))
                ),
            ),
        ];
        for (what, token) in &refused {
            let a = send(&proxy, &client, token, events("shop")).await;
            assert_eq!((a.status, a.body.as_str()), (401, AUTH_FAILED), "{what}");
        }
    });
    // Only the three good requests reached APM Server, without the token.
    let received = upstream.requests();
    assert_eq!(received.len(), 3, "{received:?}");
    assert!(received
        .iter()
        .all(|r| r.headers.get("authorization").is_none()));
    // Each refusal's reason is counted; the callers are named as the issuer calls them.
    let m = rt().block_on(samples_with(&proxy, "apm_auth_proxy_requests_total{endpoint=\"/intake/v2/events\",outcome=\"rejected\",reason=\"jwt_critical_header\",status=\"401\"}", 1.0));
    for reason in [
        "jwt_expired",
        "jwt_not_yet_valid",
        "jwt_audience",
        "jwt_unknown_issuer",
        "jwt_missing_exp",
        "jwt_lifetime",
        "jwt_signature",
        "jwt_algorithm",
        "jwt_critical_header",
    ] {
        let key = format!("apm_auth_proxy_requests_total{{endpoint=\"/intake/v2/events\",outcome=\"rejected\",reason=\"{reason}\",status=\"401\"}}");
        assert_eq!(sample(&m, &key), 1.0, "{key}");
    }
    assert_eq!(
        sample(&m, "apm_auth_proxy_authentications_total{method=\"jwt\"}"),
        3.0
    );
    let (_, usage) = rt().block_on(admin_get(&proxy, "/usage"));
    for who in ["idp/alice", "idp/bob", "idp/carol"] {
        assert!(
            usage.contains(&format!("\"name\":\"{who}\"")),
            "{who}: {usage}"
        );
    }
    assert!(
        proxy.log_text().contains("jwt:idp/alice"),
        "the access line names the caller"
    );
    // `jwt list` reads them from the saved usage.
    let config = proxy.dir.path().join("proxy.toml");
    let list = || run_cli(&["jwt", "--config", config.to_str().unwrap(), "list"]);
    eventually_blocking("the identities saved", || list().1.contains("idp/carol"));
    let (code, out, _) = list();
    assert_eq!(code, 0);
    assert!(out.starts_with("ISSUER/SUBJECT"), "{out}");
    assert!(out.contains("3 JWT identities seen"), "{out}");
}

/// The provider rotates its keys: a token of a key the proxy has not seen is refused until
/// the keys are fetched again (asked for by that token, at most once a `min_refresh_interval`),
/// then accepted; a key the provider removed takes its tokens (cached ones too) with it; and
/// a flood of made-up key ids does not make the proxy hammer the provider.
#[test]
fn key_rotation_is_followed_and_unknown_kids_cannot_hammer_the_provider() {
    let pki = pki();
    let upstream = Upstream::start();
    let (old, new) = (SigningKey::ec("old"), SigningKey::ec("new"));
    let idp = IdentityProvider::start(&[&old]);
    // A long periodic refresh: only tokens with unknown kids make the proxy fetch again. (The
    // failed-authentication throttle is off: the flood below would trip it first.)
    let config = issuer_refreshing(&idp, "1h", "");
    let proxy = start(
        &pki,
        &upstream,
        &format!("{config}[auth.failed_attempts]\nenabled = false\n"),
    );
    let client = proxy.client(false);
    let old_token = old.sign(&idp.claims("agent", json!({})));
    let new_token = new.sign(&idp.claims("agent", json!({})));
    rt().block_on(async {
        assert_eq!(
            send(&proxy, &client, &old_token, events("shop"))
                .await
                .status,
            202
        );
        // The provider adds the new key; the proxy learns of it from the first token using it.
        idp.set_keys(&[&old, &new]);
        let first = send(&proxy, &client, &new_token, events("shop")).await;
        assert_eq!((first.status, first.body.as_str()), (401, AUTH_FAILED));
        eventually("the new key fetched on demand", || async {
            send(&proxy, &client, &new_token, events("shop"))
                .await
                .status
                == 202
        })
        .await;
        // The provider removes the old key: its token (cached on the proxy) is refused once
        // the keys are fetched again — here asked for by a token naming an unknown key.
        idp.set_keys(&[&new]);
        let fetched = idp.jwks_fetches();
        eventually("the old key gone with its cached token", || async {
            let unknown = new.sign_as("nobody", &idp.claims("x", json!({})));
            send(&proxy, &client, &unknown, events("shop")).await;
            send(&proxy, &client, &old_token, events("shop"))
                .await
                .status
                == 401
        })
        .await;
        assert!(idp.jwks_fetches() > fetched);
        assert_eq!(
            send(&proxy, &client, &new_token, events("shop"))
                .await
                .status,
            202
        );
        // Fifty made-up kids within about a second: at most a couple of fetches.
        let before = idp.jwks_fetches();
        let started = std::time::Instant::now();
        for i in 0..50 {
            let token = new.sign_as(&format!("random-{i}"), &idp.claims("x", json!({})));
            assert_eq!(
                send(&proxy, &client, &token, events("shop")).await.status,
                401
            );
        }
        let seconds = started.elapsed().as_secs() + 1;
        let fetches = idp.jwks_fetches() - before;
        assert!(
            fetches as u64 <= seconds + 1,
            "{fetches} fetches in {seconds} s for 50 unknown kids"
        );
        // The provider breaks (a key set with no usable key): the last good set stays, the
        // failure is counted, and its tokens are still accepted.
        idp.set_keys(&[]);
        let failed = "apm_auth_proxy_jwks_fetches_total{issuer=\"idp\",result=\"failure\"}";
        eventually("a failed fetch", || async {
            let unknown = new.sign_as("still-nobody", &idp.claims("x", json!({})));
            send(&proxy, &client, &unknown, events("shop")).await;
            sample(&metric_samples(&proxy).await, failed) >= 1.0
        })
        .await;
        assert_eq!(
            send(&proxy, &client, &new_token, events("shop"))
                .await
                .status,
            202
        );
        assert_eq!(
            sample(
                &metric_samples(&proxy).await,
                "apm_auth_proxy_jwks_keys{issuer=\"idp\"}"
            ),
            1.0
        );
    });
    assert!(proxy.log_text().contains("the last good set stays"));
}

/// A token bound to services by a claim may send data for those only; one bound to a tenant's
/// pool by a claim never reaches another tenant's.
#[test]
fn claim_bound_tokens_keep_to_their_services_and_their_pool() {
    let pki = pki();
    let (team_a, team_b) = (Upstream::start(), Upstream::start());
    let key = SigningKey::ec("k");
    let idp = IdentityProvider::start(&[&key]);
    let config = format!(
        "{}[[upstreams]]\nname = \"team-a\"\nurl = {:?}\n[[upstreams]]\nname = \"team-b\"\nurl = {:?}\n\
         [[routes]]\nserver_names = [\"apm.team-a.test\"]\nupstream = \"team-a\"\n",
        issuer(&idp, "services_claim = \"services\"\nupstream_claim = \"tenant\"\n"),
        team_a.url(),
        team_b.url()
    );
    let proxy = start(&pki, &team_a, &config);
    let client = proxy.client(false);
    let token = key.sign(&idp.claims(
        "shop-agent",
        json!({"services": ["shop"], "tenant": "team-b"}),
    ));
    rt().block_on(async {
        let a = send(&proxy, &client, &token, events("shop")).await;
        assert_eq!(a.status, 202, "{}", a.body);
        let a = send(&proxy, &client, &token, events("billing")).await;
        assert_eq!(a.status, 403, "{}", a.body);
        assert!(
            a.body.contains("not permitted for service \\\"billing\\\""),
            "{}",
            a.body
        );
        // Addressed to team-a's name: refused, never sent to team-a.
        let auth = format!("Bearer {token}");
        let headers = [
            ("Authorization", auth.as_str()),
            ("Host", "apm.team-a.test"),
        ];
        let a = post(
            &client,
            &proxy.url("/intake/v2/events"),
            &headers,
            events("shop"),
        )
        .await;
        assert_eq!(a.status, 403, "{}", a.body);
    });
    assert_eq!(
        team_b.requests().len(),
        1,
        "the one accepted request went to team-b"
    );
    assert!(team_a.requests().is_empty(), "nothing reached team-a");
}

/// The origin of the shop whose pages' users log in.
const SHOP: &str = "https://shop.example.com";

/// The shop's proxy: RUM on for the shop's pages, anonymous access off, `idp` an issuer (with
/// `issuer_extra` settings).
fn logged_in_shop(idp: &IdentityProvider, issuer_extra: &str) -> String {
    format!(
        "{}[rum]\nenabled = true\nallow_origins = [\"{SHOP}\"]\n[auth.anonymous]\nenabled = false\n",
        issuer(idp, issuer_extra)
    )
}

/// A logged-in page's preflight to `url`: answered 200, `Authorization` allowed.
async fn preflight_allows_authorization(client: &reqwest::Client, url: &str) {
    let preflight = preflight(client, url, SHOP, "authorization, content-type").await;
    assert_eq!(preflight.status, 200);
    let allowed = preflight.headers["access-control-allow-headers"]
        .to_str()
        .unwrap();
    assert!(allowed.contains("Authorization"), "{allowed}");
}

/// A logged-in browser user: anonymous access off, the RUM agent's requests carry the user's
/// JWT; the preflight allows `Authorization`, and the events go through.
#[test]
fn logged_in_rum_users_send_with_their_token() {
    let pki = pki();
    let upstream = Upstream::start();
    let key = SigningKey::ec("k");
    let idp = IdentityProvider::start(&[&key]);
    let proxy = start(&pki, &upstream, &logged_in_shop(&idp, ""));
    let client = proxy.client(false);
    let url = proxy.url("/intake/v2/rum/events");
    let origin = ("Origin", SHOP);
    rt().block_on(async {
        preflight_allows_authorization(&client, &url).await;
        let body = "{\"metadata\":{\"service\":{\"name\":\"shop\",\"agent\":{\"name\":\"rum-js\",\"version\":\"5.0\"}}}}\n{\"transaction\":{}}\n";
        let anonymous = post(&client, &url, &[origin], body.to_string()).await;
        assert_eq!(anonymous.status, 401, "anonymous access is off");
        let auth = format!("Bearer {}", key.sign(&idp.claims("user-42", json!({}))));
        register_presented(&auth);
        let a = post(&client, &url, &[origin, ("Authorization", &auth)], body.to_string()).await;
        assert_eq!(a.status, 202, "{}", a.body);
        assert_eq!(a.header_values("access-control-allow-origin"), [SHOP]);
    });
    assert_eq!(upstream.requests().len(), 1);
}

/// A logged-in user's page over OTLP/HTTP (the OpenTelemetry JS web SDK's exporter with the
/// user's JWT): the preflight on `/v1/traces` allows `Authorization`; the token, bound to a
/// service by a claim, sends that service's spans and not another's — nothing of the refused
/// export is forwarded.
#[test]
fn logged_in_browsers_send_otlp_for_their_own_services() {
    let pki = pki();
    let upstream = Upstream::start();
    let key = SigningKey::ec("k");
    let idp = IdentityProvider::start(&[&key]);
    let issuer_extra = "services_claim = \"services\"\n";
    let proxy = start(&pki, &upstream, &logged_in_shop(&idp, issuer_extra));
    let client = proxy.client(false);
    let url = proxy.url("/v1/traces");
    let origin = ("Origin", SHOP);
    let export = |service: &str| {
        json!({"resourceSpans": [{"resource": {"attributes": [
            {"key": "service.name", "value": {"stringValue": service}},
            {"key": "telemetry.sdk.name", "value": {"stringValue": "opentelemetry"}},
            {"key": "telemetry.sdk.language", "value": {"stringValue": "webjs"}}]},
            "scopeSpans": [{"spans": [{"name": format!("{service}-span")}]}]}]})
        .to_string()
    };
    rt().block_on(async {
        preflight_allows_authorization(&client, &url).await;
        let token = key.sign(&idp.claims("user-7", json!({"services": ["storefront"]})));
        let auth = format!("Bearer {token}");
        register_presented(&auth);
        let headers = [
            origin,
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ];
        let a = post(&client, &url, &headers, export("storefront")).await;
        assert_eq!(a.status, 200, "{}", a.body);
        assert_eq!(
            a.header_values("access-control-allow-origin"),
            ["https://shop.example.com"]
        );
        let a = post(&client, &url, &headers, export("admin")).await;
        assert_eq!(a.status, 403, "{}", a.body);
        assert!(
            a.body.contains("not permitted for service \\\"admin\\\""),
            "{}",
            a.body
        );
        assert_eq!(
            a.header_values("access-control-allow-origin"),
            ["https://shop.example.com"]
        );
    });
    let forwarded = upstream.requests();
    assert_eq!(forwarded.len(), 1, "{forwarded:?}");
    assert!(String::from_utf8_lossy(&forwarded[0].body).contains("storefront-span"));
}

/// Real clients with a JWT where they put a secret token: the official Python agent
/// (`secret_token`), and the OpenTelemetry SDK over gRPC and over HTTP (`authorization`
/// header); a token of a key the provider does not have is UNAUTHENTICATED over gRPC.
#[test]
fn the_python_agent_and_the_opentelemetry_sdk_send_with_a_jwt() {
    let pki = pki();
    let upstream = Upstream::start();
    let key = SigningKey::rsa("agents");
    let idp = IdentityProvider::start(&[&key]);
    let proxy = start(&pki, &upstream, &issuer(&idp, "algorithms = [\"RS256\"]\n"));
    let token = key.sign(&idp.claims("collector", json!({})));
    register_secret(&token);
    crate::agents::run_agent(&proxy, ("APM_SECRET_TOKEN", &token));
    let events: String = upstream
        .requests()
        .iter()
        .filter(|r| r.uri.starts_with("/intake/v2/events"))
        .map(decoded)
        .collect();
    assert!(
        events.contains("{\"transaction\"") && events.contains("ZeroDivisionError"),
        "{events}"
    );
    let auth = format!("Bearer {token}");
    let everything = json!({"traces": "SUCCESS", "metrics": "SUCCESS", "logs": "SUCCESS"});
    assert_eq!(otlp(&proxy, &auth, &[], &["sdk-grpc"]), everything);
    assert_eq!(otlp(&proxy, &auth, &[], &["sdk-http"]), everything);
    assert!(upstream
        .requests()
        .iter()
        .all(|r| r.headers.get("authorization").is_none()));
    let stranger = SigningKey::rsa("agents").sign(&idp.claims("collector", json!({})));
    let refused = otlp(
        &proxy,
        &format!("Bearer {stranger}"),
        &[],
        &[
            "call",
            "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
        ],
    );
    assert_eq!(refused["code"], "UNAUTHENTICATED", "{refused}");
}

/// `jwt verify` says which issuer accepts a token and as whom, or exactly why not.
#[test]
fn jwt_verify_explains_a_token() {
    let key = SigningKey::ed25519("cli");
    let idp = IdentityProvider::start(&[&key]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("proxy.toml");
    std::fs::write(
        &cfg,
        issuer(&idp, "algorithms = [\"EdDSA\"]\nservices_claim = \"svc\"\n"),
    )
    .unwrap();
    let c = cfg.to_str().unwrap();
    let good = key.sign(&idp.claims("alice", json!({"svc": "shop ads"})));
    register_secret(&good);
    let (code, out, err) = run_cli(&["jwt", "--config", c, "verify", &good]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("accepted by issuer \"idp\" as jwt:idp/alice"),
        "{out}"
    );
    assert!(
        out.contains("privileges ... event:write, config_agent:read"),
        "{out}"
    );
    assert!(out.contains("services ..... shop, ads"), "{out}");
    assert!(err.contains("issuer \"idp\": 1 usable key(s)"), "{err}");
    let now = unix_now();
    let expired = key.sign(&idp.claims(
        "alice",
        json!({"svc": "shop", "exp": now - 3600, "iat": now - 4000}),
    ));
    let (code, _, err) = run_cli(&["jwt", "--config", c, "verify", &expired]);
    assert_eq!(code, 1);
    assert!(
        err.contains("refused (jwt_expired): it has expired"),
        "{err}"
    );
}

/// Kubernetes workload identity, as the workload-identity overlay sets it up: the cluster's
/// keys fetched over HTTPS from its API server (the cluster CA from a file, the proxy's own
/// token as the fetch's bearer), pods' projected tokens checked for the audience and the
/// namespace, named by their service account. A proxy with a wrong fetch token gets no keys:
/// it still becomes ready (a broken provider does not take it out), counts the failures, and
/// refuses the tokens.
#[test]
fn projected_service_account_tokens_of_one_namespace_are_credentials() {
    let pki = pki();
    let upstream = Upstream::start();
    let key = SigningKey::rsa("cluster-key");
    let api = IdentityProvider::start_tls(&[&key], &pki, "proxy-own-token-5d4c");
    register_secret("proxy-own-token-5d4c");
    let config = |fetch_token: &str| {
        Proxy::builder(&pki, &upstream.url())
            .file("cluster-ca.crt", pki.ca_pem.clone())
            .file("cluster-token", format!("{fetch_token}\n"))
            .config(&format!(
                "[[auth.jwt]]\nname = \"cluster\"\nissuer = {:?}\naudiences = [\"apm-auth-proxy\"]\n\
                 jwks_url = \"{}/openid/v1/jwks\"\nca_file = \"cluster-ca.crt\"\n\
                 fetch_token_file = \"cluster-token\"\nalgorithms = [\"RS256\"]\n\
                 required_claims = {{ \"kubernetes.io.namespace\" = \"shop\" }}\n\
                 name_claim = \"kubernetes.io.serviceaccount.name\"\n",
                api.issuer(),
                api.issuer()
            ))
            .start()
    };
    let projected = |namespace: &str| {
        key.sign(&api.claims(
            &format!("system:serviceaccount:{namespace}:otel-collector"),
            json!({"aud": ["apm-auth-proxy"], "kubernetes.io": {"namespace": namespace,
                   "serviceaccount": {"name": "otel-collector", "uid": "0b7e"}}}),
        ))
    };
    let proxy = config("proxy-own-token-5d4c");
    let client = proxy.client(false);
    rt().block_on(async {
        eventually("ready", || async {
            admin_get(&proxy, "/readyz").await.0 == 200
        })
        .await;
        let a = send(&proxy, &client, &projected("shop"), events("shop")).await;
        assert_eq!(a.status, 202, "{}", a.body);
        let a = send(&proxy, &client, &projected("billing"), events("shop")).await;
        assert_eq!(
            (a.status, a.body.as_str()),
            (401, AUTH_FAILED),
            "another namespace"
        );
        let (_, usage) = admin_get(&proxy, "/usage").await;
        assert!(
            usage.contains("\"name\":\"cluster/otel-collector\""),
            "{usage}"
        );
    });
    assert!(api.jwks_fetches() >= 1);
    let stranger = config("not-the-token-9e8f");
    rt().block_on(async {
        eventually("ready without keys", || async {
            admin_get(&stranger, "/readyz").await.0 == 200
        })
        .await;
        let a = send(
            &stranger,
            &stranger.client(false),
            &projected("shop"),
            events("shop"),
        )
        .await;
        assert_eq!((a.status, a.body.as_str()), (401, AUTH_FAILED));
        let failures = "apm_auth_proxy_jwks_fetches_total{issuer=\"cluster\",result=\"failure\"}";
        let m = samples_with(&stranger, failures, 1.0).await;
        assert!(sample(&m, failures) >= 1.0);
        assert_eq!(
            sample(&m, "apm_auth_proxy_jwks_keys{issuer=\"cluster\"}"),
            0.0
        );
    });
    assert!(stranger
        .log_text()
        .contains("cannot fetch the issuer's keys"));
}

/// The official RUM agent in Chromium on a logged-in user's page: its `apmRequest` hook
/// attaches the user's JWT, anonymous access is off; the preflight allows `Authorization`
/// and the page-load transaction reaches APM Server without the token.
#[test]
fn the_rum_agent_sends_a_logged_in_users_token() {
    let pki = pki();
    let upstream = Upstream::start();
    let key = SigningKey::ec("web");
    let idp = IdentityProvider::start(&[&key]);
    let config = format!(
        "{}[rum]\nenabled = true\nallow_origins = [\"http://127.0.0.1:*\"]\n\
         [auth.anonymous]\nenabled = false\n",
        issuer(&idp, "")
    );
    let proxy = start(&pki, &upstream, &config);
    let token = key.sign(&idp.claims("user-42", json!({})));
    register_secret(&token);
    // The same page without a logged-in user: refused (anonymous access is off).
    let anonymous = crate::agents::rum_page(&proxy, &pki, None);
    assert_eq!(anonymous["intake"], 401, "{anonymous}");
    let result = crate::agents::rum_page(&proxy, &pki, Some(&token));
    assert_eq!(result["preflight"], 200, "{result}");
    assert_eq!(result["intake"], 202, "{result}\n{}", proxy.log_text());
    let intake = upstream
        .requests()
        .into_iter()
        .find(|r| r.uri.contains("/rum/events"));
    let intake = intake.expect("the RUM events at the upstream");
    assert!(intake.headers.get("authorization").is_none());
    assert!(decoded(&intake).contains("page-load"));
    assert!(proxy.log_text().contains("jwt:idp/user-42"));
}
