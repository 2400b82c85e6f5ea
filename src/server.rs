//! Turning a validated config into a running Pingora server.

use std::sync::Arc;

use async_trait::async_trait;
use pingora::prelude::HttpPeer;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::{Server, ShutdownWatch};
use pingora::services::background::{background_service, BackgroundService};

use crate::auth::{Authenticator, CredentialStore};
use crate::client_ip::ClientIpPolicy;
use crate::config::{Config, ConfigError, UpstreamAddress};
use crate::proxy::{ApmProxy, ProxySettings};
use crate::tls::{self, CertResolver, TlsError};

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
    pub config: Config,
    pub certificate: Option<Arc<CertResolver>>,
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
    let certificate = if config.ssl.enabled {
        // validate() guarantees both are set when ssl is enabled.
        let (Some(cert), Some(key)) = (&config.ssl.certificate, &config.ssl.key) else {
            return Err(ConfigError::invalid("ssl", "certificate and key are required").into());
        };
        let (cert, key) = (config.path(cert), config.path(key));
        let missing = !cert.exists() && !key.exists();
        if config.ssl.generate_dev_certificate && missing {
            dev_certificate = true;
            if mode == Mode::Check {
                None
            } else {
                tls::ensure_dev_certificate(&cert, &key)?;
                Some(Arc::new(CertResolver::new(tls::load_certified_key(
                    &cert, &key,
                )?)))
            }
        } else {
            Some(Arc::new(CertResolver::new(tls::load_certified_key(
                &cert, &key,
            )?)))
        }
    } else {
        None
    };
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
        config,
        certificate,
        credentials,
        upstream,
        upstream_token,
        client_ip,
        dev_certificate,
    })
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
        max_header_size: s.max_header_size,
        scheme: if p.certificate.is_some() {
            "https"
        } else {
            "http"
        },
        access_log: p.config.log.access_log,
    };
    let authenticator = Arc::new(Authenticator::new(p.credentials));
    let proxy = ApmProxy::new(
        authenticator.clone(),
        p.client_ip.clone(),
        upstream_peer_for(&p.config, &p.upstream),
        p.upstream_token.as_deref(),
        settings,
    )
    .map_err(|e| StartupError::Pingora(e.to_string()))?;
    let mut service = pingora::proxy::http_proxy_service_with_name(
        &server.configuration,
        proxy,
        "apm-auth-proxy",
    );
    let addr = listen.to_string();
    match &p.certificate {
        Some(resolver) => {
            let settings = tls::listener_settings(resolver.clone())
                .map_err(|e| StartupError::Pingora(e.to_string()))?;
            service.add_tls_with_settings(&addr, None, settings);
        }
        None => service.add_tcp(&addr),
    }
    server.add_service(service);
    server.add_service(background_service(
        "reload on SIGHUP",
        Reloader {
            config: p.config,
            authenticator,
            certificate: p.certificate,
        },
    ));
    server.run_forever()
}

fn upstream_peer_for(config: &Config, upstream: &UpstreamAddress) -> HttpPeer {
    let u = &config.upstream;
    let mut peer = HttpPeer::new(upstream.socket, false, String::new());
    peer.options.connection_timeout = Some(u.connect_timeout.0);
    peer.options.total_connection_timeout = Some(u.connect_timeout.0);
    peer.options.read_timeout = Some(u.read_timeout.0);
    peer.options.write_timeout = Some(u.write_timeout.0);
    peer.options.idle_timeout = Some(u.idle_timeout.0);
    peer
}

/// SIGHUP re-reads credentials (tokens, keys file) and the certificate. A broken file keeps
/// what was loaded before. Pingora installs no SIGHUP handler, so without this one SIGHUP
/// would kill the process.
struct Reloader {
    config: Config,
    authenticator: Arc<Authenticator>,
    certificate: Option<Arc<CertResolver>>,
}

impl Reloader {
    fn reload(&self) {
        match CredentialStore::load(&self.config) {
            Ok(store) => {
                tracing::info!(
                    secret_tokens = store.token_count(),
                    api_keys = store.api_key_count(),
                    "credentials reloaded"
                );
                self.authenticator.replace(store);
            }
            Err(e) => {
                tracing::error!(error = %e, "credential reload failed; keeping the previous credentials")
            }
        }
        if let (Some(resolver), Some(cert), Some(key)) = (
            &self.certificate,
            &self.config.ssl.certificate,
            &self.config.ssl.key,
        ) {
            match tls::load_certified_key(&self.config.path(cert), &self.config.path(key)) {
                Ok(k) => {
                    resolver.replace(k);
                    tracing::info!("certificate reloaded");
                }
                Err(e) => {
                    tracing::error!(error = %e, "certificate reload failed; keeping the previous certificate")
                }
            }
        }
    }
}

#[async_trait]
impl BackgroundService for Reloader {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hangup = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGHUP; reload is unavailable");
                return;
            }
        };
        loop {
            tokio::select! {
                _ = hangup.recv() => self.reload(),
                _ = shutdown.changed() => return,
            }
        }
    }
}
