//! Certificates made at test time: a CA that issues server and client certificates, and the
//! files a proxy under test is pointed at.

use std::path::PathBuf;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

/// A server certificate (and key) in a directory of its own, and the CA that signed it.
pub struct Pki {
    pub dir: tempfile::TempDir,
    pub ca_pem: String,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A test CA that issues server and client certificates.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
    pub pem: String,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let pem = issuer.pem();
        Ca { issuer, pem }
    }

    /// (certificate PEM, key PEM) for the given SANs; `client` makes it a client certificate.
    pub fn issue(&self, cn: &str, sans: &[&str], client: bool) -> (String, String) {
        let (uris, names): (Vec<&str>, Vec<&str>) = sans.iter().partition(|s| s.contains("://"));
        let mut params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        for uri in uris {
            params.subject_alt_names.push(rcgen::SanType::URI(
                rcgen::string::Ia5String::try_from(uri).unwrap(),
            ));
        }
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![if client {
            rcgen::ExtendedKeyUsagePurpose::ClientAuth
        } else {
            rcgen::ExtendedKeyUsagePurpose::ServerAuth
        }];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// A server certificate for `sans` written into a fresh directory.
    pub fn server_pki(&self, sans: &[&str]) -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let (cert_pem, key_pem) = self.issue("server", sans, false);
        let (cert, key) = (
            dir.path().join("server.pem"),
            dir.path().join("server-key.pem"),
        );
        std::fs::write(&cert, cert_pem).unwrap();
        std::fs::write(&key, key_pem).unwrap();
        Pki {
            dir,
            ca_pem: self.pem.clone(),
            cert,
            key,
        }
    }
}

/// The usual server PKI: a fresh CA and a certificate for localhost, 127.0.0.1 and ::1.
pub fn pki() -> Pki {
    Ca::new("apm-auth-proxy test CA").server_pki(&["localhost", "127.0.0.1", "::1"])
}

pub fn sha256(data: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, data)
        .as_ref()
        .to_vec()
}
