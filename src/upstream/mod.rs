//! Upstream pools: the APM Servers behind the proxy. Each pool is a Pingora `LoadBalancer`
//! over static members or DNS records, with active health checks and passive ejection;
//! requests pick a healthy member not yet tried (a failed connect is retried elsewhere, a
//! request whose bytes were sent never is). Pools are chosen by route (SNI / `Host`) and by
//! credential; see [`Pools::choose`].

mod discovery;
pub mod grpc;
mod health;
mod settings;

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use http::HeaderValue;
use pingora::lb::discovery::{ServiceDiscovery, Static};
use pingora::lb::selection::{BackendSelection, Consistent, Random, RoundRobin};
use pingora::lb::{Backend, Backends, LoadBalancer};
use pingora::prelude::HttpPeer;
use pingora::server::Server;
use pingora::services::background::background_service;
use pingora::services::ServiceHandle;

use crate::config::Balance;
pub use health::USER_AGENT as CHECK_USER_AGENT;
use health::{inet, Ejections, PoolCheck};
pub use settings::{
    HealthSettings, Members, PoolSettings, RouteSettings, UpstreamSettings, DEFAULT_POOL,
};

/// A selection over one of Pingora's algorithms.
enum Balancer {
    RoundRobin(Arc<LoadBalancer<RoundRobin>>),
    Random(Arc<LoadBalancer<Random>>),
    ClientIp(Arc<LoadBalancer<Consistent>>),
}

impl Balancer {
    fn select_with(&self, key: &[u8], accept: impl Fn(&Backend, bool) -> bool) -> Option<Backend> {
        // Several times the member count: `max_iterations` counts repeated steps too.
        const MAX_ITERATIONS: usize = 256;
        match self {
            Balancer::RoundRobin(lb) => lb.select_with(key, MAX_ITERATIONS, accept),
            Balancer::Random(lb) => lb.select_with(key, MAX_ITERATIONS, accept),
            Balancer::ClientIp(lb) => lb.select_with(key, MAX_ITERATIONS, accept),
        }
    }

    fn backends(&self) -> &Backends {
        match self {
            Balancer::RoundRobin(lb) => lb.backends(),
            Balancer::Random(lb) => lb.backends(),
            Balancer::ClientIp(lb) => lb.backends(),
        }
    }
}

pub struct Pool {
    pub name: Arc<str>,
    balancer: Balancer,
    ejections: Arc<Ejections>,
    checked: Arc<AtomicBool>,
    settings: PoolSettings,
    /// `Bearer <secret_token>` for this pool's APM Servers, if configured.
    pub authorization: Option<HeaderValue>,
}

/// A member's state, for readiness and metrics.
pub struct MemberState {
    pub addr: SocketAddr,
    pub up: bool,
}

impl Pool {
    /// A member not in `tried`: a healthy one when there is one; otherwise any, healthy or
    /// not (Envoy's panic routing; nginx never marks the only server of a group down):
    /// health state chooses among members but never shuts the APM Servers out, so the first
    /// request after an outage is forwarded instead of refused until the checks catch up.
    /// `key` places consistent hashing (the client IP).
    pub fn select(&self, key: &[u8], tried: &[SocketAddr]) -> Option<SocketAddr> {
        let untried = |b: &Backend| inet(&b.addr).filter(|a| !tried.contains(a));
        self.balancer
            .select_with(key, |b, healthy| {
                untried(b).is_some_and(|a| healthy && !self.ejections.is_ejected(&a))
            })
            .or_else(|| self.balancer.select_with(key, |b, _| untried(b).is_some()))
            .and_then(|b| inet(&b.addr))
    }

    /// How many members the pool has now.
    pub fn size(&self) -> usize {
        self.balancer.backends().get_backend().len()
    }

    /// A member whose connect failed gets no new requests while others are up, until its
    /// checks pass again. The only member of a pool is never ejected: there is nowhere else
    /// to send, and its next request should find out whether it is back.
    pub fn eject(&self, addr: SocketAddr) {
        if self.size() <= 1 {
            return;
        }
        self.ejections.eject(addr);
        tracing::warn!(pool = %self.name, member = %addr, "upstream member ejected after a failed connect");
    }

    /// The peer for `addr`, the same settings every time so each member keeps one
    /// keep-alive pool.
    pub fn peer(&self, addr: SocketAddr) -> HttpPeer {
        let s = &self.settings;
        let mut peer = HttpPeer::new(addr, false, String::new());
        peer.options.connection_timeout = Some(s.connect_timeout);
        peer.options.total_connection_timeout = Some(s.connect_timeout);
        peer.options.read_timeout = Some(s.read_timeout);
        peer.options.write_timeout = Some(s.write_timeout);
        peer.options.idle_timeout = Some(s.idle_timeout);
        peer
    }

