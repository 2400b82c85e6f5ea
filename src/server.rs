//! Wiring typed settings into a running Pingora server: the listener (TLS or plain), the
//! proxy, and the background reloader (SIGHUP, certificate polling, handshake reports).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use http::HeaderValue;
use pingora::listeners::ListenerConfig;
use pingora::prelude::HttpPeer;
use pingora::protocols::l4::stream::L4BufferSettings;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::{Server, ShutdownWatch};
use pingora::services::background::{background_service, BackgroundService};
use rustls::server::danger::ClientCertVerifier;

use crate::admission::Gate;
use crate::auth::{AuthSettings, Authenticator, CredentialStore};
use crate::config::{ClientAuthentication, ConfigError, Problem, Problems};
use crate::forward::{ApmProxy, ProxySettings, UpstreamSettings};
use crate::limits::RateLimiter;
use crate::settings::Settings;
use crate::tls::{self, CertResolver, CertificateReloader, TlsError};

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("ssl: {0}")]
    Tls(#[from] TlsError),
    #[error("server.listen: cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error("cannot start Pingora: {0}")]
    Pingora(String),
}

impl From<Problem> for StartupError {
    fn from(p: Problem) -> StartupError {
        StartupError::Config(p.into())
    }
}

impl From<Problems> for StartupError {
    fn from(p: Problems) -> StartupError {
        StartupError::Config(p.into())
    }
}

/// Everything `run` needs, loaded and checked. `check` builds it too, so both see the same
/// problems.
pub struct Prepared {
    pub settings: Settings,
    pub certificate: Option<Arc<CertResolver>>,
    pub client_verifier: Option<Arc<dyn ClientCertVerifier>>,
    pub credentials: CredentialStore,
    pub upstream_authorization: Option<HeaderValue>,
    /// True when a development certificate is (or would be) generated.
    pub dev_certificate: bool,
}

/// Whether preparing may create files (the development certificate).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Run,
    Check,
}

pub fn prepare(settings: Settings, mode: Mode) -> Result<Prepared, StartupError> {
    let mut dev_certificate = false;
    let mut certificate = None;
    let mut client_verifier = None;
    if let Some(tls_settings) = &settings.tls {
        dev_certificate = tls_settings.would_generate_dev_certificate();
        certificate = tls::CertSet::prepare(tls_settings, mode == Mode::Run)?
            .map(|set| Arc::new(CertResolver::new(set)));
        client_verifier = tls::client_verifier(
            tls_settings.client_authentication,
            &tls_settings.certificate_authorities,
            tls::crypto_provider(),
        )?;
    }
    let credentials = CredentialStore::load(&settings.auth)?;
    let upstream_authorization = upstream_authorization(&settings.upstream)?;
    Ok(Prepared {
        settings,
        certificate,
        client_verifier,
        credentials,
        upstream_authorization,
        dev_certificate,
    })
}

/// `Bearer <upstream.secret_token>`, marked sensitive so it is never logged.
fn upstream_authorization(u: &UpstreamSettings) -> Result<Option<HeaderValue>, Problem> {
    let key = "upstream.secret_token";
    let Some(secret) = &u.secret_token else {
        return Ok(None);
    };
    let token = secret.read(key)?;
    let mut value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
        Problem::new(
            key,
            "contains characters that cannot be sent in an HTTP header",
        )
    })?;
    value.set_sensitive(true);
    Ok(Some(value))
}

fn upstream_peer(u: &UpstreamSettings) -> HttpPeer {
    let mut peer = HttpPeer::new(u.address, false, String::new());
    peer.options.connection_timeout = Some(u.connect_timeout);
    peer.options.total_connection_timeout = Some(u.connect_timeout);
    peer.options.read_timeout = Some(u.read_timeout);
    peer.options.write_timeout = Some(u.write_timeout);
    peer.options.idle_timeout = Some(u.idle_timeout);
    peer
}

