//! TLS material: loading PEM certificate chains and keys, the development certificate, and
//! the certificate resolver that the listener asks on every handshake. The resolver holds
//! the current certificate behind a swappable handle, so a reload replaces it without
//! touching open connections.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use pingora::listeners::tls::TlsSettings;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} {path}: {reason}")]
    Read {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("{path}: no PEM certificate found")]
    NoCertificate { path: PathBuf },
    #[error("certificate {cert} and key {key} are not usable together: {reason}")]
    Unusable {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
    #[error("cannot create the development certificate: {0}")]
    Generate(String),
}

/// The process-wide rustls crypto provider (ring, as Pingora's rustls backend uses).
pub fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    if let Some(p) = rustls::crypto::CryptoProvider::get_default() {
        return p.clone();
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()))
}

/// Read a PEM chain (leaf first) and a PEM key (PKCS#8, PKCS#1 or SEC1) and check that they
/// belong together.
pub fn load_certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Read {
            what: "certificate",
            path: cert.to_path_buf(),
            reason: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert.to_path_buf(),
        });
    }
    let private_key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Read {
        what: "private key",
        path: key.to_path_buf(),
        reason: e.to_string(),
    })?;
    CertifiedKey::from_der(chain, private_key, &crypto_provider()).map_err(|e| TlsError::Unusable {
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Write a self-signed certificate for localhost / 127.0.0.1 / ::1 when neither file exists.
/// Returns true when it created them.
pub fn ensure_dev_certificate(cert: &Path, key: &Path) -> Result<bool, TlsError> {
    if cert.exists() || key.exists() {
        return Ok(false);
    }
    let names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    let generated =
        rcgen::generate_simple_self_signed(names).map_err(|e| TlsError::Generate(e.to_string()))?;
    for dir in [cert.parent(), key.parent()].into_iter().flatten() {
        std::fs::create_dir_all(dir)
            .map_err(|e| TlsError::Generate(format!("{}: {e}", dir.display())))?;
    }
    write_file(cert, generated.cert.pem().as_bytes(), 0o644)?;
    write_file(key, generated.signing_key.serialize_pem().as_bytes(), 0o600)?;
    Ok(true)
}

fn write_file(path: &Path, data: &[u8], mode: u32) -> Result<(), TlsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .and_then(|mut f| f.write_all(data))
        .map_err(|e| TlsError::Generate(format!("{}: {e}", path.display())))
}

/// Serves the current certificate; [`CertResolver::replace`] swaps it for new handshakes.
#[derive(Debug)]
pub struct CertResolver {
    current: ArcSwap<CertifiedKey>,
}

impl CertResolver {
    pub fn new(key: CertifiedKey) -> Self {
        CertResolver {
            current: ArcSwap::from_pointee(key),
        }
    }

    pub fn replace(&self, key: CertifiedKey) {
        self.current.store(Arc::new(key));
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// Listener settings: TLS 1.2 and 1.3 only (Pingora's rustls acceptor offers nothing
/// older), ALPN `h2` and `http/1.1`, certificates from `resolver`.
pub fn listener_settings(resolver: Arc<CertResolver>) -> pingora::Result<TlsSettings> {
    // The paths are unused: with a resolver set, Pingora never reads certificate files.
    let mut settings = TlsSettings::intermediate("", "")?;
    settings.set_cert_resolver(resolver);
    settings.enable_h2();
    Ok(settings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_certificate_is_created_once_and_loads() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("c/dev.crt"), dir.path().join("c/dev.key"));
        assert!(ensure_dev_certificate(&cert, &key).unwrap());
        assert!(!ensure_dev_certificate(&cert, &key).unwrap());
        load_certified_key(&cert, &key).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn mismatched_or_missing_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let (c1, k1) = (dir.path().join("1.crt"), dir.path().join("1.key"));
        let (c2, k2) = (dir.path().join("2.crt"), dir.path().join("2.key"));
        ensure_dev_certificate(&c1, &k1).unwrap();
        ensure_dev_certificate(&c2, &k2).unwrap();
        assert!(matches!(
            load_certified_key(&c1, &k2),
            Err(TlsError::Unusable { .. })
        ));
        assert!(matches!(
            load_certified_key(&dir.path().join("none"), &k1),
            Err(TlsError::Read { .. })
        ));
        std::fs::write(dir.path().join("empty.crt"), "not pem").unwrap();
        assert!(matches!(
            load_certified_key(&dir.path().join("empty.crt"), &k1),
            Err(TlsError::NoCertificate { .. })
        ));
    }
}
