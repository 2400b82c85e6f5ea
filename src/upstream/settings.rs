//! `[upstream]` (the pool `default`), `[[upstreams]]` (more pools by name) and `[[routes]]`
//! as typed settings: each pool's members (static addresses, resolved once, or a DNS name
//! re-resolved), balancing, health checks, timeouts and upstream token; routes by name.

use std::collections::HashSet;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use crate::auth::Secret;
use crate::config::{Balance, ConfigFile, Problem, Problems, UpstreamConfig};

pub const DEFAULT_POOL: &str = "default";
const DEFAULT_URL: &str = "http://127.0.0.1:8201";
/// How often the host name of a single `url` is resolved again.
const URL_REFRESH: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub enum Members {
    /// IP addresses, or the addresses of `urls` resolved once, at start.
    Static(Vec<SocketAddr>),
    /// Every A/AAAA record of `host`, re-resolved every `interval`.
    Dns {
        host: String,
        port: u16,
        interval: Duration,
        /// A DNS server to ask instead of the system resolver.
        resolver: Option<SocketAddr>,
    },
}

#[derive(Debug, Clone)]
pub struct HealthSettings {
    pub interval: Duration,
    pub timeout: Duration,
    pub rise: usize,
    pub fall: usize,
}

#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub name: String,
    pub members: Members,
    /// `Host` of health checks and the name in logs (`host:port` as written).
    pub authority: String,
    pub balance: Balance,
    pub health: HealthSettings,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    pub idle_timeout: Duration,
    /// Sent upstream as `Authorization: Bearer …` in place of the client's credential.
    pub secret_token: Option<Secret>,
}

#[derive(Debug, Clone)]
pub struct RouteSettings {
    /// Lower-case; `*.example.com` matches one label.
    pub server_names: Vec<String>,
    pub pool: String,
}

#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    /// The pools, `default` first.
    pub pools: Vec<PoolSettings>,
    pub routes: Vec<RouteSettings>,
}

impl UpstreamSettings {
    pub fn has_pool(&self, name: &str) -> bool {
        self.pools.iter().any(|p| p.name == name)
    }
}

/// `http://host:port` → (`host`, port, `host:port`). No TLS, no path: a path prefix would
/// change what APM Server routes.
fn parse_url(key: &str, url: &str) -> Result<(String, u16, String), Problem> {
    let url = url.trim();
    let uri: http::Uri = url
        .parse()
        .map_err(|e| Problem::new(key, format!("{url:?} is not a URL: {e}")))?;
    if uri.scheme_str() != Some("http") {
        return Err(Problem::new(
            key,
            format!("{url:?}: only http:// upstreams are supported (the proxy terminates TLS)"),
        ));
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(Problem::new(
            key,
            format!("{url:?}: must not have a path or query"),
        ));
    }
    let host = uri
        .host()
        .ok_or_else(|| Problem::new(key, format!("{url:?} has no host")))?;
    let port = uri.port_u16().unwrap_or(80);
    let authority = uri.authority().map(|a| a.to_string()).unwrap_or_default();
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    Ok((host, port, authority))
}

/// One APM Server by `url`: an IP address as it is; a host name followed in DNS, so that an
/// APM Server recreated at another address (a compose service, a pod behind a name) is
/// found again within `URL_REFRESH` instead of being dialled at its old address for ever.
fn url_members(host: String, port: u16) -> Members {
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => Members::Static(vec![SocketAddr::new(ip, port)]),
        Err(_) => Members::Dns {
            host,
            port,
            interval: URL_REFRESH,
            resolver: None,
        },
    }
}

fn resolve(key: &str, host: &str, port: u16) -> Result<SocketAddr, Problem> {
    (host, port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| Problem::new(key, format!("cannot resolve host {host:?}")))
}