/// Start serving; returns only on a startup error (Pingora exits the process on shutdown).
pub fn run(p: Prepared) -> Result<(), StartupError> {
    let s = &p.settings;
    let listen = s.server.listen;
    // Pingora aborts the process when it cannot bind; find out first and say why.
    std::net::TcpListener::bind(listen).map_err(|source| StartupError::Listen {
        addr: listen.to_string(),
        source,
    })?;
    if let (true, Some(t)) = (p.dev_certificate, &s.tls) {
        tracing::warn!(
            certificate = %t.default.certificate.display(),
            "DEVELOPMENT CERTIFICATE: serving a self-signed certificate generated for localhost. \
             Never use it in production: set ssl.certificate and ssl.key to real files and \
             ssl.generate_dev_certificate = false"
        );
    }
    if p.certificate.is_none() {
        tracing::warn!("ssl.enabled = false: credentials cross the network in clear text");
    }
    tracing::info!(
        listen = %listen,
        upstream = %s.upstream.authority,
        secret_tokens = p.credentials.token_count(),
        api_keys = p.credentials.api_key_count(),
        api_keys_enabled = s.auth.keys_file.is_some(),
        client_authentication = ?s
            .tls
            .as_ref()
            .map_or(ClientAuthentication::None, |t| t.client_authentication),
        "apm-auth-proxy starting"
    );

    let grace = s.server.shutdown_grace_period.as_secs();
    let conf = ServerConf {
        threads: s.server.threads,
        grace_period_seconds: Some(grace),
        graceful_shutdown_timeout_seconds: Some(grace.max(1)),
        // One retry covers a pooled upstream connection the APM Server had already closed.
        max_retries: 2,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(Opt::default(), conf);
    server.bootstrap();

    let proxy_settings = ProxySettings {
        idle_timeout: s.server.idle_timeout,
        read_timeout: s.server.read_timeout,
        write_timeout: s.server.write_timeout,
        reject_drain_timeout: s.server.reject_drain_timeout,
        scheme: if p.certificate.is_some() {
            "https"
        } else {
            "http"
        },
        access_log: s.log.access_log,
        body_limits: s.admission.body,
    };
    let authenticator = Arc::new(Authenticator::new(p.credentials));
    // One limiter for anonymous events, shared by the gate (a token per request) and the
    // body checks (a token per event).
    let event_limiter = s
        .admission
        .anonymous
        .as_ref()
        .map(|a| Arc::new(RateLimiter::new(a.event_limit, a.ip_limit)));
    let gate = Gate::new(
        &s.admission,
        authenticator.clone(),
        s.identities.clone(),
        event_limiter.clone(),
    );
    let proxy = ApmProxy::new(
        gate,
        s.admission.client_ip.clone(),
        upstream_peer(&s.upstream),
        p.upstream_authorization,
        event_limiter,
        proxy_settings,
    );
    let mut service = pingora::proxy::http_proxy_service_with_name(
        &server.configuration,
        proxy,
        "apm-auth-proxy",
    );
    // No L4 read buffer in front of the connection: rustls (and, without TLS, Pingora's
    // header parser) reads into a buffer of its own, so Pingora's 64 KiB one only added a
    // copy and ~9 KB of resident memory to every open connection (bench/RESULTS.md).
    let mut listener =
        ListenerConfig::tcp(listen.to_string()).l4_buffer(L4BufferSettings::default().read(0));
    if let Some(resolver) = &p.certificate {
        let tls_settings = tls::listener_settings(resolver.clone(), p.client_verifier.clone())
            .map_err(|e| StartupError::Pingora(e.to_string()))?;
        listener = listener.tls(tls_settings);
    }
    service.add_listener(listener);
    server.add_service(service);
    let certificates = p
        .certificate
        .zip(s.tls.clone())
        .map(|(resolver, t)| CertificateReloader::new(t, resolver));
    server.add_service(background_service(
        "reloader",
        Reloader {
            certificate_poll: s.tls.as_ref().and_then(|t| t.reload_interval),
            certificates,
            auth: s.auth.clone(),
            authenticator,
        },
    ));
    server.run_forever()
}

/// SIGHUP re-reads credentials (tokens, keys file) and certificates; certificate files are
/// also polled every `ssl.reload_interval`. A broken file keeps what was loaded before.
/// Pingora installs no SIGHUP handler, so without this one SIGHUP would kill the process.
struct Reloader {
    auth: AuthSettings,
    authenticator: Arc<Authenticator>,
    certificates: Option<CertificateReloader>,
    certificate_poll: Option<Duration>,
}

impl Reloader {
    fn reload_credentials(&self) {
        match CredentialStore::load(&self.auth) {
            Ok(store) => {
                tracing::info!(
                    secret_tokens = store.token_count(),
                    api_keys = store.api_key_count(),
                    "credentials reloaded"
                );
                self.authenticator.replace(store);
            }
            Err(e) => tracing::error!(
                error = %e,
                "credential reload failed; keeping the previous credentials"
            ),
        }
    }
}

#[async_trait]
impl BackgroundService for Reloader {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hangup = match signal(SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGHUP; reload on signal is unavailable");
                None
            }
        };
        let mut poll =
            tokio::time::interval(self.certificate_poll.unwrap_or(Duration::from_secs(3600)));
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut report = tokio::time::interval(Duration::from_secs(60));
        let mut reported = 0;
        loop {
            tokio::select! {
                Some(_) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => None } } => {
                    self.reload_credentials();
                    if let Some(c) = &self.certificates {
                        c.reload("SIGHUP");
                    }
                }
                _ = poll.tick() => {
                    if let (Some(c), Some(_)) = (&self.certificates, self.certificate_poll) {
                        c.poll();
                    }
                }
                _ = report.tick() => crate::logging::report_handshake_failures(&mut reported),
                _ = shutdown.changed() => return,
            }
        }
    }
}
