//! Turning a validated config into a running Pingora server.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::listeners::ListenerConfig;
use pingora::prelude::HttpPeer;
use pingora::protocols::l4::stream::L4BufferSettings;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::{Server, ShutdownWatch};
use pingora::services::background::{background_service, BackgroundService};
use rustls::server::danger::ClientCertVerifier;

use crate::auth::client_cert::IdentityMap;
use crate::auth::{Authenticator, CredentialStore};
use crate::client_ip::ClientIpPolicy;
use crate::config::{Config, ConfigError, UpstreamAddress};
use crate::gate::Gate;
use crate::proxy::{ApmProxy, ProxySettings};
use crate::tls::reload::CertificateReloader;
use crate::tls::{self, CertResolver, CertSet, TlsError};

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

/// Everything `run` needs, loaded and checked. `check` builds it too, so both see the same
/// problems.
pub struct Prepared {
    pub config: Arc<Config>,
    pub certificate: Option<Arc<CertResolver>>,
    pub client_verifier: Option<Arc<dyn ClientCertVerifier>>,
    pub identities: IdentityMap,
    pub credentials: CredentialStore,
    pub upstream: UpstreamAddress,
    pub upstream_token: Option<String>,
    pub client_ip: ClientIpPolicy,
    /// True when a development certificate is (or would be) generated.
    pub dev_certificate: bool,
}

/// Whether preparing may create files (the development certificate).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Run,
    Check,
}

pub fn prepare(config: Config, mode: Mode) -> Result<Prepared, StartupError> {
    config.validate()?;
    let mut dev_certificate = false;
    let mut certificate = None;
    let mut client_verifier = None;
    if config.ssl.enabled {
        // The protocol policy must be in place before any key is loaded or listener built.
        tls::policy::install(&config.ssl)?;
        // validate() guarantees both are set when ssl is enabled.
        let (Some(cert), Some(key)) = (&config.ssl.certificate, &config.ssl.key) else {
            return Err(ConfigError::invalid("ssl", "certificate and key are required").into());
        };
        let (cert, key) = (config.path(cert), config.path(key));
        dev_certificate = config.ssl.generate_dev_certificate && !cert.exists() && !key.exists();
        if dev_certificate && mode == Mode::Run {
            tls::ensure_dev_certificate(&cert, &key)?;
        }
        if !(dev_certificate && mode == Mode::Check) {
            certificate = Some(Arc::new(CertResolver::new(CertSet::load(&config)?)));
        }
        let authorities: Vec<_> = config
            .ssl
            .certificate_authorities
            .iter()
            .map(|p| config.path(p))
            .collect();
        client_verifier = tls::client::verifier(
            config.ssl.client_auth_mode(),
            &authorities,
            tls::crypto_provider(),
        )?;
    }
    let identities = IdentityMap::from_config(&config.ssl.client_identities)?;
    let credentials = CredentialStore::load(&config)?;
    let upstream = config.upstream_address()?;
    let upstream_token = config
        .upstream
        .secret_token
        .as_ref()
        .map(|s| s.resolve_plain(&config.base_dir, "upstream.secret_token"))
        .transpose()?;
    if let Some(t) = &upstream_token {
        if http::HeaderValue::from_str(t).is_err() {
            return Err(ConfigError::invalid(
                "upstream.secret_token",
                "contains characters that cannot be sent in an HTTP header",
            )
            .into());
        }
    }
    let client_ip = ClientIpPolicy::new(config.trusted_proxies()?);
    Ok(Prepared {
        config: Arc::new(config),
        certificate,
        client_verifier,
        identities,
        credentials,
        upstream,
        upstream_token,
        client_ip,
        dev_certificate,
    })
}

fn upstream_peer(config: &Config, upstream: &UpstreamAddress) -> HttpPeer {
    let u = &config.upstream;
    let mut peer = HttpPeer::new(upstream.socket, false, String::new());
    peer.options.connection_timeout = Some(u.connect_timeout.0);
    peer.options.total_connection_timeout = Some(u.connect_timeout.0);
    peer.options.read_timeout = Some(u.read_timeout.0);
    peer.options.write_timeout = Some(u.write_timeout.0);
    peer.options.idle_timeout = Some(u.idle_timeout.0);
    peer
}

