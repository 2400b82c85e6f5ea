//! The ground floor: `proxy.toml` as written (serde model, unknown keys rejected, defaults),
//! read once with every relative path anchored at the file's directory. It imports nothing
//! else of the crate; the domain modules turn their sections into typed settings.

mod error;
mod file;
mod jwt;
mod values;

use std::path::{Path, PathBuf};

pub use error::{ConfigError, Problem, Problems};
pub use file::*;
pub use jwt::JwtIssuerConfig;
pub use values::{HumanDuration, SecretRef, SecretSource};

impl ConfigFile {
    /// Read and parse a config file; relative paths in it become paths from its directory.
    pub fn load(path: &Path) -> Result<ConfigFile, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut file = ConfigFile::parse(&text).map_err(|message| ConfigError::Parse {
            path: path.to_path_buf(),
            message,
        })?;
        let dir = path
            .parent()
            .map(Path::to_path_buf)
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from("."));
        file.anchor_paths(&dir);
        Ok(file)
    }

    /// Parse TOML text; relative paths stay relative to the working directory.
    pub fn parse(text: &str) -> Result<ConfigFile, String> {
        toml::from_str(text).map_err(|e| e.to_string().trim_end().to_string())
    }

    /// Make every path in the file relative to `dir` (absolute paths stay as they are).
    fn anchor_paths(&mut self, dir: &Path) {
        let anchor = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = dir.join(&*p);
            }
        };
        let ssl = &mut self.ssl;
        ssl.certificate.iter_mut().for_each(anchor);
        ssl.key.iter_mut().for_each(anchor);
        for sni in &mut ssl.sni {
            anchor(&mut sni.certificate);
            anchor(&mut sni.key);
        }
        ssl.certificate_authorities.iter_mut().for_each(anchor);
        anchor(&mut self.auth.api_key.keys_file);
        for jwt in &mut self.auth.jwt {
            jwt.jwks_file.iter_mut().for_each(anchor);
            jwt.ca_file.iter_mut().for_each(anchor);
            jwt.fetch_token_file.iter_mut().for_each(anchor);
        }
        self.usage.file.iter_mut().for_each(anchor);
        let secrets = self
            .auth
            .secret_token
            .iter_mut()
            .chain(self.auth.secret_tokens.iter_mut().map(|t| &mut t.secret))
            .chain(self.upstream.secret_token.iter_mut())
            .chain(
                self.upstreams
                    .iter_mut()
                    .filter_map(|u| u.secret_token.as_mut()),
            );
        for secret in secrets {
            if let SecretSource::Ref(SecretRef {
                file: Some(file), ..
            }) = secret
            {
                anchor(file);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_key_is_rejected_with_its_name() {
        let err = ConfigFile::parse("[server]\nlisten_addr = \"x\"\n").unwrap_err();
        assert!(err.contains("listen_addr"), "{err}");
    }

    #[test]
    fn bad_duration_is_a_parse_error_naming_the_key() {
        let err = ConfigFile::parse("[server]\nidle_timeout = \"forever\"").unwrap_err();
        assert!(
            err.contains("idle_timeout") && err.contains("invalid duration"),
            "{err}"
        );
    }

    #[test]
    fn absurd_durations_are_refused() {
        let err =
            ConfigFile::parse("[server]\nshutdown_grace_period = \"1000000000h\"").unwrap_err();
        assert!(
            err.contains("shutdown_grace_period") && err.contains("longer than a year"),
            "{err}"
        );
        assert!(ConfigFile::parse("[server]\nshutdown_grace_period = \"365d\"").is_ok());
    }

    #[test]
    fn relative_paths_are_anchored_at_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("proxy.toml");
        std::fs::write(
            &path,
            "[ssl]\ncertificate = \"c.pem\"\nkey = \"/abs/k.pem\"\n\
             [auth]\nsecret_token = { file = \"t\" }\n",
        )
        .unwrap();
        let file = ConfigFile::load(&path).unwrap();
        assert_eq!(file.ssl.certificate.unwrap(), dir.path().join("c.pem"));
        assert_eq!(file.ssl.key.unwrap(), PathBuf::from("/abs/k.pem"));
        assert_eq!(file.auth.api_key.keys_file, dir.path().join("keys.toml"));
        match file.auth.secret_token {
            Some(SecretSource::Ref(SecretRef { file: Some(f), .. })) => {
                assert_eq!(f, dir.path().join("t"))
            }
            other => panic!("{other:?}"),
        }
    }
}
