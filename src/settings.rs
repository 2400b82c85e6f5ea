//! The whole configuration as typed settings, built in one step from the file model: each
//! section is converted by the module that owns it (`TryFrom` next to its type), the few
//! rules that span sections are checked here, and every problem of the file is reported at
//! once. `check` and `run` both start from [`Settings::load`]; nothing parses a config
//! string again after it.

use std::path::Path;

use crate::admin::AdminSettings;
use crate::admission::AdmissionSettings;
use crate::auth::{AuthSettings, IdentityMap};
use crate::config::{ClientAuthentication, ConfigError, ConfigFile, Problems};
use crate::forward::ServerSettings;
use crate::logging::LogSettings;
use crate::tls::{client_auth_mode, TlsSettings};
use crate::upstream::UpstreamSettings;
use crate::usage::UsageSettings;

#[derive(Debug, Clone)]
pub struct Settings {
    pub server: ServerSettings,
    /// `None`: plain HTTP (`ssl.enabled = false`).
    pub tls: Option<TlsSettings>,
    pub auth: AuthSettings,
    /// Client certificates that are credentials (`ssl.client_identities`).
    pub identities: IdentityMap,
    pub admission: AdmissionSettings,
    pub upstream: UpstreamSettings,
    pub log: LogSettings,
    pub admin: AdminSettings,
    pub usage: UsageSettings,
}

impl Settings {
    /// Read `path` and turn it into settings.
    pub fn load(path: &Path) -> Result<Settings, ConfigError> {
        Settings::try_from(&ConfigFile::load(path)?)
    }
}

impl TryFrom<&ConfigFile> for Settings {
    type Error = ConfigError;

    fn try_from(file: &ConfigFile) -> Result<Settings, ConfigError> {
        let mut problems = Problems::default();
        let server = problems.take(ServerSettings::try_from(&file.server));
        let tls = if file.ssl.enabled {
            problems.take(TlsSettings::try_from(&file.ssl)).map(Some)
        } else {
            Some(None)
        };
        let auth = problems.take(AuthSettings::try_from(&file.auth));
        let identities = problems.take(IdentityMap::try_from(&file.ssl.client_identities[..]));
        let admission = problems.take(AdmissionSettings::try_from(file));
        let upstream = problems.take(UpstreamSettings::try_from(file));
        if let Some(u) = &upstream {
            for (i, t) in file.auth.secret_tokens.iter().enumerate() {
                if let Some(pool) = t.upstream.as_deref().filter(|p| !u.has_pool(p)) {
                    problems.add(
                        format!("auth.secret_tokens[{i}].upstream"),
                        format!("no pool named {pool:?}"),
                    );
                }
            }
            for (i, j) in file.auth.jwt.iter().enumerate() {
                if let Some(pool) = j.upstream.as_deref().filter(|p| !u.has_pool(p)) {
                    problems.add(
                        format!("auth.jwt[{i}].upstream"),
                        format!("no pool named {pool:?}"),
                    );
                }
            }
        }
        let log = problems.take(LogSettings::try_from(&file.log));
        let admin = problems.take(AdminSettings::try_from(&file.admin));
        let usage = problems.take(UsageSettings::try_from(file));
        if let (Some(server), Some(Some(admin_listen))) =
            (&server, admin.as_ref().map(|a| a.listen))
        {
            if server.listen == admin_listen {
                problems.add(
                    "admin.listen",
                    "must differ from server.listen: the admin endpoints never share the agents' port",
                );
            }
        }

        let no_credential = file.auth.secret_token.is_none()
            && file.auth.secret_tokens.is_empty()
            && !file.auth.api_key.enabled
            && file.auth.jwt.is_empty()
            && file.ssl.client_identities.is_empty();
        if no_credential {
            problems.add(
                "auth",
                "no credential is configured: set auth.secret_token, auth.secret_tokens, \
                 auth.api_key.enabled = true, [[auth.jwt]] or ssl.client_identities (the proxy \
                 never runs open)",
            );
        }
        if !file.ssl.client_identities.is_empty()
            && (!file.ssl.enabled || client_auth_mode(&file.ssl) == ClientAuthentication::None)
        {
            problems.add(
                "ssl.client_identities",
                "set ssl.client_authentication (and ssl.certificate_authorities) to use client identities",
            );
        }
        match (
            server, tls, auth, identities, admission, upstream, log, admin, usage,
        ) {
            (
                Some(server),
                Some(tls),
                Some(auth),
                Some(identities),
                Some(admission),
                Some(upstream),
                Some(log),
                Some(admin),
                Some(usage),
            ) if problems.is_empty() => Ok(Settings {
                server,
                tls,
                auth,
                identities,
                admission,
                upstream,
                log,
                admin,
                usage,
            }),
            _ => Err(ConfigError::Invalid(problems)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(text: &str) -> Result<Settings, String> {
        let mut file = ConfigFile::parse(text).map_err(|e| e.to_string())?;
        if !text.contains("[ssl]") {
            file.ssl.enabled = false;
        }
        Settings::try_from(&file).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_with_a_token_are_valid() {
        let s = settings("[auth]\nsecret_token = \"t\"").unwrap();
        assert!(s.tls.is_none());
        assert_eq!(s.auth.tokens.len(), 1);
    }

    #[test]
    fn no_credential_at_all_is_refused() {
        let err = settings("").unwrap_err();
        assert!(
            err.starts_with("auth: no credential is configured"),
            "{err}"
        );
    }

    #[test]
    fn problems_of_every_section_come_together() {
        let err = settings(
            "[server]\nthreads = 0\n[ssl]\ncertificate = \"c.pem\"\n\
             [upstream]\nurl = \"https://apm\"\n[log]\nlevel = \"apm=loud\"\n",
        )
        .unwrap_err();
        let keys: Vec<&str> = err.lines().map(|l| l.split(": ").next().unwrap()).collect();
        assert_eq!(
            keys,
            ["server.threads", "ssl", "upstream.url", "log.level", "auth"],
            "{err}"
        );
    }

    #[test]
    fn client_identities_need_client_authentication() {
        let err = settings(
            "[[ssl.client_identities]]\nname = \"a\"\nsubject_cn = \"a\"\nprivileges = []\n",
        )
        .unwrap_err();
        assert!(
            err.starts_with("ssl.client_identities: set ssl.client_authentication"),
            "{err}"
        );
    }
}
