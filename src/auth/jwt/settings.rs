//! `[[auth.jwt]]` as typed settings: where each issuer's keys come from, which algorithms
//! and claims it accepts, and how a verified token maps to privileges, services, a pool, a
//! rate limit and a name.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use jsonwebtoken::Algorithm;

use crate::auth::privileges::Privileges;
use crate::config::{JwtIssuerConfig, Problem, Problems};
use crate::limits::RateSpec;

/// Tokens larger than this are refused unread (headers and claims of real tokens are a few
/// hundred bytes to a few KiB).
pub const MAX_TOKEN_SIZE: usize = 16 * 1024;

/// Where an issuer's keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    File(PathBuf),
    Url(String),
    /// `<issuer>/.well-known/openid-configuration`, then its `jwks_uri`.
    Discovery(String),
}

#[derive(Debug, Clone)]
pub struct IssuerSettings {
    pub name: String,
    pub issuer: String,
    pub audiences: Vec<String>,
    pub keys: KeySource,
    pub ca_file: Option<PathBuf>,
    pub fetch_token_file: Option<PathBuf>,
    pub refresh_interval: Duration,
    pub min_refresh_interval: Duration,
    pub algorithms: Vec<Algorithm>,
    pub leeway: Duration,
    pub max_lifetime: Duration,
    /// (dotted claim path, required value)
    pub required_claims: Vec<(String, String)>,
    /// Granted, or the most a `privileges_claim` can grant.
    pub privileges: Privileges,
    pub privileges_claim: Option<String>,
    pub services_claim: Option<String>,
    pub upstream: Option<String>,
    pub upstream_claim: Option<String>,
    pub rate_limit: Option<RateSpec>,
    pub name_claim: String,
}

/// Asymmetric algorithms only: an HMAC key would be the public key itself (key confusion),
/// and `none` is no signature.
fn algorithm(name: &str) -> Result<Algorithm, String> {
    use Algorithm::*;
    Ok(match name {
        "RS256" => RS256,
        "RS384" => RS384,
        "RS512" => RS512,
        "PS256" => PS256,
        "PS384" => PS384,
        "PS512" => PS512,
        "ES256" => ES256,
        "ES384" => ES384,
        "EdDSA" => EdDSA,
        "HS256" | "HS384" | "HS512" | "none" => {
            return Err(format!(
                "{name:?} is refused: only asymmetric signatures (RS*, PS*, ES256/384, EdDSA) \
                 can be checked without sharing a secret"
            ))
        }
        other => return Err(format!("unknown algorithm {other:?}")),
    })
}

/// Keys are fetched over HTTPS; plain HTTP only from this machine (a test identity
/// provider, a local agent).
fn fetch_url(key: &str, url: &str) -> Result<String, Problem> {
    let parsed = url
        .parse::<http::Uri>()
        .map_err(|e| Problem::new(key, format!("{url:?} is not a URL: {e}")))?;
    let loopback = matches!(
        parsed.host(),
        Some("localhost" | "127.0.0.1" | "[::1]" | "::1")
    );
    match parsed.scheme_str() {
        Some("https") => Ok(url.to_string()),
        Some("http") if loopback => Ok(url.to_string()),
        _ => Err(Problem::new(
            key,
            format!("{url:?}: keys are fetched over https (http only from localhost)"),
        )),
    }
}

