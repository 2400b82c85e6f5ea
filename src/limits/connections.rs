//! Caps on client connections open at once, in total and per client IP
//! (`server.max_connections`, `server.max_connections_per_ip`). Pingora's connection filter
//! asks as each TCP connection is accepted, before its TLS handshake: one over a cap is
//! closed at once (the client sees the connection close), the open ones are served as before.
//!
//! Pingora has no connection-close hook, so the open connections are recounted from the
//! kernel's tables (`/proc`) when the last count is older than [`RECOUNT_AFTER`]; accepts
//! since then are added on top. Between counts, a closed connection still counts: the caps
//! err on the side of refusing for at most that long, never of exceeding.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::listeners::ConnectionFilter;

use crate::metrics::metrics;
use crate::sockets;

/// How old a count may be before the next accept recounts.
pub const RECOUNT_AFTER: Duration = Duration::from_millis(250);

/// Caps on client connections open at once (`None`: no cap).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnectionCaps {
    pub total: Option<usize>,
    pub per_ip: Option<usize>,
}

impl ConnectionCaps {
    pub fn any(&self) -> bool {
        self.total.is_some() || self.per_ip.is_some()
    }
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

/// Open connections as last counted, plus those accepted since.
#[derive(Debug, Default)]
pub struct OpenConnections {
    total: usize,
    by_ip: HashMap<IpAddr, usize>,
}

impl OpenConnections {
    pub fn from_peers(peers: impl IntoIterator<Item = IpAddr>) -> Self {
        let mut open = OpenConnections::default();
        for ip in peers {
            open.add(ip);
        }
        open
    }

    fn add(&mut self, ip: IpAddr) {
        self.total += 1;
        *self.by_ip.entry(ip).or_default() += 1;
    }

    fn remove(&mut self, ip: IpAddr) {
        self.total = self.total.saturating_sub(1);
        if let Some(n) = self.by_ip.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.by_ip.remove(&ip);
            }
        }
    }

    /// Take a connection from `ip` (already counted when `counted` is true) unless that
    /// puts a cap over its limit.
    pub fn admit(
        &mut self,
        caps: ConnectionCaps,
        ip: IpAddr,
        counted: bool,
    ) -> Result<(), ConnectionRefused> {
        if !counted {
            self.add(ip);
        }
        let refused = if caps.total.is_some_and(|max| self.total > max) {
            Some(ConnectionRefused::Total)
        } else if caps
            .per_ip
            .is_some_and(|max| self.by_ip.get(&ip).copied().unwrap_or(0) > max)
        {
            Some(ConnectionRefused::PerIp)
        } else {
            None
        };
        match refused {
            Some(why) => {
                self.remove(ip);
                Err(why)
            }
            None => Ok(()),
        }
    }
}

/// At most one WARN line per this long for refused connections: a flood at the cap is
/// counted in metrics, not written to the log line by line.
const WARN_EVERY: Duration = Duration::from_secs(1);

/// The connection filter for the agents' listener.
#[derive(Debug)]
pub struct CapConnections {
    caps: ConnectionCaps,
    local_port: u16,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    open: OpenConnections,
    counted_at: Option<Instant>,
    warned_at: Option<Instant>,
    /// Refusals not yet in a WARN line.
    unreported: u64,
}

impl CapConnections {
    pub fn new(caps: ConnectionCaps, local_port: u16) -> Self {
        CapConnections {
            caps,
            local_port,
            state: Mutex::new(State::default()),
        }
    }

    /// Admit or refuse a connection from `ip`; a refusal also says how many refusals a WARN
    /// line should report now (none while the last line is recent).
    fn decide(&self, ip: IpAddr) -> Result<(), (ConnectionRefused, Option<u64>)> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let stale = state
            .counted_at
            .is_none_or(|at| now.duration_since(at) >= RECOUNT_AFTER);
        // The connection being accepted is already in the kernel's table: a recount holds it.
        let mut counted = false;
        if stale {
            if let Some(peers) = sockets::inbound_peers(self.local_port) {
                state.open = OpenConnections::from_peers(peers);
                counted = state.open.by_ip.contains_key(&ip);
            }
            state.counted_at = Some(now);
        }
        state.open.admit(self.caps, ip, counted).map_err(|why| {
            state.unreported += 1;
            let due = state
                .warned_at
                .is_none_or(|at| now.duration_since(at) >= WARN_EVERY);
            let report = due.then(|| {
                state.warned_at = Some(now);
                std::mem::take(&mut state.unreported)
            });
            (why, report)
        })
    }
}

#[async_trait]
impl ConnectionFilter for CapConnections {
    async fn should_accept(&self, peer: Option<&SocketAddr>) -> bool {
        let Some(peer) = peer else { return true };
        match self.decide(sockets::canonical(peer.ip())) {
            Ok(()) => true,
            Err((why, report)) => {
                metrics().connection_refused(why.label());
                if let Some(refused) = report {
                    tracing::warn!(client = %peer.ip(), limit = why.label(), refused, "connection refused: too many open connections (refused: count since the last such line)");
                }
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn the_total_cap_refuses_the_connection_over_it_and_frees_its_place() {
        let caps = ConnectionCaps {
            total: Some(2),
            per_ip: None,
        };
        let mut open = OpenConnections::default();
        assert_eq!(open.admit(caps, ip(1), false), Ok(()));
        assert_eq!(open.admit(caps, ip(2), false), Ok(()));
        assert_eq!(
            open.admit(caps, ip(3), false),
            Err(ConnectionRefused::Total)
        );
        // The refused one does not hold a place.
        assert_eq!(open.total, 2);
        assert!(!open.by_ip.contains_key(&ip(3)));
    }

    #[test]
    fn the_per_ip_cap_counts_each_address_apart() {
        let caps = ConnectionCaps {
            total: None,
            per_ip: Some(1),
        };
        let mut open = OpenConnections::default();
        assert_eq!(open.admit(caps, ip(1), false), Ok(()));
        assert_eq!(
            open.admit(caps, ip(1), false),
            Err(ConnectionRefused::PerIp)
        );
        assert_eq!(open.admit(caps, ip(2), false), Ok(()));
    }

    #[test]
    fn a_recount_that_holds_the_new_connection_does_not_count_it_twice() {
        let caps = ConnectionCaps {
            total: Some(2),
            per_ip: Some(2),
        };
        let mut open = OpenConnections::from_peers([ip(1), ip(1)]);
        assert_eq!(open.admit(caps, ip(1), true), Ok(()));
        let mut open = OpenConnections::from_peers([ip(1), ip(1), ip(1)]);
        assert_eq!(open.admit(caps, ip(1), true), Err(ConnectionRefused::Total));
        assert_eq!(open.total, 2);
    }
}
