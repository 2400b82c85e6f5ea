//! Protocol policy: which TLS versions, cipher suites and key exchange groups the listener
//! offers. Pingora's rustls acceptor takes them from the process-wide crypto provider, so
//! the policy is applied by installing a trimmed provider before any listener is built.
//! Restricting versions works through the suites: without TLS 1.2 suites there is no 1.2.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::SupportedCipherSuite;

use crate::config::{Problem, SslConfig};

fn suite_name(s: &SupportedCipherSuite) -> String {
    format!("{:?}", s.suite())
}

fn is_tls13(s: &SupportedCipherSuite) -> bool {
    matches!(s, SupportedCipherSuite::Tls13(_))
}

/// The provider that implements `ssl`'s policy.
pub fn provider(ssl: &SslConfig) -> Result<CryptoProvider, Problem> {
    let mut p = rustls::crypto::ring::default_provider();
    let (tls12, tls13) = versions(ssl)?;
    if !ssl.cipher_suites.is_empty() {
        let all = p.cipher_suites.clone();
        p.cipher_suites = ssl
            .cipher_suites
            .iter()
            .enumerate()
            .map(|(i, name)| {
                all.iter()
                    .find(|s| suite_name(s).eq_ignore_ascii_case(name.trim()))
                    .copied()
                    .ok_or_else(|| {
                        Problem::new(
                            format!("ssl.cipher_suites[{i}]"),
                            format!(
                                "unknown cipher suite {name:?}; known: {}",
                                all.iter().map(suite_name).collect::<Vec<_>>().join(", ")
                            ),
                        )
                    })
            })
            .collect::<Result<_, _>>()?;
    }
    p.cipher_suites
        .retain(|s| if is_tls13(s) { tls13 } else { tls12 });
    if p.cipher_suites.is_empty() {
        return Err(Problem::new(
            "ssl.cipher_suites",
            "no cipher suite is left for the supported protocols",
        ));
    }
    if !ssl.curve_types.is_empty() {
        let all = p.kx_groups.clone();
        p.kx_groups = ssl
            .curve_types
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let wanted = match name.trim().to_ascii_uppercase().as_str() {
                    "X25519" => "X25519",
                    "P-256" | "SECP256R1" => "secp256r1",
                    "P-384" | "SECP384R1" => "secp384r1",
                    _ => "",
                };
                all.iter()
                    .find(|g| format!("{:?}", g.name()) == wanted)
                    .copied()
                    .ok_or_else(|| {
                        Problem::new(
                            format!("ssl.curve_types[{i}]"),
                            format!(
                                "unknown key exchange group {name:?}; use X25519, P-256 or P-384"
                            ),
                        )
                    })
            })
            .collect::<Result<_, _>>()?;
    }
    Ok(p)
}

/// (TLS 1.2 allowed, TLS 1.3 allowed) from `ssl.supported_protocols`.
fn versions(ssl: &SslConfig) -> Result<(bool, bool), Problem> {
    let (mut tls12, mut tls13) = (false, false);
    for (i, v) in ssl.supported_protocols.iter().enumerate() {
        match v.trim() {
            "TLSv1.2" => tls12 = true,
            "TLSv1.3" => tls13 = true,
            "TLSv1" | "TLSv1.0" | "TLSv1.1" | "SSLv3" => {
                return Err(Problem::new(
                    format!("ssl.supported_protocols[{i}]"),
                    format!("{v} is insecure and never accepted; use TLSv1.2 and/or TLSv1.3"),
                ))
            }
            _ => {
                return Err(Problem::new(
                    format!("ssl.supported_protocols[{i}]"),
                    format!("unknown protocol {v:?}; use TLSv1.2 and/or TLSv1.3"),
                ))
            }
        }
    }
    if !(tls12 || tls13) {
        return Err(Problem::new(
            "ssl.supported_protocols",
            "must name TLSv1.2, TLSv1.3 or both",
        ));
    }
    Ok((tls12, tls13))
}

/// Install `provider` as the process-wide one. Must run before any listener is built. A
/// provider already installed with another policy would silently stay in force (rustls keeps
/// the first): that is an error, never ignored.
pub fn install(provider: &Arc<CryptoProvider>) -> Result<(), super::TlsError> {
    if CryptoProvider::install_default((**provider).clone()).is_ok() {
        return Ok(());
    }
    let installed = CryptoProvider::get_default().map(|p| policy_of(p));
    if installed.as_ref() == Some(&policy_of(provider)) {
        return Ok(());
    }
    Err(super::TlsError::Policy(format!(
        "another TLS policy is already in force in this process ({installed:?}); \
         wanted {:?}",
        policy_of(provider)
    )))
}

/// What a provider allows: its cipher suites and key-exchange groups, by name.
fn policy_of(provider: &CryptoProvider) -> (Vec<String>, Vec<String>) {
    (
        provider
            .cipher_suites
            .iter()
            .map(|s| format!("{:?}", s.suite()))
            .collect(),
        provider
            .kx_groups
            .iter()
            .map(|g| format!("{:?}", g.name()))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ssl(protocols: &[&str], suites: &[&str], curves: &[&str]) -> SslConfig {
        SslConfig {
            supported_protocols: protocols.iter().map(|s| s.to_string()).collect(),
            cipher_suites: suites.iter().map(|s| s.to_string()).collect(),
            curve_types: curves.iter().map(|s| s.to_string()).collect(),
            ..SslConfig::default()
        }
    }

    #[test]
    fn policies_compare_by_their_suites_and_groups() {
        let both = provider(&ssl(&["TLSv1.2", "TLSv1.3"], &[], &[])).unwrap();
        let only13 = provider(&ssl(&["TLSv1.3"], &[], &[])).unwrap();
        assert_eq!(policy_of(&both), policy_of(&both.clone()));
        assert_ne!(policy_of(&both), policy_of(&only13));
    }

    #[test]
    fn versions_restrict_suites() {
        // Non-empty first: `all` holds on an empty list.
        let p = provider(&ssl(&["TLSv1.3"], &[], &[])).unwrap();
        assert!(!p.cipher_suites.is_empty() && p.cipher_suites.iter().all(is_tls13));
        let p = provider(&ssl(&["TLSv1.2"], &[], &[])).unwrap();
        assert!(!p.cipher_suites.is_empty() && p.cipher_suites.iter().all(|s| !is_tls13(s)));
        let p = provider(&SslConfig::default()).unwrap();
        assert!(
            p.cipher_suites.iter().any(is_tls13) && p.cipher_suites.iter().any(|s| !is_tls13(s))
        );
    }

    #[test]
    fn names_are_checked() {
        let p = provider(&ssl(
            &["TLSv1.2", "TLSv1.3"],
            &["TLS13_AES_256_GCM_SHA384"],
            &["X25519"],
        ))
        .unwrap();
        assert_eq!(p.cipher_suites.len(), 1);
        assert_eq!(p.kx_groups.len(), 1);
        for (bad, key) in [
            (ssl(&["TLSv1.1"], &[], &[]), "ssl.supported_protocols[0]"),
            (
                ssl(&["TLSv1.2"], &["TLS_RSA_WITH_RC4_128_SHA"], &[]),
                "ssl.cipher_suites[0]",
            ),
            (
                ssl(
                    &["TLSv1.3"],
                    &["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"],
                    &[],
                ),
                "ssl.cipher_suites",
            ),
            (ssl(&["TLSv1.2"], &[], &["P-521"]), "ssl.curve_types[0]"),
        ] {
            let err = provider(&bad).unwrap_err().to_string();
            assert!(err.starts_with(key), "{err}");
        }
    }
}
