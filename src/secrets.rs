//! Where a secret comes from. Every secret in `proxy.toml` can be given inline (discouraged),
//! read from a file, read from an environment variable, or — for credentials the proxy only
//! has to *check* — stored as a SHA-256 digest, so the plain secret is never on disk.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::config::ConfigError;

/// A secret as written in the config file: `"inline"` or `{ file | env | sha256 | value = … }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum SecretSource {
    Inline(String),
    Ref(SecretRef),
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretRef {
    pub value: Option<String>,
    pub file: Option<PathBuf>,
    pub env: Option<String>,
    pub sha256: Option<String>,
}

/// SHA-256 digest of a secret. Credentials are compared digest to digest so that the
/// comparison has a fixed length and leaks nothing about the secret's length.
pub type Digest = [u8; 32];

pub fn sha256(data: &[u8]) -> Digest {
    let d = ring::digest::digest(&ring::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

pub fn to_hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

pub fn parse_hex_digest(text: &str) -> Option<Digest> {
    let text = text.trim();
    let text = text.strip_prefix("sha256:").unwrap_or(text);
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in text.as_bytes().chunks(2).enumerate() {
        let pair = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(out)
}

impl SecretSource {
    fn as_ref_parts(&self) -> SecretRef {
        match self {
            SecretSource::Inline(v) => SecretRef {
                value: Some(v.clone()),
                ..SecretRef::default()
            },
            SecretSource::Ref(r) => r.clone(),
        }
    }

    /// True when the secret is written in the config file itself.
    pub fn is_inline(&self) -> bool {
        self.as_ref_parts().value.is_some()
    }

    /// The digest used to check a presented credential.
    pub fn resolve_digest(&self, base_dir: &Path, key: &str) -> Result<Digest, ConfigError> {
        let parts = self.as_ref_parts();
        if let Some(hex) = &parts.sha256 {
            exactly_one(&parts, key)?;
            return parse_hex_digest(hex).ok_or_else(|| {
                ConfigError::invalid(key, "sha256 must be 64 hexadecimal characters")
            });
        }
        Ok(sha256(self.resolve_plain(base_dir, key)?.as_bytes()))
    }

    /// The plain secret, for secrets the proxy has to *send* (e.g. the upstream token).
    pub fn resolve_plain(&self, base_dir: &Path, key: &str) -> Result<String, ConfigError> {
        let parts = self.as_ref_parts();
        exactly_one(&parts, key)?;
        let secret = if let Some(v) = parts.value {
            v
        } else if let Some(file) = parts.file {
            let path = crate::config::resolve_path(base_dir, &file);
            let text = std::fs::read_to_string(&path).map_err(|e| {
                ConfigError::invalid(
                    key,
                    format!("cannot read secret file {}: {e}", path.display()),
                )
            })?;
            // `echo secret > file` leaves a newline that is not part of the secret.
            text.trim_end_matches(['\r', '\n']).to_string()
        } else if let Some(var) = parts.env {
            std::env::var(&var).map_err(|_| {
                ConfigError::invalid(key, format!("environment variable {var} is not set"))
            })?
        } else {
            return Err(ConfigError::invalid(
                key,
                "a sha256 digest cannot be used here: the proxy needs the secret itself",
            ));
        };
        if secret.is_empty() {
            return Err(ConfigError::invalid(key, "the secret is empty"));
        }
        Ok(secret)
    }
}

fn exactly_one(parts: &SecretRef, key: &str) -> Result<(), ConfigError> {
    let given = [
        parts.value.is_some(),
        parts.file.is_some(),
        parts.env.is_some(),
        parts.sha256.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if given == 1 {
        Ok(())
    } else {
        Err(ConfigError::invalid(
            key,
            "give exactly one of value, file, env or sha256",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_roundtrip() {
        let d = sha256(b"abc");
        assert_eq!(
            to_hex(&d),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(parse_hex_digest(&to_hex(&d)), Some(d));
        assert_eq!(parse_hex_digest(&format!("sha256:{}", to_hex(&d))), Some(d));
        assert_eq!(parse_hex_digest("abc"), None);
        assert_eq!(parse_hex_digest(&"zz".repeat(32)), None);
    }

    #[test]
    fn file_secret_drops_trailing_newline_and_env_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("t"), "s3cret\n").unwrap();
        let src = SecretSource::Ref(SecretRef {
            file: Some("t".into()),
            ..Default::default()
        });
        assert_eq!(src.resolve_plain(dir.path(), "k").unwrap(), "s3cret");
        let env = SecretSource::Ref(SecretRef {
            env: Some("APM_AUTH_PROXY_TEST_UNSET_VAR".into()),
            ..Default::default()
        });
        let err = env.resolve_plain(dir.path(), "k").unwrap_err().to_string();
        assert!(
            err.contains("APM_AUTH_PROXY_TEST_UNSET_VAR is not set"),
            "{err}"
        );
        let two = SecretSource::Ref(SecretRef {
            value: Some("a".into()),
            env: Some("B".into()),
            ..Default::default()
        });
        assert!(two.resolve_plain(dir.path(), "k").is_err());
    }
}
