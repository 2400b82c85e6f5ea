//! `[ssl]` as typed settings: the certificate files, SNI names, the client-certificate mode
//! and the protocol policy as a ready crypto provider.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::crypto::CryptoProvider;

use super::policy;
use crate::config::{ClientAuthentication, Problems, SslConfig};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateFiles {
    pub certificate: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone)]
pub struct SniCertificate {
    /// Lower-case; `*.example.com` matches one label.
    pub server_names: Vec<String>,
    pub files: CertificateFiles,
}

#[derive(Debug, Clone)]
pub struct TlsSettings {
    pub default: CertificateFiles,
    pub generate_dev_certificate: bool,
    pub sni: Vec<SniCertificate>,
    /// `None`: certificates are reloaded on SIGHUP only.
    pub reload_interval: Option<Duration>,
    pub client_authentication: ClientAuthentication,
    pub certificate_authorities: Vec<PathBuf>,
    /// The protocol policy: versions, suites and groups.
    pub provider: Arc<CryptoProvider>,
}

impl TlsSettings {
    /// True when the development certificate is (or would be) generated: asked for, and
    /// neither file exists.
    pub fn would_generate_dev_certificate(&self) -> bool {
        self.generate_dev_certificate
            && !self.default.certificate.exists()
            && !self.default.key.exists()
    }

    /// Every file whose change means a reload (certificates and keys).
    pub fn watched_files(&self) -> Vec<PathBuf> {
        std::iter::once(&self.default)
            .chain(self.sni.iter().map(|s| &s.files))
            .flat_map(|f| [f.certificate.clone(), f.key.clone()])
            .collect()
    }
}

/// APM Server's rule: `required` when CAs are set and no mode is.
pub fn client_auth_mode(ssl: &SslConfig) -> ClientAuthentication {
    match (
        ssl.client_authentication,
        ssl.certificate_authorities.is_empty(),
    ) {
        (Some(mode), _) => mode,
        (None, false) => ClientAuthentication::Required,
        (None, true) => ClientAuthentication::None,
    }
}

impl TryFrom<&SslConfig> for TlsSettings {
    type Error = Problems;

    /// For `ssl.enabled = true`.
    fn try_from(ssl: &SslConfig) -> Result<TlsSettings, Problems> {
        let mut problems = Problems::default();
        let default = match (&ssl.certificate, &ssl.key) {
            (Some(certificate), Some(key)) => Some(CertificateFiles {
                certificate: certificate.clone(),
                key: key.clone(),
            }),
            _ => {
                problems.add(
                    "ssl",
                    "ssl.certificate and ssl.key are required when ssl.enabled = true",
                );
                None
            }
        };
        let provider = problems.take(policy::provider(ssl));
        let client_authentication = client_auth_mode(ssl);
        if client_authentication != ClientAuthentication::None
            && ssl.certificate_authorities.is_empty()
        {
            problems.add(
                "ssl.certificate_authorities",
                "client certificates need at least one CA bundle to verify them",
            );
        }
        let sni = ssl
            .sni
            .iter()
            .map(|s| SniCertificate {
                server_names: s
                    .server_names
                    .iter()
                    .map(|n| n.trim().to_ascii_lowercase())
                    .collect(),
                files: CertificateFiles {
                    certificate: s.certificate.clone(),
                    key: s.key.clone(),
                },
            })
            .collect();
        let (Some(default), Some(provider)) = (default, provider) else {
            return Err(problems);
        };
        problems.finish(|| TlsSettings {
            default,
            generate_dev_certificate: ssl.generate_dev_certificate,
            sni,
            reload_interval: Some(ssl.reload_interval.0).filter(|d| !d.is_zero()),
            client_authentication,
            certificate_authorities: ssl.certificate_authorities.clone(),
            provider: Arc::new(provider),
        })
    }
}
