//! Forwarding: the Pingora hooks that carry an admitted request to the upstream and its
//! answer back, the upstream's view of the headers, the replies the proxy writes itself and
//! the access log.

mod access_log;
mod connection;
mod context;
mod front;
mod proxy;
mod read_ahead;
mod request_id;
mod response;
mod retry_hint;
mod server_settings;
mod upstream_headers;

pub use connection::{ConnectionTimes, Connections};
pub use front::{Front, ProxySettings};
pub use proxy::ApmProxy;
pub use server_settings::ServerSettings;
pub use upstream_headers::rewrite as rewrite_upstream_headers;
