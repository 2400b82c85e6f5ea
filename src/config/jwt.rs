//! `[[auth.jwt]]` as written in `proxy.toml`: an identity provider whose signed tokens are
//! credentials. Turned into typed settings by `auth::jwt`.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::values::HumanDuration;

/// `[[auth.jwt]]`: an identity provider (or a Kubernetes cluster) whose signed tokens are
/// credentials: `Authorization: Bearer <JWT>`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtIssuerConfig {
    /// Names the issuer in logs, metrics and usage (`jwt:<name>/<sub>`).
    pub name: String,
    /// Must equal the token's `iss`.
    pub issuer: String,
    /// The token's `aud` must hold one of these (empty: `aud` is not checked).
    #[serde(default)]
    pub audiences: Vec<String>,
    /// The keys: a JWKS file, a JWKS URL, or OIDC discovery from the issuer (exactly one).
    pub jwks_file: Option<PathBuf>,
    pub jwks_url: Option<String>,
    #[serde(default)]
    pub discovery: bool,
    /// CA bundle for fetching the keys (default: the system's roots).
    pub ca_file: Option<PathBuf>,
    /// A bearer token sent when fetching the keys (a pod's own service-account token).
    pub fetch_token_file: Option<PathBuf>,
    /// How often the keys are fetched again.
    #[serde(default = "jwt_refresh")]
    pub refresh_interval: HumanDuration,
    /// A token signed by a key not in the set fetches the keys again, at most this often.
    #[serde(default = "jwt_min_refresh")]
    pub min_refresh_interval: HumanDuration,
    /// Accepted signature algorithms (RS256/384/512, PS256/384/512, ES256, ES384, EdDSA).
    #[serde(default = "jwt_algorithms")]
    pub algorithms: Vec<String>,
    /// Clock skew allowed on `exp` and `nbf`.
    #[serde(default = "jwt_leeway")]
    pub leeway: HumanDuration,
    /// Tokens valid for longer than this (`exp` − `iat`, or − now) are refused.
    #[serde(default = "jwt_max_lifetime")]
    pub max_lifetime: HumanDuration,
    /// Claims the token must carry with these values (`"kubernetes.io.namespace" = "shop"`;
    /// a dotted name reaches into nested claims).
    #[serde(default)]
    pub required_claims: std::collections::BTreeMap<String, String>,
    /// What the token may do; with `privileges_claim`, the most it may do.
    #[serde(default = "jwt_privileges")]
    pub privileges: Vec<String>,
    /// A claim listing privileges (`scope`: space-separated, or an array).
    pub privileges_claim: Option<String>,
    /// A claim listing the services the token may send data for (as service-bound keys).
    pub services_claim: Option<String>,
    /// The only upstream pool its requests go to; or a claim naming it.
    pub upstream: Option<String>,
    pub upstream_claim: Option<String>,
    /// Its own rate limit, per identity (as a token's `rate_limit`).
    pub rate_limit: Option<String>,
    /// The claim naming the caller in usage and logs.
    #[serde(default = "jwt_name_claim")]
    pub name_claim: String,
}

fn jwt_refresh() -> HumanDuration {
    HumanDuration(Duration::from_secs(300))
}
fn jwt_min_refresh() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}
fn jwt_algorithms() -> Vec<String> {
    ["RS256", "PS256", "ES256", "EdDSA"]
        .map(String::from)
        .to_vec()
}
fn jwt_leeway() -> HumanDuration {
    HumanDuration(Duration::from_secs(60))
}
fn jwt_max_lifetime() -> HumanDuration {
    HumanDuration(Duration::from_secs(24 * 3600))
}
fn jwt_privileges() -> Vec<String> {
    ["event:write", "config_agent:read"]
        .map(String::from)
        .to_vec()
}
fn jwt_name_claim() -> String {
    "sub".into()
}
