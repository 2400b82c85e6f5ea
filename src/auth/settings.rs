//! `[auth]` tokens and API keys as typed settings: each secret's form decided, expiry times
//! parsed, names unique. The secrets themselves are read by [`super::CredentialStore::load`].

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::SystemTime;

use super::secret::Secret;
use crate::config::{AuthConfig, Problem, Problems};
use crate::limits::RateSpec;

#[derive(Debug, Clone)]
pub struct AuthSettings {
    pub tokens: Vec<TokenSettings>,
    /// The keys file, when API keys are enabled.
    pub keys_file: Option<PathBuf>,
    /// How often the keys file and secret files are checked; `None`: on SIGHUP only.
    pub reload_interval: Option<std::time::Duration>,
    /// `[[auth.jwt]]` issuers.
    pub jwt: Vec<super::jwt::IssuerSettings>,
}

impl AuthSettings {
    /// Files whose change means the credentials must be read again.
    pub fn watched_files(&self) -> Vec<PathBuf> {
        self.tokens
            .iter()
            .filter_map(|t| match &t.secret {
                Secret::File(path) => Some(path.clone()),
                _ => None,
            })
            .chain(self.keys_file.clone())
            .collect()
    }
}

#[derive(Debug, Clone)]
pub struct TokenSettings {
    /// Where it is configured, for messages (`auth.secret_tokens[1].secret`).
    pub key: String,
    pub name: String,
    pub secret: Secret,
    pub expires: Option<SystemTime>,
    /// The only upstream pool it may reach.
    pub upstream: Option<String>,
    pub rate_limit: Option<RateSpec>,
}

pub fn parse_rfc3339(key: &str, text: &str) -> Result<SystemTime, Problem> {
    humantime::parse_rfc3339_weak(text).map_err(|e| {
        Problem::new(
            key,
            format!("invalid time {text:?}: {e} (write e.g. \"2027-01-31T00:00:00Z\")"),
        )
    })
}

impl TryFrom<&AuthConfig> for AuthSettings {
    type Error = Problems;

    fn try_from(auth: &AuthConfig) -> Result<Self, Problems> {
        let mut problems = Problems::default();
        let mut tokens = Vec::new();
        let mut names = HashSet::new();
        if let Some(source) = &auth.secret_token {
            names.insert("default");
            if let Some(secret) = problems.take(Secret::from_source(source, "auth.secret_token")) {
                tokens.push(TokenSettings {
                    key: "auth.secret_token".into(),
                    name: "default".into(),
                    secret,
                    expires: None,
                    upstream: None,
                    rate_limit: None,
                });
            }
        }
        for (i, t) in auth.secret_tokens.iter().enumerate() {
            let key = format!("auth.secret_tokens[{i}]");
            if t.name.trim().is_empty() {
                problems.add(format!("{key}.name"), "must not be empty");
            } else if !names.insert(t.name.as_str()) {
                problems.add(
                    format!("{key}.name"),
                    format!("duplicate token name {:?}", t.name),
                );
            }
            let secret_key = format!("{key}.secret");
            let secret = problems.take(Secret::from_source(&t.secret, &secret_key));
            let expires = match &t.expires {
                Some(text) => problems
                    .take(parse_rfc3339(&format!("{key}.expires"), text))
                    .map(Some),
                None => Some(None),
            };
            let rate_limit = problems.take(RateSpec::setting(
                &format!("{key}.rate_limit"),
                t.rate_limit.as_deref(),
            ));
            if let (Some(secret), Some(expires), Some(rate_limit)) = (secret, expires, rate_limit) {
                tokens.push(TokenSettings {
                    key: secret_key,
                    name: t.name.clone(),
                    secret,
                    expires,
                    upstream: t.upstream.clone(),
                    rate_limit,
                });
            }
        }
        let keys_file = auth.api_key.enabled.then(|| auth.api_key.keys_file.clone());
        let reload_interval = Some(auth.reload_interval.0).filter(|d| !d.is_zero());
        let jwt = problems
            .take(super::jwt::issuers(&auth.jwt))
            .unwrap_or_default();
        problems.finish(|| AuthSettings {
            tokens,
            keys_file,
            reload_interval,
            jwt,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigFile;

    fn auth(text: &str) -> Result<AuthSettings, String> {
        let file = ConfigFile::parse(text).unwrap();
        AuthSettings::try_from(&file.auth).map_err(|e| e.to_string())
    }

    #[test]
    fn every_token_problem_is_reported_at_once() {
        let err = auth(
            "[[auth.secret_tokens]]\nname = \"\"\nsecret = \"x\"\n\
             [[auth.secret_tokens]]\nname = \"a\"\nsecret = { sha256 = \"ab\" }\nexpires = \"soon\"\n",
        )
        .unwrap_err();
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 3, "{err}");
        assert!(lines[0].starts_with("auth.secret_tokens[0].name: must not be empty"));
        assert!(lines[1].starts_with("auth.secret_tokens[1].secret: sha256 must be"));
        assert!(lines[2].starts_with("auth.secret_tokens[1].expires: invalid time"));
    }

    #[test]
    fn default_token_name_is_taken() {
        let err = auth(
            "[auth]\nsecret_token = \"t\"\n[[auth.secret_tokens]]\nname = \"default\"\nsecret = \"x\"",
        )
        .unwrap_err();
        assert_eq!(
            err,
            "auth.secret_tokens[0].name: duplicate token name \"default\""
        );
    }

    #[test]
    fn expiry_is_parsed_once() {
        let s = auth(
            "[[auth.secret_tokens]]\nname = \"a\"\nsecret = \"x\"\nexpires = \"2027-01-31T00:00:00Z\"",
        )
        .unwrap();
        assert_eq!(
            s.tokens[0].expires,
            Some(humantime::parse_rfc3339("2027-01-31T00:00:00Z").unwrap())
        );
        assert!(s.keys_file.is_none());
    }
}
