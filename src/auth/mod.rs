//! Authentication and authorization, as plain functions over a credential store.
//!
//! Reproduces APM Server's auth layer (7.15+): who is calling ([`Authenticator::authenticate`])
//! and whether that caller may perform the endpoint's action ([`authorize`]). Nothing here
//! knows about Pingora or HTTP sessions, so every rule is unit-testable.

pub mod anonymous;
pub mod client_cert;
pub mod go_base64;
pub mod header;
pub mod keys_file;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use subtle::{ConditionallySelectable, ConstantTimeEq};

use crate::config::{parse_rfc3339, Config, ConfigError};
use crate::secrets::{sha256, Digest};
use header::Presented;

/// The three things an APM credential can be allowed to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    EventWrite,
    AgentConfigRead,
    SourcemapWrite,
}

impl Action {
    pub const ALL: [Action; 3] = [
        Action::EventWrite,
        Action::AgentConfigRead,
        Action::SourcemapWrite,
    ];

    /// The privilege name, as in Elasticsearch's `apm` application privileges.
    pub const fn name(self) -> &'static str {
        match self {
            Action::EventWrite => "event:write",
            Action::AgentConfigRead => "config_agent:read",
            Action::SourcemapWrite => "sourcemap:write",
        }
    }

    const fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// A set of [`Action`]s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Privileges(u8);

#[derive(Debug, thiserror::Error)]
#[error("unknown privilege {0:?}: use event:write, config_agent:read or sourcemap:write")]
pub struct UnknownPrivilege(pub String);

impl Privileges {
    pub const ALL: Privileges = Privileges(0b111);

    pub fn allows(self, action: Action) -> bool {
        self.0 & action.bit() != 0
    }

    pub fn parse_list<S: AsRef<str>>(names: &[S]) -> Result<Privileges, UnknownPrivilege> {
        names.iter().try_fold(Privileges(0), |acc, name| {
            let name = name.as_ref().trim();
            Action::ALL
                .iter()
                .find(|a| a.name() == name)
                .map(|a| Privileges(acc.0 | a.bit()))
                .ok_or_else(|| UnknownPrivilege(name.to_string()))
        })
    }

    pub fn names(self) -> Vec<&'static str> {
        Action::ALL
            .iter()
            .filter(|a| self.allows(**a))
            .map(|a| a.name())
            .collect()
    }
}

/// Who a request authenticated as. Carries names, never secrets, so it is safe to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    SecretToken {
        name: Arc<str>,
    },
    ApiKey {
        id: Arc<str>,
        name: Arc<str>,
        privileges: Privileges,
        services: Arc<[String]>,
    },
    /// A verified client certificate mapped by `ssl.client_identities`.
    ClientCert {
        name: Arc<str>,
        privileges: Privileges,
    },
    /// No credential, on an endpoint open to anonymous callers (`auth.anonymous`).
    Anonymous,
}

impl Identity {
    pub fn privileges(&self) -> Privileges {
        match self {
            // A secret token grants every action, as in APM Server.
            Identity::SecretToken { .. } => Privileges::ALL,
            Identity::ApiKey { privileges, .. } | Identity::ClientCert { privileges, .. } => {
                *privileges
            }
            Identity::Anonymous => {
                Privileges(Action::EventWrite.bit() | Action::AgentConfigRead.bit())
            }
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
}

pub const EXPECTED: &str =
    "expected 'Authorization: Bearer secret_token' or 'Authorization: ApiKey base64(API key ID:API key)'";

impl AuthFailure {
    /// The exact APM Server 401 message.
    pub fn message(&self) -> String {
        match self {
            AuthFailure::UnknownScheme(scheme) => {
                format!("authentication failed: unknown Authentication header {scheme}: {EXPECTED}")
            }
            AuthFailure::InvalidCredentials => "authentication failed".to_string(),
            AuthFailure::BadApiKeyEncoding { go_offset } => format!(
                "authentication failed: improperly encoded ApiKey credentials: expected \
                 base64(ID:APIKey): illegal base64 data at input byte {go_offset}"
            ),
            AuthFailure::BadApiKeyFormat => "authentication failed: improperly formatted ApiKey \
                credentials: expected base64(ID:APIKey)"
                .to_string(),
        }
    }

    /// Short reason for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthFailure::UnknownScheme(_) => "unknown_scheme",
            AuthFailure::InvalidCredentials => "invalid_credentials",
            AuthFailure::BadApiKeyEncoding { .. } => "bad_api_key_encoding",
            AuthFailure::BadApiKeyFormat => "bad_api_key_format",
        }
    }
}

