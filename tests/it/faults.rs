//! The upstream fault matrix: refused, black-holed, silent, reset mid-request and
//! mid-response, restarted under traffic. The promises: a 2xx only for a request the upstream
//! received, nothing delivered twice, an APM-format error otherwise, and recovery without
//! restarting the proxy.

use std::collections::HashMap;

use crate::support::*;

const AUTH: &[(&str, &str)] = &[("Authorization", "Bearer agent-token")];

fn proxy_for(pki: &Pki, upstream: &str) -> Proxy {
    Proxy::builder(pki, upstream).token("agent-token").start()
}

/// POST one small authenticated event; the answer.
fn send_event(proxy: &Proxy, body: &str) -> Answer {
    rt().block_on(post(
        &proxy.client(false),
        &proxy.url("/intake/v2/events"),
        AUTH,
        body.to_string(),
    ))
}

/// The answers a failed forward may give, each with its APM-format body.
fn assert_gateway_error(answer: &Answer) {
    let expected = match answer.status {
        502 => vec![
            "{\"error\":\"bad gateway: the APM Server is unreachable\"}\n",
            "{\"error\":\"bad gateway: the APM Server closed the connection\"}\n",
        ],
        503 => vec!["{\"error\":\"service unavailable: no healthy APM Server\"}\n"],
        504 => vec!["{\"error\":\"gateway timeout: the APM Server did not answer in time\"}\n"],
        other => panic!("{other} is not a gateway error: {}", answer.body),
    };
    assert!(expected.contains(&answer.body.as_str()), "{}", answer.body);
}

#[test]
fn refused_upstream_gives_json_502_and_recovers() {
    let pki = pki();
    let mut upstream = Upstream::start();
    let addr = upstream.addr;
    let proxy = proxy_for(&pki, &upstream.url());
    assert_eq!(send_event(&proxy, "x").status, 202);
    upstream.stop();
    // Refused at once (502 "unreachable"), not waited out (that would be a 504).
    let refused = send_event(&proxy, "x");
    assert_eq!(refused.status, 502);
    assert_eq!(
        refused.body,
        "{\"error\":\"bad gateway: the APM Server is unreachable\"}\n"
    );
    let upstream = Upstream::start_on(addr);
    // Back in the pool once its health checks pass again.
    eventually_blocking("202 once the upstream is back", || {
        send_event(&proxy, "x").status == 202
    });
    assert_eq!(upstream.requests().len(), 1);
}

#[test]
fn black_holed_upstream_gives_a_gateway_error_and_recovers() {
    let pki = pki();
    let hole = BlackHole::start();
    let addr = hole.addr;
    let proxy = proxy_for(&pki, &hole.url());
    // The connect times out (504) or the checks have already taken the member out (503).
    let answer = send_event(&proxy, "x");
    assert!([503, 504].contains(&answer.status), "{answer:?}");
    assert_gateway_error(&answer);
    assert!(!proxy.log_text().contains("panicked"));
    drop(hole);
    let upstream = Upstream::start_on(addr);
    eventually_blocking("202 once the host answers again", || {
        send_event(&proxy, "x").status == 202
    });
    assert_eq!(upstream.requests().len(), 1);
}

/// "Slow" past the read timeout: the upstream holds the request and never answers.
#[test]
fn upstream_that_never_answers_gives_504() {
    let pki = pki();
    let silent = Upstream::silent();
    let proxy = proxy_for(&pki, &silent.url());
    let answer = send_event(&proxy, "x");
    assert_eq!(answer.status, 504);
    assert_gateway_error(&answer);
}

/// The upstream dies after the head and the first body bytes: the client gets a 502, over
/// HTTP/1.1 and HTTP/2, and the proxy does not send the request again (a retry of a body
/// already partly delivered could duplicate events).
#[test]
fn reset_mid_request_gives_502_and_is_not_retried() {
    let pki = pki();
    let upstream = Resetting::start(Reset::MidRequest);
    let proxy = proxy_for(&pki, &upstream.url());
    let body = v2_events(2000);
    for (n, h2) in [(1, false), (2, true)] {
        let answer = rt().block_on(post(
            &proxy.client(h2),
            &proxy.url("/intake/v2/events"),
            AUTH,
            body.clone(),
        ));
        assert_eq!(answer.status, 502, "h2: {h2}: {answer:?}");
        assert_gateway_error(&answer);
        assert_eq!(upstream.requests(), n, "one delivery per request, h2: {h2}");
    }
}

