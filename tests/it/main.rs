//! The integration suite: the real `apm-auth-proxy` binary on ephemeral loopback ports, with
//! certificates made at test time, a stand-in APM Server that records what it receives, and
//! real clients (reqwest, curl, Python, the official agents). One binary, a module per
//! concern, one harness (`support`).

mod support;

mod agents;
mod auth;
mod cli;
mod credentials;
mod deploy;
mod faults;
mod forwarding;
mod grpc;
mod jwt;
mod operations;
mod otlp;
mod pools;
mod rum;
mod slow_clients;
mod tls;
