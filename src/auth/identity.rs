//! Who a request authenticated as, what authentication found, and authorization.

use std::sync::Arc;

use super::privileges::{Action, Privileges};
use crate::credential::CredentialKind;
use crate::limits::{CredentialKey, RateSpec};

/// Who a request authenticated as. Carries names, never secrets, so it is safe to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    SecretToken {
        name: Arc<str>,
        /// The only upstream pool it may reach.
        upstream: Option<Arc<str>>,
        /// Its own rate limit.
        rate_limit: Option<RateSpec>,
    },
    ApiKey {
        id: Arc<str>,
        name: Arc<str>,
        privileges: Privileges,
        services: Arc<[String]>,
        /// The only upstream pool it may reach.
        upstream: Option<Arc<str>>,
        /// Its own rate limit.
        rate_limit: Option<RateSpec>,
    },
    /// A verified client certificate mapped by `ssl.client_identities`.
    ClientCert {
        name: Arc<str>,
        privileges: Privileges,
    },
    /// A verified token of an `[[auth.jwt]]` issuer.
    Jwt {
        /// `<issuer name>/<subject>`: its name in usage, logs and rate-limit buckets.
        name: Arc<str>,
        /// The claim the issuer names callers by (`sub` by default).
        subject: Arc<str>,
        privileges: Privileges,
        /// The services it may send data for (empty: any), as a service-bound key's.
        services: Arc<[String]>,
        upstream: Option<Arc<str>>,
        rate_limit: Option<RateSpec>,
    },
    /// No credential, on an endpoint open to anonymous callers (`auth.anonymous`).
    Anonymous,
}

impl Identity {
    /// The credential's kind and its name (a token's or certificate identity's name, an API
    /// key's id); `None` for anonymous callers.
    pub fn credential(&self) -> Option<(CredentialKind, &Arc<str>)> {
        match self {
            Identity::SecretToken { name, .. } => Some((CredentialKind::Token, name)),
            Identity::ApiKey { id, .. } => Some((CredentialKind::ApiKey, id)),
            Identity::ClientCert { name, .. } => Some((CredentialKind::ClientCert, name)),
            Identity::Jwt { name, .. } => Some((CredentialKind::Jwt, name)),
            Identity::Anonymous => None,
        }
    }

    /// The credential's human name: a token's or certificate identity's name, an API key's
    /// `--name` (its id is in [`Identity::credential`]); `None` for anonymous callers.
    pub fn display_name(&self) -> Option<&str> {
        match self {
            Identity::SecretToken { name, .. }
            | Identity::ApiKey { name, .. }
            | Identity::ClientCert { name, .. } => Some(name),
            Identity::Jwt { subject, .. } => Some(subject),
            Identity::Anonymous => None,
        }
    }

    /// The services a credential bound to services may send data for (empty: not bound).
    pub fn services(&self) -> &[String] {
        match self {
            Identity::ApiKey { services, .. } | Identity::Jwt { services, .. } => services,
            _ => &[],
        }
    }

    /// The upstream pool the credential is bound to, if any.
    pub fn upstream(&self) -> Option<&str> {
        match self {
            Identity::SecretToken { upstream, .. }
            | Identity::ApiKey { upstream, .. }
            | Identity::Jwt { upstream, .. } => upstream.as_deref(),
            _ => None,
        }
    }

    /// The credential's own rate limit, with the key its bucket is kept under.
    pub fn rate_limit(&self) -> Option<(CredentialKey, RateSpec)> {
        match self {
            Identity::SecretToken {
                name,
                rate_limit: Some(spec),
                ..
            } => Some(((CredentialKind::Token, name.clone()), *spec)),
            Identity::ApiKey {
                id,
                rate_limit: Some(spec),
                ..
            } => Some(((CredentialKind::ApiKey, id.clone()), *spec)),
            Identity::Jwt {
                name,
                rate_limit: Some(spec),
                ..
            } => Some(((CredentialKind::Jwt, name.clone()), *spec)),
            _ => None,
        }
    }

    pub fn privileges(&self) -> Privileges {
        match self {
            // A secret token grants every action, as in APM Server.
            Identity::SecretToken { .. } => Privileges::ALL,
            Identity::ApiKey { privileges, .. }
            | Identity::ClientCert { privileges, .. }
            | Identity::Jwt { privileges, .. } => *privileges,
            Identity::Anonymous => Privileges::ANONYMOUS,
        }
    }
}

/// The result of authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthOutcome {
    Authenticated(Identity),
    /// No usable `Authorization` header (absent or malformed): anonymous in APM terms.
    Missing,
    Failed(AuthFailure),
    /// A known API key presented with a wrong (or past its rotation grace), expired or revoked
    /// secret: refused exactly as [`AuthFailure::InvalidCredentials`], but the key is named in
    /// the log and its usage (the id is not a secret; unknown ids are never recorded).
    KeyRefused(Identity),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthFailure {
    UnknownScheme(String),
    /// Wrong, unknown, expired or revoked credential, or a scheme that is not enabled.
    /// Deliberately one variant: the client must not learn which.
    InvalidCredentials,
    BadApiKeyEncoding {
        go_offset: usize,
    },
    BadApiKeyFormat,
    /// A JWT refused by the issuers (the same 401 as a wrong token; the reason is logged).
    Jwt(JwtRefusal),
}

