//! The credential store: every secret token (as a digest) and API key the proxy accepts,
//! checked in constant time, and the swappable handle requests read it through.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use subtle::{ConditionallySelectable, ConstantTimeEq};

use super::header::{self, Presented};
use super::identity::{AuthFailure, AuthOutcome, Identity};
use super::jwt::{looks_like_jwt, JwtVerifier};
use super::settings::AuthSettings;
use super::{go_base64, keys_file};
use crate::config::{Problem, Problems};
use crate::credential::CredentialKind;
use crate::digest::{sha256, Digest};
use crate::limits::RateSpec;

#[derive(Debug)]
struct TokenEntry {
    name: Arc<str>,
    upstream: Option<Arc<str>>,
    rate_limit: Option<RateSpec>,
    digest: Digest,
    expires_at: Option<SystemTime>,
}

#[derive(Debug)]
struct KeyEntry {
    identity: Identity,
    digest: Digest,
    /// A rotated key's previous secret, accepted until then.
    previous: Option<(Digest, SystemTime)>,
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

/// A credential as the audit log sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialState {
    pub kind: CredentialKind,
    /// The token's name or the key's id.
    pub name: String,
    /// Its human name: the token's name, the key's `--name`.
    pub display_name: String,
    pub revoked: bool,
    pub expires_at: Option<SystemTime>,
}

/// Compared against when an API key id is unknown, so that an unknown id costs the same as
/// a wrong secret.
const DUMMY_DIGEST: Digest = [0x5a; 32];

impl CredentialStore {
    /// Read every token's secret and the keys file, as they are now.
    pub fn load(settings: &AuthSettings) -> Result<CredentialStore, Problems> {
        let mut problems = Problems::default();
        let mut tokens = Vec::new();
        for t in &settings.tokens {
            if let Some(digest) = problems.take(t.secret.digest(&t.key)) {
                tokens.push(TokenEntry {
                    name: t.name.as_str().into(),
                    upstream: t.upstream.as_deref().map(Arc::from),
                    rate_limit: t.rate_limit,
                    digest,
                    expires_at: t.expires,
                });
            }
        }
        let mut keys = HashMap::new();
        if let Some(path) = &settings.keys_file {
            let file = keys_file::KeysFile::load(path)
                .and_then(|f| f.parse_keys(path))
                .map_err(|e| Problem::new("auth.api_key.keys_file", e.to_string()));
            for k in problems.take(file).into_iter().flatten() {
                keys.insert(
                    k.id.as_str().into(),
                    KeyEntry {
                        identity: Identity::ApiKey {
                            id: k.id.as_str().into(),
                            name: k.name.as_str().into(),
                            privileges: k.privileges,
                            services: k.services.into(),
                            upstream: k.upstream.as_deref().map(Arc::from),
                            rate_limit: k.rate_limit,
                        },
                        digest: k.digest,
                        previous: k.previous,
                        expires_at: k.expires_at,
                        revoked: k.revoked,
                    },
                );
            }
        }
        problems.finish(|| CredentialStore {
            tokens,
            api_keys_enabled: settings.keys_file.is_some(),
            keys,
        })
    }

    /// What an audit log line may say about each credential: names, ids, states, never a
    /// secret.
    pub fn describe(&self) -> Vec<CredentialState> {
        let tokens = self.tokens.iter().map(|t| CredentialState {
            kind: CredentialKind::Token,
            name: t.name.to_string(),
            display_name: t.name.to_string(),
            revoked: false,
            expires_at: t.expires_at,
        });
        let keys = self.keys.iter().map(|(id, k)| CredentialState {
            kind: CredentialKind::ApiKey,
            name: id.to_string(),
            display_name: k.identity.display_name().unwrap_or_default().to_string(),
            revoked: k.revoked,
            expires_at: k.expires_at,
        });
        let mut all: Vec<CredentialState> = tokens.chain(keys).collect();
        all.sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
        all
    }

    /// Each API key bound to an upstream pool: (id, pool).
    pub fn key_pools(&self) -> impl Iterator<Item = (&str, &str)> {
        (self.keys.iter()).filter_map(|(id, k)| Some((&**id, k.identity.upstream()?)))
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
            upstream: entry.upstream.clone(),
            rate_limit: entry.rate_limit,
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
        let presented = sha256(secret);
        let expected = entry.map_or(&DUMMY_DIGEST, |e| &e.digest);
        // A rotated key's previous secret, while its grace period lasts. Both digests are
        // always compared, so a lookup costs the same whichever matches.
        let previous = entry
            .and_then(|e| e.previous.as_ref())
            .filter(|(_, until)| now < *until)
            .map_or(&DUMMY_DIGEST, |(digest, _)| digest);
        let current_ok = expected.ct_eq(&presented);
        let previous_ok = previous.ct_eq(&presented) & (!previous.ct_eq(&DUMMY_DIGEST));
        let secret_ok: bool = (current_ok | previous_ok).into();
        match entry {
            Some(e) if secret_ok && !e.revoked && e.expires_at.is_none_or(|exp| now < exp) => {
                AuthOutcome::Authenticated(e.identity.clone())
            }
            Some(e) => AuthOutcome::KeyRefused(e.identity.clone()),
            None => AuthOutcome::Failed(AuthFailure::InvalidCredentials),
        }
    }
}

