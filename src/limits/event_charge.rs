//! Whose tokens an admitted intake body's events take, decided once at admission and
//! charged as the body streams.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use super::credential_rate::{CredentialKey, CredentialRates, RateSpec};
use super::event_rate::{Grant, RateLimiter};

pub enum EventCharge {
    /// An anonymous client's: its IP's bucket.
    PerIp {
        limiter: Arc<RateLimiter>,
        ip: IpAddr,
    },
    /// A credential's own events limit.
    Credential {
        rates: Arc<CredentialRates>,
        who: CredentialKey,
        spec: RateSpec,
    },
}

impl EventCharge {
    /// Reserve `n` events' tokens (see [`Grant`]).
    pub fn reserve(&self, n: u32, now: Instant) -> Grant {
        match self {
            EventCharge::PerIp { limiter, ip } => limiter.reserve(*ip, n, now),
            EventCharge::Credential { rates, who, spec } => rates.reserve(who, *spec, n, now),
        }
    }

    /// How long until the bucket has a token again (a refused client's retry hint).
    pub fn next_token_in(&self, now: Instant) -> std::time::Duration {
        match self {
            EventCharge::PerIp { limiter, ip } => limiter.next_token_in(*ip, now),
            EventCharge::Credential { rates, who, spec } => rates.next_token_in(who, *spec, now),
        }
    }

    /// The credential's own limit, rather than an anonymous IP's.
    pub fn is_credential(&self) -> bool {
        matches!(self, EventCharge::Credential { .. })
    }
}

/// The same bucket: the same limiter (by identity) and IP, or the same credential.
impl PartialEq for EventCharge {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (
                EventCharge::PerIp { limiter: a, ip: x },
                EventCharge::PerIp { limiter: b, ip: y },
            ) => Arc::ptr_eq(a, b) && x == y,
            (
                EventCharge::Credential {
                    rates: a, who: x, ..
                },
                EventCharge::Credential {
                    rates: b, who: y, ..
                },
            ) => Arc::ptr_eq(a, b) && x == y,
            _ => false,
        }
    }
}

impl Eq for EventCharge {}

impl std::fmt::Debug for EventCharge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EventCharge::PerIp { ip, .. } => f.debug_struct("PerIp").field("ip", ip).finish(),
            EventCharge::Credential { who, spec, .. } => f
                .debug_struct("Credential")
                .field("who", who)
                .field("spec", spec)
                .finish(),
        }
    }
}