/// Why a token was refused: one 401 for all of them (the client learns nothing), the reason
/// in the log and the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtRefusal {
    TooLarge,
    Malformed,
    /// `none`, HMAC, or an algorithm the issuer does not accept.
    Algorithm,
    /// A `crit` header: an extension the proxy would have to understand.
    Critical,
    UnknownIssuer,
    /// The issuer's keys were never fetched.
    NoKeys,
    /// No key with the token's `kid` (the keys are fetched again soon).
    UnknownKey,
    Signature,
    Expired,
    NotYetValid,
    Audience,
    MissingExpiry,
    /// Valid for longer than the issuer's `max_lifetime`.
    Lifetime,
    /// A required claim missing or different, or a claim the mapping needs missing.
    Claim,
}

impl JwtRefusal {
    /// For people (`jwt verify`), never for the client.
    pub fn explain(self) -> &'static str {
        use JwtRefusal::*;
        match self {
            TooLarge => "the token is larger than 16 KiB",
            Malformed => "not a JWT (three base64url parts of JSON and a signature)",
            Algorithm => "its algorithm is none, HMAC, or not among the issuer's algorithms",
            Critical => "it has a crit header, an extension the proxy does not understand",
            UnknownIssuer => "its iss is no configured issuer",
            NoKeys => "the issuer's keys were never fetched",
            UnknownKey => "no key of the issuer has its kid (the keys are fetched again soon)",
            Signature => "the signature does not verify with the issuer's key",
            Expired => "it has expired (exp, with the leeway)",
            NotYetValid => "it is not valid yet (nbf, with the leeway)",
            Audience => "its aud holds none of the issuer's audiences",
            MissingExpiry => "it has no exp",
            Lifetime => "it is valid for longer than the issuer's max_lifetime",
            Claim => {
                "a required claim is missing or different, or a claim the mapping needs is missing"
            }
        }
    }

    /// The rejection's label (`requests_total{reason}`, `event.reason`).
    pub fn label(self) -> &'static str {
        use JwtRefusal::*;
        match self {
            TooLarge => "jwt_too_large",
            Malformed => "jwt_malformed",
            Algorithm => "jwt_algorithm",
            Critical => "jwt_critical_header",
            UnknownIssuer => "jwt_unknown_issuer",
            NoKeys => "jwt_no_keys",
            UnknownKey => "jwt_unknown_key",
            Signature => "jwt_signature",
            Expired => "jwt_expired",
            NotYetValid => "jwt_not_yet_valid",
            Audience => "jwt_audience",
            MissingExpiry => "jwt_missing_exp",
            Lifetime => "jwt_lifetime",
            Claim => "jwt_claim",
        }
    }
}

/// An identity that lacks the privilege for an action (APM Server's 403).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActionRefused {
    pub caller: CallerKind,
    pub action: Action,
}

/// What kind of caller was refused: APM Server words its 403 by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallerKind {
    ApiKey,
    ClientCert,
    Jwt,
    Anonymous,
}

/// May `identity` perform `action`?
pub fn authorize(identity: &Identity, action: Action) -> Result<(), ActionRefused> {
    if identity.privileges().allows(action) {
        return Ok(());
    }
    let caller = match identity {
        Identity::ClientCert { .. } => CallerKind::ClientCert,
        Identity::Jwt { .. } => CallerKind::Jwt,
        Identity::Anonymous => CallerKind::Anonymous,
        _ => CallerKind::ApiKey,
    };
    Err(ActionRefused { caller, action })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jwt_identity_is_limited_bound_and_named_like_a_key() {
        let spec: RateSpec = "10 requests/s".parse().unwrap();
        let jwt = Identity::Jwt {
            name: "idp/alice".into(),
            subject: "alice".into(),
            privileges: Privileges::parse_list(&["event:write"]).unwrap(),
            services: Arc::from(vec!["shop".to_string()]),
            upstream: Some("team-a".into()),
            rate_limit: Some(spec),
        };
        assert_eq!(
            jwt.rate_limit(),
            Some(((CredentialKind::Jwt, Arc::from("idp/alice")), spec))
        );
        assert_eq!(jwt.services(), ["shop".to_string()]);
        assert_eq!(jwt.upstream(), Some("team-a"));
        assert_eq!(jwt.display_name(), Some("alice"));
        assert!(authorize(&jwt, Action::EventWrite).is_ok());
        assert_eq!(
            authorize(&jwt, Action::SourcemapWrite),
            Err(ActionRefused {
                caller: CallerKind::Jwt,
                action: Action::SourcemapWrite
            })
        );
    }
}
