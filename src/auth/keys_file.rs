//! The API keys file written by `apm-auth-proxy apikey …` and read by the proxy.
//! It holds SHA-256 digests of key secrets, never the secrets: a leaked keys file does not
//! leak a credential (secrets are 256 random bits, so a fast digest is enough).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::limits::RateSpec;

use crate::digest::{parse_hex_digest, sha256, to_hex};

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysFile {
    #[serde(default)]
    pub keys: Vec<KeyRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRecord {
    pub id: String,
    pub name: String,
    /// Hex SHA-256 of the key secret.
    pub sha256: String,
    pub privileges: Vec<String>,
    /// RFC 3339.
    pub created: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    /// RFC 3339 time of revocation; a revoked key is kept for the record and always refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked: Option<String>,
    /// Services the key may send data for (empty: any).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<String>,
    /// The only upstream pool the key may reach (its team's APM Server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    /// The key's own rate limit (`"200/s"`, `"50 requests/s burst 60"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<String>,
    /// After `apikey rotate`: the previous secret's digest, still accepted until
    /// `previous_until` (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_until: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum KeysFileError {
    #[error("cannot read keys file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("keys file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("keys file {path}: key {id:?}: {problem}")]
    Invalid {
        path: PathBuf,
        id: String,
        problem: String,
    },
    #[error("cannot write keys file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no key with id {0:?} in the keys file")]
    UnknownId(String),
    #[error("unknown privilege {0:?}: use event:write, config_agent:read or sourcemap:write")]
    UnknownPrivilege(String),
}

/// A key as checked at request time.
#[derive(Debug, Clone)]
pub struct ParsedKey {
    pub id: String,
    pub name: String,
    pub digest: [u8; 32],
    pub privileges: super::Privileges,
    pub expires_at: Option<SystemTime>,
    pub revoked: bool,
    pub services: Vec<String>,
    pub upstream: Option<String>,
    pub rate_limit: Option<RateSpec>,
    /// The previous secret's digest and until when it is accepted (`apikey rotate`).
    pub previous: Option<([u8; 32], SystemTime)>,
}

impl KeysFile {
    /// Load the file; a missing file is an empty key set (`apikey create` makes it).
    pub fn load(path: &Path) -> Result<KeysFile, KeysFileError> {
        match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text).map_err(|e| KeysFileError::Parse {
                path: path.to_path_buf(),
                message: e.to_string().trim_end().to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(KeysFile::default()),
            Err(source) => Err(KeysFileError::Read {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Write atomically (temp file + rename) with owner-only permissions.
    pub fn save(&self, path: &Path) -> Result<(), KeysFileError> {
        let write_err = |source| KeysFileError::Write {
            path: path.to_path_buf(),
            source,
        };
        let body = toml::to_string_pretty(self)
            .map_err(|e| write_err(std::io::Error::other(e.to_string())))?;
        let mut text = b"# API keys of apm-auth-proxy, managed with `apm-auth-proxy apikey`.\n\
                  # Holds SHA-256 digests of the key secrets only.\n\n"
            .to_vec();
        text.extend_from_slice(body.as_bytes());
        crate::atomic_file::replace(path, 0o600, &text).map_err(write_err)
    }

    /// Validate every record and turn it into what the proxy checks against.
    pub fn parse_keys(&self, path: &Path) -> Result<Vec<ParsedKey>, KeysFileError> {
        let mut seen = std::collections::HashSet::new();
        self.keys
            .iter()
            .map(|r| {
                let invalid = |problem: String| KeysFileError::Invalid {
                    path: path.to_path_buf(),
                    id: r.id.clone(),
                    problem,
                };
                if r.id.is_empty() || r.id.contains(':') {
                    return Err(invalid("id must be non-empty and contain no ':'".into()));
                }
                if !seen.insert(r.id.as_str()) {
                    return Err(invalid("duplicate id".into()));
                }
                let digest = parse_hex_digest(&r.sha256)
                    .ok_or_else(|| invalid("sha256 must be 64 hexadecimal characters".into()))?;
                let privileges = super::Privileges::parse_list(&r.privileges)
                    .map_err(|e| invalid(e.to_string()))?;
                let time = |field: &str,
                            v: &Option<String>|
                 -> Result<Option<SystemTime>, KeysFileError> {
                    v.as_deref()
                        .map(|t| {
                            humantime::parse_rfc3339_weak(t)
                                .map_err(|e| invalid(format!("{field}: invalid time {t:?}: {e}")))
                        })
                        .transpose()
                };
                let rate_limit = r
                    .rate_limit
                    .as_deref()
                    .map(|t| {
                        t.parse::<RateSpec>()
                            .map_err(|e| invalid(format!("rate_limit: {e}")))
                    })
                    .transpose()?;
                let previous = match (
                    &r.previous_sha256,
                    time("previous_until", &r.previous_until)?,
                ) {
                    (Some(hex), Some(until)) => Some((
                        parse_hex_digest(hex).ok_or_else(|| {
                            invalid("previous_sha256 must be 64 hexadecimal characters".into())
                        })?,
                        until,
                    )),
                    (None, None) => None,
                    _ => {
                        return Err(invalid(
                            "previous_sha256 and previous_until go together".into(),
                        ))
                    }
                };
                Ok(ParsedKey {
                    id: r.id.clone(),
                    name: r.name.clone(),
                    digest,
                    privileges,
                    expires_at: time("expires", &r.expires)?,
                    revoked: time("revoked", &r.revoked)?.is_some(),
                    services: r.services.clone(),
                    upstream: r.upstream.clone(),
                    rate_limit,
                    previous,
                })
            })
            .collect()
    }
}

/// A freshly created key: the record to store and the secret to show once.
pub struct NewKey {
    pub record: KeyRecord,
    pub secret: String,
    /// `base64(id:secret)`, what agents put after `Authorization: ApiKey `.
    pub credential: String,
}

pub fn random_bytes<const N: usize>() -> [u8; N] {
    use ring::rand::SecureRandom;
    let mut buf = [0u8; N];
    ring::rand::SystemRandom::new()
        .fill(&mut buf)
        .expect("the operating system's random source failed");
    buf
}

pub fn format_time(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

pub fn new_key(
    name: &str,
    privileges: &[String],
    expires_in: Option<Duration>,
    services: &[String],
    upstream: Option<&str>,
    rate_limit: Option<RateSpec>,
    now: SystemTime,
) -> Result<NewKey, KeysFileError> {
    let parsed = super::Privileges::parse_list(privileges)?;
    let url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    // Ids are not secret; hex keeps them free of a leading `-` that a CLI would read as a flag.
    let id = to_hex(&random_bytes::<12>());
    let secret = url.encode(random_bytes::<32>());
    let credential = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
    let record = KeyRecord {
        id,
        name: name.to_string(),
        sha256: to_hex(&sha256(secret.as_bytes())),
        privileges: parsed.names().iter().map(|s| s.to_string()).collect(),
        created: format_time(now),
        expires: expires_in.map(|d| format_time(now + d)),
        revoked: None,
        services: services.to_vec(),
        upstream: upstream.map(str::to_string),
        rate_limit: rate_limit.map(|r| r.to_string()),
        previous_sha256: None,
        previous_until: None,
    };
    Ok(NewKey {
        record,
        secret,
        credential,
    })
}

/// `apikey rotate`: a new secret for `record` (same id, name, privileges, services, pool,
/// limit); the current secret stays accepted for `grace` (not at all when zero). Returns
/// the new secret and credential, to show once.
pub fn rotate(record: &mut KeyRecord, grace: Duration, now: SystemTime) -> (String, String) {
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes::<32>());
    let credential =
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{secret}", record.id));
    let current = std::mem::replace(&mut record.sha256, to_hex(&sha256(secret.as_bytes())));
    if grace.is_zero() {
        record.previous_sha256 = None;
        record.previous_until = None;
    } else {
        record.previous_sha256 = Some(current);
        record.previous_until = Some(format_time(now + grace));
    }
    (secret, credential)
}

impl From<super::privileges::UnknownPrivilege> for KeysFileError {
    fn from(e: super::privileges::UnknownPrivilege) -> Self {
        KeysFileError::UnknownPrivilege(e.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_key_roundtrips_and_stores_only_a_digest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.toml");
        let now = SystemTime::now();
        let key = new_key(
            "svc",
            &["event:write".into()],
            Some(Duration::from_secs(3600)),
            &[],
            Some("team-a"),
            Some("5/s".parse().unwrap()),
            now,
        )
        .unwrap();
        let file = KeysFile {
            keys: vec![key.record.clone()],
        };
        file.save(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&key.secret), "secret must never be written");
        let loaded = KeysFile::load(&path).unwrap();
        let parsed = loaded.parse_keys(&path).unwrap();
        assert_eq!(parsed[0].digest, sha256(key.secret.as_bytes()));
        assert!(parsed[0].expires_at.is_some());
        assert_eq!(parsed[0].rate_limit, Some("5/s".parse().unwrap()));
        assert_eq!(parsed[0].previous, None);
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(&key.credential)
            .unwrap();
        assert_eq!(
            decoded,
            format!("{}:{}", key.record.id, key.secret).into_bytes()
        );
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn unknown_privilege_is_refused() {
        let err = new_key(
            "x",
            &["event:read".into()],
            None,
            &[],
            None,
            None,
            SystemTime::now(),
        )
        .err()
        .unwrap();
        assert!(err.to_string().contains("event:read"));
    }

    #[test]
    fn missing_file_is_empty_and_garbage_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(KeysFile::load(&dir.path().join("nope.toml"))
            .unwrap()
            .keys
            .is_empty());
        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, "[[keys]]\nid = 1\n").unwrap();
        assert!(matches!(
            KeysFile::load(&bad),
            Err(KeysFileError::Parse { .. })
        ));
    }

    #[test]
    fn a_rotated_key_keeps_its_id_and_its_old_digest_for_the_grace_period() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let key = new_key("svc", &["event:write".into()], None, &[], None, None, now).unwrap();
        let mut record = key.record.clone();
        let (secret, credential) = rotate(&mut record, Duration::from_secs(3600), now);
        assert_ne!(secret, key.secret);
        assert_eq!(record.id, key.record.id);
        assert_eq!(record.sha256, to_hex(&sha256(secret.as_bytes())));
        assert_eq!(
            record.previous_sha256.as_deref(),
            Some(key.record.sha256.as_str())
        );
        let file = KeysFile {
            keys: vec![record.clone()],
        };
        let parsed = file.parse_keys(Path::new("keys.toml")).unwrap();
        assert_eq!(
            parsed[0].previous,
            Some((
                sha256(key.secret.as_bytes()),
                now + Duration::from_secs(3600)
            ))
        );
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(&credential)
            .unwrap();
        assert!(decoded.starts_with(format!("{}:", record.id).as_bytes()));
        // No grace: the old secret is dropped at once.
        rotate(&mut record, Duration::ZERO, now);
        assert_eq!(record.previous_sha256, None);
    }
}
