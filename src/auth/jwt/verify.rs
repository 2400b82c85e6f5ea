//! Verifying a bearer JWT against the configured issuers, and the identity it maps to.
//!
//! The token's `iss` picks the issuer (read before the signature is checked, and then checked
//! again by the signature's validation); its header's `alg` must be one the issuer accepts
//! (never `none` or HMAC); a `crit` header is refused (no extension is understood); its `kid`
//! picks the key — an unknown one asks for the keys to be fetched again (at most every
//! `min_refresh_interval`) and is refused meanwhile. A verified token is cached by its
//! digest until its `exp`, and only while its key is still in the issuer's set.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwapOption;
use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::Value;

use super::claims;
use super::keys::KeySet;
use super::settings::{IssuerSettings, MAX_TOKEN_SIZE};
use crate::auth::identity::{Identity, JwtRefusal};
use crate::auth::privileges::Privileges;
use crate::digest::{sha256, Digest};

/// A Bearer value shaped like a JWT (`eyJ….….…`): it goes to the issuers, never to the secret
/// tokens.
pub fn looks_like_jwt(value: &[u8]) -> bool {
    value.starts_with(b"eyJ") && value.iter().filter(|&&b| b == b'.').count() == 2
}

/// One issuer and its current keys.
pub struct Issuer {
    pub settings: IssuerSettings,
    keys: ArcSwapOption<KeySet>,
    /// A token came with a `kid` the set does not have.
    refresh_wanted: AtomicBool,
    /// A first fetch was tried (readiness waits for it, not for its success).
    attempted: AtomicBool,
}

impl Issuer {
    pub fn new(settings: IssuerSettings) -> Issuer {
        Issuer {
            settings,
            keys: ArcSwapOption::empty(),
            refresh_wanted: AtomicBool::new(false),
            attempted: AtomicBool::new(false),
        }
    }

    /// The keys as last fetched (`None`: never).
    pub fn keys(&self) -> Option<Arc<KeySet>> {
        self.keys.load_full()
    }

    pub fn set_keys(&self, keys: KeySet) {
        self.keys.store(Some(Arc::new(keys)));
        self.refresh_wanted.store(false, Ordering::Relaxed);
    }

    pub fn mark_attempted(&self) {
        self.attempted.store(true, Ordering::Relaxed);
    }

    pub fn attempted(&self) -> bool {
        self.attempted.load(Ordering::Relaxed)
    }

    /// Whether a fetch was asked for since the last one (and clears the request).
    pub fn take_refresh_request(&self) -> bool {
        self.refresh_wanted.swap(false, Ordering::Relaxed)
    }
}

struct Cached {
    identity: Identity,
    expires: u64,
    issuer: usize,
    kid: Option<String>,
}

/// Verified tokens kept at most (an agent fleet reuses a few; a RUM app's users many).
const CACHE_SIZE: usize = 10_000;

/// Every configured issuer, and the verified tokens.
pub struct JwtVerifier {
    issuers: Vec<Arc<Issuer>>,
    cache: Mutex<lru::LruCache<Digest, Cached>>,
}

fn b64(part: &str) -> Result<Vec<u8>, JwtRefusal> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| JwtRefusal::Malformed)
}

fn json(part: &str) -> Result<Value, JwtRefusal> {
    serde_json::from_slice(&b64(part)?).map_err(|_| JwtRefusal::Malformed)
}

/// The header's `alg`: HMAC (and `none`, which does not parse) never.
fn algorithm(name: &str) -> Result<Algorithm, JwtRefusal> {
    match name.parse::<Algorithm>() {
        Ok(Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) | Err(_) => {
            Err(JwtRefusal::Algorithm)
        }
        Ok(a) => Ok(a),
    }
}

