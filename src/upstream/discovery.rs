//! Pool members from DNS: every A/AAAA record of a name is a member. Asked of the system
//! resolver (search domains and all, as a Kubernetes headless Service needs), or of a given
//! DNS server. A failed or empty answer keeps the last members (Pingora keeps them when
//! discovery errs) and is logged.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::time::Duration;

use async_trait::async_trait;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::TokioResolver;
use pingora::lb::discovery::ServiceDiscovery;
use pingora::lb::Backend;
use pingora::{Error, ErrorType, OrErr};

const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

pub struct DnsDiscovery {
    pub pool: String,
    pub host: String,
    pub port: u16,
    resolver: Option<TokioResolver>,
}

impl DnsDiscovery {
    pub fn new(
        pool: &str,
        host: &str,
        port: u16,
        server: Option<SocketAddr>,
    ) -> pingora::Result<Self> {
        let resolver = match server {
            None => None,
            Some(server) => {
                let mut udp = ConnectionConfig::udp();
                udp.port = server.port();
                let config = ResolverConfig::from_name_servers(vec![NameServerConfig::new(
                    server.ip(),
                    true,
                    vec![udp],
                )]);
                let mut builder =
                    TokioResolver::builder_with_config(config, TokioRuntimeProvider::default());
                // Every interval asks afresh: members follow the records, not a cache.
                builder.options_mut().cache_size = 0;
                builder.options_mut().timeout = Duration::from_secs(2);
                Some(
                    builder
                        .build()
                        .or_err(ErrorType::InternalError, "DNS resolver")?,
                )
            }
        };
        Ok(DnsDiscovery {
            pool: pool.to_string(),
            host: host.to_string(),
            port,
            resolver,
        })
    }

    async fn lookup(&self) -> Result<Vec<SocketAddr>, String> {
        match &self.resolver {
            Some(r) => {
                // A fully qualified name: no search domains for a name given with its server.
                let name = format!("{}.", self.host.trim_end_matches('.'));
                let ips = r
                    .lookup_ip(name.as_str())
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(ips
                    .iter()
                    .map(|ip| SocketAddr::new(ip, self.port))
                    .collect())
            }
            None => tokio::net::lookup_host((self.host.as_str(), self.port))
                .await
                .map(|addrs| addrs.collect())
                .map_err(|e| e.to_string()),
        }
    }
}

#[async_trait]
impl ServiceDiscovery for DnsDiscovery {
    async fn discover(&self) -> pingora::Result<(BTreeSet<Backend>, HashMap<u64, bool>)> {
        let found = tokio::time::timeout(LOOKUP_TIMEOUT, self.lookup())
            .await
            .unwrap_or_else(|_| Err("timed out".into()));
        let addrs = match found {
            Ok(addrs) if !addrs.is_empty() => addrs,
            Ok(_) | Err(_) => {
                let why = found.err().unwrap_or_else(|| "no A/AAAA record".into());
                tracing::warn!(pool = %self.pool, name = %self.host, error = %why, "DNS discovery failed; keeping the last members");
                return Err(Error::explain(
                    ErrorType::InternalError,
                    "DNS discovery failed",
                ));
            }
        };
        tracing::debug!(pool = %self.pool, name = %self.host, members = ?addrs, "DNS discovery");
        let members = addrs
            .into_iter()
            .map(|addr| Backend::new(&addr.to_string()))
            .collect::<pingora::Result<BTreeSet<_>>>()?;
        Ok((members, HashMap::new()))
    }
}