    pub fn members(&self) -> Vec<MemberState> {
        let backends = self.balancer.backends();
        backends
            .get_backend()
            .iter()
            .filter_map(|b| {
                let addr = inet(&b.addr)?;
                Some(MemberState {
                    addr,
                    up: backends.ready(b) && !self.ejections.is_ejected(&addr),
                })
            })
            .collect()
    }

    /// `None` until the first check; then whether a member is up.
    pub fn answering(&self) -> Option<bool> {
        self.checked
            .load(Ordering::SeqCst)
            .then(|| self.members().iter().any(|m| m.up))
    }
}

/// Why a request may not go where its route or credential says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolRefused {
    /// The route and the credential name different pools.
    Mismatch,
    /// The credential names a pool that does not exist.
    Unknown,
}

/// One of the configured pools: an index into [`Pools`], the first (`[upstream]`'s own
/// members) being the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolId(usize);

impl PoolId {
    /// The pool requests go to when no route or credential names another.
    pub const DEFAULT: PoolId = PoolId(0);
}

pub struct Pools {
    pools: Vec<Pool>,
    by_name: HashMap<Arc<str>, PoolId>,
    /// (server name, pool); `*.x` stored as `.x`.
    routes: Vec<(String, PoolId)>,
}

impl Pools {
    /// Build every pool and register its background service (discovery and health checks)
    /// with `server`; the returned handles are what the listener should wait for.
    pub fn start(
        settings: &UpstreamSettings,
        authorizations: Vec<Option<HeaderValue>>,
        server: &mut Server,
    ) -> pingora::Result<(Pools, Vec<ServiceHandle>)> {
        let mut pools = Vec::new();
        let mut handles = Vec::new();
        for (s, authorization) in settings.pools.iter().zip(authorizations) {
            let name: Arc<str> = s.name.as_str().into();
            let ejections = Arc::new(Ejections::default());
            let checked = Arc::new(AtomicBool::new(false));
            let check = PoolCheck::new(
                name.clone(),
                &s.authority,
                &s.health,
                ejections.clone(),
                checked.clone(),
            );
            let (balancer, handle) = match s.balance {
                Balance::RoundRobin => {
                    let (lb, h) = launch::<RoundRobin>(s, check, server)?;
                    (Balancer::RoundRobin(lb), h)
                }
                Balance::Random => {
                    let (lb, h) = launch::<Random>(s, check, server)?;
                    (Balancer::Random(lb), h)
                }
                Balance::ClientIp => {
                    let (lb, h) = launch::<Consistent>(s, check, server)?;
                    (Balancer::ClientIp(lb), h)
                }
            };
            handles.push(handle);
            pools.push(Pool {
                name,
                balancer,
                ejections,
                checked,
                settings: s.clone(),
                authorization,
            });
        }
        let by_name = pools
            .iter()
            .enumerate()
            .map(|(i, p)| (p.name.clone(), PoolId(i)))
            .collect();
        let pools = Pools {
            by_name,
            routes: Vec::new(),
            pools,
        };
        let routes = settings
            .routes
            .iter()
            .flat_map(|r| {
                let index = pools.index(&r.pool).unwrap_or(PoolId::DEFAULT);
                r.server_names
                    .iter()
                    .map(move |n| (n.trim_start_matches('*').to_string(), index))
            })
            .collect();
        Ok((Pools { routes, ..pools }, handles))
    }

    pub fn has_routes(&self) -> bool {
        !self.routes.is_empty()
    }

    pub fn index(&self, name: &str) -> Option<PoolId> {
        self.by_name.get(name).copied()
    }

    /// The pool `id` names (ids come only from this set of pools, so it exists).
    pub fn get(&self, id: PoolId) -> &Pool {
        &self.pools[id.0]
    }

    pub fn all(&self) -> &[Pool] {
        &self.pools
    }

    /// The pool a route names for `server_name` (SNI, else `Host` without its port).
    pub fn route(&self, server_name: Option<&str>) -> Option<PoolId> {
        let name = server_name?.trim_end_matches('.').to_ascii_lowercase();
        self.routes
            .iter()
            .find(|(n, _)| *n == name)
            .or_else(|| {
                let parent = name.split_once('.').map(|(_, p)| format!(".{p}"))?;
                self.routes.iter().find(|(n, _)| *n == parent)
            })
            .map(|(_, i)| *i)
    }