/// A NumericDate claim (seconds since the epoch; JSON allows a fraction).
fn seconds(claims: &Value, name: &str) -> Option<Result<u64, JwtRefusal>> {
    let v = claims.get(name)?;
    Some(match (v.as_u64(), v.as_f64()) {
        (Some(s), _) => Ok(s),
        (None, Some(f)) if f >= 0.0 => Ok(f as u64),
        _ => Err(JwtRefusal::Malformed),
    })
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl JwtVerifier {
    pub fn new(issuers: Vec<IssuerSettings>) -> JwtVerifier {
        let size = NonZeroUsize::new(CACHE_SIZE).unwrap_or(NonZeroUsize::MIN);
        JwtVerifier {
            issuers: issuers
                .into_iter()
                .map(|s| Arc::new(Issuer::new(s)))
                .collect(),
            cache: Mutex::new(lru::LruCache::new(size)),
        }
    }

    pub fn issuers(&self) -> &[Arc<Issuer>] {
        &self.issuers
    }

    /// Every issuer's first fetch was tried.
    pub fn started(&self) -> bool {
        self.issuers.iter().all(|i| i.attempted())
    }

    /// The identity `token` stands for at `now`, or why not.
    pub fn verify(&self, token: &[u8], now: SystemTime) -> Result<Identity, JwtRefusal> {
        if token.len() > MAX_TOKEN_SIZE {
            return Err(JwtRefusal::TooLarge);
        }
        let digest = sha256(token);
        if let Some(identity) = self.cached(&digest, unix(now)) {
            return Ok(identity);
        }
        let text = std::str::from_utf8(token).map_err(|_| JwtRefusal::Malformed)?;
        let (index, identity, expires, kid) = self.check(text, now)?;
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.put(
            digest,
            Cached {
                identity: identity.clone(),
                expires,
                issuer: index,
                kid,
            },
        );
        Ok(identity)
    }

    /// A token verified before, still before its `exp`, whose key is still in the set.
    fn cached(&self, digest: &Digest, now: u64) -> Option<Identity> {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let hit = cache.get(digest)?;
        let key_kept = self.issuers[hit.issuer]
            .keys()
            .is_some_and(|k| k.has_kid(hit.kid.as_deref()));
        if now < hit.expires && key_kept {
            return Some(hit.identity.clone());
        }
        cache.pop(digest);
        None
    }

    /// The full check: (issuer index, identity, exp, kid).
    fn check(
        &self,
        token: &str,
        now: SystemTime,
    ) -> Result<(usize, Identity, u64, Option<String>), JwtRefusal> {
        let mut parts = token.split('.');
        let (Some(head), Some(body), Some(_sig), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtRefusal::Malformed);
        };
        let header = json(head)?;
        if header.get("crit").is_some() {
            return Err(JwtRefusal::Critical);
        }
        let alg = algorithm(header.get("alg").and_then(Value::as_str).unwrap_or("none"))?;
        let kid = header.get("kid").and_then(Value::as_str);
        let unverified = json(body)?;
        let iss = unverified.get("iss").and_then(Value::as_str);
        let (index, issuer) = self
            .issuers
            .iter()
            .enumerate()
            .find(|(_, i)| Some(i.settings.issuer.as_str()) == iss)
            .ok_or(JwtRefusal::UnknownIssuer)?;
        let s = &issuer.settings;
        if !s.algorithms.contains(&alg) {
            return Err(JwtRefusal::Algorithm);
        }
        let keys = issuer.keys().ok_or(JwtRefusal::NoKeys)?;
        let mut validation = Validation::new(alg);
        // Times are checked below against `now` (the caller's clock), not the library's.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.set_issuer(&[&s.issuer]);
        validation.set_required_spec_claims(&["exp"]);
        if s.audiences.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(&s.audiences);
        }
        let mut candidates = keys.candidates(alg, kid).peekable();
        if candidates.peek().is_none() {
            issuer.refresh_wanted.store(true, Ordering::Relaxed);
            return Err(JwtRefusal::UnknownKey);
        }
        let mut refusal = JwtRefusal::Signature;
        let mut claims = None;
        for key in candidates {
            match jsonwebtoken::decode::<Value>(token, &key.key, &validation) {
                Ok(data) => {
                    claims = Some(data.claims);
                    break;
                }
                Err(e) => {
                    refusal = match e.kind() {
                        ErrorKind::InvalidSignature => JwtRefusal::Signature,
                        ErrorKind::ExpiredSignature => JwtRefusal::Expired,
                        ErrorKind::ImmatureSignature => JwtRefusal::NotYetValid,
                        ErrorKind::InvalidAudience => JwtRefusal::Audience,
                        ErrorKind::InvalidIssuer => JwtRefusal::UnknownIssuer,
                        ErrorKind::MissingRequiredClaim(_) => JwtRefusal::MissingExpiry,
                        ErrorKind::InvalidAlgorithm => JwtRefusal::Algorithm,
                        _ => JwtRefusal::Malformed,
                    };
                    // Another key with the same id may still match the signature.
                    if refusal != JwtRefusal::Signature {
                        return Err(refusal);
                    }
                }
            }
        }
        let claims = claims.ok_or(refusal)?;
        let expires = seconds(&claims, "exp").ok_or(JwtRefusal::MissingExpiry)??;
        let (now, leeway) = (unix(now), s.leeway.as_secs());
        if expires.saturating_add(leeway) <= now {
            return Err(JwtRefusal::Expired);
        }
        if let Some(nbf) = seconds(&claims, "nbf") {
            if nbf? > now.saturating_add(leeway) {
                return Err(JwtRefusal::NotYetValid);
            }
        }
        let issued = seconds(&claims, "iat").transpose()?.unwrap_or(now);
        if expires.saturating_sub(issued) > s.max_lifetime.as_secs() + s.leeway.as_secs() {
            return Err(JwtRefusal::Lifetime);
        }
        for (path, wanted) in &s.required_claims {
            if claims::text(&claims, path).as_deref() != Some(wanted.as_str()) {
                return Err(JwtRefusal::Claim);
            }
        }
        let identity = identity(s, &claims)?;
        Ok((index, identity, expires, kid.map(str::to_string)))
    }
}

