//! Where a secret comes from, typed: inline (discouraged), a file, an environment variable,
//! or — for credentials the proxy only has to *check* — a SHA-256 digest, so the plain secret
//! is never on disk. Which form was given is decided once, from the file model; the secret
//! itself is read when credentials are (re)loaded.

use std::path::PathBuf;

use crate::config::{Problem, SecretRef, SecretSource};
use crate::digest::{parse_hex_digest, sha256, Digest};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Secret {
    Inline(String),
    File(PathBuf),
    Env(String),
    Sha256(Digest),
}

impl Secret {
    /// The secret at `key` in the file model: exactly one form, a well-formed digest.
    pub fn from_source(source: &SecretSource, key: &str) -> Result<Secret, Problem> {
        let parts = match source {
            SecretSource::Inline(v) => {
                return Ok(Secret::Inline(v.clone()));
            }
            SecretSource::Ref(r) => r,
        };
        let SecretRef {
            value,
            file,
            env,
            sha256,
        } = parts;
        let given = [
            value.is_some(),
            file.is_some(),
            env.is_some(),
            sha256.is_some(),
        ];
        if given.iter().filter(|b| **b).count() != 1 {
            return Err(Problem::new(
                key,
                "give exactly one of value, file, env or sha256",
            ));
        }
        Ok(if let Some(v) = value {
            Secret::Inline(v.clone())
        } else if let Some(f) = file {
            Secret::File(f.clone())
        } else if let Some(e) = env {
            Secret::Env(e.clone())
        } else {
            let hex = sha256.as_deref().unwrap_or_default();
            Secret::Sha256(
                parse_hex_digest(hex)
                    .ok_or_else(|| Problem::new(key, "sha256 must be 64 hexadecimal characters"))?,
            )
        })
    }

    /// A secret the proxy has to *send*: a digest will not do.
    pub fn plain_from_source(source: &SecretSource, key: &str) -> Result<Secret, Problem> {
        match Secret::from_source(source, key)? {
            Secret::Sha256(_) => Err(Problem::new(
                key,
                "a sha256 digest cannot be used here: the proxy needs the secret itself",
            )),
            secret => Ok(secret),
        }
    }

    /// The digest used to check a presented credential.
    pub fn digest(&self, key: &str) -> Result<Digest, Problem> {
        match self {
            Secret::Sha256(d) => Ok(*d),
            _ => Ok(sha256(self.read(key)?.as_bytes())),
        }
    }

    /// The plain secret (from the file or the environment as they are now).
    pub fn read(&self, key: &str) -> Result<String, Problem> {
        let secret = match self {
            Secret::Inline(v) => v.clone(),
            Secret::File(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    Problem::new(
                        key,
                        format!("cannot read secret file {}: {e}", path.display()),
                    )
                })?;
                // `echo secret > file` leaves a newline that is not part of the secret.
                text.trim_end_matches(['\r', '\n']).to_string()
            }
            Secret::Env(var) => std::env::var(var)
                .map_err(|_| Problem::new(key, format!("environment variable {var} is not set")))?,
            Secret::Sha256(_) => {
                return Err(Problem::new(
                    key,
                    "a sha256 digest cannot be used here: the proxy needs the secret itself",
                ))
            }
        };
        if secret.is_empty() {
            return Err(Problem::new(key, "the secret is empty"));
        }
        if is_placeholder(&secret) {
            return Err(Problem::new(
                key,
                "the secret is a placeholder from an example; generate one with \
                 `apm-auth-proxy token generate`",
            ));
        }
        Ok(secret)
    }
}

/// Text that templates ship in place of a secret (`REPLACE-WITH-…`, `changeme`): left in a
/// deployed file it would become a credential everyone can read in the template.
fn is_placeholder(secret: &str) -> bool {
    // Compared lower-case with `-` and `_` removed: `REPLACE-WITH`, `change_me`, `ChangeMe`.
    const MARKERS: [&str; 4] = ["replacewith", "replaceme", "changeme", "placeholder"];
    let folded = secret.to_ascii_lowercase().replace(['-', '_'], "");
    MARKERS.iter().any(|m| folded.contains(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_secret_drops_trailing_newline_and_env_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("t"), "s3cret\n").unwrap();
        let file = Secret::File(dir.path().join("t"));
        assert_eq!(file.read("k").unwrap(), "s3cret");
        let env = Secret::Env("APM_AUTH_PROXY_TEST_UNSET_VAR".into());
        let err = env.read("k").unwrap_err().to_string();
        assert!(
            err.contains("APM_AUTH_PROXY_TEST_UNSET_VAR is not set"),
            "{err}"
        );
    }

    #[test]
    fn a_placeholder_from_a_template_is_refused() {
        for text in [
            "REPLACE-WITH-A-TOKEN-FROM-apm-auth-proxy-token-generate",
            "changeme",
            "Change_Me-please",
            "<placeholder>",
        ] {
            let err = Secret::Inline(text.into()).read("auth.secret_token");
            assert!(
                err.unwrap_err().problem.contains("placeholder"),
                "{text} accepted"
            );
        }
        let real = "4f0c2a9e7b1d8c3f6a5e0b9d2c7f1a8e";
        assert_eq!(Secret::Inline(real.into()).read("k").unwrap(), real);
    }

    #[test]
    fn exactly_one_form_and_digests_only_where_checked() {
        let two = SecretSource::Ref(SecretRef {
            value: Some("a".into()),
            env: Some("B".into()),
            ..Default::default()
        });
        assert_eq!(
            Secret::from_source(&two, "k").unwrap_err().problem,
            "give exactly one of value, file, env or sha256"
        );
        let digest = SecretSource::Ref(SecretRef {
            sha256: Some("ab".repeat(32)),
            ..Default::default()
        });
        assert_eq!(
            Secret::from_source(&digest, "k").unwrap(),
            Secret::Sha256([0xab; 32])
        );
        assert!(Secret::plain_from_source(&digest, "upstream.secret_token").is_err());
        let short = SecretSource::Ref(SecretRef {
            sha256: Some("ab".into()),
            ..Default::default()
        });
        assert!(Secret::from_source(&short, "k").is_err());
    }
}
