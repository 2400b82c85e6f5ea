//! tracing setup. Pingora logs through the `log` crate; tracing-subscriber bridges it.
//! No log line contains a credential: requests are logged with the credential's *name*
//! (token name or API key id), and Pingora's TRACE output, which dumps raw request headers
//! (`Authorization` included) before any filter runs, is dropped at every log level.

use tracing::{Level, Metadata};
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{LogConfig, LogFormat};

pub fn parse_filter(level: &str) -> Result<EnvFilter, String> {
    EnvFilter::builder()
        .parse(level)
        .map_err(|e| format!("{level:?} is not a log filter: {e}"))
}

/// False for events that may carry a client's credential.
pub fn is_credential_safe(meta: &Metadata<'_>) -> bool {
    !(*meta.level() == Level::TRACE && meta.target().starts_with("pingora"))
}

/// Install the global subscriber. Safe to call once; later calls are ignored.
pub fn init(config: &LogConfig) {
    let filter = parse_filter(&config.level).unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let layer = match config.format {
        LogFormat::Json => fmt.json().boxed(),
        LogFormat::Text => fmt.boxed(),
    };
    let _ = tracing_subscriber::registry()
        .with(
            layer
                .with_filter(filter_fn(is_credential_safe))
                .with_filter(filter),
        )
        .try_init();
}
