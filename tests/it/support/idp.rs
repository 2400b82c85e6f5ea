//! A stand-in identity provider on loopback: an OIDC discovery document and a JWKS whose keys
//! the test changes (rotation: a key added, one removed), counting how often each is fetched;
//! and signing keys (RSA, EC P-256, Ed25519) made at test time to mint tokens with.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use http_body_util::Full;
use hyper::body::Bytes;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

/// A signing key and its public JWK.
pub struct SigningKey {
    pub kid: String,
    pub alg: Algorithm,
    encoding: EncodingKey,
    pub jwk: Value,
}

fn b64u(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl SigningKey {
    pub fn ec(kid: &str) -> SigningKey {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let point = pair.public_key_raw();
        SigningKey {
            kid: kid.into(),
            alg: Algorithm::ES256,
            encoding: EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap(),
            jwk: json!({"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig", "alg": "ES256",
                        "x": b64u(&point[1..33]), "y": b64u(&point[33..65])}),
        }
    }

    pub fn ed25519(kid: &str) -> SigningKey {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        SigningKey {
            kid: kid.into(),
            alg: Algorithm::EdDSA,
            encoding: EncodingKey::from_ed_pem(pair.serialize_pem().as_bytes()).unwrap(),
            jwk: json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": b64u(pair.public_key_raw())}),
        }
    }

    /// A 2048-bit RSA key made by `openssl` (ring cannot make RSA keys), for RS256.
    pub fn rsa(kid: &str) -> SigningKey {
        let dir = tempfile::tempdir().unwrap();
        let pem = dir.path().join("rsa.pem");
        let ok = std::process::Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
            ])
            .arg(&pem)
            .output()
            .unwrap();
        assert!(
            ok.status.success(),
            "{}",
            String::from_utf8_lossy(&ok.stderr)
        );
        let modulus = std::process::Command::new("openssl")
            .args(["rsa", "-noout", "-modulus", "-in"])
            .arg(&pem)
            .output()
            .unwrap();
        let hex = String::from_utf8(modulus.stdout).unwrap();
        let hex = hex.trim().trim_start_matches("Modulus=");
        let n: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        SigningKey {
            kid: kid.into(),
            alg: Algorithm::RS256,
            encoding: EncodingKey::from_rsa_pem(&std::fs::read(&pem).unwrap()).unwrap(),
            jwk: json!({"kty": "RSA", "kid": kid, "use": "sig", "n": b64u(&n), "e": "AQAB"}),
        }
    }

    /// A token with these claims, signed by this key (its `kid` in the header).
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }

    /// The same, with another `kid` in the header.
    pub fn sign_as(&self, kid: &str, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(kid.into());
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[derive(Default)]
struct State {
    /// The bearer token a JWKS fetch must carry, when set (the API server's way).
    fetch_token: Option<String>,
    keys: Mutex<Vec<Value>>,
    discovery_fetches: AtomicUsize,
    jwks_fetches: AtomicUsize,
}

/// The identity provider: `GET /.well-known/openid-configuration`, `GET /jwks`.
pub struct IdentityProvider {
    pub addr: SocketAddr,
    scheme: &'static str,
    state: Arc<State>,
    _runtime: tokio::runtime::Runtime,
}

impl IdentityProvider {
    pub fn start(keys: &[&SigningKey]) -> IdentityProvider {
        IdentityProvider::serve(keys, None, None)
    }

    /// Over HTTPS with `pki`'s certificate, as a cluster's API server: the key set only to a
    /// fetch carrying `Authorization: Bearer <fetch_token>`.
    pub fn start_tls(
        keys: &[&SigningKey],
        pki: &super::Pki,
        fetch_token: &str,
    ) -> IdentityProvider {
        IdentityProvider::serve(keys, Some(pki), Some(fetch_token))
    }

    fn serve(
        keys: &[&SigningKey],
        pki: Option<&super::Pki>,
        fetch_token: Option<&str>,
    ) -> IdentityProvider {
        let (runtime, listener, addr) = super::listening_on("127.0.0.1:0".parse().unwrap());
        let state = Arc::new(State {
            fetch_token: fetch_token.map(str::to_string),
            ..State::default()
        });
        *state.keys.lock().unwrap() = keys.iter().map(|k| k.jwk.clone()).collect();
        let tls = pki.map(acceptor);
        let scheme = if tls.is_some() { "https" } else { "http" };
        let (served, issuer) = (
            state.clone(),
            format!("{scheme}://localhost:{}", addr.port()),
        );
        runtime.spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (state, issuer, tls) = (served.clone(), issuer.clone(), tls.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| {
                            let (state, issuer) = (state.clone(), issuer.clone());
                            let bearer = (req.headers().get("authorization")).and_then(|v| {
                                v.to_str().ok()?.strip_prefix("Bearer ").map(str::to_string)
                            });
                            let path = req.uri().path().to_string();
                            async move {
                                Ok::<_, std::convert::Infallible>(answer(
                                    &state,
                                    &issuer,
                                    &path,
                                    bearer.as_deref(),
                                ))
                            }
                        },
                    );
                    let http = hyper::server::conn::http1::Builder::new();
                    match tls {
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(stream).await {
                                let io = hyper_util::rt::TokioIo::new(stream);
                                let _ = http.serve_connection(io, service).await;
                            }
                        }
                        None => {
                            let io = hyper_util::rt::TokioIo::new(stream);
                            let _ = http.serve_connection(io, service).await;
                        }
                    }
                });
            }
        });
        IdentityProvider {
            addr,
            scheme,
            state,
            _runtime: runtime,
        }
    }

    /// Its `iss`, and the base of its discovery document.
    pub fn issuer(&self) -> String {
        format!("{}://localhost:{}", self.scheme, self.addr.port())
    }

    /// From now on, the JWKS holds these keys.
    pub fn set_keys(&self, keys: &[&SigningKey]) {
        *self.state.keys.lock().unwrap() = keys.iter().map(|k| k.jwk.clone()).collect();
    }

    pub fn jwks_fetches(&self) -> usize {
        self.state.jwks_fetches.load(Ordering::SeqCst)
    }

    pub fn discovery_fetches(&self) -> usize {
        self.state.discovery_fetches.load(Ordering::SeqCst)
    }

    /// Claims for a token of this issuer: `sub`, audience `apm`, valid for ten minutes, and
    /// `extra` on top (a `null` removes a claim).
    pub fn claims(&self, sub: &str, extra: Value) -> Value {
        let now = unix_now();
        let mut c =
            json!({"iss": self.issuer(), "aud": "apm", "sub": sub, "iat": now, "exp": now + 600});
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c
    }
}

/// A TLS acceptor with `pki`'s server certificate.
fn acceptor(pki: &super::Pki) -> tokio_rustls::TlsAcceptor {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&pki.cert)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_file(&pki.key).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

fn answer(
    state: &State,
    issuer: &str,
    path: &str,
    bearer: Option<&str>,
) -> hyper::Response<Full<Bytes>> {
    let refused = |status: u16| {
        hyper::Response::builder()
            .status(status)
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    if state.fetch_token.is_some() && state.fetch_token.as_deref() != bearer {
        return refused(401);
    }
    let body = match path {
        "/.well-known/openid-configuration" => {
            state.discovery_fetches.fetch_add(1, Ordering::SeqCst);
            json!({"issuer": issuer, "jwks_uri": format!("{issuer}/jwks")})
        }
        "/jwks" | "/openid/v1/jwks" => {
            state.jwks_fetches.fetch_add(1, Ordering::SeqCst);
            json!({"keys": state.keys.lock().unwrap().clone()})
        }
        _ => return refused(404),
    };
    hyper::Response::builder()
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}
