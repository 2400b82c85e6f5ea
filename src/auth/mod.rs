//! Authentication and authorization, as plain functions over a credential store.
//!
//! Reproduces APM Server's auth layer (7.15+): who is calling ([`Authenticator::authenticate`])
//! and whether that caller may perform the endpoint's action ([`authorize`]). Nothing here
//! knows about Pingora or HTTP sessions, so every rule is unit-testable.

pub mod audit;
mod client_cert;
pub(crate) mod go_base64;
pub(crate) mod header;
mod identity;
pub mod jwt;
pub mod keys_file;
pub(crate) mod privileges;
mod secret;
mod settings;
mod store;

pub use client_cert::{IdentityMap, MappedIdentity};
pub use identity::{
    authorize, ActionRefused, AuthFailure, AuthOutcome, CallerKind, Identity, JwtRefusal,
};
pub use privileges::{Action, Privileges, UnknownPrivilege};
pub use secret::Secret;
pub use settings::{AuthSettings, TokenSettings};
pub use store::{Authenticator, CredentialState, CredentialStore};