    /// The pool for a request: the credential's, the route's (by SNI, else by `Host`), or
    /// the default. A credential bound to a pool other than the route's is refused: never
    /// sent to another tenant.
    pub fn choose(
        &self,
        sni: Option<&str>,
        host: Option<&str>,
        credential_pool: Option<&str>,
    ) -> Result<PoolId, PoolRefused> {
        let routed = self.route(sni).or_else(|| self.route(host));
        let bound = match credential_pool {
            Some(name) => Some(self.index(name).ok_or(PoolRefused::Unknown)?),
            None => None,
        };
        match (routed, bound) {
            (Some(r), Some(b)) if r != b => Err(PoolRefused::Mismatch),
            (_, Some(b)) => Ok(b),
            (Some(r), None) => Ok(r),
            (None, None) => Ok(PoolId::DEFAULT),
        }
    }

    /// `None` while starting (some pool not checked yet); then whether every pool has a
    /// member up.
    pub fn answering(&self) -> Option<bool> {
        let states: Vec<Option<bool>> = self.pools.iter().map(Pool::answering).collect();
        if states.iter().any(Option::is_none) {
            return None;
        }
        Some(states.iter().all(|s| *s == Some(true)))
    }
}

fn launch<S>(
    s: &PoolSettings,
    check: PoolCheck,
    server: &mut Server,
) -> pingora::Result<(Arc<LoadBalancer<S>>, ServiceHandle)>
where
    S: BackendSelection + Send + Sync + 'static,
    S::Iter: pingora::lb::selection::BackendIter,
{
    let discovery: Box<dyn ServiceDiscovery + Send + Sync> = match &s.members {
        Members::Static(addrs) => {
            let members = addrs
                .iter()
                .map(|a| Backend::new(&a.to_string()))
                .collect::<pingora::Result<BTreeSet<_>>>()?;
            Static::new(members)
        }
        Members::Dns {
            host,
            port,
            resolver,
            ..
        } => Box::new(discovery::DnsDiscovery::new(
            &s.name, host, *port, *resolver,
        )?),
    };
    let mut lb = LoadBalancer::<S>::from_backends(Backends::new(discovery));
    lb.set_health_check(Box::new(check));
    lb.health_check_frequency = Some(s.health.interval);
    lb.parallel_health_check = true;
    if let Members::Dns { interval, .. } = &s.members {
        lb.update_frequency = Some(*interval);
    }
    let service = background_service(&format!("pool {}", s.name), lb);
    let lb = service.task();
    let handle = server.add_service(service);
    Ok((lb, handle))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pools(routes: &[(&str, usize)]) -> Pools {
        Pools {
            pools: Vec::new(),
            by_name: [("default", 0), ("team-a", 1), ("team-b", 2)]
                .into_iter()
                .map(|(n, i)| (Arc::from(n), PoolId(i)))
                .collect(),
            routes: routes
                .iter()
                .map(|(n, i)| (n.to_string(), PoolId(*i)))
                .collect(),
        }
    }

    #[test]
    fn routes_and_credentials_choose_the_pool() {
        let p = pools(&[("apm.team-a.example.com", 1), (".team-b.example.com", 2)]);
        assert_eq!(p.choose(None, None, None), Ok(PoolId(0)));
        assert_eq!(
            p.choose(Some("APM.team-a.example.com."), None, None),
            Ok(PoolId(1))
        );
        assert_eq!(
            p.choose(Some("x.team-b.example.com"), None, None),
            Ok(PoolId(2))
        );
        assert_eq!(
            p.choose(Some("a.x.team-b.example.com"), None, None),
            Ok(PoolId(0)),
            "one label only"
        );
        assert_eq!(
            p.choose(Some("localhost"), Some("apm.team-a.example.com"), None),
            Ok(PoolId(1)),
            "Host when SNI has no route"
        );
        assert_eq!(
            p.choose(
                Some("apm.team-a.example.com"),
                Some("x.team-b.example.com"),
                None
            ),
            Ok(PoolId(1)),
            "SNI first"
        );
        assert_eq!(
            p.choose(None, None, Some("team-a")),
            Ok(PoolId(1)),
            "the credential's pool"
        );
        assert_eq!(
            p.choose(Some("apm.team-a.example.com"), None, Some("team-a")),
            Ok(PoolId(1))
        );
        assert_eq!(
            p.choose(Some("x.team-b.example.com"), None, Some("team-a")),
            Err(PoolRefused::Mismatch)
        );
        assert_eq!(
            p.choose(None, None, Some("gone")),
            Err(PoolRefused::Unknown)
        );
    }
}
