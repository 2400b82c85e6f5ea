//! Rate limits per credential (`rate_limit` on a secret token or an API key): one token
//! bucket per credential, shared by every client that uses it, so one noisy service cannot
//! flood the APM Server while the others go on. Enforced like the anonymous per-IP limits:
//! a token per request at admission (429), and with an events limit each batch of ten
//! events as the body streams, waiting up to a second for tokens (then 429 mid-stream).

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::event_rate::{Bucket, Grant, BURST_MULTIPLIER, MAX_WAIT};
use crate::config::Problem;
use crate::credential::CredentialKind;

/// What a credential's limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateUnit {
    /// Events (and one per request): the intake bodies are read to count them.
    Events,
    /// Requests only: bodies are not read.
    Requests,
}

/// `200/s` (events), `200 events/s`, `50 requests/s`, each optionally followed by
/// `burst <n>` (default: three times the rate, as APM Server's anonymous limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateSpec {
    pub per_second: u32,
    pub burst: u32,
    pub unit: RateUnit,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a rate: use \"<n>/s\" (events), \"<n> events/s\" or \"<n> requests/s\", \
     optionally followed by \"burst <n>\" (n ≥ 1)"
)]
pub struct BadRate(pub String);

impl RateSpec {
    /// An optional `rate_limit` setting at `key` of the config: `Ok(None)` when it is unset.
    pub fn setting(key: &str, text: Option<&str>) -> Result<Option<RateSpec>, Problem> {
        text.map(|t| {
            t.parse()
                .map_err(|e: BadRate| Problem::new(key, e.to_string()))
        })
        .transpose()
    }
}

impl FromStr for RateSpec {
    type Err = BadRate;

    fn from_str(text: &str) -> Result<RateSpec, BadRate> {
        let bad = || BadRate(text.to_string());
        let words: Vec<&str> = text.split_whitespace().collect();
        let (rate, rest) = match words.as_slice() {
            [rate, rest @ ..] => (*rate, rest),
            [] => return Err(bad()),
        };
        let (number, unit, rest) = match (rate.strip_suffix("/s"), rest) {
            (Some(n), rest) => (n, RateUnit::Events, rest),
            (None, [u, rest @ ..]) if *u == "events/s" => (rate, RateUnit::Events, rest),
            (None, [u, rest @ ..]) if *u == "requests/s" => (rate, RateUnit::Requests, rest),
            _ => return Err(bad()),
        };
        let per_second: u32 = number.parse().ok().filter(|n| *n > 0).ok_or_else(bad)?;
        let burst = match rest {
            [] => per_second.saturating_mul(BURST_MULTIPLIER),
            ["burst", n] => n.parse().ok().filter(|n| *n > 0).ok_or_else(bad)?,
            _ => return Err(bad()),
        };
        Ok(RateSpec {
            per_second,
            burst,
            unit,
        })
    }
}

impl fmt::Display for RateSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.unit {
            RateUnit::Events => "events",
            RateUnit::Requests => "requests",
        };
        write!(f, "{} {unit}/s burst {}", self.per_second, self.burst)
    }
}

/// A credential, as the buckets know it: its kind and name (or key id).
pub type CredentialKey = (CredentialKind, Arc<str>);

/// Buckets kept at most: configured credentials are few, but JWT identities come from the
/// identity provider; the least recently used bucket goes first (it refills to full anyway
/// when idle for its burst's worth of time).
const MAX_BUCKETS: usize = 65_536;

/// One bucket per limited credential.
pub struct CredentialRates {
    buckets: Mutex<lru::LruCache<CredentialKey, (RateSpec, Bucket)>>,
}

impl Default for CredentialRates {
    fn default() -> Self {
        let cap = std::num::NonZeroUsize::new(MAX_BUCKETS).unwrap_or(std::num::NonZeroUsize::MIN);
        CredentialRates {
            buckets: Mutex::new(lru::LruCache::new(cap)),
        }
    }
}

impl CredentialRates {
    /// Request level: one token, without waiting.
    pub fn allow(&self, who: &CredentialKey, spec: RateSpec, now: Instant) -> bool {
        self.take(who, spec, 1, now, Duration::ZERO) == Grant::Now
    }

    /// How long until this credential has a token again (for a client's `Retry-After`).
    pub fn next_token_in(&self, who: &CredentialKey, spec: RateSpec, now: Instant) -> Duration {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let (rate, burst) = (f64::from(spec.per_second), f64::from(spec.burst));
        buckets
            .get(who)
            .map_or(Duration::ZERO, |(_, b)| b.next_token_in(rate, burst, now))
    }

    /// Event level: a batch of `n` may wait up to a second.
    pub fn reserve(&self, who: &CredentialKey, spec: RateSpec, n: u32, now: Instant) -> Grant {
        self.take(who, spec, n, now, MAX_WAIT)
    }

    fn take(
        &self,
        who: &CredentialKey,
        spec: RateSpec,
        n: u32,
        now: Instant,
        max_wait: Duration,
    ) -> Grant {
        let (rate, burst) = (f64::from(spec.per_second), f64::from(spec.burst));
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        // The key is cloned only for a credential's first request.
        if !buckets.contains(who) {
            buckets.put(who.clone(), (spec, Bucket::full(burst, now)));
        }
        let Some(entry) = buckets.get_mut(who) else {
            return Grant::Refused;
        };
        if entry.0 != spec {
            // The limit changed with a reload: start over from a full bucket.
            *entry = (spec, Bucket::full(burst, now));
        }
        entry.1.take(rate, burst, n, now, max_wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_read_as_written() {
        let spec = |s: &str| s.parse::<RateSpec>();
        assert_eq!(
            spec("200/s"),
            Ok(RateSpec {
                per_second: 200,
                burst: 600,
                unit: RateUnit::Events
            })
        );
        assert_eq!(spec("200 events/s").unwrap(), spec("200/s").unwrap());
        assert_eq!(
            spec("50 requests/s burst 60"),
            Ok(RateSpec {
                per_second: 50,
                burst: 60,
                unit: RateUnit::Requests
            })
        );
        assert_eq!(spec("5/s burst 9").unwrap().burst, 9);
        for bad in [
            "",
            "200",
            "0/s",
            "-1/s",
            "200/m",
            "200 bytes/s",
            "5/s burst",
            "5/s burst 0",
            "5/s x 9",
        ] {
            assert!(spec(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            spec("50 requests/s").unwrap().to_string(),
            "50 requests/s burst 150"
        );
    }

    #[test]
    fn each_credential_has_its_own_bucket_and_a_changed_limit_starts_over() {
        let rates = CredentialRates::default();
        let spec: RateSpec = "2/s burst 3".parse().unwrap();
        let (a, b): (CredentialKey, CredentialKey) = (
            (CredentialKind::Token, "a".into()),
            (CredentialKind::Token, "b".into()),
        );
        let t = Instant::now();
        for _ in 0..3 {
            assert!(rates.allow(&a, spec, t));
        }
        assert!(!rates.allow(&a, spec, t), "the burst is spent");
        assert!(
            rates.allow(&b, spec, t),
            "another credential is not affected"
        );
        assert!(
            rates.allow(&a, spec, t + Duration::from_millis(500)),
            "refilled at 2/s"
        );
        // Ten events at 2/s from an empty bucket would wait 5 s: refused.
        assert_eq!(
            rates.reserve(&a, spec, 3, t + Duration::from_millis(500)),
            Grant::Refused
        );
        let wider: RateSpec = "2/s burst 30".parse().unwrap();
        assert_eq!(rates.reserve(&a, wider, 10, t), Grant::Now);
    }
}