fn pool(section: &str, u: &UpstreamConfig, default_pool: bool) -> Result<PoolSettings, Problems> {
    let mut problems = Problems::default();
    let name = match (&u.name, default_pool) {
        (None, true) => DEFAULT_POOL.to_string(),
        (Some(_), true) => {
            problems.add(
                format!("{section}.name"),
                "[upstream] is the pool \"default\"; name pools in [[upstreams]]",
            );
            DEFAULT_POOL.to_string()
        }
        (Some(n), false) if !n.trim().is_empty() => n.trim().to_string(),
        _ => {
            problems.add(
                format!("{section}.name"),
                "every [[upstreams]] pool needs a name",
            );
            String::new()
        }
    };
    let given = usize::from(u.url.is_some())
        + usize::from(!u.urls.is_empty())
        + usize::from(u.discovery.is_some());
    let members = match (&u.url, u.urls.as_slice(), &u.discovery) {
        _ if given > 1 => {
            problems.add(section, "give one of url, urls or discovery");
            None
        }
        (None, [], None) if !default_pool => {
            problems.add(section, "give one of url, urls or discovery");
            None
        }
        (url, [], None) => {
            let url = url.as_deref().unwrap_or(DEFAULT_URL);
            let key = format!("{section}.url");
            problems
                .take(parse_url(&key, url))
                .map(|(host, port, authority)| (url_members(host, port), authority))
        }
        (None, urls, None) => {
            let mut addrs = Vec::new();
            let mut authority = String::new();
            for (i, url) in urls.iter().enumerate() {
                let key = format!("{section}.urls[{i}]");
                if let Some((host, port, a)) = problems.take(parse_url(&key, url)) {
                    if let Some(addr) = problems.take(resolve(&key, &host, port)) {
                        addrs.push(addr);
                        authority = a;
                    }
                }
            }
            Some((Members::Static(addrs), authority))
        }
        (None, [], Some(d)) => {
            let key = format!("{section}.discovery");
            let hostport = d.dns.trim();
            let parsed = hostport
                .rsplit_once(':')
                .and_then(|(h, p)| {
                    Some((
                        h.trim_start_matches('[').trim_end_matches(']'),
                        p.parse::<u16>().ok()?,
                    ))
                })
                .filter(|(h, _)| !h.is_empty());
            let resolver = match &d.resolver {
                Some(r) => problems
                    .take(r.parse::<SocketAddr>().map_err(|_| {
                        Problem::new(
                            format!("{key}.resolver"),
                            format!("{r:?} is not an IP:port address"),
                        )
                    }))
                    .map(Some),
                None => Some(None),
            };
            let interval = problems.nonzero(&format!("{key}.interval"), d.interval);
            match (parsed, resolver) {
                (Some((host, port)), Some(resolver)) => Some((
                    Members::Dns {
                        host: host.to_string(),
                        port,
                        interval,
                        resolver,
                    },
                    hostport.to_string(),
                )),
                (None, _) => {
                    problems.add(
                        format!("{key}.dns"),
                        format!("{hostport:?} is not host:port"),
                    );
                    None
                }
                _ => None,
            }
        }
        _ => None,
    };
    let h = &u.health_check;
    let interval = problems.nonzero(&format!("{section}.health_check.interval"), h.interval);
    let timeout = problems.nonzero(&format!("{section}.health_check.timeout"), h.timeout);
    for (field, value) in [("rise", h.rise), ("fall", h.fall)] {
        if value == 0 {
            problems.add(
                format!("{section}.health_check.{field}"),
                "must be at least 1",
            );
        }
    }
    let connect_timeout =
        problems.nonzero(&format!("{section}.connect_timeout"), u.connect_timeout);
    let read_timeout = problems.nonzero(&format!("{section}.read_timeout"), u.read_timeout);
    let write_timeout = problems.nonzero(&format!("{section}.write_timeout"), u.write_timeout);
    let secret_token = match &u.secret_token {
        Some(source) => problems
            .take(Secret::plain_from_source(
                source,
                &format!("{section}.secret_token"),
            ))
            .map(Some),
        None => Some(None),
    };
    let (Some((members, authority)), Some(secret_token)) = (members, secret_token) else {
        return Err(problems);
    };
    problems.finish(|| PoolSettings {
        name,
        members,
        authority,
        balance: u.balance,
        health: HealthSettings {
            interval,
            timeout,
            rise: h.rise,
            fall: h.fall,
        },
        connect_timeout,
        read_timeout,
        write_timeout,
        idle_timeout: u.idle_timeout.0,
        secret_token,
    })
}

impl TryFrom<&ConfigFile> for UpstreamSettings {
    type Error = Problems;

