//! Load for `bench/rum.sh`: what anonymous RUM traffic costs the proxy.
//!
//! `rum_load streams <proxy url> <clients> <seconds>`: that many anonymous clients, each from
//! its own client IP (`X-Forwarded-For`; the bench trusts 127.0.0.1), stream events at once
//! for `seconds`; prints the proxy's peak RSS seen meanwhile (pass its PID in `PROXY_PID`).
//!
//! `rum_load rate <proxy url> <seconds> [token]`: 1 KB RUM posts on 32 keep-alive
//! connections; anonymous (the metadata reader, allow-lists, rate limit) or with the token
//! (plain forwarding). Prints req/s and the proxy's CPU time per request.

use std::time::{Duration, Instant};

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .http1_only()
        .pool_max_idle_per_host(2000)
        .build()
        .expect("client")
}

fn body() -> String {
    let mut body = String::from(
        "{\"metadata\":{\"service\":{\"name\":\"shop\",\"agent\":{\"name\":\"rum-js\",\"version\":\"5.17.5\"}}}}\n",
    );
    while body.len() < 1000 {
        body.push_str("{\"transaction\":{\"id\":\"0123456789abcdef\",\"trace_id\":\"0123456789abcdef0123456789abcdef\",\"type\":\"page-load\",\"duration\":12.5}}\n");
    }
    body
}

fn proc_stat(pid: &str) -> (f64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks: f64 = fields
        .get(11..13)
        .map(|f| f.iter().filter_map(|v| v.parse::<f64>().ok()).sum())
        .unwrap_or(0.0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss_kb = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    (ticks / 100.0, rss_kb)
}

async fn streams(url: String, clients: usize, seconds: u64, pid: String) {
    let c = client();
    let (_, idle_rss) = proc_stat(&pid);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..clients {
        let c = c.clone();
        let url = format!("{url}/intake/v2/rum/events");
        let ip = format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255);
        tasks.push(tokio::spawn(async move {
            let events = seconds * 2;
            let stream = futures_util::stream::unfold(0u64, move |n| async move {
                if n > events {
                    return None;
                }
                let chunk = if n == 0 {
                    body().lines().next().unwrap().to_string() + "\n"
                } else {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    body().lines().nth(1).unwrap().to_string() + "\n"
                };
                Some((Ok::<_, std::io::Error>(chunk), n + 1))
            });
            c.post(&url)
                .header("X-Forwarded-For", ip)
                .header("Content-Type", "application/x-ndjson")
                .body(reqwest::Body::wrap_stream(stream))
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        }));
    }
    let mut peak = 0;
    while started.elapsed() < Duration::from_secs(seconds + 30)
        && tasks.iter().any(|t| !t.is_finished())
    {
        peak = peak.max(proc_stat(&pid).1);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut accepted = 0;
    for t in tasks {
        if t.await.unwrap_or(0) == 202 {
            accepted += 1;
        }
    }
    println!(
        "{clients} anonymous streams for {seconds}s: {accepted} answered 202; proxy RSS idle {:.1} MB, peak {:.1} MB ({:.1} KB per stream)",
        idle_rss as f64 / 1024.0,
        peak as f64 / 1024.0,
        (peak.saturating_sub(idle_rss)) as f64 / clients as f64
    );
}

async fn rate(url: String, seconds: u64, token: Option<String>, pid: String) {
    let c = client();
    let body = body();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let (cpu0, _) = proc_stat(&pid);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..32 {
        let (c, body, token) = (c.clone(), body.clone(), token.clone());
        let url = format!("{url}/intake/v2/rum/events");
        let ip = format!("10.9.0.{i}");
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut other) = (0u64, 0u64);
            while Instant::now() < deadline {
                let mut req = c
                    .post(&url)
                    .header("X-Forwarded-For", &ip)
                    .body(body.clone());
                if let Some(t) = &token {
                    req = req.header("Authorization", format!("Bearer {t}"));
                }
                match req.send().await {
                    Ok(r) if r.status() == 202 => ok += 1,
                    _ => other += 1,
                }
            }
            (ok, other)
        }));
    }
    let (mut ok, mut other) = (0, 0);
    for t in tasks {
        let (o, x) = t.await.unwrap_or((0, 0));
        ok += o;
        other += x;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let (cpu1, _) = proc_stat(&pid);
    let mode = if token.is_some() {
        "token (plain forwarding)"
    } else {
        "anonymous (metadata reader)"
    };
    println!(
        "{mode}: {:.0} req/s, {ok} ok, {other} other, proxy CPU {:.1} µs/request",
        ok as f64 / elapsed,
        (cpu1 - cpu0) * 1e6 / ok.max(1) as f64
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let pid = std::env::var("PROXY_PID").unwrap_or_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let arg = |i: usize| args.get(i).cloned().unwrap_or_default();
    match arg(1).as_str() {
        "streams" => rt.block_on(streams(
            arg(2),
            arg(3).parse().unwrap_or(1000),
            arg(4).parse().unwrap_or(10),
            pid,
        )),
        "rate" => rt.block_on(rate(
            arg(2),
            arg(3).parse().unwrap_or(10),
            args.get(4).cloned(),
            pid,
        )),
        _ => eprintln!(
            "usage: rum_load streams <url> <clients> <seconds> | rate <url> <seconds> [token]"
        ),
    }
}
