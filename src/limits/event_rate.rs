//! Per-client-IP event rate limiting for anonymous traffic, as APM Server does it
//! (`beater/ratelimit`, golang.org/x/time/rate): a token bucket per IP refilled at
//! `event_limit` tokens/s with a burst of 3 × `event_limit`, kept in an LRU of `ip_limit`
//! IPs. When a new IP evicts the least recently used one, it inherits the evicted bucket —
//! so a flood of new addresses cannot mint fresh full buckets.

use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lru::LruCache;

/// APM Server's burst multiplier.
pub const BURST_MULTIPLIER: u32 = 3;
/// How long an event batch may wait for tokens before it is refused (APM Server: 1 s).
pub const MAX_WAIT: Duration = Duration::from_secs(1);

/// A token bucket: `tokens` as of `updated`.
#[derive(Debug, Clone)]
pub(super) struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl Bucket {
    pub(super) fn full(burst: f64, now: Instant) -> Bucket {
        Bucket {
            tokens: burst,
            updated: now,
        }
    }

    /// How long until one token is there (zero when one is now), without taking it.
    pub(super) fn next_token_in(&self, rate: f64, burst: f64, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        let tokens = (self.tokens + elapsed * rate).min(burst);
        Duration::from_secs_f64(((1.0 - tokens) / rate).max(0.0))
    }

    /// Take `n` tokens refilled at `rate`/s up to `burst`, waiting at most `max_wait`.
    pub(super) fn take(
        &mut self,
        rate: f64,
        burst: f64,
        n: u32,
        now: Instant,
        max_wait: Duration,
    ) -> Grant {
        let n = f64::from(n);
        if n > burst {
            return Grant::Refused;
        }
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(burst);
        self.updated = now;
        if self.tokens >= n {
            self.tokens -= n;
            return Grant::Now;
        }
        let wait = Duration::from_secs_f64((n - self.tokens) / rate);
        if wait > max_wait {
            return Grant::Refused;
        }
        self.tokens -= n;
        Grant::After(wait)
    }
}

/// The result of asking for `n` tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// Taken; go on.
    Now,
    /// Reserved; go on after this wait (the tokens are already taken).
    After(Duration),
    /// Not within [`MAX_WAIT`] (or more than the burst): refuse with 429.
    Refused,
}

pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<LruCache<IpAddr, Bucket>>,
}

impl RateLimiter {
    /// `event_limit` events/s per IP, `ip_limit` IPs tracked.
    pub fn new(event_limit: u32, ip_limit: NonZeroUsize) -> Self {
        RateLimiter {
            rate: f64::from(event_limit),
            burst: f64::from(event_limit * BURST_MULTIPLIER),
            buckets: Mutex::new(LruCache::new(ip_limit)),
        }
    }

    /// Request level: take one token without waiting.
    pub fn allow(&self, ip: IpAddr, now: Instant) -> bool {
        self.take(ip, 1, now, Duration::ZERO) == Grant::Now
    }

    /// How long until this IP has a token again (for a client's `Retry-After`).
    pub fn next_token_in(&self, ip: IpAddr, now: Instant) -> Duration {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        buckets.get(&ip).map_or(Duration::ZERO, |b| {
            b.next_token_in(self.rate, self.burst, now)
        })
    }

    /// Event level: `n` events (a batch) may wait up to [`MAX_WAIT`] for tokens.
    pub fn reserve(&self, ip: IpAddr, n: u32, now: Instant) -> Grant {
        self.take(ip, n, now, MAX_WAIT)
    }

    fn take(&self, ip: IpAddr, n: u32, now: Instant, max_wait: Duration) -> Grant {
        if f64::from(n) > self.burst {
            return Grant::Refused;
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if !buckets.contains(&ip) {
            // A new IP takes over the evicted bucket when the cache is full, else a full one.
            let evicted = if buckets.len() == buckets.cap().get() {
                buckets.pop_lru().map(|(_, b)| b)
            } else {
                None
            };
            let bucket = evicted.unwrap_or(Bucket::full(self.burst, now));
            buckets.put(ip, bucket);
        }
        let Some(bucket) = buckets.get_mut(&ip) else {
            return Grant::Refused;
        };
        bucket.take(self.rate, self.burst, n, now, max_wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn limiter(event_limit: u32, ip_limit: usize) -> RateLimiter {
        RateLimiter::new(event_limit, NonZeroUsize::new(ip_limit).unwrap())
    }

    #[test]
    fn burst_is_three_times_the_limit_and_refills() {
        let l = limiter(5, 10);
        let t = Instant::now();
        for _ in 0..15 {
            assert!(l.allow(ip("10.0.0.1"), t));
        }
        assert!(!l.allow(ip("10.0.0.1"), t));
        assert!(l.allow(ip("10.0.0.2"), t), "other IPs are not affected");
        assert!(
            l.allow(ip("10.0.0.1"), t + Duration::from_millis(200)),
            "5/s: one token per 200 ms"
        );
    }

    #[test]
    fn batches_wait_up_to_a_second() {
        let l = limiter(10, 10);
        let t = Instant::now();
        assert_eq!(l.reserve(ip("10.0.0.1"), 30, t), Grant::Now);
        assert_eq!(
            l.reserve(ip("10.0.0.1"), 5, t),
            Grant::After(Duration::from_millis(500))
        );
        assert_eq!(
            l.reserve(ip("10.0.0.1"), 10, t),
            Grant::Refused,
            "would need 1.5 s"
        );
        assert_eq!(
            l.reserve(ip("10.0.0.2"), 31, t),
            Grant::Refused,
            "more than the burst"
        );
    }

    /// APM Server's system test: event_limit 5, ip_limit 2; a third IP inherits an
    /// exhausted bucket and is refused.
    #[test]
    fn evicted_buckets_are_reused() {
        let l = limiter(5, 2);
        let t = Instant::now();
        for _ in 0..15 {
            assert!(l.allow(ip("10.0.0.1"), t));
        }
        for _ in 0..15 {
            assert!(l.allow(ip("10.0.0.2"), t));
        }
        assert!(
            !l.allow(ip("10.0.0.3"), t),
            "inherits 10.0.0.1's empty bucket"
        );
    }
}
