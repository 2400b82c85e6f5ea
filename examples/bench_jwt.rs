//! What a JWT costs the proxy, for `bench/jwt.sh`, in a tight loop on one core:
//! `Authenticator::authenticate` on a `Bearer` secret token and on a cached JWT (an agent
//! reusing its token), and a first verification (the signature checked) per algorithm. Prints
//! `token_ns`, `jwt_cached_ns` and `jwt_uncached_<alg>_ns` (nanoseconds per call).
//! `bench_jwt --mint <dir>` instead writes `<dir>/jwks.json` (one ES256 key) and prints a
//! token of issuer `https://idp.example.com` signed with it, valid for two hours, for the
//! end-to-end comparison in `bench/jwt.sh`.

use std::hint::black_box;
use std::time::{Instant, SystemTime};

use apm_auth_proxy::auth::jwt::{issuers, JwtVerifier, KeySet};
use apm_auth_proxy::auth::{AuthOutcome, AuthSettings, Authenticator, CredentialStore};
use apm_auth_proxy::config::ConfigFile;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

const TOKEN: &str = "bench-token-0123456789abcdef0123456789";
const ISSUER: &str = "https://idp.example.com";

fn b64u(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// (algorithm, signing key, public JWK) for each algorithm measured.
fn keys() -> Vec<(Algorithm, EncodingKey, serde_json::Value)> {
    let mut out = Vec::new();
    let ec = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let p = ec.public_key_raw();
    out.push((
        Algorithm::ES256,
        EncodingKey::from_ec_pem(ec.serialize_pem().as_bytes()).expect("pem"),
        json!({"kty": "EC", "crv": "P-256", "kid": "ES256", "x": b64u(&p[1..33]), "y": b64u(&p[33..65])}),
    ));
    let ec384 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).expect("key");
    let p = ec384.public_key_raw();
    out.push((
        Algorithm::ES384,
        EncodingKey::from_ec_pem(ec384.serialize_pem().as_bytes()).expect("pem"),
        json!({"kty": "EC", "crv": "P-384", "kid": "ES384", "x": b64u(&p[1..49]), "y": b64u(&p[49..97])}),
    ));
    let ed = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("key");
    out.push((
        Algorithm::EdDSA,
        EncodingKey::from_ed_pem(ed.serialize_pem().as_bytes()).expect("pem"),
        json!({"kty": "OKP", "crv": "Ed25519", "kid": "EdDSA", "x": b64u(ed.public_key_raw())}),
    ));
    // RSA 2048 from openssl (ring cannot make RSA keys), for RS256 and PS256.
    let dir = std::env::temp_dir().join(format!("bench-jwt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let pem = dir.join("rsa.pem");
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    let path = pem.to_str().expect("path");
    run(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        path,
    ]);
    let modulus = String::from_utf8(run(&["rsa", "-noout", "-modulus", "-in", path])).expect("hex");
    let hex = modulus.trim().trim_start_matches("Modulus=");
    let n: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect();
    let rsa_pem = std::fs::read(&pem).expect("pem");
    let _ = std::fs::remove_dir_all(&dir);
    for alg in [Algorithm::RS256, Algorithm::PS256] {
        out.push((
            alg,
            EncodingKey::from_rsa_pem(&rsa_pem).expect("pem"),
            json!({"kty": "RSA", "kid": format!("{alg:?}"), "n": b64u(&n), "e": "AQAB"}),
        ));
    }
    out
}

/// `--mint <dir>`: a key set file and a token for the end-to-end bench.
fn mint(dir: &str) {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let p = pair.public_key_raw();
    let jwks = json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "bench",
        "x": b64u(&p[1..33]), "y": b64u(&p[33..65])}]});
    std::fs::write(format!("{dir}/jwks.json"), jwks.to_string()).expect("jwks.json");
    let unix = SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs();
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("bench".into());
    let claims =
        json!({"iss": ISSUER, "aud": "apm", "sub": "bench-agent", "iat": unix, "exp": unix + 7200});
    let key = EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).expect("pem");
    println!(
        "{}",
        jsonwebtoken::encode(&header, &claims, &key).expect("sign")
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let [_, flag, dir] = &args[..] {
        if flag == "--mint" {
            return mint(dir);
        }
    }
    let text = format!(
        "[auth]\nsecret_token = {TOKEN:?}\n[[auth.jwt]]\nname = \"idp\"\nissuer = {ISSUER:?}\n\
         discovery = true\naudiences = [\"apm\"]\n\
         algorithms = [\"RS256\", \"PS256\", \"ES256\", \"ES384\", \"EdDSA\"]\n"
    );
    let file = ConfigFile::parse(&text).expect("config");
    let settings = AuthSettings::try_from(&file.auth).expect("auth");
    let verifier = std::sync::Arc::new(JwtVerifier::new(issuers(&file.auth.jwt).expect("issuer")));
    let keys = keys();
    let jwks = json!({"keys": keys.iter().map(|k| k.2.clone()).collect::<Vec<_>>()});
    let algorithms = verifier.issuers()[0].settings.algorithms.clone();
    let set = KeySet::parse(jwks.to_string().as_bytes(), &algorithms).expect("keys");
    verifier.issuers()[0].set_keys(set);
    let auth = Authenticator::with_jwt(
        CredentialStore::load(&settings).expect("store"),
        Some(verifier.clone()),
    );
    let now = SystemTime::now();
    let unix = now
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs();
    let sign = |(alg, key, _): &(Algorithm, EncodingKey, serde_json::Value), sub: usize| {
        let mut header = Header::new(*alg);
        header.kid = Some(format!("{alg:?}"));
        let claims = json!({"iss": ISSUER, "aud": "apm", "sub": format!("agent-{sub}"),
                            "iat": unix, "exp": unix + 3600});
        jsonwebtoken::encode(&header, &claims, key).expect("sign")
    };
    let per_call = |headers: &[Vec<u8>], rounds: usize| {
        let start = Instant::now();
        for _ in 0..rounds {
            for h in headers {
                let outcome = auth.authenticate(Some(black_box(h)), now);
                assert!(
                    matches!(outcome, AuthOutcome::Authenticated(_)),
                    "{outcome:?}"
                );
            }
        }
        start.elapsed().as_nanos() as f64 / (headers.len() * rounds) as f64
    };
    let token = vec![format!("Bearer {TOKEN}").into_bytes()];
    let cached = vec![format!("Bearer {}", sign(&keys[0], 0)).into_bytes()];
    per_call(&cached, 1); // verified once: cached from now on
    let median = |f: &dyn Fn() -> f64| {
        let mut runs: Vec<f64> = (0..5).map(|_| f()).collect();
        runs.sort_by(f64::total_cmp);
        runs[2]
    };
    let token_ns = median(&|| per_call(&token, 200_000));
    let cached_ns = median(&|| per_call(&cached, 200_000));
    println!("token_ns {token_ns:.0}");
    println!("jwt_cached_ns {cached_ns:.0}");
    println!("jwt_cached_extra_ns {:.0}", cached_ns - token_ns);
    for (i, key) in keys.iter().enumerate() {
        // Distinct tokens, each verified once (a cache miss every time).
        let fresh: Vec<Vec<u8>> = (0..2_000)
            .map(|n| format!("Bearer {}", sign(key, 1_000_000 * (i + 1) + n)).into_bytes())
            .collect();
        println!("jwt_uncached_{:?}_ns {:.0}", key.0, per_call(&fresh, 1));
    }
}
