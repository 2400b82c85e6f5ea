//! The agents' connections, each owned from accept to close: the accept loop asks the book
//! to admit a connection before its handshake ([`ConnectionBook::admit`]), and the
//! [`ConnectionGuard`] it hands out lives as long as the connection (its `Drop` is the close),
//! so the counts are exact, per process and with no I/O: the caps
//! (`server.max_connections`, `server.max_connections_per_ip`), the `client_connections`
//! gauge, and failed handshakes counted where they fail. One over a cap is closed at once
//! (the client sees the connection close).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pingora::apps::ConnectionOwner;

use crate::metrics::Metrics;

/// Caps on client connections open at once (`None`: no cap).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnectionCaps {
    pub total: Option<usize>,
    pub per_ip: Option<usize>,
}

/// Why a connection was refused; the `limit` label of `apm_auth_proxy_limited_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionRefused {
    Total,
    PerIp,
}

impl ConnectionRefused {
    pub fn label(self) -> &'static str {
        match self {
            ConnectionRefused::Total => "connections",
            ConnectionRefused::PerIp => "connections_per_ip",
        }
    }
}

/// The connections open now, in total and per client IP.
#[derive(Debug, Default)]
pub struct OpenConnections {
    total: usize,
    by_ip: HashMap<IpAddr, usize>,
}

impl OpenConnections {
    fn remove(&mut self, ip: IpAddr) {
        self.total = self.total.saturating_sub(1);
        if let Some(n) = self.by_ip.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.by_ip.remove(&ip);
            }
        }
    }

    /// Take a connection from `ip` unless that puts a cap over its limit.
    pub fn admit(&mut self, caps: ConnectionCaps, ip: IpAddr) -> Result<(), ConnectionRefused> {
        let from_ip = self.by_ip.get(&ip).copied().unwrap_or(0);
        if caps.total.is_some_and(|max| self.total >= max) {
            return Err(ConnectionRefused::Total);
        }
        if caps.per_ip.is_some_and(|max| from_ip >= max) {
            return Err(ConnectionRefused::PerIp);
        }
        self.total += 1;
        *self.by_ip.entry(ip).or_default() += 1;
        Ok(())
    }
}

/// At most one WARN line per this long for refused connections: a flood at the cap is
/// counted in metrics, not written to the log line by line.
const WARN_EVERY: Duration = Duration::from_secs(1);

/// The agents' listener's connections.
pub struct ConnectionBook {
    caps: ConnectionCaps,
    state: Mutex<State>,
    metrics: Arc<Metrics>,
}

#[derive(Debug, Default)]
struct State {
    open: OpenConnections,
    warned_at: Option<Instant>,
    /// Refusals not yet in a WARN line.
    unreported: u64,
}

impl ConnectionBook {
    pub fn new(caps: ConnectionCaps, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(ConnectionBook {
            caps,
            state: Mutex::default(),
            metrics,
        })
    }

    /// A connection closed because its request head did not arrive in time.
    pub fn header_timed_out(&self) {
        self.metrics.connection_closed("header_timeout");
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Client connections open now.
    pub fn open(&self) -> usize {
        self.state().open.total
    }

    /// Admit a connection from `peer` (an IPv4 client on a dual-stack socket counts as its
    /// IPv4 address); `None` refuses it, counted and, at most once a second, logged.
    pub fn admit(self: &Arc<Self>, peer: Option<&SocketAddr>) -> Option<ConnectionGuard> {
        let ip = peer.map_or(IpAddr::from([0, 0, 0, 0]), |p| p.ip().to_canonical());
        let mut state = self.state();
        match state.open.admit(self.caps, ip) {
            Ok(()) => Some(ConnectionGuard {
                book: self.clone(),
                ip,
            }),
            Err(why) => {
                state.unreported += 1;
                let now = Instant::now();
                let due = state
                    .warned_at
                    .is_none_or(|at| now.duration_since(at) >= WARN_EVERY);
                let report = due.then(|| {
                    state.warned_at = Some(now);
                    std::mem::take(&mut state.unreported)
                });
                drop(state);
                self.metrics.connection_refused(why.label());
                if let Some(refused) = report {
                    tracing::warn!(client = %ip, limit = why.label(), refused, "connection refused: too many open connections (refused: count since the last such line)");
                }
                None
            }
        }
    }
}

/// One admitted connection: its place in the book is freed when the connection ends.
pub struct ConnectionGuard {
    book: Arc<ConnectionBook>,
    ip: IpAddr,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.book.state().open.remove(self.ip);
    }
}

impl ConnectionOwner for ConnectionGuard {
    fn handshake_failed(&self) {
        self.book.metrics.tls_handshake_failed();
    }
}

/// Log how many handshakes failed since `*last_reported`, if any: one WARN line a minute
/// instead of one per handshake, so a port scan cannot flood the log.
pub fn report_handshake_failures(metrics: &Metrics, last_reported: &mut u64) {
    let now = metrics.tls_handshake_failures();
    if now > *last_reported {
        tracing::warn!(
            failed = now - *last_reported,
            total = now,
            "TLS handshakes failed since the last report (untrusted certificate, old protocol, scans)"
        );
        *last_reported = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics() -> Arc<Metrics> {
        Arc::new(Metrics::new().unwrap())
    }

    fn peer(last: u8) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, last], 40000))
    }

    #[test]
    fn the_total_cap_refuses_the_connection_over_it_and_a_close_frees_its_place() {
        let book = ConnectionBook::new(
            ConnectionCaps {
                total: Some(2),
                per_ip: None,
            },
            metrics(),
        );
        let first = book.admit(Some(&peer(1)));
        let second = book.admit(Some(&peer(2)));
        assert!(first.is_some() && second.is_some());
        assert!(book.admit(Some(&peer(3))).is_none());
        assert_eq!(book.open(), 2, "the refused one holds no place");
        drop(first);
        assert_eq!(book.open(), 1);
        assert!(
            book.admit(Some(&peer(3))).is_some(),
            "closed and reopened at once"
        );
    }

    #[test]
    fn the_per_ip_cap_counts_each_address_apart_and_ipv4_mapped_as_ipv4() {
        let book = ConnectionBook::new(
            ConnectionCaps {
                total: None,
                per_ip: Some(1),
            },
            metrics(),
        );
        let _one = book.admit(Some(&peer(1))).unwrap();
        let mapped: SocketAddr = "[::ffff:10.0.0.1]:40001".parse().unwrap();
        assert!(book.admit(Some(&mapped)).is_none());
        assert!(book.admit(Some(&peer(2))).is_some());
    }

    #[test]
    fn without_caps_every_connection_is_counted_until_it_ends() {
        let book = ConnectionBook::new(ConnectionCaps::default(), metrics());
        let guards: Vec<_> = (0..5).map(|i| book.admit(Some(&peer(i)))).collect();
        assert!(guards.iter().all(Option::is_some));
        assert_eq!(book.open(), 5);
        drop(guards);
        assert_eq!(book.open(), 0);
    }
}
