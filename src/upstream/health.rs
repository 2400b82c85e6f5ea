//! Member health: Pingora's active HTTP check (`GET /` expecting 200, rise/fall counts) with
//! passive ejection on top — a member whose connect failed gets no new requests until the
//! active check has passed `rise` times again (Pingora's own health cannot be set from a
//! failed request).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use pingora::lb::health_check::{HealthCheck, HttpHealthCheck};
use pingora::lb::Backend;
use pingora::protocols::l4::socket::SocketAddr as PingoraAddr;

/// How the check introduces itself to the APM Server (and in its logs).
pub const USER_AGENT: &str = concat!(
    "apm-auth-proxy/",
    env!("CARGO_PKG_VERSION"),
    " (upstream check)"
);

/// Members ejected after a failed connect, with the successful checks seen since.
#[derive(Debug, Default)]
pub struct Ejections {
    map: Mutex<HashMap<SocketAddr, usize>>,
    /// How many are ejected: requests skip the lock while it is 0 (the usual case).
    count: AtomicUsize,
}

impl Ejections {
    pub fn eject(&self, addr: SocketAddr) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.insert(addr, 0);
        self.count.store(map.len(), Ordering::SeqCst);
    }

    pub fn is_ejected(&self, addr: &SocketAddr) -> bool {
        self.count.load(Ordering::SeqCst) != 0
            && self
                .map
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains_key(addr)
    }

    /// A check passed (`true`) or failed: `rise` passes in a row end the ejection.
    fn checked(&self, addr: SocketAddr, passed: bool, rise: usize) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(successes) = map.get_mut(&addr) {
            *successes = if passed { *successes + 1 } else { 0 };
            if *successes >= rise {
                map.remove(&addr);
            }
        }
        self.count.store(map.len(), Ordering::SeqCst);
    }
}

pub fn inet(addr: &PingoraAddr) -> Option<SocketAddr> {
    addr.as_inet().copied()
}

pub struct PoolCheck {
    pub pool: Arc<str>,
    pub inner: HttpHealthCheck,
    pub ejections: Arc<Ejections>,
    /// Set once any member has been checked: until then the pool is "starting".
    pub checked: Arc<AtomicBool>,
}

impl PoolCheck {
    pub fn new(
        pool: Arc<str>,
        host: &str,
        settings: &super::settings::HealthSettings,
        ejections: Arc<Ejections>,
        checked: Arc<AtomicBool>,
    ) -> PoolCheck {
        let mut inner = HttpHealthCheck::new(host, false);
        inner.consecutive_success = settings.rise;
        inner.consecutive_failure = settings.fall;
        inner.peer_template.options.connection_timeout = Some(settings.timeout);
        inner.peer_template.options.read_timeout = Some(settings.timeout);
        let _ = inner
            .req
            .insert_header(http::header::USER_AGENT, USER_AGENT);
        PoolCheck {
            pool,
            inner,
            ejections,
            checked,
        }
    }
}

#[async_trait]
impl HealthCheck for PoolCheck {
    async fn check(&self, target: &Backend) -> pingora::Result<()> {
        let result = self.inner.check(target).await;
        if let Some(addr) = inet(&target.addr) {
            self.ejections
                .checked(addr, result.is_ok(), self.inner.consecutive_success);
        }
        self.checked.store(true, Ordering::SeqCst);
        result
    }

    async fn health_status_change(&self, target: &Backend, healthy: bool) {
        if healthy {
            tracing::info!(pool = %self.pool, member = %target.addr, "upstream member healthy");
        } else {
            tracing::warn!(pool = %self.pool, member = %target.addr, "upstream member unhealthy: no new requests");
        }
    }

    fn health_threshold(&self, success: bool) -> usize {
        self.inner.health_threshold(success)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ejection_ends_after_rise_passes_in_a_row() {
        let e = Ejections::default();
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        e.checked(a, true, 2);
        assert!(!e.is_ejected(&a), "checks do not eject");
        e.eject(a);
        e.checked(a, true, 2);
        assert!(e.is_ejected(&a));
        e.checked(a, false, 2);
        e.checked(a, true, 2);
        assert!(e.is_ejected(&a), "a failure resets the count");
        e.checked(a, true, 2);
        assert!(!e.is_ejected(&a));
    }
}
