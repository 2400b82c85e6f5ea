//! Getting an issuer's keys: a JWKS file, a JWKS URL, or OIDC discovery
//! (`<issuer>/.well-known/openid-configuration` → `jwks_uri`), over HTTPS with the system's
//! roots or the issuer's `ca_file`, with its `fetch_token_file` as a bearer token (a pod's
//! service-account token, for the cluster's own discovery). Bounded in size and time.

use std::time::Duration;

use super::keys::{JwksError, KeySet};
use super::settings::{IssuerSettings, KeySource};

/// A key set or a discovery document larger than this is refused.
const MAX_DOCUMENT: usize = 1 << 20;
const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{0}: {1}")]
    File(String, std::io::Error),
    #[error("{0}: {1}")]
    Http(String, String),
    #[error("{0}: {1}")]
    Jwks(String, JwksError),
    #[error("{0}: the discovery document has no https jwks_uri")]
    Discovery(String),
}

/// The client an issuer's keys are fetched with.
pub fn client(s: &IssuerSettings) -> Result<reqwest::Client, FetchError> {
    let mut b = reqwest::Client::builder()
        .timeout(TIMEOUT)
        // No redirects: a key set is fetched from where the configuration (or discovery) says.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("apm-auth-proxy/", env!("CARGO_PKG_VERSION")));
    if let Some(ca) = &s.ca_file {
        let name = ca.display().to_string();
        let pem = std::fs::read(ca).map_err(|e| FetchError::File(name.clone(), e))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| FetchError::Http(name.clone(), e.to_string()))?;
        b = b.tls_built_in_root_certs(false);
        for cert in certs {
            b = b.add_root_certificate(cert);
        }
    }
    b.build()
        .map_err(|e| FetchError::Http(s.name.clone(), e.to_string()))
}

/// The issuer's keys as they are now.
pub async fn keys(s: &IssuerSettings, client: &reqwest::Client) -> Result<KeySet, FetchError> {
    let (origin, document) = match &s.keys {
        KeySource::File(path) => {
            let name = path.display().to_string();
            let bytes = std::fs::read(path).map_err(|e| FetchError::File(name.clone(), e))?;
            (name, bytes)
        }
        KeySource::Url(url) => (url.clone(), get(s, client, url).await?),
        KeySource::Discovery(issuer) => {
            let url = format!("{issuer}/.well-known/openid-configuration");
            let doc = get(s, client, &url).await?;
            let jwks_uri = serde_json::from_slice::<serde_json::Value>(&doc)
                .ok()
                .and_then(|d| d.get("jwks_uri")?.as_str().map(str::to_string))
                .filter(|u| u.starts_with("https://") || same_origin(issuer, u))
                .ok_or_else(|| FetchError::Discovery(url.clone()))?;
            (jwks_uri.clone(), get(s, client, &jwks_uri).await?)
        }
    };
    KeySet::parse(&document, &s.algorithms).map_err(|e| FetchError::Jwks(origin, e))
}

/// An http `jwks_uri` is followed only on the issuer's own (loopback) origin.
fn same_origin(issuer: &str, url: &str) -> bool {
    let origin = |u: &str| u.splitn(4, '/').take(3).collect::<Vec<_>>().join("/");
    origin(issuer) == origin(url)
}

async fn get(
    s: &IssuerSettings,
    client: &reqwest::Client,
    url: &str,
) -> Result<Vec<u8>, FetchError> {
    let fail = |e: String| FetchError::Http(url.to_string(), e);
    let mut req = client.get(url).header("accept", "application/json");
    if let Some(path) = &s.fetch_token_file {
        let token = std::fs::read_to_string(path)
            .map_err(|e| FetchError::File(path.display().to_string(), e))?;
        req = req.bearer_auth(token.trim());
    }
    let mut resp = req.send().await.map_err(|e| fail(e.to_string()))?;
    if !resp.status().is_success() {
        return Err(fail(format!("answered {}", resp.status())));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| fail(e.to_string()))? {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_DOCUMENT {
            return Err(fail(format!("larger than {MAX_DOCUMENT} bytes")));
        }
    }
    Ok(body)
}