/// What a verified token's claims make of the caller under the issuer's mapping.
fn identity(s: &IssuerSettings, c: &Value) -> Result<Identity, JwtRefusal> {
    let subject = claims::text(c, &s.name_claim).ok_or(JwtRefusal::Claim)?;
    let privileges = match &s.privileges_claim {
        Some(claim) => {
            let named = claims::list(c, claim).ok_or(JwtRefusal::Claim)?;
            Privileges::known_in(named.iter().map(String::as_str)).intersect(s.privileges)
        }
        None => s.privileges,
    };
    let services = match &s.services_claim {
        // A token the mapping would bind to services but that names none is not unbound.
        Some(claim) => claims::list(c, claim)
            .filter(|l| !l.is_empty())
            .ok_or(JwtRefusal::Claim)?,
        None => Vec::new(),
    };
    let upstream = match (&s.upstream, &s.upstream_claim) {
        (Some(pool), _) => Some(pool.as_str().into()),
        (None, Some(claim)) => Some(claims::text(c, claim).ok_or(JwtRefusal::Claim)?.into()),
        (None, None) => None,
    };
    Ok(Identity::Jwt {
        name: format!("{}/{subject}", s.name).into(),
        subject: subject.into(),
        privileges,
        services: services.into(),
        upstream,
        rate_limit: s.rate_limit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::privileges::Action;
    use crate::config::ConfigFile;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    /// A key pair: what signs, and its public JWK.
    struct TestKey {
        encoding: EncodingKey,
        alg: Algorithm,
        jwk: Value,
    }

    fn b64u(bytes: &[u8]) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    fn ec_key(kid: &str) -> TestKey {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let point = pair.public_key_raw();
        TestKey {
            encoding: EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap(),
            alg: Algorithm::ES256,
            jwk: json!({"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig",
                        "x": b64u(&point[1..33]), "y": b64u(&point[33..65])}),
        }
    }

    fn ed_key(kid: &str) -> TestKey {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        TestKey {
            encoding: EncodingKey::from_ed_pem(pair.serialize_pem().as_bytes()).unwrap(),
            alg: Algorithm::EdDSA,
            jwk: json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": b64u(pair.public_key_raw())}),
        }
    }

    fn now() -> u64 {
        unix(SystemTime::now())
    }

    fn sign(key: &TestKey, kid: &str, claims: Value) -> String {
        let mut header = Header::new(key.alg);
        header.kid = Some(kid.into());
        jsonwebtoken::encode(&header, &claims, &key.encoding).unwrap()
    }

    fn claims(extra: Value) -> Value {
        let mut c = json!({"iss": "https://idp.example.com", "aud": "apm", "sub": "alice",
                           "iat": now(), "exp": now() + 600});
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    }

    fn verifier(extra: &str, keys: &[&TestKey]) -> JwtVerifier {
        let text = format!(
            "[[auth.jwt]]\nname = \"idp\"\nissuer = \"https://idp.example.com\"\n\
             audiences = [\"apm\"]\ndiscovery = true\n{extra}"
        );
        let file = ConfigFile::parse(&text).unwrap();
        let v = JwtVerifier::new(super::super::issuers(&file.auth.jwt).unwrap());
        set_keys(&v, keys);
        v
    }

    fn set_keys(v: &JwtVerifier, keys: &[&TestKey]) {
        let doc = json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()});
        let accepted = v.issuers[0].settings.algorithms.clone();
        let set = KeySet::parse(&serde_json::to_vec(&doc).unwrap(), &accepted).unwrap();
        v.issuers[0].set_keys(set);
    }

    fn check(v: &JwtVerifier, token: &str) -> Result<Identity, JwtRefusal> {
        v.verify(token.as_bytes(), SystemTime::now())
    }

    #[test]
    fn a_good_token_is_an_identity_under_the_issuers_mapping() {
        let (ec, ed) = (ec_key("e1"), ed_key("d1"));
        let v = verifier("", &[&ec, &ed]);
        for (key, kid) in [(&ec, "e1"), (&ed, "d1")] {
            let id = check(&v, &sign(key, kid, claims(json!({})))).unwrap();
            assert_eq!(id.credential().unwrap().1.as_ref(), "idp/alice");
            assert_eq!(id.display_name(), Some("alice"));
            assert!(id.privileges().allows(Action::EventWrite));
            assert!(!id.privileges().allows(Action::SourcemapWrite));
        }
        let mapped = verifier(
            "privileges = [\"event:write\", \"sourcemap:write\"]\nprivileges_claim = \"scope\"\n\
             services_claim = \"apm.services\"\nupstream_claim = \"tenant\"\n\
             required_claims = { \"kubernetes.io.namespace\" = \"shop\" }\n",
            &[&ec],
        );
        let token = sign(
            &ec,
            "e1",
            claims(json!({
                "scope": "openid sourcemap:write config_agent:read",
                "apm": {"services": ["shop", "ads"]},
                "tenant": "team-a",
                "kubernetes.io": {"namespace": "shop"},
            })),
        );
        match check(&mapped, &token).unwrap() {
            Identity::Jwt {
                privileges,
                services,
                upstream,
                ..
            } => {
                // The claim names sourcemap:write and config_agent:read; the ceiling allows
                // event:write and sourcemap:write: sourcemap:write only.
                assert_eq!(privileges.names(), ["sourcemap:write"]);
                assert_eq!(&*services, ["shop".to_string(), "ads".to_string()]);
                assert_eq!(upstream.as_deref(), Some("team-a"));
            }
            other => panic!("{other:?}"),
        }
        let elsewhere = sign(
            &ec,
            "e1",
            claims(
                json!({"scope": "event:write", "apm": {"services": ["shop"]},
            "tenant": "team-a", "kubernetes.io": {"namespace": "billing"}}),
            ),
        );
        assert_eq!(check(&mapped, &elsewhere), Err(JwtRefusal::Claim));
        let unbound = sign(
            &ec,
            "e1",
            claims(json!({"scope": "event:write", "tenant": "team-a",
            "kubernetes.io": {"namespace": "shop"}})),
        );
        assert_eq!(
            check(&mapped, &unbound),
            Err(JwtRefusal::Claim),
            "no services claim: not unbound"
        );
    }

    #[test]
    fn every_refusal_has_its_reason() {
        let (ec, other) = (ec_key("e1"), ec_key("e1"));
        let v = verifier("max_lifetime = \"1h\"\n", &[&ec]);
        let t = |c: Value| sign(&ec, "e1", claims(c));
        let cases = [
            (t(json!({"exp": now() - 3600})), JwtRefusal::Expired),
            (t(json!({"nbf": now() + 3600})), JwtRefusal::NotYetValid),
            (t(json!({"aud": "someone-else"})), JwtRefusal::Audience),
            (
                t(json!({"iss": "https://evil.example.com"})),
                JwtRefusal::UnknownIssuer,
            ),
            (t(json!({"exp": now() + 7200})), JwtRefusal::Lifetime),
            (sign(&other, "e1", claims(json!({}))), JwtRefusal::Signature),
            (
                sign(&ec, "rotated", claims(json!({}))),
                JwtRefusal::UnknownKey,
            ),
            ("eyJ.x.y".to_string(), JwtRefusal::Malformed),
            (
                format!("eyJ{}", "a".repeat(MAX_TOKEN_SIZE)),
                JwtRefusal::TooLarge,
            ),
        ];
        for (token, why) in cases {
            assert_eq!(check(&v, &token), Err(why), "{why:?}");
        }
        assert!(
            v.issuers[0].take_refresh_request(),
            "an unknown kid asks for the keys"
        );
        // A fractional exp (JSON's NumericDate allows one) is a time like any other.
        let fractional = t(json!({"exp": (now() + 300) as f64 + 0.5}));
        assert!(check(&v, &fractional).is_ok());
        // No exp at all.
        let mut c = claims(json!({}));
        c.as_object_mut().unwrap().remove("exp");
        assert_eq!(
            check(&v, &sign(&ec, "e1", c)),
            Err(JwtRefusal::MissingExpiry)
        );
        // `none`, HMAC (with the public key as the secret: key confusion), `crit`.
        let body = b64u(&serde_json::to_vec(&claims(json!({}))).unwrap());
        let head = |h: Value| b64u(&serde_json::to_vec(&h).unwrap());
        let none = format!("{}.{body}.", head(json!({"alg": "none"})));
        assert_eq!(check(&v, &none), Err(JwtRefusal::Algorithm));
        let hmac = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims(json!({})),
            &EncodingKey::from_secret(ec.jwk.to_string().as_bytes()),
        )
        .unwrap();
        assert_eq!(check(&v, &hmac), Err(JwtRefusal::Algorithm));
        let crit = format!(
            "{}.{body}.sig",
            head(json!({"alg": "ES256", "kid": "e1", "crit": ["exp"]}))
        );
        assert_eq!(check(&v, &crit), Err(JwtRefusal::Critical));
        // An issuer whose keys were never fetched refuses its tokens.
        let unfetched = JwtVerifier::new(vec![v.issuers[0].settings.clone()]);
        assert_eq!(check(&unfetched, &t(json!({}))), Err(JwtRefusal::NoKeys));
    }

    #[test]
    fn the_cache_never_outlives_the_token_or_its_key() {
        let (ec, next) = (ec_key("e1"), ec_key("e2"));
        let v = verifier("leeway = \"0s\"\n", &[&ec]);
        let token = sign(&ec, "e1", claims(json!({})));
        assert!(check(&v, &token).is_ok());
        assert!(check(&v, &token).is_ok(), "from the cache");
        // The key is rotated out: the cached token goes with it.
        set_keys(&v, &[&next]);
        assert_eq!(check(&v, &token), Err(JwtRefusal::UnknownKey));
        // Past its exp, a cached token is checked again, and refused.
        set_keys(&v, &[&ec]);
        let short = sign(&ec, "e1", claims(json!({"exp": now() + 1})));
        assert!(check(&v, &short).is_ok());
        let later = SystemTime::now() + std::time::Duration::from_secs(5);
        assert_eq!(v.verify(short.as_bytes(), later), Err(JwtRefusal::Expired));
    }

    #[test]
    fn only_jwt_shaped_bearer_values_go_to_the_issuers() {
        assert!(looks_like_jwt(b"eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln"));
        assert!(!looks_like_jwt(b"a-secret-token"));
        assert!(!looks_like_jwt(b"eyJ.only-one-dot"));
    }
}
