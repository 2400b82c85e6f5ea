//! An issuer's signing keys, from its JWKS document: public keys for signatures only (`use`
//! `sig` or absent), of a kind and algorithm the issuer accepts. Symmetric (`oct`) keys are
//! never taken: a shared secret published in a key set is no key at all.

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

/// One usable key.
#[derive(Clone)]
pub struct SigningKey {
    pub kid: Option<String>,
    /// The one algorithm the key is for, when the set says (`alg`).
    pub alg: Option<Algorithm>,
    /// The algorithms its kind of key can check.
    pub fits: fn(Algorithm) -> bool,
    pub key: DecodingKey,
}

/// The usable keys of a JWKS document, and how many entries were left out.
#[derive(Clone, Default)]
pub struct KeySet {
    pub keys: Vec<SigningKey>,
    pub skipped: usize,
}

/// Why a JWKS document was not read.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("not a JWKS document (a JSON object with a \"keys\" array): {0}")]
    NotJwks(String),
    #[error("no usable signing key among {0} entries")]
    NoUsableKey(usize),
}

fn rsa(a: Algorithm) -> bool {
    use Algorithm::*;
    matches!(a, RS256 | RS384 | RS512 | PS256 | PS384 | PS512)
}
fn p256(a: Algorithm) -> bool {
    a == Algorithm::ES256
}
fn p384(a: Algorithm) -> bool {
    a == Algorithm::ES384
}
fn ed25519(a: Algorithm) -> bool {
    a == Algorithm::EdDSA
}

impl KeySet {
    /// The keys of `document` that can check one of `accepted`.
    pub fn parse(document: &[u8], accepted: &[Algorithm]) -> Result<KeySet, JwksError> {
        #[derive(serde::Deserialize)]
        struct Document {
            keys: Vec<serde_json::Value>,
        }
        let doc: Document =
            serde_json::from_slice(document).map_err(|e| JwksError::NotJwks(e.to_string()))?;
        let mut set = KeySet::default();
        for entry in doc.keys {
            match usable(entry, accepted) {
                Some(key) => set.keys.push(key),
                None => set.skipped += 1,
            }
        }
        if set.keys.is_empty() {
            return Err(JwksError::NoUsableKey(set.skipped));
        }
        Ok(set)
    }

    /// The keys that may have signed a token with header `alg` and `kid`.
    pub fn candidates<'a>(
        &'a self,
        alg: Algorithm,
        kid: Option<&'a str>,
    ) -> impl Iterator<Item = &'a SigningKey> + 'a {
        self.keys.iter().filter(move |k| {
            (k.fits)(alg)
                && k.alg.is_none_or(|a| a == alg)
                && match (kid, &k.kid) {
                    (Some(wanted), Some(have)) => wanted == have,
                    (Some(_), None) => false,
                    (None, _) => true,
                }
        })
    }

    /// Is a key with this id still in the set? (A cached token's key may have been removed.)
    pub fn has_kid(&self, kid: Option<&str>) -> bool {
        match kid {
            Some(kid) => self.keys.iter().any(|k| k.kid.as_deref() == Some(kid)),
            None => !self.keys.is_empty(),
        }
    }
}

fn usable(entry: serde_json::Value, accepted: &[Algorithm]) -> Option<SigningKey> {
    let jwk: Jwk = serde_json::from_value(entry).ok()?;
    if matches!(&jwk.common.public_key_use, Some(u) if *u != PublicKeyUse::Signature) {
        return None;
    }
    let fits: fn(Algorithm) -> bool = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => rsa,
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => p256,
            EllipticCurve::P384 => p384,
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => ed25519,
        _ => return None,
    };
    let alg = match jwk.common.key_algorithm {
        Some(a) => Some(a.to_string().parse::<Algorithm>().ok()?),
        None => None,
    };
    if !accepted
        .iter()
        .any(|a| fits(*a) && alg.is_none_or(|k| k == *a))
    {
        return None;
    }
    let key = DecodingKey::from_jwk(&jwk).ok()?;
    Some(SigningKey {
        kid: jwk.common.key_id,
        alg,
        fits,
        key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const RSA_N: &str = "u1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gunVTLw7onLRnrq0_IzW7yWR7QkrmBL7jTKEn5u-qKhbwKfBstIs-bMY2Zkp18gnTxKLxoS2tFczGkPLPgizskuemMghRniWaoLcyehkd3qqGElvW_VDL5AaWTg0nLVkjRo9z-40RQzuVaE8AkAFmxZzow3x-VJYKdjykkJ0iT9wCS0DRTXu269V264Vf_3jvredZiKRkgwlL9xNAwxXFg0x_XFw005UWVRIkdgcKWTjpBP2dPwVZ4WWC-9aGVd-Gyn1o0CLelf4rEjGoXbAAEgAqeGUxrcIlbjXfbcmw";

    fn jwks(keys: &[serde_json::Value]) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({ "keys": keys })).unwrap()
    }

    #[test]
    fn only_public_signing_keys_of_an_accepted_kind() {
        let rsa = serde_json::json!({"kty": "RSA", "kid": "r1", "use": "sig", "alg": "RS256", "n": RSA_N, "e": "AQAB"});
        let enc =
            serde_json::json!({"kty": "RSA", "kid": "r2", "use": "enc", "n": RSA_N, "e": "AQAB"});
        let hmac = serde_json::json!({"kty": "oct", "kid": "h1", "k": "c2VjcmV0"});
        let junk = serde_json::json!({"kty": "XYZ"});
        let set =
            KeySet::parse(&jwks(&[rsa.clone(), enc, hmac, junk]), &[Algorithm::RS256]).unwrap();
        assert_eq!(set.keys.len(), 1);
        assert_eq!(set.skipped, 3);
        assert_eq!(set.candidates(Algorithm::RS256, Some("r1")).count(), 1);
        assert_eq!(set.candidates(Algorithm::RS256, Some("r2")).count(), 0);
        assert_eq!(set.candidates(Algorithm::ES256, Some("r1")).count(), 0);
        assert_eq!(
            set.candidates(Algorithm::PS256, Some("r1")).count(),
            0,
            "alg pinned to RS256"
        );
        assert!(set.has_kid(Some("r1")) && !set.has_kid(Some("gone")));
        // Not accepted by the issuer: nothing usable.
        assert!(matches!(
            KeySet::parse(&jwks(&[rsa]), &[Algorithm::ES256]),
            Err(JwksError::NoUsableKey(1))
        ));
        assert!(matches!(
            KeySet::parse(b"{}", &[Algorithm::RS256]),
            Err(JwksError::NotJwks(_))
        ));
    }
}
