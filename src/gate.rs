//! The admission decision for one request, from its header alone: is the request well
//! formed, which endpoint is it for, who is calling, and may they. A plain function over
//! the request header and the credential store, so every rule is testable without a socket.

use std::time::SystemTime;

use pingora::http::RequestHeader;

use crate::auth::{self, AuthOutcome, Authenticator, Identity};
use crate::response::Reply;
use crate::routes::{self, Endpoint};

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

pub fn decide(
    authenticator: &Authenticator,
    req: &RequestHeader,
    max_header_size: usize,
    now: SystemTime,
) -> Decision {
    if head_size(req) > max_header_size {
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
    let outcome = authenticator.authenticate(header, now);
    let Endpoint::Protected { action, kind } = endpoint else {
        // `GET /`: never 401. Only authenticated callers see the server's version.
        return match outcome {
            AuthOutcome::Authenticated(identity) => Decision::Forward(identity),
            _ => Decision::Reply(Reply::empty(200), "root_anonymous"),
        };
    };
    match outcome {
        AuthOutcome::Missing => Decision::Reply(
            Reply::error(401, auth::missing_message()),
            "missing_credentials",
        ),
        AuthOutcome::Failed(failure) => {
            Decision::Reply(Reply::error(401, failure.message()), failure.reason())
        }
        AuthOutcome::Authenticated(identity) => match auth::authorize(&identity, action) {
            Ok(()) => Decision::Forward(identity),
            Err(message) if kind.reports_stream_errors() => {
                Decision::Forbidden(Reply::stream_error(403, message), identity)
            }
            Err(message) => Decision::Forbidden(Reply::error(403, message), identity),
        },
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

    fn decide_now(path: &str, auth: &[&str]) -> Decision {
        decide(
            &authenticator(),
            &req(path, auth),
            1 << 20,
            SystemTime::now(),
        )
    }

    fn status(d: &Decision) -> u16 {
        match d {
            Decision::Forward(_) => 0,
            Decision::Reply(r, _) | Decision::Forbidden(r, _) => r.status,
        }
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
        let d = decide(&authenticator(), &r, 1000, SystemTime::now());
        assert_eq!(status(&d), 431);
    }
}
