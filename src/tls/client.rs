//! Client certificates: the verifier for `ssl.client_authentication`, and the handshake
//! callback that hands the verified leaf's identity (fingerprint, CN, SANs) to the HTTP layer
//! through Pingora's `SslDigest` extension.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use pingora::listeners::TlsAccept;
use pingora::protocols::tls::TlsRef;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;

use super::TlsError;
use crate::config::ClientAuthentication;
use crate::digest::{sha256, Digest};

/// What the proxy knows about a verified client certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCertificate {
    pub sha256: Digest,
    pub subject_cn: Option<String>,
    pub san_dns: Vec<String>,
    pub san_uri: Vec<String>,
}

impl PeerCertificate {
    pub fn from_der(der: &[u8]) -> Option<PeerCertificate> {
        use x509_parser::extensions::GeneralName;
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let subject_cn = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_string);
        let (mut san_dns, mut san_uri) = (Vec::new(), Vec::new());
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(d) => san_dns.push(d.to_string()),
                    GeneralName::URI(u) => san_uri.push(u.to_string()),
                    _ => {}
                }
            }
        }
        Some(PeerCertificate {
            sha256: sha256(der),
            subject_cn,
            san_dns,
            san_uri,
        })
    }
}

/// What the handshake tells the HTTP layer about a connection.
#[derive(Debug, Clone, Default)]
pub struct ConnectionInfo {
    /// The verified client certificate, if one was presented.
    pub peer_certificate: Option<PeerCertificate>,
    /// The server name the client asked for (SNI), lower-case.
    pub server_name: Option<String>,
}

/// Stores the connection's SNI and verified client certificate with the connection.
pub struct PeerCertificateCallback;

#[async_trait]
impl TlsAccept for PeerCertificateCallback {
    async fn handshake_complete_callback(
        &self,
        tls: &TlsRef,
    ) -> Option<Arc<dyn std::any::Any + Send + Sync>> {
        let info = ConnectionInfo {
            peer_certificate: tls
                .peer_certificate_der()
                .and_then(PeerCertificate::from_der),
            server_name: tls.server_name().map(str::to_ascii_lowercase),
        };
        Some(Arc::new(info) as Arc<dyn std::any::Any + Send + Sync>)
    }
}

/// The verifier for a mode; `None` for `none` (no certificate is requested).
pub fn verifier(
    mode: ClientAuthentication,
    authorities: &[PathBuf],
    provider: Arc<rustls::crypto::CryptoProvider>,
) -> Result<Option<Arc<dyn ClientCertVerifier>>, TlsError> {
    if mode == ClientAuthentication::None {
        return Ok(None);
    }
    let mut roots = RootCertStore::empty();
    for path in authorities {
        let certs = super::read_pem_certificates(path, "CA bundle")?;
        for c in certs {
            roots.add(c).map_err(|e| TlsError::Read {
                what: "CA certificate in",
                path: path.clone(),
                reason: e.to_string(),
            })?;
        }
    }
    let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
    let builder = match mode {
        ClientAuthentication::Optional => builder.allow_unauthenticated(),
        _ => builder,
    };
    builder
        .build()
        .map(Some)
        .map_err(|e| TlsError::Verifier(e.to_string()))
}
