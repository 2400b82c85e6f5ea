//! The one harness every integration test uses, split by role: certificates, the stand-in
//! upstream, the proxy under test (a builder), clients, intake bodies, bounded waiting.

mod admin;
mod bodies;
mod clients;
mod dns;
mod faults;
mod idp;
mod otlp;
mod pki;
mod proxy;
mod upstream;
mod wait;

pub use admin::*;
pub use bodies::*;
pub use clients::*;
pub use dns::*;
pub use faults::*;
pub use idp::*;
pub use otlp::*;
pub use pki::*;
pub use proxy::*;
pub use upstream::*;
pub use wait::*;
