//! Limits per client IP: anonymous event rates (APM Server's token buckets), anonymous
//! requests open at once, and failed-authentication throttling.

mod event_rate;
mod failed_auth;
mod open_requests;

pub use event_rate::{Grant, RateLimiter};
pub use failed_auth::AuthThrottle;
pub use open_requests::{OpenRequests, Slot};
