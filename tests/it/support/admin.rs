//! The admin listener seen from a test: plain GETs and the Prometheus samples.

use std::collections::HashMap;
use std::time::Duration;

use super::proxy::Proxy;

/// `GET <admin><path>` over plain HTTP: (status, body).
pub async fn admin_get(proxy: &Proxy, path: &str) -> (u16, String) {
    let resp = reqwest::Client::new()
        .get(format!("{}{path}", proxy.admin_url()))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// The samples of a Prometheus text exposition: `name{labels}` → value.
pub fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            Some((key.to_string(), value.parse().ok()?))
        })
        .collect()
}

pub async fn metric_samples(proxy: &Proxy) -> HashMap<String, f64> {
    let (status, text) = admin_get(proxy, "/metrics").await;
    assert_eq!(status, 200);
    samples(&text)
}

pub fn sample(all: &HashMap<String, f64>, key: &str) -> f64 {
    *all.get(key).unwrap_or_else(|| {
        let mut names: Vec<&String> = all.keys().collect();
        names.sort();
        panic!("no sample {key}; have {names:#?}")
    })
}

/// The samples once `key` has reached `at_least`: a request is counted by the hook that runs
/// after its answer was sent, so a client may see the answer just before the count.
pub async fn samples_with(proxy: &Proxy, key: &str, at_least: f64) -> HashMap<String, f64> {
    let deadline = std::time::Instant::now() + super::wait::PATIENCE;
    loop {
        let all = metric_samples(proxy).await;
        if all.get(key).is_some_and(|v| *v >= at_least) || std::time::Instant::now() > deadline {
            return all;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Wait until `proxy` counts `n` open client connections (its owner frees a place as the
/// connection's task ends, just after the client closed it).
pub async fn client_connections_become(proxy: &Proxy, n: f64, what: &str) {
    super::wait::eventually(what, || async {
        sample(
            &metric_samples(proxy).await,
            "apm_auth_proxy_client_connections",
        ) == n
    })
    .await;
}