/// Start serving; returns only on a startup error (Pingora exits the process on shutdown).
pub fn run(p: Prepared) -> Result<(), StartupError> {
    let listen = p.config.listen_address()?;
    // Pingora aborts the process when it cannot bind; find out first and say why.
    std::net::TcpListener::bind(listen).map_err(|source| StartupError::Listen {
        addr: listen.to_string(),
        source,
    })?;
    if p.dev_certificate {
        tracing::warn!(
            certificate = %p.config.ssl.certificate.as_deref().unwrap_or(std::path::Path::new("")).display(),
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
        upstream = %p.upstream.authority,
        secret_tokens = p.credentials.token_count(),
        api_keys = p.credentials.api_key_count(),
        api_keys_enabled = p.config.auth.api_key.enabled,
        client_authentication = ?p.config.ssl.client_auth_mode(),
        "apm-auth-proxy starting"
    );

    let grace = p.config.server.shutdown_grace_period.0.as_secs();
    let conf = ServerConf {
        threads: p.config.server.threads,
        grace_period_seconds: Some(grace),
        graceful_shutdown_timeout_seconds: Some(grace.max(1)),
        // One retry covers a pooled upstream connection the APM Server had already closed.
        max_retries: 2,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(Opt::default(), conf);
    server.bootstrap();

    let s = &p.config.server;
    let settings = ProxySettings {
        idle_timeout: s.idle_timeout.0,
        read_timeout: s.read_timeout.0,
        write_timeout: s.write_timeout.0,
        reject_drain_timeout: s.reject_drain_timeout.0,
        scheme: if p.certificate.is_some() {
            "https"
        } else {
            "http"
        },
        access_log: p.config.log.access_log,
        max_event_size: p.config.rum.max_event_size,
        max_anonymous_request_size: p.config.auth.anonymous.max_request_size,
    };
    let authenticator = Arc::new(Authenticator::new(p.credentials));
    let gate = Gate::from_config(&p.config, authenticator.clone(), p.identities);
    let proxy = ApmProxy::new(
        gate,
        p.client_ip.clone(),
        upstream_peer(&p.config, &p.upstream),
        p.upstream_token.as_deref(),
        settings,
    )
    .map_err(|e| StartupError::Pingora(e.to_string()))?;
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
        let settings = tls::listener_settings(resolver.clone(), p.client_verifier.clone())
            .map_err(|e| StartupError::Pingora(e.to_string()))?;
        listener = listener.tls(settings);
    }
    service.add_listener(listener);
    server.add_service(service);
    server.add_service(background_service(
        "reloader",
        Reloader {
            certificates: p
                .certificate
                .map(|r| CertificateReloader::new(p.config.clone(), r)),
            config: p.config,
            authenticator,
        },
    ));
    server.run_forever()
}

/// SIGHUP re-reads credentials (tokens, keys file) and certificates; certificate files are
/// also polled every `ssl.reload_interval`. A broken file keeps what was loaded before.
/// Pingora installs no SIGHUP handler, so without this one SIGHUP would kill the process.
struct Reloader {
    config: Arc<Config>,
    authenticator: Arc<Authenticator>,
    certificates: Option<CertificateReloader>,
}

impl Reloader {
    fn reload_credentials(&self) {
        match CredentialStore::load(&self.config) {
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
        let every = self.config.ssl.reload_interval.0;
        let mut poll = tokio::time::interval(if every.is_zero() {
            Duration::from_secs(3600)
        } else {
            every
        });
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
                    if let (Some(c), false) = (&self.certificates, every.is_zero()) {
                        c.poll();
                    }
                }
                _ = report.tick() => crate::logging::report_handshake_failures(&mut reported),
                _ = shutdown.changed() => return,
            }
        }
    }
}
