//! The request headers the upstream sees. The client's credential and every header that
//! could impersonate the proxy's own view of the request (client address, scheme, client
//! certificate) are removed; the proxy's forwarding headers and, when configured, its own
//! upstream credential are added.

use std::net::IpAddr;

use http::header::{HeaderName, HeaderValue, AUTHORIZATION, FORWARDED, PROXY_AUTHORIZATION};
use pingora::http::RequestHeader;

/// Whether the client's copy of `name` is dropped: its credential; the headers other proxies
/// use to pass a client certificate on (from a client, an impersonation attempt); the
/// headers that carry a client address or scheme, which the proxy writes itself.
/// `X-Forwarded-Host` is kept from a trusted proxy: it names the host the client asked that
/// proxy for, which the proxy cannot know itself.
fn is_dropped(name: &HeaderName, from_trusted_proxy: bool) -> bool {
    if from_trusted_proxy && name.as_str() == "x-forwarded-host" {
        return false;
    }
    *name == AUTHORIZATION
        || *name == PROXY_AUTHORIZATION
        || *name == FORWARDED
        || matches!(
            name.as_str(),
            // A protocol switch (WebSocket, h2c) is never asked of the upstream for a client.
            "upgrade"
                | "http2-settings"
                | "x-real-ip"
                | "x-forwarded-for"
                | "x-forwarded-proto"
                | "x-forwarded-host"
                | "x-forwarded-client-cert"
                | "x-client-cert"
                | "x-client-verify"
                | "x-client-dn"
                | "x-ssl-client-cert"
                | "x-ssl-client-dn"
                | "x-ssl-client-verify"
                | "ssl-client-cert"
        )
}

/// Rewrite `req` for the upstream: `client` and `scheme` as the proxy saw them, and
/// `upstream_authorization` (the proxy's own credential) in place of the client's.
/// `from_trusted_proxy`: the TCP peer is in `client_ip.trusted_proxies`.
pub fn rewrite(
    req: &mut RequestHeader,
    client: IpAddr,
    scheme: &'static str,
    upstream_authorization: Option<&HeaderValue>,
    from_trusted_proxy: bool,
) -> pingora::Result<()> {
    // A request has a handful of headers: a scan per removal is cheaper than looking up
    // (parsing, hashing) each of fifteen names that are almost never there.
    while let Some(name) = req
        .headers
        .keys()
        .find(|n| is_dropped(n, from_trusted_proxy))
        .cloned()
    {
        req.remove_header(&name);
    }
    if let Some(token) = upstream_authorization {
        req.insert_header(AUTHORIZATION, token.clone())?;
    }
    let ip = client.to_string();
    let forwarded = match client {
        IpAddr::V4(_) => format!("for={ip};proto={scheme}"),
        IpAddr::V6(_) => format!("for=\"[{ip}]\";proto={scheme}"),
    };
    req.insert_header("x-forwarded-for", &ip)?;
    req.insert_header("x-real-ip", &ip)?;
    req.insert_header("forwarded", forwarded)?;
    req.insert_header("x-forwarded-proto", scheme)?;
    Ok(())
}

/// A request going to the upstream over h2c: its `:scheme` becomes `http` (the client's was
/// `https`, to the proxy), its authority stays the one the client named.
pub fn to_h2c(req: &mut RequestHeader) {
    let mut parts = req.uri.clone().into_parts();
    if parts.authority.is_none() {
        return;
    }
    parts.scheme = Some(http::uri::Scheme::HTTP);
    if let Ok(uri) = http::Uri::from_parts(parts) {
        req.set_uri(uri);
    }
}

