//! Upstream pools: requests spread over healthy members, a member killed under traffic costs
//! nothing that had not been sent (and nothing is sent twice), it comes back after its
//! checks, a pool whose every member refuses answers 503; a lone APM Server or a pool all
//! marked down still gets the next request once a member answers; DNS discovery against a DNS server on
//! loopback; routing by SNI, Host and credential, a team's key refused on another's host.

use std::net::{Ipv4Addr, SocketAddr};

use crate::support::*;

const TOKEN: &str = "pool-token-0f3a9c";

fn urls(upstreams: &[&Upstream]) -> String {
    let list: Vec<String> = upstreams.iter().map(|u| format!("{:?}", u.url())).collect();
    format!(
        "[upstream]\nurls = [{}]\n[upstream.health_check]\ninterval = \"100ms\"\nrise = 2\nfall = 2\n",
        list.join(", ")
    )
}

/// A proxy in front of a static pool of `members` (the checks of [`urls`], overridden by
/// `extra`), once the pool was checked and is ready.
fn pool_proxy(pki: &Pki, members: &[&Upstream], extra: &str) -> Proxy {
    let proxy = Proxy::builder(pki, "")
        .unset("upstream.url")
        .token(TOKEN)
        .config(&urls(members))
        .config(extra)
        .start();
    rt().block_on(eventually("the pool checked and ready", || ready(&proxy)));
    proxy
}

async fn send_event(proxy: &Proxy, client: &reqwest::Client, id: usize) -> u16 {
    let auth = format!("Bearer {TOKEN}");
    post(
        client,
        &proxy.url("/intake/v2/events"),
        &[("Authorization", &auth)],
        format!("{{\"id\":{id}}}\n"),
    )
    .await
    .status
}

/// Every event id the stand-ins received, with how often.
fn received_ids(upstreams: &[&Upstream]) -> std::collections::HashMap<String, usize> {
    let mut ids = std::collections::HashMap::new();
    for u in upstreams {
        for r in u.requests() {
            *ids.entry(String::from_utf8_lossy(&r.body).trim().to_string())
                .or_insert(0) += 1;
        }
    }
    ids
}

async fn ready(proxy: &Proxy) -> bool {
    reqwest::get(format!("{}/readyz", proxy.admin_url()))
        .await
        .map(|r| r.status() == 200)
        .unwrap_or(false)
}

