//! `[server]` as typed settings: the agents' listener, its timeouts and the drain.

use std::net::SocketAddr;
use std::time::Duration;

use crate::config::{Problem, Problems, ServerConfig};
use crate::limits::ConnectionCaps;

#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    pub threads: usize,
    pub idle_timeout: Duration,
    pub read_timeout: Duration,
    pub header_timeout: Duration,
    pub body_deadline: Duration,
    pub write_timeout: Duration,
    pub reject_drain_timeout: Duration,
    pub shutdown_grace_period: Duration,
    pub drain_delay: Duration,
    pub connection_caps: ConnectionCaps,
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
        let idle_timeout = problems.nonzero("server.idle_timeout", s.idle_timeout);
        let read_timeout = problems.nonzero("server.read_timeout", s.read_timeout);
        let write_timeout = problems.nonzero("server.write_timeout", s.write_timeout);
        let header_timeout = problems.nonzero("server.header_timeout", s.header_timeout);
        let body_deadline = problems.nonzero("server.body_deadline", s.body_deadline);
        for (key, cap) in [
            ("server.max_connections", s.max_connections),
            ("server.max_connections_per_ip", s.max_connections_per_ip),
        ] {
            if cap == Some(0) {
                problems.add(key, "must be at least 1 (leave it out for no cap)");
            }
        }
        let Some(listen) = listen else {
            return Err(problems);
        };
        problems.finish(|| ServerSettings {
            listen,
            threads: s.threads,
            idle_timeout,
            read_timeout,
            header_timeout,
            body_deadline,
            write_timeout,
            reject_drain_timeout: s.reject_drain_timeout.0,
            shutdown_grace_period: s.shutdown_grace_period.0,
            drain_delay: s.drain_delay.0,
            connection_caps: ConnectionCaps {
                total: s.max_connections,
                per_ip: s.max_connections_per_ip,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigFile;

    #[test]
    fn bad_values_name_their_key() {
        for (text, key) in [
            ("[server]\nlisten = \"8200\"", "server.listen"),
            ("[server]\nthreads = 0", "server.threads"),
            ("[server]\nread_timeout = \"0s\"", "server.read_timeout"),
            ("[server]\nbody_deadline = \"0s\"", "server.body_deadline"),
            ("[server]\nheader_timeout = \"0s\"", "server.header_timeout"),
            ("[server]\nmax_connections = 0", "server.max_connections"),
            (
                "[server]\nmax_connections_per_ip = 0",
                "server.max_connections_per_ip",
            ),
        ] {
            let file = ConfigFile::parse(text).unwrap();
            let err = ServerSettings::try_from(&file.server)
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with(&format!("{key}: ")),
                "{text:?} gave {err:?}"
            );
        }
        let file = ConfigFile::parse("").unwrap();
        let s = ServerSettings::try_from(&file.server).unwrap();
        assert_eq!(s.listen, "127.0.0.1:8200".parse().unwrap());
    }
}
