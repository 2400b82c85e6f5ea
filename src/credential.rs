//! What kind of credential a request presented: the one name for it everywhere (usage
//! records, audit lines, rate-limit buckets, metrics labels, the CLI).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialKind {
    Token,
    ApiKey,
    ClientCert,
    /// A signed token of an `[[auth.jwt]]` issuer, named `<issuer name>/<subject>`.
    Jwt,
}

impl CredentialKind {
    pub const ALL: [CredentialKind; 4] = [Self::Token, Self::ApiKey, Self::ClientCert, Self::Jwt];

    /// As in `proxy.toml`-facing text, JSON and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialKind::Token => "token",
            CredentialKind::ApiKey => "api_key",
            CredentialKind::ClientCert => "client_cert",
            CredentialKind::Jwt => "jwt",
        }
    }

    /// For people: `secret token`, `API key`, `client certificate`.
    pub fn description(self) -> &'static str {
        match self {
            CredentialKind::Token => "secret token",
            CredentialKind::ApiKey => "API key",
            CredentialKind::ClientCert => "client certificate",
            CredentialKind::Jwt => "JWT",
        }
    }
}

impl std::fmt::Display for CredentialKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_is_the_serialized_name() {
        for kind in CredentialKind::ALL {
            assert_eq!(
                serde_json::to_string(&kind).unwrap(),
                format!("\"{}\"", kind.as_str())
            );
        }
    }
}
