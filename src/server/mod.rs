//! Wiring typed settings into a running Pingora server: the agents' listener (TLS or plain)
//! behind the drain, the admin listener, the upstream check, and the background reloader.

mod drain;
mod jwks;
mod open_files;
mod reload;
mod usage_saver;

use std::sync::Arc;

use http::HeaderValue;
use pingora::apps::HttpServerOptions;
use pingora::listeners::ListenerConfig;
use pingora::protocols::l4::stream::L4BufferSettings;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::{RunArgs, Server};
use pingora::services::background::background_service;
use rustls::server::danger::ClientCertVerifier;

use crate::admin::AdminApp;
use crate::admission::Gate;
use crate::auth::jwt::JwtVerifier;
use crate::auth::{Authenticator, CredentialStore};
use crate::config::{ClientAuthentication, ConfigError, Problem, Problems};
use crate::forward::{ApmProxy, ConnectionTimes, Connections, Front, ProxySettings};
use crate::lifecycle::Lifecycle;
use crate::limits::ConnectionBook;
use crate::metrics::Metrics;
use crate::settings::Settings;
use crate::tls::{self, CertResolver, CertificateReloader, TlsError};
use crate::upstream::{PoolSettings, Pools};
use crate::usage::{state_file, UsageBook};
use drain::{DrainSignal, Drainable};
use reload::Reloader;
use usage_saver::{PeriodicSaves, UsageSaver};

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("ssl: {0}")]
    Tls(#[from] TlsError),
    #[error("{key}: cannot listen on {addr}: {source}")]
    Listen {
        key: &'static str,
        addr: String,
        source: std::io::Error,
    },
    #[error("cannot start Pingora: {0}")]
    Pingora(String),
    #[error("cannot register the metrics: {0}")]
    Metrics(#[from] prometheus::Error),
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
    /// Each pool's `Authorization` for its APM Servers, in pool order.
    pub upstream_authorizations: Vec<Option<HeaderValue>>,
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
    // Every stage runs, so `check` reports the certificates', the credentials' and the
    // pools' problems together.
    let mut problems = Problems::default();
    let mut dev_certificate = false;
    let mut certificate = None;
    let mut client_verifier = None;
    if let Some(tls_settings) = &settings.tls {
        dev_certificate = tls_settings.would_generate_dev_certificate();
        let ssl = |e: TlsError| Problem::new("ssl", e.to_string());
        certificate = problems
            .take(tls::CertSet::prepare(tls_settings, mode == Mode::Run).map_err(ssl))
            .flatten()
            .map(|set| Arc::new(CertResolver::new(set)));
        client_verifier = problems
            .take(
                tls::client_verifier(
                    tls_settings.client_authentication,
                    &tls_settings.certificate_authorities,
                    tls::crypto_provider(),
                )
                .map_err(ssl),
            )
            .flatten();
    }
    let credentials = problems.take(CredentialStore::load(&settings.auth));
    if let Some(store) = &credentials {
        for (id, pool) in store.key_pools() {
            if !settings.upstream.has_pool(pool) {
                problems.add(
                    "auth.api_key.keys_file",
                    format!("key {id:?} names the upstream pool {pool:?}, which is not configured"),
                );
            }
        }
    }
    let upstream_authorizations: Vec<_> = (settings.upstream.pools.iter())
        .map(|pool| problems.take(upstream_authorization(pool)).flatten())
        .collect();
    let credentials = problems.finish(|| credentials)?;
    Ok(Prepared {
        settings,
        certificate,
        client_verifier,
        credentials: credentials.unwrap_or_default(),
        upstream_authorizations,
        dev_certificate,
    })
}

/// `Bearer <secret_token>` of a pool, marked sensitive so it is never logged.
fn upstream_authorization(u: &PoolSettings) -> Result<Option<HeaderValue>, Problem> {
    let key = format!("upstream {:?}: secret_token", u.name);
    let key = key.as_str();
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

/// Pingora aborts the process when it cannot bind; find out first and say why.
fn can_bind(key: &'static str, addr: std::net::SocketAddr) -> Result<(), StartupError> {
    std::net::TcpListener::bind(addr)
        .map(drop)
        .map_err(|source| StartupError::Listen {
            key,
            addr: addr.to_string(),
            source,
        })
}

/// Start serving; returns when the drain has ended (or on a startup error).
pub fn run(p: Prepared) -> Result<(), StartupError> {
    let s = &p.settings;
    let listen = s.server.listen;
    can_bind("server.listen", listen)?;
    if let Some(admin) = s.admin.listen {
        can_bind("admin.listen", admin)?;
    }
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
    open_files::raise_and_report(s.server.connection_caps.total);
    tracing::info!(
        listen = %listen,
        admin = %s.admin.listen.map_or("off".to_string(), |a| a.to_string()),
        upstreams = %s.upstream.pools.iter().map(|p| format!("{}={}", p.name, p.authority)).collect::<Vec<_>>().join(","),
        secret_tokens = p.credentials.token_count(),
        api_keys = p.credentials.api_key_count(),
        api_keys_enabled = s.auth.keys_file.is_some(),
        client_authentication = s
            .tls
            .as_ref()
            .map_or(ClientAuthentication::None, |t| t.client_authentication)
            .as_str(),
        "apm-auth-proxy starting"
    );

    // The drain decides when to exit (server/drain.rs): Pingora's own grace sleep is 0.
    let conf = ServerConf {
        threads: s.server.threads,
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        // Total tries of one request: failed connects move on to other pool members, and
        // an idempotent request may retry a pooled connection the APM Server had closed.
        max_retries: 5,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(Opt::default(), conf);
    server.bootstrap();
    let lifecycle = Arc::new(Lifecycle::default());
    // JWT issuers: verified on the request path, their keys kept current in the background.
    let jwt = (!s.auth.jwt.is_empty()).then(|| Arc::new(JwtVerifier::new(s.auth.jwt.clone())));
    let metrics = Arc::new(Metrics::new()?);
    metrics.init_pools(s.upstream.pools.iter().map(|p| p.name.as_str()));
    let (pools, pool_services) =
        Pools::start(&s.upstream, p.upstream_authorizations.clone(), &mut server)
            .map_err(|e| StartupError::Pingora(e.to_string()))?;
    let pools = Arc::new(pools);
    {
        // Starting until every pool was checked and every JWT issuer's keys were fetched once
        // (or the fetch failed: a broken identity provider does not make the proxy unready).
        let (pools, jwt) = (pools.clone(), jwt.clone());
        lifecycle.set_upstream_probe(Box::new(move || {
            let keys_tried = jwt.as_ref().is_none_or(|v| v.started());
            pools.answering().filter(|_| keys_tried)
        }));
    }

    let proxy_settings = ProxySettings {
        idle_timeout: s.server.idle_timeout,
        read_timeout: s.server.read_timeout,
        body_deadline: s.server.body_deadline,
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
    let reloader_store_view = p.credentials.describe();
    let authenticator = Arc::new(Authenticator::with_jwt(p.credentials, jwt.clone()));
    let gate = Gate::new(&s.admission, authenticator.clone(), s.identities.clone());
    let usage = s.usage.file.as_ref().map(|path| {
        let history = state_file::load(path).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "usage state unreadable: counting from zero (the file is replaced at the next save)");
            Vec::new()
        });
        Arc::new(UsageBook::with_history(history))
    });
    let front = Arc::new(Front::new(
        gate,
        s.admission.client_ip.clone(),
        pools.clone(),
        lifecycle.clone(),
        usage.clone(),
        s.admin.listen.is_some().then(|| metrics.clone()),
        proxy_settings,
    ));
    let proxy = ApmProxy::new(front.clone(), lifecycle.clone(), usage.is_some());
    let mut proxy = pingora::proxy::http_proxy(&server.configuration, proxy);
    let mut options = HttpServerOptions::default();
    // Without TLS there is no ALPN: gRPC clients speak h2c with prior knowledge.
    let h2c = p.certificate.is_none();
    options.h2c = h2c;
    // An HTTP/2 connection with no stream open is closed after idle_timeout, as an idle
    // HTTP/1.1 one is (Pingora's default keeps it for ever).
    options.h2_idle_timeout = Some(s.server.idle_timeout);
    proxy.server_options = Some(options);
    let times = ConnectionTimes {
        idle_timeout: s.server.idle_timeout,
        header_timeout: s.server.header_timeout,
    };
    let book = ConnectionBook::new(s.server.connection_caps, metrics.clone());
    let connections = Connections::new(proxy, front, times, h2c, book.clone());
    let mut service =
        pingora::services::listening::Service::new("apm-auth-proxy".to_string(), connections);
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
    let proxy_service = server.add_service(Drainable {
        inner: service,
        lifecycle: lifecycle.clone(),
    });
    // The listener opens once every pool has its first members.
    proxy_service.add_dependencies(&pool_services);

    if let Some(admin) = s.admin.listen {
        let app = AdminApp {
            metrics: metrics.clone(),
            lifecycle: lifecycle.clone(),
            certificate: p.certificate.clone(),
            connections: book,
            pools: pools.clone(),
            usage: usage.clone(),
        };
        let mut admin_service =
            pingora::services::listening::Service::new("admin".to_string(), app);
        admin_service.add_tcp(&admin.to_string());
        server.add_service(admin_service);
    }
    let certificates = p
        .certificate
        .zip(s.tls.clone())
        .map(|(resolver, t)| CertificateReloader::new(t, resolver, metrics.clone()));
    let reloader = Reloader::new(
        s.auth.clone(),
        authenticator,
        reloader_store_view,
        certificates,
        s.tls.as_ref().and_then(|t| t.reload_interval),
        metrics.clone(),
    );
    server.add_service(background_service("reloader", reloader));
    if let Some(verifier) = jwt {
        metrics.init_issuers(s.auth.jwt.iter().map(|i| i.name.as_str()));
        let refresher = jwks::JwksRefresher {
            verifier,
            metrics: metrics.clone(),
        };
        server.add_service(background_service("jwks", refresher));
    }
    let saver = usage
        .zip(s.usage.file.clone())
        .map(|(book, path)| Arc::new(UsageSaver::new(book, path, s.usage.flush_interval)));
    if let Some(saver) = &saver {
        server.add_service(background_service("usage", PeriodicSaves(saver.clone())));
    }
    let shutdown = DrainSignal {
        lifecycle,
        drain_delay: s.server.drain_delay,
        grace: s.server.shutdown_grace_period,
    };
    server.run(RunArgs {
        shutdown_signal: Box::new(shutdown),
    });
    // What the last requests changed, saved now that they are over.
    if let Some(saver) = saver {
        saver.save_if_changed();
    }
    // Back to `main`, whose return ends the process (and any thread Pingora left behind).
    Ok(())
}
