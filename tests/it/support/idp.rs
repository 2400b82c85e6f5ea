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
    keys: Mutex<Vec<Value>>,
    discovery_fetches: AtomicUsize,
    jwks_fetches: AtomicUsize,
}

/// The identity provider: `GET /.well-known/openid-configuration`, `GET /jwks`.
pub struct IdentityProvider {
    pub addr: SocketAddr,
    state: Arc<State>,
    _runtime: tokio::runtime::Runtime,
}

impl IdentityProvider {
    pub fn start(keys: &[&SigningKey]) -> IdentityProvider {
        let (runtime, listener, addr) = super::listening_on("127.0.0.1:0".parse().unwrap());
        let state = Arc::new(State::default());
        *state.keys.lock().unwrap() = keys.iter().map(|k| k.jwk.clone()).collect();
        let (served, issuer) = (state.clone(), format!("http://{addr}"));
        runtime.spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (state, issuer) = (served.clone(), issuer.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let (state, issuer) = (state.clone(), issuer.clone());
                        async move {
                            Ok::<_, std::convert::Infallible>(answer(
                                &state,
                                &issuer,
                                req.uri().path(),
                            ))
                        }
                    });
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await;
                });
            }
        });
        IdentityProvider {
            addr,
            state,
            _runtime: runtime,
        }
    }

    /// Its `iss`, and the base of its discovery document.
    pub fn issuer(&self) -> String {
        format!("http://{}", self.addr)
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

fn answer(state: &State, issuer: &str, path: &str) -> hyper::Response<Full<Bytes>> {
    let body = match path {
        "/.well-known/openid-configuration" => {
            state.discovery_fetches.fetch_add(1, Ordering::SeqCst);
            json!({"issuer": issuer, "jwks_uri": format!("{issuer}/jwks")})
        }
        "/jwks" => {
            state.jwks_fetches.fetch_add(1, Ordering::SeqCst);
            json!({"keys": state.keys.lock().unwrap().clone()})
        }
        _ => {
            return hyper::Response::builder()
                .status(404)
                .body(Full::new(Bytes::new()))
                .unwrap()
        }
    };
    hyper::Response::builder()
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}
