//! What the proxy reads of a request body, and only where it must: intake streams from
//! anonymous callers and service-bound keys (event names and counts, as they stream), and
//! agent-config queries (their service, and the anonymous trimming of the answer).

pub mod agent_config;
mod body_check;
pub(crate) mod decode;
pub(crate) mod reader;
mod rules;

pub use body_check::{BodyCheck, RateCharge, READ_AHEAD_LIMIT};
pub use decode::Format;
