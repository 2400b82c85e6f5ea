//! Client certificates as credentials: `ssl.client_identities` maps a verified certificate
//! (by SHA-256 fingerprint, subject CN, SAN DNS name or SAN URI) to a name and privileges.

use super::{Identity, Privileges};
use crate::config::{ClientIdentityConfig, ConfigError};
use crate::secrets::{parse_hex_digest, Digest};
use crate::tls::client::PeerCertificate;

#[derive(Debug, Clone)]
enum Matcher {
    Sha256(Digest),
    SubjectCn(String),
    SanDns(String),
    SanUri(String),
}

#[derive(Debug, Clone)]
pub struct MappedIdentity {
    pub identity: Identity,
    /// The certificate is a second factor only: a token or API key is required as well.
    pub require_credential: bool,
}

#[derive(Debug, Clone, Default)]
pub struct IdentityMap {
    entries: Vec<(Matcher, MappedIdentity)>,
}

impl IdentityMap {
    pub fn from_config(list: &[ClientIdentityConfig]) -> Result<IdentityMap, ConfigError> {
        let mut entries = Vec::new();
        for (i, c) in list.iter().enumerate() {
            let key = format!("ssl.client_identities[{i}]");
            let mut matchers = Vec::new();
            if let Some(h) = &c.sha256 {
                let hex: String = h.chars().filter(|c| *c != ':').collect();
                matchers.push(Matcher::Sha256(parse_hex_digest(&hex).ok_or_else(
                    || {
                        ConfigError::invalid(
                            format!("{key}.sha256"),
                            "must be 64 hexadecimal characters (colons allowed)",
                        )
                    },
                )?));
            }
            if let Some(v) = &c.subject_cn {
                matchers.push(Matcher::SubjectCn(v.clone()));
            }
            if let Some(v) = &c.san_dns {
                matchers.push(Matcher::SanDns(v.to_ascii_lowercase()));
            }
            if let Some(v) = &c.san_uri {
                matchers.push(Matcher::SanUri(v.clone()));
            }
            if matchers.len() != 1 {
                return Err(ConfigError::invalid(
                    key,
                    "give exactly one of sha256, subject_cn, san_dns or san_uri",
                ));
            }
            let privileges = Privileges::parse_list(&c.privileges)
                .map_err(|e| ConfigError::invalid(format!("{key}.privileges"), e.to_string()))?;
            entries.push((
                matchers.remove(0),
                MappedIdentity {
                    identity: Identity::ClientCert {
                        name: c.name.as_str().into(),
                        privileges,
                    },
                    require_credential: c.require_credential,
                },
            ));
        }
        Ok(IdentityMap { entries })
    }

    /// The first configured identity the certificate matches.
    pub fn lookup(&self, cert: &PeerCertificate) -> Option<&MappedIdentity> {
        self.entries.iter().find_map(|(m, id)| {
            let hit = match m {
                Matcher::Sha256(d) => *d == cert.sha256,
                Matcher::SubjectCn(cn) => cert.subject_cn.as_deref() == Some(cn.as_str()),
                Matcher::SanDns(d) => cert.san_dns.iter().any(|n| n.eq_ignore_ascii_case(d)),
                Matcher::SanUri(u) => cert.san_uri.iter().any(|n| n == u),
            };
            hit.then_some(id)
        })
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}
