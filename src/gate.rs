//! The admission decision for one request, from its header alone: is the request well
//! formed, which endpoint is it for, who is calling, and may they. A plain function over
//! the request header and the credential store, so every rule is testable without a socket.

use std::time::SystemTime;

use pingora::http::RequestHeader;

use std::sync::Arc;

use crate::auth::client_cert::IdentityMap;
use crate::auth::{self, AuthOutcome, Authenticator, Identity};
use crate::response::Reply;
use crate::routes::{self, Endpoint};
use crate::tls::client::PeerCertificate;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Forward upstream as this caller.
    Forward(Identity),
    /// Answer here; the `&str` is a short reason for the access log.
    Reply(Reply, &'static str),
    /// Authenticated, but without the privilege the endpoint needs.
    Forbidden(Reply, Identity),
}

/// Approximate size of the request head as sent (request line + header lines).
fn head_size(req: &RequestHeader) -> usize {
    let headers: usize = req
        .headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    req.raw_path().len() + req.method.as_str().len() + 12 + headers
}

/// What the gate needs to decide.
pub struct Gate {
    pub authenticator: Arc<Authenticator>,
    pub identities: IdentityMap,
    pub max_header_size: usize,
}

impl Gate {
    /// Decide on a request from its header and the connection's verified client
    /// certificate, if any.
    pub fn decide(
        &self,
        req: &RequestHeader,
        peer_cert: Option<&PeerCertificate>,
        now: SystemTime,
    ) -> Decision {
        if head_size(req) > self.max_header_size {
            return Decision::Reply(
                Reply::error(431, "request header fields too large"),
                "header_too_large",
            );
        }
        let path = match routes::check_path(routes::path_of(req.raw_path())) {
            Ok(path) => path,
            Err(why) => {
                return Decision::Reply(
                    Reply::error(400, format!("invalid request path: {why}")),
                    "ambiguous_path",
                )
            }
        };
        let mut authorization = req.headers.get_all(http::header::AUTHORIZATION).iter();
        let header = authorization.next().map(|v| v.as_bytes());
        if authorization.next().is_some() {
            return Decision::Reply(
                Reply::error(400, "invalid request: more than one Authorization header"),
                "duplicate_authorization",
            );
        }
        let endpoint = routes::classify(path);
        if endpoint == Endpoint::NotFound {
            return Decision::Reply(Reply::not_found(), "not_found");
        }
        let certificate = peer_cert.and_then(|c| self.identities.lookup(c));
        // Who is calling: the credential, the certificate, or both. A wrong credential is
        // never ignored, even when the certificate alone would do.
        let (credential, cert_identity) =
            match (self.authenticator.authenticate(header, now), certificate) {
                (AuthOutcome::Failed(f), _) => (Err((f.message(), f.reason())), None),
                (AuthOutcome::Missing, Some(c)) if !c.require_credential => {
                    (Ok(None), Some(&c.identity))
                }
                (AuthOutcome::Missing, _) => {
                    (Err((auth::missing_message(), "missing_credentials")), None)
                }
                (AuthOutcome::Authenticated(id), c) => (Ok(Some(id)), c.map(|c| &c.identity)),
            };
        let Endpoint::Protected { action, kind } = endpoint else {
            // `GET /`: never 401. Only authenticated callers see the server's version.
            return match (credential, cert_identity) {
                (Ok(Some(identity)), _) => Decision::Forward(identity),
                (Ok(None), Some(identity)) => Decision::Forward(identity.clone()),
                _ => Decision::Reply(Reply::empty(200), "root_anonymous"),
            };
        };
        let credential = match credential {
            Ok(c) => c,
            Err((message, reason)) => return Decision::Reply(Reply::error(401, message), reason),
        };
        // Every identity involved must hold the privilege.
        for identity in credential.iter().chain(cert_identity) {
            if let Err(message) = auth::authorize(identity, action) {
                let reply = if kind.reports_stream_errors() {
                    Reply::stream_error(403, message)
                } else {
                    Reply::error(403, message)
                };
                return Decision::Forbidden(reply, identity.clone());
            }
        }
        match (credential, cert_identity) {
            (Some(identity), _) => Decision::Forward(identity),
            (None, Some(identity)) => Decision::Forward(identity.clone()),
            (None, None) => Decision::Reply(
                Reply::error(401, auth::missing_message()),
                "missing_credentials",
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn authenticator() -> Authenticator {
        let mut config = Config::parse("[auth]\nsecret_token = \"tok\"\n").unwrap();
        config.base_dir = ".".into();
        Authenticator::new(auth::CredentialStore::load(&config).unwrap())
    }

    fn req(path: &str, auth: &[&str]) -> RequestHeader {
        let mut r = RequestHeader::build("POST", path.as_bytes(), None).unwrap();
        for a in auth {
            r.append_header("Authorization", *a).unwrap();
        }
        r
    }

    fn gate(max_header_size: usize, identities: IdentityMap) -> Gate {
        Gate {
            authenticator: Arc::new(authenticator()),
            identities,
            max_header_size,
        }
    }

    fn decide_now(path: &str, auth: &[&str]) -> Decision {
        gate(1 << 20, IdentityMap::default()).decide(&req(path, auth), None, SystemTime::now())
    }

    fn status(d: &Decision) -> u16 {
        match d {
            Decision::Forward(_) => 0,
            Decision::Reply(r, _) | Decision::Forbidden(r, _) => r.status,
        }
    }

    #[test]
    fn client_certificates_as_credentials() {
        use crate::config::ClientIdentityConfig;
        let cert = PeerCertificate {
            sha256: [1; 32],
            subject_cn: Some("agent-1".into()),
            san_dns: vec!["agent-1.example".into()],
            san_uri: vec![],
        };
        let id =
            |name: &str, cn: &str, privileges: &[&str], require_credential| ClientIdentityConfig {
                name: name.into(),
                sha256: None,
                subject_cn: Some(cn.into()),
                san_dns: None,
                san_uri: None,
                privileges: privileges.iter().map(|s| s.to_string()).collect(),
                require_credential,
            };
        let alone = gate(
            1 << 20,
            IdentityMap::from_config(&[id("a", "agent-1", &["event:write"], false)]).unwrap(),
        );
        let now = SystemTime::now();
        assert!(matches!(
            alone.decide(&req("/intake/v2/events", &[]), Some(&cert), now),
            Decision::Forward(Identity::ClientCert { .. })
        ));
        assert_eq!(
            status(&alone.decide(&req("/config/v1/agents", &[]), Some(&cert), now)),
            403
        );
        assert_eq!(
            status(&alone.decide(
                &req("/intake/v2/events", &["Bearer wrong"]),
                Some(&cert),
                now
            )),
            401
        );
        assert_eq!(
            status(&alone.decide(&req("/intake/v2/events", &[]), None, now)),
            401
        );
        let second_factor = gate(
            1 << 20,
            IdentityMap::from_config(&[id("b", "agent-1", &["event:write"], true)]).unwrap(),
        );
        assert_eq!(
            status(&second_factor.decide(&req("/intake/v2/events", &[]), Some(&cert), now)),
            401
        );
        assert_eq!(
            status(&second_factor.decide(
                &req("/intake/v2/events", &["Bearer tok"]),
                Some(&cert),
                now
            )),
            0
        );
        // The token could, the certificate may not: both must hold the privilege.
        assert_eq!(
            status(&second_factor.decide(
                &req("/config/v1/agents", &["Bearer tok"]),
                Some(&cert),
                now
            )),
            403
        );
        let other = PeerCertificate {
            subject_cn: Some("agent-2".into()),
            ..cert.clone()
        };
        assert_eq!(
            status(&alone.decide(&req("/intake/v2/events", &[]), Some(&other), now)),
            401
        );
    }

    #[test]
    fn order_of_checks() {
        assert_eq!(status(&decide_now("/intake/v2/events", &["Bearer tok"])), 0);
        assert_eq!(
            status(&decide_now("/intake/v2/events", &["Bearer no"])),
            401
        );
        assert_eq!(status(&decide_now("/intake/v2/events", &[])), 401);
        assert_eq!(
            status(&decide_now(
                "/intake/v2/events",
                &["Bearer tok", "Bearer tok"]
            )),
            400
        );
        assert_eq!(
            status(&decide_now("/intake/v2/../v2/events", &["Bearer tok"])),
            400
        );
        assert_eq!(status(&decide_now("/debug/pprof/", &["Bearer tok"])), 404);
        assert_eq!(status(&decide_now("/", &["Bearer no"])), 200);
        assert_eq!(status(&decide_now("/", &["Bearer tok"])), 0);
        assert_eq!(status(&decide_now("/?x=%2e", &["Bearer tok"])), 0);
    }

    #[test]
    fn oversized_head_is_refused() {
        let mut r = req("/intake/v2/events", &["Bearer tok"]);
        r.insert_header("x-big", "a".repeat(2000)).unwrap();
        let d = gate(1000, IdentityMap::default()).decide(&r, None, SystemTime::now());
        assert_eq!(status(&d), 431);
    }
}