#[test]
fn a_pool_spreads_fails_over_before_sending_and_recovers() {
    let pki = pki();
    let mut members = vec![Upstream::start(), Upstream::start(), Upstream::start()];
    let proxy = Proxy::builder(&pki, "")
        .unset("upstream.url")
        .token(TOKEN)
        .config(&urls(&members.iter().collect::<Vec<_>>()))
        .start();
    let runtime = rt();
    let client = proxy.client(false);
    runtime.block_on(async {
        eventually("the pool checked and ready", || ready(&proxy)).await;
        for id in 0..30 {
            assert_eq!(send_event(&proxy, &client, id).await, 202);
        }
    });
    let counts: Vec<usize> = members.iter().map(|u| u.requests().len()).collect();
    assert!(counts.iter().all(|n| *n >= 5), "spread: {counts:?}");

    // A stream in flight on a member that is killed ends in 502, in bounded time.
    let before: Vec<usize> = members.iter().map(Upstream::started).collect();
    let (tx, request) = runtime.block_on(async {
        let auth = format!("Bearer {TOKEN}");
        let (tx, request) = streamed_post(
            &client,
            &proxy.url("/intake/v2/events"),
            &[("Authorization", &auth)],
        );
        tx.send(Ok(b"{\"id\":\"stream\"}\n".to_vec()))
            .await
            .unwrap();
        eventually("the stream at a member", || async {
            members.iter().map(Upstream::started).sum::<usize>() > before.iter().sum::<usize>()
        })
        .await;
        (tx, request)
    });
    let killed = (0..3).find(|&i| members[i].started() > before[i]).unwrap();
    let killed_addr = members[killed].addr;
    members[killed].stop();
    let answer = runtime.block_on(async {
        let answer = tokio::time::timeout(PATIENCE, request)
            .await
            .expect("bounded")
            .unwrap();
        drop(tx);
        answer
    });
    assert_eq!(answer.status, 502, "{}", answer.body);

    // Steady traffic without it: requests that had not reached it are retried elsewhere.
    runtime.block_on(async {
        for id in 100..160 {
            assert_eq!(send_event(&proxy, &client, id).await, 202, "request {id}");
        }
    });
    let alive: Vec<&Upstream> = (0..3)
        .filter(|&i| i != killed)
        .map(|i| &members[i])
        .collect();
    let ids = received_ids(&alive);
    for id in 100..160 {
        assert_eq!(
            ids.get(&format!("{{\"id\":{id}}}")),
            Some(&1),
            "request {id} arrived exactly once"
        );
    }

    // It returns on its address: traffic comes back after its checks pass.
    members[killed] = Upstream::start_on(killed_addr);
    runtime.block_on(async {
        let next = std::sync::atomic::AtomicUsize::new(200);
        let (proxy, client, back) = (&proxy, &client, &members[killed]);
        eventually("traffic on the returned member", || {
            let id = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move {
                assert_eq!(send_event(proxy, client, id).await, 202);
                !back.requests().is_empty()
            }
        })
        .await;
    });

    // Everything down: answered 503 at once, not after timeouts.
    for m in &mut members {
        m.stop();
    }
    runtime.block_on(async {
        eventually("503 with the pool empty", || async {
            let auth = format!("Bearer {TOKEN}");
            let a = post(
                &client,
                &proxy.url("/intake/v2/events"),
                &[("Authorization", &auth)],
                "{}\n",
            )
            .await;
            assert!(a.status == 502 || a.status == 503, "{}", a.status);
            a.status == 503
                && a.body == "{\"error\":\"service unavailable: no healthy APM Server\"}\n"
        })
        .await;
        eventually("readiness 503", || async { !ready(&proxy).await }).await;
    });
}

#[test]
fn dns_discovery_follows_the_records_while_traffic_flows() {
    let pki = pki();
    // Stand-ins on three loopback addresses, one port.
    let port = free_port();
    let ips: Vec<Ipv4Addr> = (2..=4).map(|i| Ipv4Addr::new(127, 0, 0, i)).collect();
    let members: Vec<Upstream> = ips
        .iter()
        .map(|ip| Upstream::start_on(SocketAddr::new((*ip).into(), port)))
        .collect();
    let dns = DnsServer::start("apm.pool.test", &ips[0..2]);
    let proxy = Proxy::builder(&pki, "")
        .unset("upstream.url")
        .token(TOKEN)
        .config(&format!(
            "[upstream]\ndiscovery = {{ dns = \"apm.pool.test:{port}\", interval = \"200ms\", resolver = \"{}\" }}\n\
             [upstream.health_check]\ninterval = \"100ms\"\n",
            dns.addr
        ))
        .start();
    let client = proxy.client(false);
    let runtime = rt();
    runtime.block_on(async {
        eventually("traffic on both discovered members", || async {
            assert_eq!(send_event(&proxy, &client, 0).await, 202);
            !members[0].requests().is_empty() && !members[1].requests().is_empty()
        })
        .await;
        assert!(members[2].requests().is_empty(), "not in DNS, no traffic");
        let up = |ip: &Ipv4Addr| {
            format!("apm_auth_proxy_upstream_member_up{{member=\"{ip}:{port}\",pool=\"default\"}}")
        };
        let sent = |ip: &Ipv4Addr| {
            format!(
                "apm_auth_proxy_upstream_requests_total{{member=\"{ip}:{port}\",pool=\"default\"}}"
            )
        };
        let m = metric_samples(&proxy).await;
        assert_eq!(sample(&m, &up(&ips[0])), 1.0);
        assert!(sample(&m, &sent(&ips[0])) >= 1.0);
        // The records change while requests keep flowing: .4 joins, .2 leaves.
        dns.set(&ips[1..3]);
        eventually("traffic on the added member", || async {
            assert_eq!(send_event(&proxy, &client, 1).await, 202);
            !members[2].requests().is_empty()
        })
        .await;
        let left = members[0].requests().len();
        for id in 2..22 {
            assert_eq!(send_event(&proxy, &client, id).await, 202);
        }
        assert_eq!(
            members[0].requests().len(),
            left,
            "the removed member gets no new requests"
        );
        assert!(members[1].requests().len() > 1 && members[2].requests().len() > 1);
        // The metrics follow the members: the removed one is no longer reported.
        let m = metric_samples(&proxy).await;
        assert!(!m.contains_key(&up(&ips[0])), "{m:?}");
        assert!(
            !m.contains_key(&sent(&ips[0])),
            "its request count goes too: {m:?}"
        );
        assert_eq!(sample(&m, &up(&ips[2])), 1.0);
        assert!(sample(&m, &sent(&ips[2])) >= 1.0);
    });
}

