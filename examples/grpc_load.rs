//! Load for `bench/grpc.sh`: unary OTLP/gRPC `Export` calls (1 KB messages) from 8 HTTP/2
//! connections, 8 calls in flight on each, for a number of seconds.
//!
//! `grpc_load <url> <seconds> [authorization]`: `https://…` goes through the proxy (TLS, h2 by
//! ALPN), `http://…` straight to the stand-in (h2c with prior knowledge). Prints calls/s and
//! the CPU time per call of the processes whose PIDs are in `PIDS` (space-separated).

use std::time::{Duration, Instant};

const METHOD: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
const CONNECTIONS: usize = 8;
const IN_FLIGHT_PER_CONNECTION: usize = 8;

fn client(tls: bool) -> reqwest::Client {
    let builder = reqwest::Client::builder().danger_accept_invalid_certs(true);
    let builder = if tls {
        builder
    } else {
        builder.http2_prior_knowledge()
    };
    builder.build().expect("client")
}

/// A gRPC message frame: not compressed, a 4-byte length, ~1 KB of payload.
fn message() -> Vec<u8> {
    let payload = vec![0x0a; 1024];
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(&payload);
    frame
}

/// CPU seconds used so far by the processes in `pids`.
fn cpu_seconds(pids: &[String]) -> f64 {
    pids.iter()
        .map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let fields: Vec<&str> = stat
                .rsplit_once(')')
                .map(|(_, rest)| rest.split_whitespace().collect())
                .unwrap_or_default();
            fields
                .get(11..13)
                .map(|f| f.iter().filter_map(|v| v.parse::<f64>().ok()).sum::<f64>())
                .unwrap_or(0.0)
                / 100.0
        })
        .sum()
}

async fn run(url: String, seconds: u64, authorization: Option<String>, pids: Vec<String>) {
    let tls = url.starts_with("https://");
    let url = format!("{url}{METHOD}");
    let body = bytes::Bytes::from(message());
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let cpu0 = cpu_seconds(&pids);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CONNECTIONS {
        let c = client(tls);
        for _ in 0..IN_FLIGHT_PER_CONNECTION {
            let (c, url, body, auth) =
                (c.clone(), url.clone(), body.clone(), authorization.clone());
            tasks.push(tokio::spawn(async move {
                let (mut ok, mut other) = (0u64, 0u64);
                while Instant::now() < deadline {
                    let mut req = c
                        .post(&url)
                        .header("content-type", "application/grpc")
                        .header("te", "trailers")
                        .body(body.clone());
                    if let Some(a) = &auth {
                        req = req.header("authorization", a);
                    }
                    // A trailers-only answer carries `grpc-status` in the headers: an error.
                    match req.send().await {
                        Ok(r) if r.status() == 200 && r.headers().get("grpc-status").is_none() => {
                            match r.bytes().await {
                                Ok(_) => ok += 1,
                                Err(_) => other += 1,
                            }
                        }
                        _ => other += 1,
                    }
                }
                (ok, other)
            }));
        }
    }
    let (mut ok, mut other) = (0u64, 0u64);
    for t in tasks {
        let (o, x) = t.await.unwrap_or((0, 0));
        ok += o;
        other += x;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(&pids) - cpu0;
    println!(
        "{:.0} calls/s, {ok} ok, {other} other, CPU {:.1} µs/call",
        ok as f64 / elapsed,
        cpu * 1e6 / ok.max(1) as f64
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let pids: Vec<String> = std::env::var("PIDS")
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let (Some(url), Some(seconds)) = (args.get(1), args.get(2).and_then(|s| s.parse().ok())) else {
        eprintln!("usage: grpc_load <url> <seconds> [authorization]");
        std::process::exit(64);
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run(url.clone(), seconds, args.get(3).cloned(), pids));
}