pub fn missing_message() -> String {
    format!(
        "authentication failed: missing or improperly formatted Authorization header: {EXPECTED}"
    )
}

/// May `identity` perform `action`? If not, APM Server's 403 message.
pub fn authorize(identity: &Identity, action: Action) -> Result<(), String> {
    if identity.privileges().allows(action) {
        return Ok(());
    }
    let who = match identity {
        Identity::ClientCert { .. } => "client certificate",
        Identity::Anonymous => {
            return Err("unauthorized: anonymous access not permitted for sourcemap uploads".into())
        }
        _ => "API Key",
    };
    Err(format!(
        "unauthorized: {who} not permitted action \"{}\"",
        action.name()
    ))
}

#[derive(Debug)]
struct TokenEntry {
    name: Arc<str>,
    digest: Digest,
    expires_at: Option<SystemTime>,
}

#[derive(Debug)]
struct KeyEntry {
    identity: Identity,
    digest: Digest,
    expires_at: Option<SystemTime>,
    revoked: bool,
}

/// Every credential the proxy accepts, loaded once and swapped whole on reload.
#[derive(Debug, Default)]
pub struct CredentialStore {
    tokens: Vec<TokenEntry>,
    api_keys_enabled: bool,
    keys: HashMap<Box<str>, KeyEntry>,
}

/// Compared against when an API key id is unknown, so that an unknown id costs the same as
/// a wrong secret.
const DUMMY_DIGEST: Digest = [0x5a; 32];

impl CredentialStore {
    /// Resolve every secret source and read the keys file.
    pub fn load(config: &Config) -> Result<CredentialStore, ConfigError> {
        let mut tokens = Vec::new();
        if let Some(src) = &config.auth.secret_token {
            tokens.push(TokenEntry {
                name: "default".into(),
                digest: src.resolve_digest(&config.base_dir, "auth.secret_token")?,
                expires_at: None,
            });
        }
        for (i, t) in config.auth.secret_tokens.iter().enumerate() {
            let key = format!("auth.secret_tokens[{i}]");
            tokens.push(TokenEntry {
                name: t.name.as_str().into(),
                digest: t
                    .secret
                    .resolve_digest(&config.base_dir, &format!("{key}.secret"))?,
                expires_at: t
                    .expires
                    .as_deref()
                    .map(|e| parse_rfc3339(&format!("{key}.expires"), e))
                    .transpose()?,
            });
        }
        let mut keys = HashMap::new();
        if config.auth.api_key.enabled {
            let path = config.path(&config.auth.api_key.keys_file);
            let file = keys_file::KeysFile::load(&path)
                .and_then(|f| f.parse_keys(&path))
                .map_err(|e| ConfigError::invalid("auth.api_key.keys_file", e.to_string()))?;
            for k in file {
                keys.insert(
                    k.id.as_str().into(),
                    KeyEntry {
                        identity: Identity::ApiKey {
                            id: k.id.as_str().into(),
                            name: k.name.as_str().into(),
                            privileges: k.privileges,
                            services: k.services.into(),
                        },
                        digest: k.digest,
                        expires_at: k.expires_at,
                        revoked: k.revoked,
                    },
                );
            }
        }
        Ok(CredentialStore {
            tokens,
            api_keys_enabled: config.auth.api_key.enabled,
            keys,
        })
    }

    pub fn token_count(&self) -> usize {
        self.tokens.len()
    }

    pub fn api_key_count(&self) -> usize {
        self.keys.len()
    }