#[test]
fn routes_by_sni_host_and_credential_keep_each_team_on_its_own_server() {
    let ca = Ca::new("routing CA");
    let pki = ca.server_pki(&[
        "localhost",
        "127.0.0.1",
        "apm.team-a.test",
        "apm.team-b.test",
    ]);
    let (default, team_a, team_b) = (Upstream::start(), Upstream::start(), Upstream::start());
    let mut team_a_key = String::new();
    let proxy = Proxy::builder(&pki, &default.url())
        .token(TOKEN)
        .api_keys()
        .config(&format!(
            "[[upstreams]]\nname = \"team-a\"\nurl = {:?}\n[[upstreams]]\nname = \"team-b\"\nurl = {:?}\n\
             [[routes]]\nserver_names = [\"apm.team-a.test\"]\nupstream = \"team-a\"\n\
             [[routes]]\nserver_names = [\"apm.team-b.test\"]\nupstream = \"team-b\"\n\
             [[auth.secret_tokens]]\nname = \"team-a\"\nsecret = \"team-a-token-77b1\"\nupstream = \"team-a\"\n\
             [rum]\nenabled = true\n",
            team_a.url(),
            team_b.url()
        ))
        .prepare(|dir| team_a_key = create_key(dir, "event:write", &["--upstream", "team-a"]).1)
        .start();
    let addr: SocketAddr = format!("127.0.0.1:{}", proxy.port).parse().unwrap();
    let named = |h2: bool| {
        let b = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(ca.pem.as_bytes()).unwrap())
            .tls_built_in_root_certs(false)
            .resolve("apm.team-a.test", addr)
            .resolve("apm.team-b.test", addr);
        if h2 { b } else { b.http1_only() }.build().unwrap()
    };
    let url = |host: &str, path: &str| format!("https://{host}:{}{path}", proxy.port);
    let token = format!("Bearer {TOKEN}");
    let key = format!("ApiKey {team_a_key}");
    rt().block_on(async {
        let c = named(true);
        let body = "{\"metadata\":{\"service\":{\"name\":\"s\",\"agent\":{\"name\":\"rum-js\",\"version\":\"1\"}}}}\n";
        // By SNI: the route decides.
        assert_eq!(post(&c, &url("localhost", "/intake/v2/events"), &[("Authorization", &token)], body).await.status, 202);
        assert_eq!(post(&c, &url("apm.team-b.test", "/intake/v2/events"), &[("Authorization", &token)], body).await.status, 202);
        // A token or key bound to team-a goes there from anywhere neutral...
        let team_a_token = "Bearer team-a-token-77b1";
        assert_eq!(post(&c, &url("localhost", "/intake/v2/events"), &[("Authorization", team_a_token)], body).await.status, 202);
        assert_eq!(post(&c, &url("apm.team-a.test", "/intake/v2/events"), &[("Authorization", &key)], body).await.status, 202);
        // ...and is refused on team B's host, never sent there.
        let refused = post(&c, &url("apm.team-b.test", "/intake/v2/events"), &[("Authorization", &key)], body).await;
        assert_eq!(
            (refused.status, refused.body.as_str()),
            (403, "{\"error\":\"unauthorized: credential not permitted for this APM Server\"}\n")
        );
        // By Host, when SNI names no route (HTTP/1.1 to localhost, Host of team B).
        let h1 = named(false);
        let by_host = h1
            .post(url("localhost", "/intake/v2/events"))
            .header("Host", format!("apm.team-b.test:{}", proxy.port))
            .header("Authorization", &token)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(by_host.status(), 202);
        // Anonymous RUM follows the route.
        let rum = post(&c, &url("apm.team-b.test", "/intake/v2/rum/events"), &[("Origin", "https://shop.test")], body).await;
        assert_eq!(rum.status, 202, "{}", rum.body);
    });
    assert_eq!(default.requests().len(), 1);
    assert_eq!(team_a.requests().len(), 2);
    assert_eq!(
        team_b.requests().len(),
        3,
        "SNI, Host and anonymous; never the team-a key"
    );
    let log = proxy.log_text();
    assert!(
        log.contains("upstream_pool=\"team-b\"") || log.contains("upstream_pool=team-b"),
        "{log}"
    );
    assert!(
        log.contains("rejection=\"upstream_not_permitted\"")
            || log.contains("rejection=upstream_not_permitted")
    );
}

