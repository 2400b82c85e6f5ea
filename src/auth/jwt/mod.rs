//! Signed tokens from the user's identity provider or cluster as credentials
//! (`[[auth.jwt]]`): `settings` (typed issuers), `keys` (JWKS → signing keys), `claims`
//! (dotted claim names), `verify` (the check and the identity it maps to, with the cache),
//! `fetch` (getting the keys: a file, a URL, or OIDC discovery).

mod claims;
pub mod fetch;
mod keys;
mod settings;
mod verify;

pub use keys::{JwksError, KeySet};
pub use settings::{issuers, IssuerSettings, KeySource, MAX_TOKEN_SIZE};
pub use verify::{looks_like_jwt, Issuer, JwtVerifier};