impl IssuerSettings {
    fn from_config(c: &JwtIssuerConfig, key: &str) -> Result<IssuerSettings, Problems> {
        let mut problems = Problems::default();
        if c.name.trim().is_empty() || c.name.contains('/') {
            problems.add(
                format!("{key}.name"),
                "must be a non-empty name without '/'",
            );
        }
        if c.issuer.trim().is_empty() {
            problems.add(format!("{key}.issuer"), "must not be empty");
        }
        let keys = match (&c.jwks_file, &c.jwks_url, c.discovery) {
            (Some(f), None, false) => Some(KeySource::File(f.clone())),
            (None, Some(u), false) => problems
                .take(fetch_url(&format!("{key}.jwks_url"), u))
                .map(KeySource::Url),
            (None, None, true) => problems
                .take(fetch_url(&format!("{key}.issuer"), &c.issuer))
                .map(|_| KeySource::Discovery(c.issuer.trim_end_matches('/').to_string())),
            _ => {
                problems.add(
                    key,
                    "set exactly one of jwks_file, jwks_url or discovery = true",
                );
                None
            }
        };
        let mut algorithms = Vec::new();
        for (i, name) in c.algorithms.iter().enumerate() {
            match algorithm(name) {
                Ok(a) if !algorithms.contains(&a) => algorithms.push(a),
                Ok(_) => {}
                Err(e) => problems.add(format!("{key}.algorithms[{i}]"), e),
            }
        }
        if algorithms.is_empty() && !c.algorithms.is_empty() {
            // reported above
        } else if algorithms.is_empty() {
            problems.add(
                format!("{key}.algorithms"),
                "must name at least one algorithm",
            );
        }
        let privileges = problems.take(
            Privileges::parse_list(&c.privileges)
                .map_err(|e| Problem::new(format!("{key}.privileges"), e.to_string())),
        );
        let rate_limit = problems.take(RateSpec::setting(
            &format!("{key}.rate_limit"),
            c.rate_limit.as_deref(),
        ));
        if c.upstream.is_some() && c.upstream_claim.is_some() {
            problems.add(key, "set upstream or upstream_claim, not both");
        }
        let refresh_interval =
            problems.nonzero(&format!("{key}.refresh_interval"), c.refresh_interval);
        let min_refresh_interval = problems.nonzero(
            &format!("{key}.min_refresh_interval"),
            c.min_refresh_interval,
        );
        let max_lifetime = problems.nonzero(&format!("{key}.max_lifetime"), c.max_lifetime);
        problems.finish(|| IssuerSettings {
            name: c.name.clone(),
            issuer: c.issuer.clone(),
            audiences: c.audiences.clone(),
            keys: keys.unwrap_or(KeySource::File(PathBuf::new())),
            ca_file: c.ca_file.clone(),
            fetch_token_file: c.fetch_token_file.clone(),
            refresh_interval,
            min_refresh_interval,
            algorithms,
            leeway: c.leeway.0,
            max_lifetime,
            required_claims: c.required_claims.clone().into_iter().collect(),
            privileges: privileges.unwrap_or_default(),
            privileges_claim: c.privileges_claim.clone(),
            services_claim: c.services_claim.clone(),
            upstream: c.upstream.clone(),
            upstream_claim: c.upstream_claim.clone(),
            rate_limit: rate_limit.flatten(),
            name_claim: c.name_claim.clone(),
        })
    }
}

/// Every `[[auth.jwt]]`, checked: names and issuers unique.
pub fn issuers(configs: &[JwtIssuerConfig]) -> Result<Vec<IssuerSettings>, Problems> {
    let mut problems = Problems::default();
    let (mut names, mut iss) = (HashSet::new(), HashSet::new());
    let mut out = Vec::new();
    for (i, c) in configs.iter().enumerate() {
        let key = format!("auth.jwt[{i}]");
        if !names.insert(c.name.as_str()) {
            problems.add(
                format!("{key}.name"),
                format!("duplicate issuer name {:?}", c.name),
            );
        }
        if !iss.insert(c.issuer.as_str()) {
            problems.add(
                format!("{key}.issuer"),
                format!("duplicate issuer {:?}", c.issuer),
            );
        }
        if let Some(s) = problems.take(IssuerSettings::from_config(c, &key)) {
            out.push(s);
        }
    }
    problems.finish(|| out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigFile;

    fn parse(extra: &str) -> Result<Vec<IssuerSettings>, String> {
        let text =
            format!("[[auth.jwt]]\nname = \"idp\"\nissuer = \"https://idp.example.com\"\n{extra}");
        let file = ConfigFile::parse(&text).map_err(|e| e.to_string())?;
        issuers(&file.auth.jwt).map_err(|p| p.to_string())
    }

    #[test]
    fn one_key_source_and_asymmetric_algorithms_only() {
        let ok = parse("discovery = true\n").unwrap();
        assert_eq!(
            ok[0].keys,
            KeySource::Discovery("https://idp.example.com".into())
        );
        assert_eq!(ok[0].algorithms.len(), 4);
        let err = parse("discovery = true\njwks_file = \"k.json\"\n").unwrap_err();
        assert!(err.contains("exactly one of"), "{err}");
        let err = parse("discovery = true\nalgorithms = [\"HS256\", \"none\"]\n").unwrap_err();
        assert!(
            err.contains("auth.jwt[0].algorithms[0]: \"HS256\" is refused"),
            "{err}"
        );
        assert!(
            err.contains("auth.jwt[0].algorithms[1]: \"none\" is refused"),
            "{err}"
        );
        let err = parse("jwks_url = \"http://idp.example.com/keys\"\n").unwrap_err();
        assert!(err.contains("over https"), "{err}");
        assert!(parse("jwks_url = \"http://127.0.0.1:9/keys\"\n").is_ok());
        let err = parse("discovery = true\nprivileges = [\"event:read\"]\n").unwrap_err();
        assert!(err.contains("unknown privilege"), "{err}");
    }
}
