//! Limits per client IP: anonymous event rates (APM Server's token buckets), anonymous
//! requests open at once, failed-authentication throttling, and connections open at once;
//! and per credential: a token's or API key's own rate limit.

mod connections;
mod credential_rate;
mod event_charge;
mod event_rate;
mod failed_auth;
mod open_requests;

pub use connections::{
    report_handshake_failures, ConnectionBook, ConnectionCaps, ConnectionGuard, ConnectionRefused,
};
pub use credential_rate::{BadRate, CredentialKey, CredentialRates, RateSpec, RateUnit};
pub use event_charge::EventCharge;
pub use event_rate::{Grant, RateLimiter};
pub use failed_auth::AuthThrottle;
pub use open_requests::{OpenRequests, Slot};
