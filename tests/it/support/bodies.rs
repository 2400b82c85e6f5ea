//! Intake bodies as agents write them: ndjson v2 and RUM v3, compressed or not.

use std::io::{Read, Write};

use super::upstream::Recorded;

/// A v2 intake body: metadata for `agent`/`service`, then `events` transactions.
pub fn v2(agent: &str, service: &str, events: usize) -> String {
    let mut body = format!(
        "{{\"metadata\":{{\"service\":{{\"name\":\"{service}\",\"agent\":{{\"name\":\"{agent}\",\"version\":\"5.0.0\"}}}}}}}}\n"
    );
    body.push_str(&v2_events(events));
    body
}

/// `n` v2 transaction lines.
pub fn v2_events(n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "{{\"transaction\":{{\"id\":\"{i:016x}\",\"trace_id\":\"0123456789abcdef0123456789abcdef\",\"type\":\"page-load\",\"duration\":1.5,\"span_count\":{{\"started\":0}}}}}}\n"
            )
        })
        .collect()
}

/// A RUM v3 body: metadata for `agent`/`service`, then `events` transactions.
pub fn v3(agent: &str, service: &str, events: usize) -> String {
    let mut body = format!(
        "{{\"m\":{{\"se\":{{\"n\":\"{service}\",\"a\":{{\"n\":\"{agent}\",\"ve\":\"5\"}}}}}}}}\n"
    );
    for i in 0..events {
        body.push_str(&format!(
            "{{\"x\":{{\"id\":\"{i:016x}\",\"tid\":\"0123456789abcdef0123456789abcdef\",\"t\":\"page-load\",\"d\":1.5,\"yc\":{{\"sd\":0}}}}}}\n"
        ));
    }
    body
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub fn zlib(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// The body the upstream received, decompressed by its `Content-Encoding`.
pub fn decoded(r: &Recorded) -> String {
    let mut text = String::new();
    match r
        .headers
        .get("content-encoding")
        .map(|v| v.to_str().unwrap())
    {
        Some("gzip") => {
            flate2::read::MultiGzDecoder::new(&r.body[..])
                .read_to_string(&mut text)
                .unwrap();
        }
        Some("deflate") => {
            flate2::read::ZlibDecoder::new(&r.body[..])
                .read_to_string(&mut text)
                .unwrap();
        }
        _ => text = String::from_utf8(r.body.clone()).unwrap(),
    }
    text
}

/// A request body fed by the test, chunk by chunk: (sender, body for reqwest).
pub fn channel_body() -> (
    tokio::sync::mpsc::Sender<Result<Vec<u8>, std::io::Error>>,
    reqwest::Body,
) {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    (tx, reqwest::Body::wrap_stream(stream))
}

/// The events (every complete line but metadata) the upstream received in `r`: what an
/// `accepted` count must match when a stream is cut.
pub fn events_received(r: &Recorded) -> usize {
    let text = decoded(r);
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    complete
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|v| v.get("metadata").is_none())
        .count()
}

/// The `accepted` count of an intake error body (`{"accepted":N,"errors":[…]}`).
pub fn accepted_in(body: &str) -> usize {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    usize::try_from(
        v["accepted"]
            .as_u64()
            .unwrap_or_else(|| panic!("no accepted: {body}")),
    )
    .unwrap()
}

/// Whether `needle` occurs in `haystack` (a recorded body, which need not be UTF-8).
pub fn contains_text(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}
