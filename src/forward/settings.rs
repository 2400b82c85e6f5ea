//! `[server]` and `[upstream]` as typed settings: the listener's address and timeouts, the
//! upstream's resolved address, its timeouts and the optional upstream token.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use crate::auth::Secret;
use crate::config::{HumanDuration, Problem, Problems, ServerConfig, UpstreamConfig};

#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    pub threads: usize,
    pub idle_timeout: Duration,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    pub reject_drain_timeout: Duration,
    pub shutdown_grace_period: Duration,
    pub drain_delay: Duration,
}

#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    pub address: SocketAddr,
    /// `host:port` as written, for logs.
    pub authority: String,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    pub idle_timeout: Duration,
    /// Sent upstream as `Authorization: Bearer …` in place of the client's credential.
    pub secret_token: Option<Secret>,
}

fn nonzero(problems: &mut Problems, key: &str, d: HumanDuration) -> Duration {
    if d.0.is_zero() {
        problems.add(key, "must be greater than zero");
    }
    d.0
}

impl TryFrom<&ServerConfig> for ServerSettings {
    type Error = Problems;

    fn try_from(s: &ServerConfig) -> Result<ServerSettings, Problems> {
        let mut problems = Problems::default();
        let listen = s.listen.parse::<SocketAddr>().map_err(|_| {
            Problem::new(
                "server.listen",
                format!(
                    "{:?} is not an IP:port address (e.g. \"0.0.0.0:8200\")",
                    s.listen
                ),
            )
        });
        let listen = problems.take(listen);
        if s.threads == 0 {
            problems.add("server.threads", "must be at least 1");
        }
        let idle_timeout = nonzero(&mut problems, "server.idle_timeout", s.idle_timeout);
        let read_timeout = nonzero(&mut problems, "server.read_timeout", s.read_timeout);
        let write_timeout = nonzero(&mut problems, "server.write_timeout", s.write_timeout);
        let Some(listen) = listen else {
            return Err(problems);
        };
        problems.finish(|| ServerSettings {
            listen,
            threads: s.threads,
            idle_timeout,
            read_timeout,
            write_timeout,
            reject_drain_timeout: s.reject_drain_timeout.0,
            shutdown_grace_period: s.shutdown_grace_period.0,
            drain_delay: s.drain_delay.0,
        })
    }
}

/// `upstream.url`: only plain `http://host:port` — TLS to the upstream is not supported, and
/// a path prefix would change what APM Server routes. Resolved once, here.
fn upstream_address(url: &str) -> Result<(SocketAddr, String), Problem> {
    let key = "upstream.url";
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
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let socket = (host, port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| Problem::new(key, format!("cannot resolve host {host:?}")))?;
    Ok((
        socket,
        uri.authority().map(|a| a.to_string()).unwrap_or_default(),
    ))
}

impl TryFrom<&UpstreamConfig> for UpstreamSettings {
    type Error = Problems;

    fn try_from(u: &UpstreamConfig) -> Result<UpstreamSettings, Problems> {
        let mut problems = Problems::default();
        let address = problems.take(upstream_address(&u.url));
        let connect_timeout = nonzero(&mut problems, "upstream.connect_timeout", u.connect_timeout);
        let read_timeout = nonzero(&mut problems, "upstream.read_timeout", u.read_timeout);
        let write_timeout = nonzero(&mut problems, "upstream.write_timeout", u.write_timeout);
        let secret_token = match &u.secret_token {
            Some(source) => problems
                .take(Secret::plain_from_source(source, "upstream.secret_token"))
                .map(Some),
            None => Some(None),
        };
        let (Some((address, authority)), Some(secret_token)) = (address, secret_token) else {
            return Err(problems);
        };
        problems.finish(|| UpstreamSettings {
            address,
            authority,
            connect_timeout,
            read_timeout,
            write_timeout,
            idle_timeout: u.idle_timeout.0,
            secret_token,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigFile;

    fn problems(text: &str) -> String {
        let file = ConfigFile::parse(text).unwrap();
        let mut all = Vec::new();
        if let Err(e) = ServerSettings::try_from(&file.server) {
            all.push(e.to_string());
        }
        if let Err(e) = UpstreamSettings::try_from(&file.upstream) {
            all.push(e.to_string());
        }
        all.join("\n")
    }

    #[test]
    fn bad_values_name_their_key() {
        for (text, key) in [
            ("[server]\nlisten = \"8200\"", "server.listen"),
            ("[server]\nthreads = 0", "server.threads"),
            ("[server]\nread_timeout = \"0s\"", "server.read_timeout"),
            ("[upstream]\nurl = \"https://apm:8200\"", "upstream.url"),
            (
                "[upstream]\nurl = \"http://apm:8200/prefix\"",
                "upstream.url",
            ),
            (
                "[upstream]\nsecret_token = { sha256 = \"00\" }",
                "upstream.secret_token",
            ),
        ] {
            let err = problems(text);
            assert!(
                err.starts_with(&format!("{key}: ")),
                "{text:?} gave {err:?}"
            );
        }
    }

    #[test]
    fn defaults_are_valid_and_resolved() {
        let file = ConfigFile::parse("").unwrap();
        let u = UpstreamSettings::try_from(&file.upstream).unwrap();
        assert_eq!(u.address, "127.0.0.1:8201".parse().unwrap());
        assert_eq!(u.authority, "127.0.0.1:8201");
        let s = ServerSettings::try_from(&file.server).unwrap();
        assert_eq!(s.listen, "127.0.0.1:8200".parse().unwrap());
    }
}