    fn try_from(file: &ConfigFile) -> Result<UpstreamSettings, Problems> {
        let mut problems = Problems::default();
        let mut pools = Vec::new();
        if let Some(p) = problems.take(pool("upstream", &file.upstream, true)) {
            pools.push(p);
        }
        let mut names: HashSet<String> = [DEFAULT_POOL.to_string()].into();
        for (i, u) in file.upstreams.iter().enumerate() {
            let section = format!("upstreams[{i}]");
            if let Some(p) = problems.take(pool(&section, u, false)) {
                if !names.insert(p.name.clone()) {
                    problems.add(
                        format!("{section}.name"),
                        format!("duplicate pool name {:?}", p.name),
                    );
                }
                pools.push(p);
            }
        }
        let mut routes = Vec::new();
        for (i, r) in file.routes.iter().enumerate() {
            let key = format!("routes[{i}]");
            if r.server_names.is_empty() {
                problems.add(format!("{key}.server_names"), "name at least one server");
            }
            if !names.contains(r.upstream.as_str()) {
                problems.add(
                    format!("{key}.upstream"),
                    format!("no pool named {:?}", r.upstream),
                );
            }
            routes.push(RouteSettings {
                server_names: r
                    .server_names
                    .iter()
                    .map(|n| n.trim().to_ascii_lowercase())
                    .collect(),
                pool: r.upstream.clone(),
            });
        }
        problems.finish(|| UpstreamSettings { pools, routes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(text: &str) -> Result<UpstreamSettings, String> {
        UpstreamSettings::try_from(&ConfigFile::parse(text).unwrap()).map_err(|e| e.to_string())
    }

    #[test]
    fn the_default_pool_keeps_working_with_url_or_nothing() {
        let s = settings("").unwrap();
        assert_eq!(s.pools.len(), 1);
        assert_eq!(s.pools[0].name, "default");
        assert!(
            matches!(&s.pools[0].members, Members::Static(a) if a == &["127.0.0.1:8201".parse::<SocketAddr>().unwrap()])
        );
        let s = settings("[upstream]\nurls = [\"http://127.0.0.1:1\", \"http://127.0.0.1:2\"]")
            .unwrap();
        assert!(matches!(&s.pools[0].members, Members::Static(a) if a.len() == 2));
    }

    #[test]
    fn a_url_by_host_name_is_followed_in_dns_and_an_ip_address_is_not() {
        let s = settings("[upstream]\nurl = \"http://apm-server:8200\"").unwrap();
        assert!(matches!(
            &s.pools[0].members,
            Members::Dns { host, port: 8200, interval, resolver: None }
                if host == "apm-server" && *interval == URL_REFRESH
        ));
        assert_eq!(s.pools[0].authority, "apm-server:8200");
        let s = settings("[upstream]\nurl = \"http://[::1]:8201\"").unwrap();
        assert!(
            matches!(&s.pools[0].members, Members::Static(a) if a == &["[::1]:8201".parse::<SocketAddr>().unwrap()])
        );
    }

    #[test]
    fn pools_routes_and_discovery_are_checked() {
        let s = settings(
            "[[upstreams]]\nname = \"team-a\"\ndiscovery = { dns = \"apm.svc:8200\", resolver = \"127.0.0.1:5353\" }\n\
             [[routes]]\nserver_names = [\"APM.team-a.example.com\"]\nupstream = \"team-a\"\n",
        )
        .unwrap();
        assert!(
            matches!(&s.pools[1].members, Members::Dns { host, port: 8200, resolver: Some(_), .. } if host == "apm.svc")
        );
        assert_eq!(s.routes[0].server_names, ["apm.team-a.example.com"]);
        let err = settings(
            "[upstream]\nurl = \"http://127.0.0.1:1\"\nurls = [\"http://127.0.0.1:2\"]\n\
             [[upstreams]]\nurl = \"http://127.0.0.1:3\"\n\
             [[upstreams]]\nname = \"b\"\ndiscovery = { dns = \"nohost\" }\n\
             [[routes]]\nserver_names = [\"x\"]\nupstream = \"nope\"\n",
        )
        .unwrap_err();
        let keys: Vec<&str> = err.lines().map(|l| l.split(": ").next().unwrap()).collect();
        assert_eq!(
            keys,
            [
                "upstream",
                "upstreams[0].name",
                "upstreams[1].discovery.dns",
                "routes[0].upstream"
            ],
            "{err}"
        );
    }

    #[test]
    fn bad_urls_name_their_key() {
        for (text, key) in [
            ("[upstream]\nurl = \"https://apm:8200\"", "upstream.url"),
            (
                "[upstream]\nurl = \"http://apm:8200/prefix\"",
                "upstream.url",
            ),
            (
                "[upstream]\nsecret_token = { sha256 = \"00\" }",
                "upstream.secret_token",
            ),
            (
                "[upstream.health_check]\nrise = 0",
                "upstream.health_check.rise",
            ),
        ] {
            let err = settings(text).unwrap_err();
            assert!(
                err.starts_with(&format!("{key}: ")),
                "{text:?} gave {err:?}"
            );
        }
    }
}
