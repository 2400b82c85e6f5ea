//! Client certificates as credentials: `ssl.client_identities` maps a verified certificate
//! (by SHA-256 fingerprint, subject CN, SAN DNS name or SAN URI) to a name and privileges.

use super::identity::Identity;
use super::privileges::Privileges;
use crate::config::{ClientIdentityConfig, Problems};
use crate::digest::{parse_hex_digest, Digest};
use crate::tls::PeerCertificate;

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

impl TryFrom<&[ClientIdentityConfig]> for IdentityMap {
    type Error = Problems;

    /// `ssl.client_identities`: exactly one matcher each, privileges by name.
    fn try_from(list: &[ClientIdentityConfig]) -> Result<IdentityMap, Problems> {
        let mut problems = Problems::default();
        let mut entries = Vec::new();
        for (i, c) in list.iter().enumerate() {
            let key = format!("ssl.client_identities[{i}]");
            let mut matchers = Vec::new();
            if let Some(h) = &c.sha256 {
                let hex: String = h.chars().filter(|c| *c != ':').collect();
                match parse_hex_digest(&hex) {
                    Some(d) => matchers.push(Matcher::Sha256(d)),
                    None => problems.add(
                        format!("{key}.sha256"),
                        "must be 64 hexadecimal characters (colons allowed)",
                    ),
                }
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
            let given = [
                c.sha256.is_some(),
                c.subject_cn.is_some(),
                c.san_dns.is_some(),
                c.san_uri.is_some(),
            ];
            if given.iter().filter(|g| **g).count() != 1 {
                problems.add(
                    key.clone(),
                    "give exactly one of sha256, subject_cn, san_dns or san_uri",
                );
            }
            let privileges = match Privileges::parse_list(&c.privileges) {
                Ok(p) => p,
                Err(e) => {
                    problems.add(format!("{key}.privileges"), e.to_string());
                    continue;
                }
            };
            if given.iter().filter(|g| **g).count() == 1 && matchers.len() == 1 {
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
        }
        problems.finish(|| IdentityMap { entries })
    }
}

impl IdentityMap {
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
