//! apm-auth-proxy: TLS termination and APM-Server-compatible authentication in front of an
//! unmodified Elastic APM Server.
//!
//! A request's journey through the modules:
//! `config` (what to do) → `tls` (terminate) → `routes` (which endpoint, is the path safe)
//! → `auth` (who is calling, may they do this) → `client_ip` (who really sent it)
//! → `proxy` (strip, rewrite, stream to the upstream) → `response` (every answer the proxy
//! writes itself). `server` wires these into Pingora; `commands` is the CLI edge.
#![forbid(unsafe_code)]

pub mod auth;
pub mod cli;
pub mod client_ip;
pub mod commands;
pub mod concurrency;
pub mod config;
pub mod cors;
pub mod event_rules;
pub mod gate;
pub mod intake;
pub mod logging;
pub mod proxy;
pub mod ratelimit;
pub mod response;
pub mod routes;
pub mod secrets;
pub mod server;
pub mod throttle;
pub mod tls;
pub mod upstream_headers;
