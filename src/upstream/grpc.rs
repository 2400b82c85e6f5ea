//! gRPC calls to the upstream: HTTP/2 with prior knowledge (h2c), as APM Server's port takes
//! them, many calls sharing a connection, and the caller's own deadline respected.

use std::time::Duration;

use pingora::prelude::HttpPeer;
use pingora::protocols::ALPN;

/// Calls in flight on one upstream h2c connection before another is opened (Pingora's
/// default is 1: a connection per call). grpc-go servers allow 100 by default
/// (`MaxConcurrentStreams` unset means unlimited; Go's HTTP/2 server default is 250).
pub const STREAMS_PER_CONNECTION: usize = 100;

/// `peer`, turned into an h2c peer for gRPC calls; `deadline` (the caller's `grpc-timeout`)
/// caps the wait for the answer.
pub fn h2c(mut peer: HttpPeer, deadline: Option<Duration>) -> HttpPeer {
    peer.options.alpn = ALPN::H2;
    peer.options.max_h2_streams = STREAMS_PER_CONNECTION;
    if let Some(deadline) = deadline {
        peer.options.read_timeout = Some(
            peer.options
                .read_timeout
                .map_or(deadline, |t| t.min(deadline)),
        );
    }
    peer
}

/// A `grpc-timeout` header value (gRPC over HTTP/2: at most 8 digits and a unit of `H`, `M`,
/// `S`, `m`, `u` or `n`); `None` when it is absent or malformed.
pub fn timeout(value: &[u8]) -> Option<Duration> {
    let (&unit, digits) = value.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_as_the_spec_writes_them() {
        assert_eq!(timeout(b"1H"), Some(Duration::from_secs(3600)));
        assert_eq!(timeout(b"2M"), Some(Duration::from_secs(120)));
        assert_eq!(timeout(b"10S"), Some(Duration::from_secs(10)));
        assert_eq!(timeout(b"250m"), Some(Duration::from_millis(250)));
        assert_eq!(
            timeout(b"99999999u"),
            Some(Duration::from_micros(99_999_999))
        );
        assert_eq!(timeout(b"5n"), Some(Duration::from_nanos(5)));
        for bad in [
            &b""[..],
            b"S",
            b"123456789S",
            b"10s",
            b"-1S",
            b"1.5S",
            b" 1S",
        ] {
            assert_eq!(timeout(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn the_deadline_only_shortens_the_wait() {
        let mut peer = HttpPeer::new("127.0.0.1:8200", false, String::new());
        peer.options.read_timeout = Some(Duration::from_secs(60));
        let short = h2c(peer.clone(), Some(Duration::from_millis(300)));
        assert_eq!(short.options.read_timeout, Some(Duration::from_millis(300)));
        assert_eq!(short.options.alpn, ALPN::H2);
        assert_eq!(short.options.max_h2_streams, STREAMS_PER_CONNECTION);
        let long = h2c(peer, Some(Duration::from_secs(3600)));
        assert_eq!(long.options.read_timeout, Some(Duration::from_secs(60)));
    }
}