    pub fn authenticate(&self, header: Option<&[u8]>, now: SystemTime) -> AuthOutcome {
        match header::parse(header) {
            Presented::Missing => AuthOutcome::Missing,
            Presented::Unknown { scheme } => AuthOutcome::Failed(AuthFailure::UnknownScheme(
                String::from_utf8_lossy(scheme).into_owned(),
            )),
            Presented::Bearer(token) => self.check_token(token, now),
            Presented::ApiKey(_) if !self.api_keys_enabled => {
                AuthOutcome::Failed(AuthFailure::InvalidCredentials)
            }
            Presented::ApiKey(credentials) => self.check_api_key(credentials, now),
        }
    }

    /// Constant time over *all* tokens: every digest is compared, no early exit, and the
    /// digests have a fixed length whatever the presented token's length.
    fn check_token(&self, token: &[u8], now: SystemTime) -> AuthOutcome {
        let presented = sha256(token);
        let mut found = 0u32;
        let mut index = 0u32;
        for (i, entry) in self.tokens.iter().enumerate() {
            let equal = entry.digest.ct_eq(&presented);
            found.conditional_assign(&1, equal);
            index.conditional_assign(&(i as u32), equal);
        }
        if found == 0 || token.is_empty() {
            return AuthOutcome::Failed(AuthFailure::InvalidCredentials);
        }
        let entry = &self.tokens[index as usize];
        if entry.expires_at.is_some_and(|exp| now >= exp) {
            return AuthOutcome::Failed(AuthFailure::InvalidCredentials);
        }
        AuthOutcome::Authenticated(Identity::SecretToken {
            name: entry.name.clone(),
        })
    }

    fn check_api_key(&self, credentials: &[u8], now: SystemTime) -> AuthOutcome {
        let decoded = match go_base64::decode_std(credentials) {
            Ok(d) => d,
            Err(go_offset) => {
                return AuthOutcome::Failed(AuthFailure::BadApiKeyEncoding { go_offset })
            }
        };
        let Some(colon) = decoded.iter().position(|&b| b == b':') else {
            return AuthOutcome::Failed(AuthFailure::BadApiKeyFormat);
        };
        let (id, secret) = (&decoded[..colon], &decoded[colon + 1..]);
        let entry = std::str::from_utf8(id)
            .ok()
            .and_then(|id| self.keys.get(id));
        let expected = entry.map_or(&DUMMY_DIGEST, |e| &e.digest);
        let secret_ok: bool = expected.ct_eq(&sha256(secret)).into();
        match entry {
            Some(e) if secret_ok && !e.revoked && e.expires_at.is_none_or(|exp| now < exp) => {
                AuthOutcome::Authenticated(e.identity.clone())
            }
            _ => AuthOutcome::Failed(AuthFailure::InvalidCredentials),
        }
    }
}

/// The credential store behind a swappable handle: requests read it lock-free, a reload
/// replaces it whole.
pub struct Authenticator {
    store: ArcSwap<CredentialStore>,
}

impl Authenticator {
    pub fn new(store: CredentialStore) -> Self {
        Authenticator {
            store: ArcSwap::from_pointee(store),
        }
    }

    pub fn replace(&self, store: CredentialStore) {
        self.store.store(Arc::new(store));
    }