/// The host a request names (`:authority` or `Host`), without its port, lower-case.
pub fn request_host(req: &RequestHeader) -> Option<String> {
    let authority = match req.uri.authority() {
        Some(a) => a.clone(),
        None => req
            .headers
            .get(http::header::HOST)?
            .to_str()
            .ok()?
            .parse::<http::uri::Authority>()
            .ok()?,
    };
    let host = authority.host();
    Some(
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)]) -> RequestHeader {
        let mut req = RequestHeader::build("POST", b"/intake/v2/events", None).unwrap();
        for (k, v) in headers {
            req.append_header(k.to_string(), *v).unwrap();
        }
        req
    }

    #[test]
    fn credentials_and_impersonation_headers_are_removed_in_any_case() {
        let mut req = request(&[
            ("Host", "apm"),
            ("Authorization", "Bearer secret"),
            ("authorization", "ApiKey second"),
            ("Proxy-Authorization", "Basic x"),
            ("X-Forwarded-Client-Cert", "Hash=abc"),
            ("X-SSL-Client-DN", "CN=admin"),
            ("ssl-client-cert", "pem"),
            ("X-Forwarded-Host", "evil.example"),
            ("Upgrade", "h2c"),
            ("HTTP2-Settings", "AAMAAABkAAQAAP__"),
            ("Content-Type", "application/x-ndjson"),
        ]);
        rewrite(&mut req, "192.0.2.7".parse().unwrap(), "https", None, false).unwrap();
        let names: Vec<&str> = req.headers.keys().map(|n| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "host",
                "content-type",
                "x-forwarded-for",
                "x-real-ip",
                "forwarded",
                "x-forwarded-proto"
            ]
        );
        let mut wire = Vec::new();
        req.header_to_h1_wire(&mut wire);
        let wire = String::from_utf8(wire).unwrap();
        assert!(!wire.to_ascii_lowercase().contains("secret"), "{wire}");
        assert!(
            !wire.contains("CN=admin") && !wire.contains("evil"),
            "{wire}"
        );
    }

    #[test]
    fn forwarding_headers_are_replaced_with_the_proxys_view() {
        let mut req = request(&[
            ("X-Forwarded-For", "6.6.6.6"),
            ("X-Forwarded-For", "7.7.7.7"),
            ("Forwarded", "for=6.6.6.6"),
            ("X-Real-IP", "6.6.6.6"),
            ("X-Forwarded-Proto", "http"),
        ]);
        rewrite(
            &mut req,
            "2001:db8::2".parse().unwrap(),
            "https",
            None,
            false,
        )
        .unwrap();
        let h = &req.headers;
        assert_eq!(h.get_all("x-forwarded-for").iter().count(), 1);
        assert_eq!(h.get("x-forwarded-for").unwrap(), "2001:db8::2");
        assert_eq!(h.get("x-real-ip").unwrap(), "2001:db8::2");
        assert_eq!(
            h.get("forwarded").unwrap(),
            "for=\"[2001:db8::2]\";proto=https"
        );
        assert_eq!(h.get("x-forwarded-proto").unwrap(), "https");
        rewrite(&mut req, "192.0.2.1".parse().unwrap(), "http", None, false).unwrap();
        assert_eq!(
            req.headers.get("forwarded").unwrap(),
            "for=192.0.2.1;proto=http"
        );
    }

    #[test]
    fn the_upstream_credential_replaces_the_clients() {
        let mut req = request(&[("Authorization", "Bearer client")]);
        let token = HeaderValue::from_static("Bearer upstream");
        rewrite(
            &mut req,
            "192.0.2.1".parse().unwrap(),
            "https",
            Some(&token),
            false,
        )
        .unwrap();
        let all: Vec<_> = req.headers.get_all(AUTHORIZATION).iter().collect();
        assert_eq!(all, [&token]);
    }

    #[test]
    fn forwarded_host_is_kept_only_from_a_trusted_proxy() {
        let headers = [("X-Forwarded-Host", "apm.example.com")];
        let mut trusted = request(&headers);
        rewrite(
            &mut trusted,
            "192.0.2.1".parse().unwrap(),
            "https",
            None,
            true,
        )
        .unwrap();
        assert_eq!(
            trusted.headers.get("x-forwarded-host").unwrap(),
            "apm.example.com"
        );
        let mut untrusted = request(&headers);
        rewrite(
            &mut untrusted,
            "192.0.2.1".parse().unwrap(),
            "https",
            None,
            false,
        )
        .unwrap();
        assert!(untrusted.headers.get("x-forwarded-host").is_none());
    }

    #[test]
    fn h2c_requests_name_the_http_scheme_and_keep_the_authority() {
        let mut req = RequestHeader::build("POST", b"/a.B/C", None).unwrap();
        req.set_uri("https://apm.example:8200/a.B/C?x=1".parse().unwrap());
        to_h2c(&mut req);
        assert_eq!(req.uri.to_string(), "http://apm.example:8200/a.B/C?x=1");
        let mut plain = request(&[]);
        to_h2c(&mut plain);
        assert_eq!(plain.uri.to_string(), "/intake/v2/events");
    }
}
