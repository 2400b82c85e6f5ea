//! Forwarding: the Pingora hooks that carry an admitted request to the upstream and its
//! answer back, the upstream's view of the headers, the replies the proxy writes itself and
//! the access log.

mod access_log;
mod proxy;
mod response;
mod settings;
mod upstream_headers;

pub use proxy::{ApmProxy, ProxySettings};
pub use settings::{ServerSettings, UpstreamSettings};
pub use upstream_headers::rewrite as rewrite_upstream_headers;
