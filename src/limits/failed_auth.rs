//! Failed-authentication throttling per client IP: after `max_failures` failed
//! authentications within `window`, further attempts from that IP are answered 429 for
//! `cooldown`, without touching other IPs or valid credentials from elsewhere. Tracked IPs
//! live in an LRU, so a flood of addresses costs bounded memory.

use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lru::LruCache;

#[derive(Debug, Clone, Copy)]
struct Record {
    window_start: Instant,
    failures: u32,
    blocked_until: Option<Instant>,
}

pub struct AuthThrottle {
    max_failures: u32,
    window: Duration,
    cooldown: Duration,
    records: Mutex<LruCache<IpAddr, Record>>,
    /// When the last cool-down ends, in nanoseconds after `origin`: until then some IP may
    /// be blocked; after it none is, and `is_blocked` answers without taking the lock (the
    /// common case, on every request that carries a credential).
    last_block_end: AtomicU64,
    origin: Instant,
}

impl AuthThrottle {
    pub fn new(max_failures: u32, window: Duration, cooldown: Duration, ips: NonZeroUsize) -> Self {
        AuthThrottle {
            max_failures,
            window,
            cooldown,
            records: Mutex::new(LruCache::new(ips)),
            last_block_end: AtomicU64::new(0),
            origin: Instant::now(),
        }
    }

    fn nanos(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.origin).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Is this IP in its cool-down (answer 429 without checking the credential)?
    pub fn is_blocked(&self, ip: IpAddr, now: Instant) -> bool {
        self.blocked_for(ip, now).is_some()
    }

    /// What is left of this IP's cool-down, if it is in one.
    pub fn blocked_for(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        if self.nanos(now) >= self.last_block_end.load(Ordering::Relaxed) {
            return None;
        }
        let mut records = self.records.lock().unwrap_or_else(|e| e.into_inner());
        let until = records.get(&ip).and_then(|r| r.blocked_until)?;
        (now < until).then(|| until - now)
    }

    /// Count a failed authentication; true when this failure starts a cool-down.
    pub fn record_failure(&self, ip: IpAddr, now: Instant) -> bool {
        let mut records = self.records.lock().unwrap_or_else(|e| e.into_inner());
        let r = records.get_or_insert_mut(ip, || Record {
            window_start: now,
            failures: 0,
            blocked_until: None,
        });
        if now.saturating_duration_since(r.window_start) > self.window {
            r.window_start = now;
            r.failures = 0;
        }
        r.failures += 1;
        if r.failures >= self.max_failures {
            let until = now + self.cooldown;
            r.blocked_until = Some(until);
            self.last_block_end
                .fetch_max(self.nanos(until), Ordering::Relaxed);
            r.failures = 0;
            r.window_start = now;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn blocks_after_n_failures_in_the_window_then_recovers() {
        let t = AuthThrottle::new(
            3,
            Duration::from_secs(10),
            Duration::from_secs(30),
            NonZeroUsize::new(100).unwrap(),
        );
        let now = Instant::now();
        assert!(!t.record_failure(ip("10.0.0.1"), now));
        assert!(!t.record_failure(ip("10.0.0.1"), now));
        assert!(!t.is_blocked(ip("10.0.0.1"), now));
        assert!(t.record_failure(ip("10.0.0.1"), now));
        assert!(t.is_blocked(ip("10.0.0.1"), now + Duration::from_secs(29)));
        assert!(
            !t.is_blocked(ip("10.0.0.2"), now),
            "other IPs are unaffected"
        );
        assert!(
            !t.is_blocked(ip("10.0.0.1"), now + Duration::from_secs(31)),
            "cool-down ends"
        );
    }

    #[test]
    fn failures_outside_the_window_do_not_add_up() {
        let t = AuthThrottle::new(
            3,
            Duration::from_secs(10),
            Duration::from_secs(30),
            NonZeroUsize::new(100).unwrap(),
        );
        let now = Instant::now();
        for i in 0..10 {
            assert!(!t.record_failure(ip("10.0.0.1"), now + Duration::from_secs(11 * i)));
        }
    }
}