/// The credential store behind a swappable handle: requests read it lock-free, a reload
/// replaces it whole. JWTs go to the issuers, when there are any.
pub struct Authenticator {
    store: ArcSwap<CredentialStore>,
    jwt: Option<Arc<JwtVerifier>>,
}

impl Authenticator {
    pub fn new(store: CredentialStore) -> Self {
        Authenticator::with_jwt(store, None)
    }

    pub fn with_jwt(store: CredentialStore, jwt: Option<Arc<JwtVerifier>>) -> Self {
        Authenticator {
            store: ArcSwap::from_pointee(store),
            jwt,
        }
    }

    pub fn replace(&self, store: CredentialStore) {
        self.store.store(Arc::new(store));
    }

    pub fn authenticate(&self, header: Option<&[u8]>, now: SystemTime) -> AuthOutcome {
        // A Bearer value shaped like a JWT goes to the issuers, anything else to the secret
        // tokens: never both.
        if let (Some(jwt), Presented::Bearer(token)) = (&self.jwt, header::parse(header)) {
            if looks_like_jwt(token) {
                return match jwt.verify(token, now) {
                    Ok(identity) => AuthOutcome::Authenticated(identity),
                    Err(refusal) => AuthOutcome::Failed(AuthFailure::Jwt(refusal)),
                };
            }
        }
        self.store.load().authenticate(header, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{authorize, Action, ActionRefused, CallerKind, Privileges};
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
                upstream: None,
                rate_limit: None,
            },
            digest: sha256(secret.as_bytes()),
            previous: None,
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
        // Rotated: "s4-old" for another minute; "s5-old" no longer.
        let mut rotated = key("rot", "s4-new", Privileges::ALL, None, false);
        rotated.previous = Some((sha256(b"s4-old"), past + Duration::from_secs(120)));
        keys.insert("rot".into(), rotated);
        let mut done = key("done", "s5-new", Privileges::ALL, None, false);
        done.previous = Some((sha256(b"s5-old"), past));
        keys.insert("done".into(), done);
        CredentialStore {
            tokens: vec![
                TokenEntry {
                    name: "current".into(),
                    upstream: None,
                    rate_limit: None,
                    digest: sha256(b"tok-new"),
                    expires_at: None,
                },
                TokenEntry {
                    name: "previous".into(),
                    upstream: None,
                    rate_limit: None,
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
            AuthOutcome::Authenticated(Identity::SecretToken { name, .. }) if &*name == "current"
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
            ActionRefused {
                caller: CallerKind::ApiKey,
                action: Action::SourcemapWrite
            }
        );
        for good in ["rot:s4-new", "rot:s4-old", "done:s5-new"] {
            assert!(
                matches!(
                    s.authenticate(Some(&api(good)), now),
                    AuthOutcome::Authenticated(_)
                ),
                "{good}"
            );
        }
        // Refused alike; a known key named (for the log and its usage), an unknown id not.
        for (bad, known) in [
            ("k1:wrong", Some("k1")),
            ("unknown:s1", None),
            ("old:s2", Some("old")),
            ("rev:s3", Some("rev")),
            ("k1:", Some("k1")),
            (":s1", None),
            ("done:s5-old", Some("done")),
            ("rot:s5-old", Some("rot")),
        ] {
            match (s.authenticate(Some(&api(bad)), now), known) {
                (AuthOutcome::KeyRefused(Identity::ApiKey { id, .. }), Some(k)) => {
                    assert_eq!(&*id, k, "{bad}")
                }
                (AuthOutcome::Failed(AuthFailure::InvalidCredentials), None) => {}
                (other, _) => panic!("{bad}: {other:?}"),
            }
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
        assert_eq!(
            s.authenticate(Some(b"Basic abc"), now),
            AuthOutcome::Failed(AuthFailure::UnknownScheme("Basic".into()))
        );
    }

    #[test]
    fn secret_token_has_every_privilege() {
        let id = Identity::SecretToken {
            name: "t".into(),
            upstream: None,
            rate_limit: None,
        };
        for a in Action::ALL {
            assert!(authorize(&id, a).is_ok());
        }
    }
}