/// Health checks fast to fail and slow to pass again (50 passes, 5 s): a request forwarded
/// while they have not caught up can only have been sent despite them.
const SLOW_RISE: &str =
    "[upstream.health_check]\ninterval = \"100ms\"\ntimeout = \"200ms\"\nrise = 50\nfall = 1\n";

/// Request `id` is answered 202 and reaches `at` once, while the checks still call it down.
async fn forwarded_despite_the_checks(
    proxy: &Proxy,
    client: &reqwest::Client,
    id: usize,
    at: &Upstream,
) {
    assert_eq!(send_event(proxy, client, id).await, 202);
    assert!(!ready(proxy).await, "the checks had not caught up yet");
    let ids = received_ids(&[at]);
    assert_eq!(ids.get(&format!("{{\"id\":{id}}}")), Some(&1), "{ids:?}");
}

#[test]
fn a_lone_apm_server_is_never_shut_out_after_an_outage() {
    lone_server_outage(false);
}

/// The same outage seen by an HTTP/2 client (one multiplexed connection to the proxy, kept
/// across the upstream's restart).
#[test]
fn a_lone_apm_server_is_never_shut_out_after_an_outage_for_http2_clients() {
    lone_server_outage(true);
}

fn lone_server_outage(h2: bool) {
    let pki = pki();
    let mut upstream = Upstream::start();
    let proxy = Proxy::builder(&pki, &upstream.url())
        .token(TOKEN)
        .config(SLOW_RISE)
        .start();
    let runtime = rt();
    let client = proxy.client(h2);
    runtime.block_on(async {
        eventually("the upstream checked and ready", || ready(&proxy)).await;
        assert_eq!(send_event(&proxy, &client, 1).await, 202);
    });
    let addr = upstream.addr;
    upstream.stop();
    runtime.block_on(async {
        eventually("the checks mark it down", || async { !ready(&proxy).await }).await;
        // Down: a refused connect is a quick 502, as it always was — never 503.
        let auth = format!("Bearer {TOKEN}");
        let down = post(
            &client,
            &proxy.url("/intake/v2/events"),
            &[("Authorization", &auth)],
            "{\"id\":2}\n",
        )
        .await;
        assert_eq!(down.status, 502, "{}", down.body);
        let version = if h2 {
            reqwest::Version::HTTP_2
        } else {
            reqwest::Version::HTTP_11
        };
        assert_eq!(down.version, version);
    });
    // Back: the very next request is forwarded, while the checks still call it down.
    let back = Upstream::start_on(addr);
    runtime.block_on(forwarded_despite_the_checks(&proxy, &client, 3, &back));
}

#[test]
fn a_server_that_hung_gets_the_next_request_once_it_answers_again() {
    let pki = pki();
    let upstream = Upstream::start();
    let proxy = Proxy::builder(&pki, &upstream.url())
        .token(TOKEN)
        .config(&format!(
            "{SLOW_RISE}[upstream]\nread_timeout = \"500ms\"\n"
        ))
        .start();
    let runtime = rt();
    let client = proxy.client(false);
    runtime.block_on(async {
        eventually("the upstream checked and ready", || ready(&proxy)).await;
        upstream.hang(true);
        assert_eq!(send_event(&proxy, &client, 1).await, 504);
        eventually("the checks mark it down", || async { !ready(&proxy).await }).await;
        upstream.hang(false);
        forwarded_despite_the_checks(&proxy, &client, 2, &upstream).await;
    });
}

