//! TLS material: PEM certificate chains and keys, the development certificate, the set of
//! certificates chosen by SNI, and the resolver the listener asks on every handshake. The
//! resolver holds the current set behind a swappable handle, so a reload replaces it without
//! touching open connections.

mod client;
mod policy;
mod reload;
mod settings;

pub use client::{verifier as client_verifier, ConnectionInfo, PeerCertificate};
pub use reload::CertificateReloader;
pub use settings::{client_auth_mode, CertificateFiles, SniCertificate, TlsSettings};

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use pingora::listeners::tls::TlsSettings as ListenerTlsSettings;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::danger::ClientCertVerifier;
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
    #[error("client certificate verifier: {0}")]
    Verifier(String),
    #[error("protocol policy: {0}")]
    Policy(String),
}

/// The crypto provider for loading keys: the installed policy's, or ring's defaults.
pub fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()))
}

/// Every certificate in a PEM file; at least one.
pub fn read_pem_certificates(
    path: &Path,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Read {
            what,
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// Read a PEM chain (leaf first) and a PEM key (PKCS#8, PKCS#1 or SEC1) and check that they
/// belong together.
pub fn load_certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let chain = read_pem_certificates(cert, "certificate")?;
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

/// Unix time of the leaf's notAfter.
pub fn not_after(key: &CertifiedKey) -> Option<i64> {
    let leaf = key.cert.first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
    Some(cert.validity().not_after.timestamp())
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

/// Every certificate the listener serves: a default, and others by server name.
#[derive(Debug)]
pub struct CertSet {
    default: Arc<CertifiedKey>,
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// `*.example.com` is stored as `example.com`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    /// Earliest notAfter of all served certificates (Unix seconds).
    pub earliest_not_after: Option<i64>,
    /// Each served certificate's notAfter, by the name it serves (`default` for the default).
    pub served: Vec<(String, i64)>,
}

impl CertSet {
    pub fn single(key: CertifiedKey) -> CertSet {
        let earliest_not_after = not_after(&key);
        CertSet {
            default: Arc::new(key),
            exact: HashMap::new(),
            wildcard: HashMap::new(),
            earliest_not_after,
            served: earliest_not_after
                .map(|t| ("default".to_string(), t))
                .into_iter()
                .collect(),
        }
    }

    /// Load the default certificate and every SNI entry.
    pub fn load(settings: &TlsSettings) -> Result<CertSet, TlsError> {
        let d = &settings.default;
        let mut set = CertSet::single(load_certified_key(&d.certificate, &d.key)?);
        for entry in &settings.sni {
            let f = &entry.files;
            let k = Arc::new(load_certified_key(&f.certificate, &f.key)?);
            let expires = not_after(&k);
            set.earliest_not_after = match (set.earliest_not_after, expires) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            for name in &entry.server_names {
                if let Some(t) = expires {
                    set.served.push((name.clone(), t));
                }
                match name.strip_prefix("*.") {
                    Some(suffix) => set.wildcard.insert(suffix.to_string(), k.clone()),
                    None => set.exact.insert(name.clone(), k.clone()),
                };
            }
        }
        Ok(set)
    }

    /// Install the protocol policy (before any key is loaded or listener built), create the
    /// development certificate when asked and both files are missing, and load the set.
    /// `None` in check mode when the development certificate would be generated.
    pub fn prepare(settings: &TlsSettings, create: bool) -> Result<Option<CertSet>, TlsError> {
        policy::install(&settings.provider)?;
        if settings.would_generate_dev_certificate() {
            if !create {
                return Ok(None);
            }
            ensure_dev_certificate(&settings.default.certificate, &settings.default.key)?;
        }
        CertSet::load(settings).map(Some)
    }

    pub fn select(&self, server_name: Option<&str>) -> Arc<CertifiedKey> {
        let Some(name) = server_name.map(str::to_ascii_lowercase) else {
            return self.default.clone();
        };
        if let Some(k) = self.exact.get(&name) {
            return k.clone();
        }
        name.split_once('.')
            .and_then(|(_, parent)| self.wildcard.get(parent))
            .unwrap_or(&self.default)
            .clone()
    }
}

/// Serves the current [`CertSet`]; [`CertResolver::replace`] swaps it for new handshakes.
/// Also publishes the seconds until the earliest served certificate expires.
#[derive(Debug)]
pub struct CertResolver {
    current: ArcSwap<CertSet>,
    earliest_not_after: AtomicI64,
}

impl CertResolver {
    pub fn new(set: CertSet) -> Self {
        CertResolver {
            earliest_not_after: AtomicI64::new(set.earliest_not_after.unwrap_or(i64::MAX)),
            current: ArcSwap::from_pointee(set),
        }
    }

    pub fn replace(&self, set: CertSet) {
        self.earliest_not_after.store(
            set.earliest_not_after.unwrap_or(i64::MAX),
            Ordering::Relaxed,
        );
        self.current.store(Arc::new(set));
    }

    /// Each served certificate's notAfter (Unix seconds), by the name it serves.
    pub fn not_after_by_name(&self) -> Vec<(String, i64)> {
        self.current.load().served.clone()
    }

    /// Seconds until the first served certificate expires (negative once expired).
    pub fn seconds_until_expiry(&self) -> i64 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        self.earliest_not_after
            .load(Ordering::Relaxed)
            .saturating_sub(now)
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load().select(hello.server_name()))
    }
}

/// Listener settings: the installed protocol policy (TLS 1.2/1.3 only), ALPN `h2` and
/// `http/1.1`, certificates from `resolver`, optional client-certificate verification.
pub fn listener_settings(
    resolver: Arc<CertResolver>,
    verifier: Option<Arc<dyn ClientCertVerifier>>,
) -> pingora::Result<ListenerTlsSettings> {
    let mut settings =
        ListenerTlsSettings::with_callbacks(Box::new(client::PeerCertificateCallback))?;
    settings.set_cert_resolver(resolver);
    if let Some(v) = verifier {
        settings.set_client_cert_verifier(v);
    }
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
        let k = load_certified_key(&cert, &key).unwrap();
        assert!(not_after(&k).unwrap() > 0);
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

    #[test]
    fn sni_selection() {
        let dir = tempfile::tempdir().unwrap();
        let mut keys = Vec::new();
        for i in 0..3 {
            let (c, k) = (
                dir.path().join(format!("{i}.crt")),
                dir.path().join(format!("{i}.key")),
            );
            ensure_dev_certificate(&c, &k).unwrap();
            keys.push(Arc::new(load_certified_key(&c, &k).unwrap()));
        }
        let mut set = CertSet::single((*keys[0]).clone());
        set.exact.insert("apm.example.com".into(), keys[1].clone());
        set.wildcard.insert("example.org".into(), keys[2].clone());
        let der = |k: &Arc<CertifiedKey>| k.cert[0].clone();
        assert_eq!(der(&set.select(Some("APM.example.com"))), der(&keys[1]));
        assert_eq!(der(&set.select(Some("a.example.org"))), der(&keys[2]));
        assert_eq!(der(&set.select(Some("a.b.example.org"))), der(&keys[0]));
        assert_eq!(der(&set.select(Some("other"))), der(&keys[0]));
        assert_eq!(der(&set.select(None)), der(&keys[0]));
    }
}
