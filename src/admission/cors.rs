//! CORS for the RUM endpoints, as APM Server answers it (`cors_middleware.go`): origins are
//! glob patterns (`*` matches any run of characters, as ryanuber/go-glob does), preflights
//! are answered by the proxy, a disallowed origin gets 403 before any auth.

use http::header::{
    HeaderName, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE,
    CONTENT_LENGTH, VARY,
};

/// ryanuber/go-glob's `Glob`, ported exactly: APM Server matches `rum.allow_origins` with it.
pub fn glob(pattern: &str, subject: &str) -> bool {
    if pattern.is_empty() {
        return subject.is_empty();
    }
    if pattern == "*" {
        return true;
    }
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return subject == pattern;
    }
    let leading = pattern.starts_with('*');
    let trailing = pattern.ends_with('*');
    let end = parts.len() - 1;
    let mut rest = subject;
    for (i, part) in parts[..end].iter().enumerate() {
        let Some(idx) = rest.find(part) else {
            return false;
        };
        if i == 0 && !leading && idx != 0 {
            return false;
        }
        rest = &rest[idx + part.len()..];
    }
    trailing || rest.ends_with(parts[end])
}

#[derive(Debug, Clone)]
pub struct CorsPolicy {
    origins: Vec<String>,
    /// `Access-Control-Allow-Headers` value, built once.
    allow_headers: String,
}

impl Default for CorsPolicy {
    fn default() -> Self {
        CorsPolicy::new(vec!["*".to_string()], &[])
    }
}

impl CorsPolicy {
    pub fn new(origins: Vec<String>, extra_headers: &[String]) -> Self {
        let mut headers: Vec<&str> = extra_headers.iter().map(String::as_str).collect();
        headers.extend(["Content-Type", "Content-Encoding", "Accept"]);
        CorsPolicy {
            origins,
            allow_headers: headers.join(", "),
        }
    }

    /// Is a request with this `Origin` (absent = empty) allowed?
    pub fn allows(&self, origin: Option<&str>) -> bool {
        let origin = origin.unwrap_or("");
        self.origins.iter().any(|p| glob(p, origin))
    }

    /// Headers of the 200 answer to an `OPTIONS` preflight (no body).
    pub fn preflight_headers(&self, origin: Option<&str>) -> Vec<(HeaderName, String)> {
        let mut h = Vec::with_capacity(7);
        if let Some(o) = origin.filter(|o| self.allows(Some(o))) {
            h.push((ACCESS_CONTROL_ALLOW_ORIGIN, o.to_string()));
        }
        h.extend([
            (ACCESS_CONTROL_MAX_AGE, "3600".to_string()),
            (VARY, "Origin".to_string()),
            (ACCESS_CONTROL_ALLOW_METHODS, "POST, OPTIONS".to_string()),
            (ACCESS_CONTROL_ALLOW_HEADERS, self.allow_headers.clone()),
            (ACCESS_CONTROL_EXPOSE_HEADERS, "Etag".to_string()),
            (CONTENT_LENGTH, "0".to_string()),
        ]);
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cases from ryanuber/go-glob's own tests.
    #[test]
    fn go_glob_semantics() {
        assert!(glob("*", ""));
        assert!(glob("*", "anything"));
        assert!(glob("", ""));
        assert!(!glob("", "x"));
        assert!(glob("https://*.example.com", "https://app.example.com"));
        assert!(!glob("https://*.example.com", "http://app.example.com"));
        assert!(!glob(
            "https://*.example.com",
            "https://app.example.com.evil"
        ));
        assert!(glob("*.example.com", "https://x.example.com"));
        assert!(glob("https://*", "https://anything"));
        assert!(glob("a*b*c", "aXXbYYc"));
        assert!(!glob("a*b*c", "aXXcYYb"));
        assert!(glob("exact", "exact"));
        assert!(!glob("exact", "exactly"));
        assert!(glob("*test", "this is a test"));
        assert!(!glob("*test", "this is a test!"));
    }

    #[test]
    fn policy() {
        let p = CorsPolicy::new(
            vec!["https://*.shop.example".into()],
            &["stick".into(), "door".into()],
        );
        assert!(p.allows(Some("https://www.shop.example")));
        assert!(!p.allows(Some("https://evil.example")));
        assert!(!p.allows(None), "a missing Origin only matches `*`");
        assert!(CorsPolicy::default().allows(None));
        let h = p.preflight_headers(Some("https://www.shop.example"));
        assert_eq!(
            h[0],
            (
                ACCESS_CONTROL_ALLOW_ORIGIN,
                "https://www.shop.example".to_string()
            )
        );
        assert!(h.contains(&(
            ACCESS_CONTROL_ALLOW_HEADERS,
            "stick, door, Content-Type, Content-Encoding, Accept".to_string()
        )));
        assert!(!p
            .preflight_headers(Some("https://evil.example"))
            .iter()
            .any(|(k, _)| *k == ACCESS_CONTROL_ALLOW_ORIGIN));
    }
}