#[test]
fn a_pool_with_every_member_unhealthy_still_delivers_to_the_one_that_answers() {
    let pki = pki();
    let mut members = [Upstream::start(), Upstream::start(), Upstream::start()];
    let proxy = pool_proxy(&pki, &members.iter().collect::<Vec<_>>(), SLOW_RISE);
    let runtime = rt();
    let client = proxy.client(false);
    let addr = members[1].addr;
    for m in &mut members {
        m.stop();
    }
    runtime.block_on(async {
        eventually("every member marked down", || async {
            !ready(&proxy).await
        })
        .await;
    });
    members[1] = Upstream::start_on(addr);
    runtime.block_on(forwarded_despite_the_checks(
        &proxy,
        &client,
        7,
        &members[1],
    ));
}

/// `balance = "client_ip"` keeps each client on one member (consistent hashing by address);
/// `balance = "random"` spreads requests over every member.
#[test]
fn client_ip_balance_keeps_a_client_on_one_member_and_random_spreads() {
    let pki = pki();
    for balance in ["client_ip", "random"] {
        let members = [Upstream::start(), Upstream::start(), Upstream::start()];
        let proxy = pool_proxy(
            &pki,
            &members.iter().collect::<Vec<_>>(),
            &format!("[upstream]\nbalance = \"{balance}\"\n"),
        );
        let runtime = rt();
        runtime.block_on(async {
            for (n, last) in [1u8, 2, 3].into_iter().enumerate() {
                let client = proxy.client_from(Ipv4Addr::new(127, 0, 0, last).into());
                for id in 0..20 {
                    assert_eq!(send_event(&proxy, &client, n * 100 + id).await, 202);
                }
            }
        });
        let from = |last: usize| -> Vec<usize> {
            members
                .iter()
                .map(|m| {
                    m.requests()
                        .iter()
                        .filter(|r| {
                            let id: usize = String::from_utf8_lossy(&r.body)
                                .trim()
                                .trim_start_matches("{\"id\":")
                                .trim_end_matches('}')
                                .parse()
                                .unwrap();
                            id / 100 == last
                        })
                        .count()
                })
                .collect()
        };
        for client in 0..3 {
            let spread = from(client);
            assert_eq!(spread.iter().sum::<usize>(), 20, "{balance}: {spread:?}");
            if balance == "client_ip" {
                assert!(
                    spread.contains(&20),
                    "client {client} kept one member: {spread:?}"
                );
            }
        }
        if balance == "random" {
            let counts: Vec<usize> = members.iter().map(|m| m.requests().len()).collect();
            assert!(
                counts.iter().all(|n| *n > 0),
                "random reaches every member: {counts:?}"
            );
        }
    }
}

/// Failover itself, not the health checks: with checks too slow to notice (an hour apart), a
/// member that stops is found by the requests sent to it — each is retried on another member
/// (the connect failed, nothing was sent), arrives exactly once, and the member is ejected.
#[test]
fn requests_fail_over_from_a_member_the_checks_have_not_noticed() {
    let pki = pki();
    let mut members = [Upstream::start(), Upstream::start(), Upstream::start()];
    let proxy = pool_proxy(
        &pki,
        &members.iter().collect::<Vec<_>>(),
        "[upstream.health_check]\ninterval = \"1h\"\n",
    );
    let runtime = rt();
    let client = proxy.client(false);
    let dead = members[0].addr;
    members[0].stop();
    runtime.block_on(async {
        for id in 0..12 {
            assert_eq!(send_event(&proxy, &client, id).await, 202, "request {id}");
        }
    });
    let ids = received_ids(&[&members[1], &members[2]]);
    for id in 0..12 {
        assert_eq!(
            ids.get(&format!("{{\"id\":{id}}}")),
            Some(&1),
            "request {id} once"
        );
    }
    let log = proxy.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains("ejected after a failed connect") && l.contains(&dead.to_string())),
        "a request met the stopped member and failed over: {log}"
    );
}
