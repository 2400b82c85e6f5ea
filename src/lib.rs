//! apm-auth-proxy: TLS termination and APM-Server-compatible authentication in front of an
//! unmodified Elastic APM Server.
//!
//! A request's journey, in the order it takes:
//! 1. [`limits`] caps the connections open at once as each is accepted; [`tls`] terminates
//!    the connection (certificates by SNI, client certificates);
//! 2. [`admission`] decides on the head: path, route, client IP, CORS, then [`auth`] (who is
//!    calling, may they) and [`limits`] (anonymous rates, open requests, failed attempts);
//!    every answer the proxy writes itself is an [`admission::Rejection`];
//! 3. [`intake`] reads what must be read of the body as it streams (event names, counts,
//!    agent-config queries);
//! 4. [`forward`] runs the Pingora hooks: strips the credential, rewrites the forwarding
//!    headers, streams to the upstream and back, writes the access log.
//!
//! Beside the journey: [`config`] is the file model (the ground floor, importing nothing of
//! the crate), [`settings`] turns it into typed settings, [`server`] wires them into
//! Pingora (with the drain), [`admin`] serves health, readiness and [`metrics`], the
//! [`lifecycle`] state is what they share; [`cli`] is the command line, [`migrate`] its
//! `import` of an existing `apm-server.yml`; [`digest`],
//! [`logging`] and [`watch`] serve everyone.
#![forbid(unsafe_code)]

pub mod admin;
pub mod admission;
pub mod atomic_file;
pub mod auth;
pub mod cli;
pub mod config;
pub mod credential;
pub mod digest;
pub mod forward;
#[doc(hidden)]
// The fuzz targets' entry points: built for `cargo fuzz` (which sets `--cfg fuzzing`) and for
// the unit test that replays the corpus, never into the proxy.
#[cfg(any(fuzzing, test))]
pub mod fuzzing;
pub mod intake;
pub mod lifecycle;
pub mod limits;
pub mod logging;
pub mod metrics;
pub mod migrate;
pub mod server;
pub mod settings;
pub mod tls;
pub mod upstream;
pub mod usage;
pub mod watch;
