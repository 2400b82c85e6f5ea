//! tracing setup. Pingora logs through the `log` crate; tracing-subscriber bridges it.
//! No log line contains a credential: requests are logged with the credential's *name*
//! (token name or API key id), and Pingora's TRACE output, which dumps raw request headers
//! (`Authorization` included) before any filter runs, is dropped at every log level.

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Metadata};
use tracing_subscriber::layer::{Context, Filter, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{LogConfig, LogFormat, Problem};

mod ecs;

fn parse_filter(level: &str) -> Result<EnvFilter, String> {
    EnvFilter::builder()
        .parse(level)
        .map_err(|e| format!("{level:?} is not a log filter: {e}"))
}

/// `[log]`, checked: the level is a valid tracing filter.
#[derive(Debug, Clone)]
pub struct LogSettings {
    pub level: String,
    pub format: LogFormat,
    pub access_log: bool,
}

impl TryFrom<&LogConfig> for LogSettings {
    type Error = Problem;

    fn try_from(log: &LogConfig) -> Result<LogSettings, Problem> {
        parse_filter(&log.level).map_err(|e| Problem::new("log.level", e))?;
        Ok(LogSettings {
            level: log.level.clone(),
            format: log.format,
            access_log: log.access_log,
        })
    }
}

/// False for events that may carry a client's credential.
pub fn is_credential_safe(meta: &Metadata<'_>) -> bool {
    !(*meta.level() == Level::TRACE && meta.target().starts_with("pingora"))
}

/// The proxy's log filter on top of the level filter: drops Pingora events that may carry a
/// credential, and rustls' warning for an IP address sent as SNI.
struct ProxyLogFilter;

struct StartsWith(&'static str, bool);

impl Visit for StartsWith {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.1 = format!("{value:?}").starts_with(self.0);
        }
    }
}

impl<S> Filter<S> for ProxyLogFilter {
    fn enabled(&self, meta: &Metadata<'_>, _: &Context<'_, S>) -> bool {
        is_credential_safe(meta)
    }

    fn event_enabled(&self, event: &Event<'_>, _: &Context<'_, S>) -> bool {
        // rustls warns on every handshake whose SNI is an IP address (agents configured with
        // `https://10.0.0.5:8200`, by OpenSSL-based clients): normal here, not news. Events
        // bridged from `log` carry a generic target here, so match on level and text; only
        // WARN events are looked at, which keeps the access log path free of work.
        if *event.metadata().level() != Level::WARN {
            return true;
        }
        let mut ip_sni = StartsWith("Illegal SNI extension: ignoring IP address", false);
        event.record(&mut ip_sni);
        !ip_sni.1
    }
}

/// The level filter: `level` as given, and unless it names Pingora's crates itself, their
/// start-up chatter (INFO) and the load balancer's WARN lines (a `Debug` dump of a member,
/// beside the proxy's own line for the same event) left out at the levels operators run.
fn level_filter(level: &str) -> EnvFilter {
    let quiet = ["error", "warn", "info"].contains(&level.trim().to_ascii_lowercase().as_str());
    let directives = if quiet && !level.contains("pingora") {
        format!("{level},pingora=warn,pingora_load_balancing=error")
    } else {
        level.to_string()
    };
    parse_filter(&directives).unwrap_or_else(|_| EnvFilter::new("info"))
}

/// Install the global subscriber. Safe to call once; later calls are ignored.
pub fn init(config: &LogSettings) {
    let filter = level_filter(&config.level);
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let layer = match config.format {
        LogFormat::Json => fmt.event_format(ecs::Ecs::new()).boxed(),
        LogFormat::Text => fmt.boxed(),
    };
    let _ = tracing_subscriber::registry()
        .with(layer.with_filter(ProxyLogFilter).with_filter(filter))
        .try_init();
}
