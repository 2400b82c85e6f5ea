//! One access-log line per request: method, path (never the query), status, client IP, the
//! credential's *name* (never a secret), the rejection's label, bytes and duration.

use std::net::IpAddr;
use std::time::Instant;

use pingora::proxy::Session;
use pingora::Error;

use crate::admission::{path_of, Rejection};
use crate::auth::Identity;

pub struct Entry<'a> {
    pub started: Instant,
    pub client_ip: IpAddr,
    pub identity: Option<&'a Identity>,
    pub rejection: Option<&'a Rejection>,
}

pub fn write(session: &Session, e: Option<&Error>, entry: Entry<'_>) {
    let req = session.req_header();
    let status = session.response_written().map_or(0, |r| r.status.as_u16());
    tracing::info!(
        target: "access",
        method = %req.method,
        // Debug-quoted: a hostile path cannot forge log lines.
        path = ?String::from_utf8_lossy(path_of(req.raw_path())),
        status,
        client_ip = %entry.client_ip,
        credential = %CredentialLabel(entry.identity),
        rejection = entry.rejection.map_or("-", Rejection::label),
        bytes_in = session.body_bytes_read(),
        bytes_out = session.body_bytes_sent(),
        duration_ms = entry.started.elapsed().as_secs_f64() * 1000.0,
        error = e.map(|e| e.etype().as_str()).unwrap_or("-"),
    );
}

/// `token:<name>`, `api_key:<id>`, `client_cert:<name>`, `anonymous` or `-`, written
/// straight into the log line (no per-request allocation).
pub struct CredentialLabel<'a>(pub Option<&'a Identity>);

impl std::fmt::Display for CredentialLabel<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            None => f.write_str("-"),
            Some(Identity::SecretToken { name }) => write!(f, "token:{name}"),
            Some(Identity::ApiKey { id, .. }) => write!(f, "api_key:{id}"),
            Some(Identity::ClientCert { name, .. }) => write!(f, "client_cert:{name}"),
            Some(Identity::Anonymous) => f.write_str("anonymous"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_name_the_credential_never_its_secret() {
        let key = Identity::ApiKey {
            id: "k1".into(),
            name: "shop".into(),
            privileges: crate::auth::Privileges::ALL,
            services: std::sync::Arc::from(Vec::new()),
        };
        assert_eq!(CredentialLabel(Some(&key)).to_string(), "api_key:k1");
        let token = Identity::SecretToken { name: "ci".into() };
        assert_eq!(CredentialLabel(Some(&token)).to_string(), "token:ci");
        assert_eq!(CredentialLabel(None).to_string(), "-");
    }
}
