//! The id of a request: in its access line and sent upstream as `X-Request-Id`, so an
//! operator can follow one request from the agent through the proxy to APM Server. The
//! client's own `X-Request-Id` when it is a plain token, else the trace id of its W3C
//! `traceparent`, else one of the proxy's (a random per-process prefix and a counter: unique
//! across replicas, no randomness per request).

use std::sync::atomic::{AtomicU64, Ordering};

use http::{HeaderMap, HeaderName};

pub const HEADER: &str = "x-request-id";
/// The names looked up per request, as `HeaderName`s: a `&str` is parsed on every lookup.
const HEADER_NAME: HeaderName = HeaderName::from_static(HEADER);
const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// Hands out the proxy's own ids.
pub struct RequestIds {
    prefix: u64,
    next: AtomicU64,
}

impl RequestIds {
    pub fn new() -> RequestIds {
        let mut seed = [0u8; 8];
        // Without the system's randomness (never seen on Linux), the time stands in.
        if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut seed).is_err() {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
            seed = now.map_or(0, |d| d.as_nanos() as u64).to_le_bytes();
        }
        RequestIds {
            prefix: u64::from_le_bytes(seed),
            next: AtomicU64::new(0),
        }
    }

    /// The id for a request with these headers.
    pub fn for_request(&self, headers: &HeaderMap) -> String {
        let given = headers.get(HEADER_NAME).map(|v| v.as_bytes());
        if let Some(id) = given.filter(|id| is_plain_token(id)) {
            return String::from_utf8_lossy(id).into_owned();
        }
        if let Some(trace) = headers
            .get(TRACEPARENT)
            .and_then(|v| trace_id(v.as_bytes()))
        {
            return trace.to_string();
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        // Written digit by digit: `format!` with `{:016x}` cost ≈ 2,000 instructions a request.
        let mut id = String::with_capacity(32);
        push_hex(&mut id, self.prefix);
        push_hex(&mut id, n);
        id
    }
}

impl Default for RequestIds {
    fn default() -> Self {
        RequestIds::new()
    }
}

/// `value` as 16 lowercase hex digits.
fn push_hex(out: &mut String, value: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for shift in (0..16).rev() {
        out.push(DIGITS[(value >> (shift * 4)) as usize & 0xf] as char);
    }
}

/// 1–128 characters of `[A-Za-z0-9._:-]`: safe in a log line and a header.
fn is_plain_token(id: &[u8]) -> bool {
    (1..=128).contains(&id.len())
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// The trace id of a `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`), if valid and not zero.
fn trace_id(value: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(value).ok()?;
    let mut parts = text.trim().split('-');
    let (_version, trace) = (parts.next()?, parts.next()?);
    let lower_hex = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    (trace.len() == 32 && lower_hex(trace) && trace.bytes().any(|b| b != b'0')).then_some(trace)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn the_clients_id_then_its_trace_then_ours() {
        let ids = RequestIds::new();
        let trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(ids.for_request(&headers(&[(HEADER, "req-42")])), "req-42");
        assert_eq!(
            ids.for_request(&headers(&[("traceparent", trace)])),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        // An id that could forge a log line, or a zero trace id, is not taken.
        let forged = headers(&[(HEADER, "a b\"c"), ("traceparent", "00-0-0-0")]);
        let ours = ids.for_request(&forged);
        assert_eq!(ours.len(), 32);
        assert_ne!(ours, ids.for_request(&forged), "a new one each time");
    }

    #[test]
    fn our_ids_are_the_prefix_and_the_counter_in_hex() {
        let ids = RequestIds {
            prefix: 0x0123_4567_89ab_cdef,
            next: AtomicU64::new(0xfe),
        };
        assert_eq!(
            ids.for_request(&HeaderMap::new()),
            "0123456789abcdef00000000000000fe"
        );
        assert_eq!(
            ids.for_request(&HeaderMap::new()),
            format!("{:016x}{:016x}", 0x0123_4567_89ab_cdef_u64, 0xff)
        );
    }
}