    pub fn authenticate(&self, header: Option<&[u8]>, now: SystemTime) -> AuthOutcome {
        self.store.load().authenticate(header, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use std::time::Duration;

    fn store() -> CredentialStore {
        let past = SystemTime::now() - Duration::from_secs(60);
        let key = |id: &str, secret: &str, privs: Privileges, expires, revoked| KeyEntry {
            identity: Identity::ApiKey {
                id: id.into(),
                name: format!("{id}-name").into(),
                privileges: privs,
                services: Arc::from(Vec::new()),
            },
            digest: sha256(secret.as_bytes()),
            expires_at: expires,
            revoked,
        };
        let mut keys = HashMap::new();
        keys.insert(
            "k1".into(),
            key(
                "k1",
                "s1",
                Privileges::parse_list(&["event:write"]).unwrap(),
                None,
                false,
            ),
        );
        keys.insert(
            "old".into(),
            key("old", "s2", Privileges::ALL, Some(past), false),
        );
        keys.insert("rev".into(), key("rev", "s3", Privileges::ALL, None, true));
        CredentialStore {
            tokens: vec![
                TokenEntry {
                    name: "current".into(),
                    digest: sha256(b"tok-new"),
                    expires_at: None,
                },
                TokenEntry {
                    name: "previous".into(),
                    digest: sha256(b"tok-old"),
                    expires_at: Some(past),
                },
            ],
            api_keys_enabled: true,
            keys,
        }
    }

    fn api(id_secret: &str) -> Vec<u8> {
        format!(
            "ApiKey {}",
            base64::engine::general_purpose::STANDARD.encode(id_secret)
        )
        .into_bytes()
    }

    #[test]
    fn tokens() {
        let s = store();
        let now = SystemTime::now();
        assert!(matches!(
            s.authenticate(Some(b"Bearer tok-new"), now),
            AuthOutcome::Authenticated(Identity::SecretToken { name }) if &*name == "current"
        ));
        for bad in [&b"Bearer tok-old"[..], b"Bearer nope", b"Bearer  tok-new"] {
            assert_eq!(
                s.authenticate(Some(bad), now),
                AuthOutcome::Failed(AuthFailure::InvalidCredentials)
            );
        }
        assert_eq!(s.authenticate(None, now), AuthOutcome::Missing);
        assert_eq!(s.authenticate(Some(b"tok-new"), now), AuthOutcome::Missing);
    }

    #[test]
    fn api_keys() {
        let s = store();
        let now = SystemTime::now();
        let ok = s.authenticate(Some(&api("k1:s1")), now);
        let AuthOutcome::Authenticated(identity) = ok else {
            panic!("{ok:?}")
        };
        assert!(authorize(&identity, Action::EventWrite).is_ok());
        assert_eq!(
            authorize(&identity, Action::SourcemapWrite).unwrap_err(),
            "unauthorized: API Key not permitted action \"sourcemap:write\""
        );
        for bad in ["k1:wrong", "unknown:s1", "old:s2", "rev:s3", "k1:", ":s1"] {
            assert_eq!(
                s.authenticate(Some(&api(bad)), now),
                AuthOutcome::Failed(AuthFailure::InvalidCredentials),
                "{bad}"
            );
        }
        assert_eq!(
            s.authenticate(Some(&api("no-colon")), now),
            AuthOutcome::Failed(AuthFailure::BadApiKeyFormat)
        );
        let enc = s.authenticate(Some(b"ApiKey not base64!"), now);
        assert_eq!(
            enc,
            AuthOutcome::Failed(AuthFailure::BadApiKeyEncoding { go_offset: 3 })
        );
        if let AuthOutcome::Failed(f) = enc {
            assert_eq!(
                f.message(),
                "authentication failed: improperly encoded ApiKey credentials: expected base64(ID:APIKey): illegal base64 data at input byte 3"
            );
        }
    }

    #[test]
    fn api_key_when_disabled_and_unknown_scheme() {
        let mut s = store();
        s.api_keys_enabled = false;
        let now = SystemTime::now();
        assert_eq!(
            s.authenticate(Some(&api("k1:s1")), now),
            AuthOutcome::Failed(AuthFailure::InvalidCredentials)
        );
        let AuthOutcome::Failed(f) = s.authenticate(Some(b"Basic abc"), now) else {
            panic!()
        };
        assert_eq!(
            f.message(),
            "authentication failed: unknown Authentication header Basic: expected 'Authorization: Bearer secret_token' or 'Authorization: ApiKey base64(API key ID:API key)'"
        );
    }

    #[test]
    fn secret_token_has_every_privilege() {
        let id = Identity::SecretToken { name: "t".into() };
        for a in Action::ALL {
            assert!(authorize(&id, a).is_ok());
        }
    }
}
