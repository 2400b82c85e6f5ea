//! The real client IP.
//!
//! APM Server believes `Forwarded` > `X-Real-IP` > the first `X-Forwarded-For` value blindly.
//! So the proxy decides the client IP itself — from those headers only when the TCP peer is a
//! trusted proxy — and `upstream_headers` replaces all three with that one value.

use std::net::{IpAddr, SocketAddr};

use http::HeaderMap;
use ipnet::IpNet;

#[derive(Debug, Clone, Default)]
pub struct ClientIpPolicy {
    trusted: Vec<IpNet>,
}

impl ClientIpPolicy {
    pub fn new(trusted: Vec<IpNet>) -> Self {
        ClientIpPolicy { trusted }
    }

    /// Is `ip` (the TCP peer) a trusted proxy?
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(&canonical(ip)))
    }

    /// The client IP for a request from `peer` carrying `headers`.
    ///
    /// From an untrusted peer: the peer. From a trusted proxy: the address chain it reports
    /// (the first of `Forwarded`, `X-Real-IP`, `X-Forwarded-For` that is present, in APM
    /// Server's order) walked from the right, skipping further trusted proxies; the first
    /// untrusted address is the client. A chain of only trusted hops yields its leftmost.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer);
        if !self.is_trusted(peer) {
            return peer;
        }
        let chain = reported_chain(headers);
        chain
            .iter()
            .rev()
            .copied()
            .find(|ip| !self.is_trusted(*ip))
            .or_else(|| chain.first().copied())
            .unwrap_or(peer)
    }
}

/// `::ffff:10.0.0.1` is `10.0.0.1`.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn header_values<'a>(headers: &'a HeaderMap, name: &str) -> impl Iterator<Item = &'a str> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
}

fn reported_chain(headers: &HeaderMap) -> Vec<IpAddr> {
    if headers.contains_key("forwarded") {
        return header_values(headers, "forwarded")
            .filter_map(forwarded_for)
            .collect();
    }
    if headers.contains_key("x-real-ip") {
        return header_values(headers, "x-real-ip")
            .filter_map(parse_ip)
            .collect();
    }
    header_values(headers, "x-forwarded-for")
        .filter_map(parse_ip)
        .collect()
}

/// The `for=` address of one `Forwarded` element (RFC 7239), e.g. `for="[2001:db8::1]:80"`.
fn forwarded_for(element: &str) -> Option<IpAddr> {
    element.split(';').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        if !k.trim().eq_ignore_ascii_case("for") {
            return None;
        }
        parse_ip(v.trim().trim_matches('"'))
    })
}

/// An address as proxies write it: bare, `ip:port`, `[v6]` or `[v6]:port`.
fn parse_ip(text: &str) -> Option<IpAddr> {
    let text = text.trim();
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Ok(sa) = text.parse::<SocketAddr>() {
        return Some(canonical(sa.ip()));
    }
    text.strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .and_then(|t| t.parse().ok())
        .map(canonical)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn untrusted_peer_headers_are_ignored() {
        let p = ClientIpPolicy::new(vec![]);
        let h = headers(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("forwarded", "for=5.6.7.8"),
            ("x-real-ip", "9.9.9.9"),
        ]);
        assert_eq!(p.client_ip(ip("10.1.1.1"), &h), ip("10.1.1.1"));
    }

    #[test]
    fn trusted_peer_chain_is_walked_from_the_right() {
        let p = ClientIpPolicy::new(vec!["10.0.0.0/8".parse().unwrap()]);
        let peer = ip("10.0.0.2");
        // The leftmost entry is whatever the client claimed; the rightmost untrusted one is real.
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 203.0.113.7, 10.0.0.9")]);
        assert_eq!(p.client_ip(peer, &h), ip("203.0.113.7"));
        let h = headers(&[(
            "forwarded",
            "for=6.6.6.6, for=\"[2001:db8::1]:4711\";proto=https",
        )]);
        assert_eq!(p.client_ip(peer, &h), ip("2001:db8::1"));
        let h = headers(&[("x-real-ip", "198.51.100.4")]);
        assert_eq!(p.client_ip(peer, &h), ip("198.51.100.4"));
        // Forwarded wins over X-Forwarded-For, as in APM Server.
        let h = headers(&[("x-forwarded-for", "1.1.1.1"), ("forwarded", "for=2.2.2.2")]);
        assert_eq!(p.client_ip(peer, &h), ip("2.2.2.2"));
        assert_eq!(p.client_ip(peer, &headers(&[])), peer);
        let h = headers(&[("x-forwarded-for", "10.0.0.5, 10.0.0.6")]);
        assert_eq!(p.client_ip(peer, &h), ip("10.0.0.5"));
        let h = headers(&[("x-forwarded-for", "garbage")]);
        assert_eq!(p.client_ip(peer, &h), peer);
    }

    #[test]
    fn mapped_ipv4_peer_matches_ipv4_cidr() {
        let p = ClientIpPolicy::new(vec!["127.0.0.0/8".parse().unwrap()]);
        let h = headers(&[("x-forwarded-for", "192.0.2.1")]);
        assert_eq!(p.client_ip(ip("::ffff:127.0.0.1"), &h), ip("192.0.2.1"));
    }
}
