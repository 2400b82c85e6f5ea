//! tracing setup. Pingora logs through the `log` crate; tracing-subscriber bridges it.
//! No log line anywhere in the proxy contains a credential: requests are logged with the
//! credential's *name* (token name or API key id), never its value.

use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

pub fn parse_filter(level: &str) -> Result<EnvFilter, String> {
    EnvFilter::builder()
        .parse(level)
        .map_err(|e| format!("{level:?} is not a log filter: {e}"))
}

/// Install the global subscriber. Safe to call once; later calls are ignored.
pub fn init(config: &LogConfig) {
    let filter = parse_filter(&config.level).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match config.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Logging for the CLI commands that run before the config is known.
pub fn init_default() {
    init(&LogConfig::default());
}