/// The upstream closes kept-alive connections 50 ms after each answer (a short keep-alive
/// timeout): the proxy must not send a later request on the dead pooled connection. Every
/// request arrives whole, each on a new connection.
#[test]
fn stale_pooled_connections_are_not_reused() {
    let pki = pki();
    let upstream = ClosingUpstream::start(Closing::WhenIdle);
    let proxy = proxy_for(&pki, &upstream.url());
    for n in 1..=2 {
        let answer = send_event(&proxy, &v2_events(3));
        assert_eq!(answer.status, 202, "event {n}: {answer:?}");
        // Idle longer than the upstream's 50 ms keep-alive: the pooled connection goes stale.
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    let answer = rt().block_on(get(
        &proxy.client(false),
        &proxy.url("/config/v1/agents?service.name=shop"),
        AUTH,
    ));
    assert_eq!(answer.status, 202, "{answer:?}");
    assert_eq!(upstream.requests(), 3);
    assert_eq!(upstream.connections(), 3, "one connection per request");
}

/// The upstream drops a pooled connection just as the proxy reuses it (it reads the request
/// and closes without an answer). An agent-config GET is sent again on a new connection and
/// answered; an event POST is not sent again (its events may have been taken) and gets the
/// APM-format 502.
#[test]
fn a_connection_dropped_on_reuse_is_retried_only_for_idempotent_requests() {
    let pki = pki();
    let upstream = ClosingUpstream::start(Closing::OnReuse);
    let proxy = proxy_for(&pki, &upstream.url());
    let first = send_event(&proxy, &v2_events(3));
    assert_eq!(first.status, 202, "{first:?}");

    let config = rt().block_on(get(
        &proxy.client(false),
        &proxy.url("/config/v1/agents?service.name=shop"),
        AUTH,
    ));
    assert_eq!(
        config.status,
        202,
        "the GET, retried: {config:?}\n{}",
        proxy.log_text()
    );
    assert_eq!(upstream.requests(), 3, "event, dropped GET, GET again");
    assert_eq!(upstream.connections(), 2);

    let event = send_event(&proxy, &v2_events(3));
    assert_eq!(event.status, 502, "{event:?}");
    assert_gateway_error(&event);
    // No wait needed: a resend would have happened before the proxy gave up and answered.
    assert_eq!(
        upstream.requests(),
        4,
        "the dropped POST was not sent again"
    );
}

/// The upstream dies after the head and part of the body of its answer: the client must
/// not receive what looks like a complete answer (the connection or stream is cut), and
/// the request is not sent again.
#[test]
fn reset_mid_response_cuts_the_answer_to_the_client() {
    let pki = pki();
    let upstream = Resetting::start(Reset::MidResponse);
    let proxy = proxy_for(&pki, &upstream.url());
    for (n, h2) in [(1, false), (2, true)] {
        let outcome = rt().block_on(async {
            let response = proxy
                .client(h2)
                .get(proxy.url("/config/v1/agents?service.name=shop"))
                .header("Authorization", "Bearer agent-token")
                .send()
                .await
                .unwrap();
            (response.status(), response.bytes().await)
        });
        assert_eq!(outcome.0, 200, "the head was already on its way, h2: {h2}");
        match outcome.1 {
            Err(_) => {}
            Ok(body) => panic!("h2: {h2}: a cut answer read as complete: {body:?}"),
        }
        assert_eq!(upstream.requests(), n, "one delivery per request, h2: {h2}");
    }
}

/// Four clients send numbered events while the upstream is stopped and started again on
/// its port: every 2xx was received, nothing was received twice, every failure is a
/// gateway error, and the traffic flows again without restarting the proxy.
#[test]
fn upstream_restarted_under_traffic_loses_and_duplicates_nothing() {
    const CLIENTS: usize = 4;
    const EACH: usize = 60;
    let pki = pki();
    let first = std::sync::Arc::new(std::sync::Mutex::new(Upstream::start()));
    let addr = first.lock().unwrap().addr;
    let proxy = proxy_for(&pki, &format!("http://{addr}"));
    let (answers, second) = rt().block_on(async {
        let client = proxy.client(false);
        let senders: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let (client, url) = (client.clone(), proxy.url("/intake/v2/events"));
                tokio::spawn(async move {
                    let mut answers = Vec::new();
                    for i in 0..EACH {
                        let id = format!("event-{c}-{i}");
                        answers.push((id.clone(), post(&client, &url, AUTH, id).await));
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    }
                    answers
                })
            })
            .collect();
        // Stop once some events went through, start again on the same port a moment later.
        let seen = first.clone();
        eventually("traffic before the restart", || {
            let seen = seen.clone();
            async move { seen.lock().unwrap().requests().len() >= 20 }
        })
        .await;
        first.lock().unwrap().stop();
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let second = tokio::task::spawn_blocking(move || Upstream::start_on(addr))
            .await
            .unwrap();
        let mut answers = Vec::new();
        for sender in senders {
            answers.extend(sender.await.unwrap());
        }
        (answers, second)
    });
    let mut received: HashMap<Vec<u8>, usize> = HashMap::new();
    let first = first.lock().unwrap().requests();
    for r in first.iter().chain(second.requests().iter()) {
        *received.entry(r.body.clone()).or_default() += 1;
    }
    let twice: Vec<_> = received.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "received twice: {twice:?}");
    let mut failed = 0;
    for (id, answer) in &answers {
        if answer.status == 202 {
            assert!(
                received.contains_key(id.as_bytes()),
                "{id}: 202 but never received"
            );
        } else {
            failed += 1;
            assert_gateway_error(answer);
        }
    }
    assert!(failed > 0, "the restart was not met by any request");
    // Recovered without a restart of the proxy.
    eventually_blocking("202 from the restarted upstream", || {
        send_event(&proxy, "after").status == 202
    });
    assert!(second.requests().iter().any(|r| r.body == b"after"));
}
