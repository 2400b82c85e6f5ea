//! Failed-authentication throttling per client IP: after `max_failures` failed
//! authentications within `window`, further attempts from that IP are answered 429 for
//! `cooldown`, without touching other IPs or valid credentials from elsewhere. Tracked IPs
//! live in an LRU, so a flood of addresses costs bounded memory.

use std::net::IpAddr;
use std::num::NonZeroUsize;
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
}

impl AuthThrottle {
    pub fn new(max_failures: u32, window: Duration, cooldown: Duration, ips: NonZeroUsize) -> Self {
        AuthThrottle {
            max_failures,
            window,
            cooldown,
            records: Mutex::new(LruCache::new(ips)),
        }
    }

    /// Is this IP in its cool-down (answer 429 without checking the credential)?
    pub fn is_blocked(&self, ip: IpAddr, now: Instant) -> bool {
        let mut records = self.records.lock().unwrap_or_else(|e| e.into_inner());
        records
            .get(&ip)
            .and_then(|r| r.blocked_until)
            .is_some_and(|until| now < until)
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
            r.blocked_until = Some(now + self.cooldown);
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
