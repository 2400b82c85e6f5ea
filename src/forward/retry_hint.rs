//! Telling OTLP clients when to come back. The OTLP specification makes an HTTP 429 or 503
//! retryable after its `Retry-After`, and a gRPC `RESOURCE_EXHAUSTED` retryable only with a
//! `google.rpc.RetryInfo` in `grpc-status-details-bin` (`UNAVAILABLE` always is; the hint
//! paces it). The delay is the limiter's own (its next token, a cool-down's end), else a
//! second. Intake endpoints answer as APM Server does, without these.

use std::time::Duration;

use base64::Engine;

/// When no limiter said: a second.
const DEFAULT: Duration = Duration::from_secs(1);

/// The OTLP/HTTP endpoints.
pub fn is_otlp_http(path: &[u8]) -> bool {
    matches!(path, b"/v1/traces" | b"/v1/metrics" | b"/v1/logs")
}

/// `Retry-After` for a 429 or 503 on an OTLP/HTTP endpoint: whole seconds, at least one.
pub fn retry_after(status: u16, wait: Option<Duration>) -> Option<String> {
    matches!(status, 429 | 503).then(|| whole_seconds(wait.unwrap_or(DEFAULT)).to_string())
}

fn whole_seconds(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0).max(u64::from(d.is_zero()))
}

/// `grpc-status-details-bin` for a gRPC answer with `code`: a `google.rpc.Status` holding a
/// `RetryInfo` — for RESOURCE_EXHAUSTED (8) only when a limiter said when, for UNAVAILABLE (14)
/// always.
pub fn grpc_status_details(code: u8, message: &str, wait: Option<Duration>) -> Option<String> {
    let retry_info = retry_info(code, wait)?;
    // google.protobuf.Any { type_url = 1, value = 2 }
    let mut any = Vec::new();
    field_bytes(&mut any, 1, b"type.googleapis.com/google.rpc.RetryInfo");
    field_bytes(&mut any, 2, &retry_info);
    // google.rpc.Status { code = 1, message = 2, details = 3 }
    let mut status = Vec::new();
    field_varint(&mut status, 1, u64::from(code));
    field_bytes(&mut status, 2, message.as_bytes());
    field_bytes(&mut status, 3, &any);
    // gRPC binary metadata: base64, emitted without padding.
    Some(base64::engine::general_purpose::STANDARD_NO_PAD.encode(status))
}

/// `google.rpc.retryinfo-bin` for the same answers: the `RetryInfo` alone, the trailer some
/// SDKs read instead of the status details (OpenTelemetry Python's gRPC exporter).
pub fn grpc_retry_info(code: u8, wait: Option<Duration>) -> Option<String> {
    let retry_info = retry_info(code, wait)?;
    Some(base64::engine::general_purpose::STANDARD_NO_PAD.encode(retry_info))
}

/// `google.rpc.RetryInfo` for an answer with `code`, when it is retryable after a delay.
fn retry_info(code: u8, wait: Option<Duration>) -> Option<Vec<u8>> {
    let wait = match (code, wait) {
        (8, Some(wait)) => wait,
        (14, wait) => wait.unwrap_or(DEFAULT),
        _ => return None,
    };
    let wait = wait.max(Duration::from_millis(1));
    // google.protobuf.Duration { seconds = 1, nanos = 2 }
    let mut duration = Vec::new();
    field_varint(&mut duration, 1, wait.as_secs());
    field_varint(&mut duration, 2, u64::from(wait.subsec_nanos()));
    // google.rpc.RetryInfo { retry_delay = 1 }
    let mut retry_info = Vec::new();
    field_bytes(&mut retry_info, 1, &duration);
    Some(retry_info)
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn field_varint(out: &mut Vec<u8>, field: u64, v: u64) {
    if v != 0 {
        varint(out, field << 3);
        varint(out, v);
    }
}

fn field_bytes(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    varint(out, field << 3 | 2);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_whole_seconds_on_429_and_503_only() {
        assert_eq!(
            retry_after(429, Some(Duration::from_millis(200))).as_deref(),
            Some("1")
        );
        assert_eq!(
            retry_after(429, Some(Duration::from_millis(2500))).as_deref(),
            Some("3")
        );
        assert_eq!(retry_after(503, None).as_deref(), Some("1"));
        assert_eq!(retry_after(401, Some(Duration::from_secs(5))), None);
        assert!(is_otlp_http(b"/v1/traces") && !is_otlp_http(b"/intake/v2/events"));
    }

    #[test]
    fn retry_info_is_a_google_rpc_status() {
        let b64 = grpc_status_details(8, "rate limit exceeded", Some(Duration::from_millis(1500)))
            .unwrap();
        let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(b64)
            .unwrap();
        // Status: code 8, the message, one detail.
        let mut expected = vec![0x08, 8, 0x12, 19];
        expected.extend_from_slice(b"rate limit exceeded");
        let type_url = b"type.googleapis.com/google.rpc.RetryInfo";
        // Duration { seconds: 1, nanos: 500_000_000 } = 08 01 10 80 CA B5 EE 01
        let duration = [0x08, 0x01, 0x10, 0x80, 0xCA, 0xB5, 0xEE, 0x01];
        let retry_info_len = 2 + duration.len();
        let any_len = 2 + type_url.len() + 2 + retry_info_len;
        expected.extend_from_slice(&[0x1a, any_len as u8, 0x0a, type_url.len() as u8]);
        expected.extend_from_slice(type_url);
        expected.extend_from_slice(&[0x12, retry_info_len as u8, 0x0a, duration.len() as u8]);
        expected.extend_from_slice(&duration);
        assert_eq!(bytes, expected);
        let alone = grpc_retry_info(8, Some(Duration::from_millis(1500))).unwrap();
        let alone = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(alone)
            .unwrap();
        assert_eq!(alone[2..], duration, "the RetryInfo alone");
        // RESOURCE_EXHAUSTED without a known delay is not retryable: no details.
        assert_eq!(grpc_status_details(8, "too large", None), None);
        assert!(grpc_status_details(14, "unavailable", None).is_some());
        assert_eq!(grpc_status_details(16, "unauthenticated", None), None);
    }
}
