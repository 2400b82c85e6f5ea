//! `proxy.toml`: the file model (serde, unknown keys rejected), its defaults, and validation
//! into the settings the rest of the proxy uses. Every problem is reported as
//! `<key>: <problem>` so an operator can find it; `check` and `run` exit 64 on any of them.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use ipnet::IpNet;
use serde::{Deserialize, Deserializer};

use crate::secrets::SecretSource;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{key}: {problem}")]
    Invalid { key: String, problem: String },
}

impl ConfigError {
    pub fn invalid(key: impl Into<String>, problem: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.into(),
            problem: problem.into(),
        }
    }
}

/// A duration written the human way: `"30s"`, `"5m"`, `"1h 30m"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text)
            .map(HumanDuration)
            .map_err(|e| {
                serde::de::Error::custom(format!(
                    "invalid duration {text:?}: {e} (write e.g. \"30s\")"
                ))
            })
    }
}

/// The whole file. Every section is optional and has documented defaults.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub ssl: SslConfig,
    #[serde(default)]
    pub auth: AuthConfig,
    #[serde(default)]
    pub rum: RumConfig,
    #[serde(default)]
    pub upstream: UpstreamConfig,
    #[serde(default)]
    pub client_ip: ClientIpConfig,
    #[serde(default)]
    pub log: LogConfig,
    /// Directory of the config file: relative paths in it are resolved against this.
    #[serde(skip)]
    pub base_dir: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address the agents connect to.
    pub listen: String,
    /// Worker threads.
    pub threads: usize,
    /// How long a kept-alive client connection may sit idle between requests.
    pub idle_timeout: HumanDuration,
    /// Longest silence tolerated while reading a request body from a client.
    pub read_timeout: HumanDuration,
    /// Longest silence tolerated while writing a response to a client.
    pub write_timeout: HumanDuration,
    /// Largest request header block accepted, in bytes (Pingora's hard cap is 1 MiB − 1).
    pub max_header_size: usize,
    /// How long the proxy keeps reading the body of a request it rejected, so the client
    /// sees the answer and (when the body ends in time) the connection stays open.
    pub reject_drain_timeout: HumanDuration,
    /// On SIGTERM: how long in-flight requests get to finish before the process exits.
    pub shutdown_grace_period: HumanDuration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8200".into(),
            threads: 2,
            idle_timeout: HumanDuration(Duration::from_secs(45)),
            read_timeout: HumanDuration(Duration::from_secs(30)),
            write_timeout: HumanDuration(Duration::from_secs(30)),
            max_header_size: 1_048_575,
            reject_drain_timeout: HumanDuration(Duration::from_secs(5)),
            shutdown_grace_period: HumanDuration(Duration::from_secs(30)),
        }
    }
}

/// Pingora refuses request headers larger than this; our own limit can only be lower.
pub const PINGORA_MAX_HEADER_SIZE: usize = 1_048_575;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SslConfig {
    pub enabled: bool,
    /// PEM certificate chain, leaf first.
    pub certificate: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: Option<PathBuf>,
    /// Generate a self-signed development certificate at `certificate`/`key` when both
    /// files are missing. Never use this in production.
    pub generate_dev_certificate: bool,
    /// Further certificates, chosen by the server name the client asks for (SNI).
    pub sni: Vec<SniCertificate>,
    /// How often certificate files are checked for changes ("0s": only on SIGHUP).
    pub reload_interval: HumanDuration,
    /// `none`, `optional` or `required`; `required` when CAs are set and this is not.
    pub client_authentication: Option<ClientAuthentication>,
    /// PEM bundles of the CAs that sign client certificates.
    pub certificate_authorities: Vec<PathBuf>,
    /// Client certificates that are credentials of their own.
    pub client_identities: Vec<ClientIdentityConfig>,
    /// `TLSv1.2`, `TLSv1.3`; nothing older is ever accepted.
    pub supported_protocols: Vec<String>,
    /// rustls names, e.g. `TLS13_AES_128_GCM_SHA256`; empty: rustls' safe defaults.
    pub cipher_suites: Vec<String>,
    /// Key exchange groups: `X25519`, `P-256`, `P-384`; empty: rustls' defaults.
    pub curve_types: Vec<String>,
}

impl Default for SslConfig {
    fn default() -> Self {
        SslConfig {
            enabled: true,
            certificate: None,
            key: None,
            generate_dev_certificate: false,
            sni: Vec::new(),
            reload_interval: HumanDuration(Duration::from_secs(10)),
            client_authentication: None,
            certificate_authorities: Vec::new(),
            client_identities: Vec::new(),
            supported_protocols: vec!["TLSv1.2".into(), "TLSv1.3".into()],
            cipher_suites: Vec::new(),
            curve_types: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SniCertificate {
    /// Names this certificate serves; `*.example.com` matches one label.
    pub server_names: Vec<String>,
    pub certificate: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuthentication {
    None,
    Optional,
    Required,
}

/// A client certificate that maps to a name and privileges. Exactly one matcher is set.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientIdentityConfig {
    pub name: String,
    /// Hex SHA-256 of the certificate (DER), e.g. from `openssl x509 -fingerprint -sha256`.
    pub sha256: Option<String>,
    pub subject_cn: Option<String>,
    pub san_dns: Option<String>,
    pub san_uri: Option<String>,
    pub privileges: Vec<String>,
    /// When true, the certificate alone is not enough: a token or API key is required too.
    #[serde(default)]
    pub require_credential: bool,
}

impl SslConfig {
    /// The effective mode: APM Server makes it `required` when CAs are set and no mode is.
    pub fn client_auth_mode(&self) -> ClientAuthentication {
        match (
            self.client_authentication,
            self.certificate_authorities.is_empty(),
        ) {
            (Some(mode), _) => mode,
            (None, false) => ClientAuthentication::Required,
            (None, true) => ClientAuthentication::None,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// APM Server's single secret token (`auth.secret_token`), named "default".
    pub secret_token: Option<SecretSource>,
    /// Further named tokens, valid at the same time (rotation), each with an optional expiry.
    pub secret_tokens: Vec<NamedToken>,
    pub api_key: ApiKeyConfig,
    pub anonymous: AnonymousConfig,
    pub failed_attempts: FailedAttemptsConfig,
}

/// The RUM endpoints as APM Server opens them to anonymous callers.
pub const RUM_ENDPOINTS: [&str; 3] = [
    "/intake/v2/rum/events",
    "/intake/v3/rum/events",
    "/config/v1/rum/agents",
];

/// Requests without a credential (APM Server's `auth.anonymous.*`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnonymousConfig {
    /// Unset: on exactly when `rum.enabled` is (APM Server's derivation, given that the
    /// proxy always has credentials configured).
    pub enabled: Option<bool>,
    /// Paths anonymous callers may use; everything else answers 401 as without anonymous.
    pub allow_endpoints: Vec<String>,
    /// `metadata.service.agent.name` values accepted (exact match); empty = any agent.
    pub allow_agent: Vec<String>,
    /// `metadata.service.name` values accepted (exact match); empty = any service.
    pub allow_service: Vec<String>,
    pub rate_limit: RateLimitConfig,
    /// Anonymous requests one client IP may have open at once (beyond: 429).
    pub max_concurrent_requests: u32,
    /// Largest anonymous request body, in bytes as sent (beyond: 413).
    pub max_request_size: u64,
}

impl Default for AnonymousConfig {
    fn default() -> Self {
        AnonymousConfig {
            enabled: None,
            allow_endpoints: RUM_ENDPOINTS.iter().map(|s| s.to_string()).collect(),
            allow_agent: vec!["rum-js".into(), "js-base".into()],
            allow_service: Vec::new(),
            rate_limit: RateLimitConfig::default(),
            max_concurrent_requests: 32,
            max_request_size: 5 * 1024 * 1024,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Events per second per client IP (burst: 3×).
    pub event_limit: u32,
    /// Client IPs tracked at once (least recently seen are forgotten first).
    pub ip_limit: usize,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            event_limit: 300,
            ip_limit: 1000,
        }
    }
}

/// Throttling of clients that keep presenting wrong credentials.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FailedAttemptsConfig {
    pub enabled: bool,
    /// Failed authentications from one IP within `window` that start a cool-down.
    pub max_failures: u32,
    pub window: HumanDuration,
    /// How long that IP's requests carrying a credential are answered 429.
    pub cooldown: HumanDuration,
    /// Client IPs tracked at once.
    pub ip_limit: usize,
}

impl Default for FailedAttemptsConfig {
    fn default() -> Self {
        FailedAttemptsConfig {
            enabled: true,
            max_failures: 20,
            window: HumanDuration(Duration::from_secs(60)),
            cooldown: HumanDuration(Duration::from_secs(300)),
            ip_limit: 10_000,
        }
    }
}

/// The RUM (browser) endpoints (APM Server's `rum.*`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RumConfig {
    /// Turns anonymous access on by default (see `auth.anonymous.enabled`).
    pub enabled: bool,
    /// Origins allowed to call the RUM endpoints; `*` globs as in APM Server.
    pub allow_origins: Vec<String>,
    /// Request headers browsers may send besides Content-Type, Content-Encoding, Accept.
    pub allow_headers: Vec<String>,
    /// Largest decompressed intake line (one event) the proxy reads, in bytes.
    pub max_event_size: usize,
}

impl Default for RumConfig {
    fn default() -> Self {
        RumConfig {
            enabled: false,
            allow_origins: vec!["*".into()],
            allow_headers: Vec::new(),
            max_event_size: 307_200,
        }
    }
}

impl Config {
    /// Whether requests without a credential are served (on the allowed endpoints).
    pub fn anonymous_enabled(&self) -> bool {
        self.auth.anonymous.enabled.unwrap_or(self.rum.enabled)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamedToken {
    pub name: String,
    pub secret: SecretSource,
    /// RFC 3339 time after which the token is refused, e.g. "2027-01-31T00:00:00Z".
    pub expires: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiKeyConfig {
    pub enabled: bool,
    /// Keys file written by `apm-auth-proxy apikey create`.
    pub keys_file: PathBuf,
}

impl Default for ApiKeyConfig {
    fn default() -> Self {
        ApiKeyConfig {
            enabled: false,
            keys_file: PathBuf::from("keys.toml"),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamConfig {
    /// The APM Server, plain HTTP: `http://host:port`.
    pub url: String,
    pub connect_timeout: HumanDuration,
    /// Longest silence tolerated while waiting for / reading the upstream's response.
    pub read_timeout: HumanDuration,
    /// Longest silence tolerated while writing to the upstream.
    pub write_timeout: HumanDuration,
    /// How long an idle upstream connection is kept in the pool for reuse.
    pub idle_timeout: HumanDuration,
    /// Token the proxy sends upstream as `Authorization: Bearer …` on every forwarded
    /// request, so an APM Server configured with it refuses traffic that bypasses the proxy.
    pub secret_token: Option<SecretSource>,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            url: "http://127.0.0.1:8201".into(),
            connect_timeout: HumanDuration(Duration::from_secs(5)),
            read_timeout: HumanDuration(Duration::from_secs(60)),
            write_timeout: HumanDuration(Duration::from_secs(60)),
            idle_timeout: HumanDuration(Duration::from_secs(60)),
            secret_token: None,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientIpConfig {
    /// Peers (CIDRs or single IPs) whose `Forwarded` / `X-Real-IP` / `X-Forwarded-For`
    /// headers are believed. From anyone else those headers are dropped.
    pub trusted_proxies: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// tracing filter: "info", "debug", "apm_auth_proxy=debug,pingora=warn", …
    pub level: String,
    /// "text" or "json".
    pub format: LogFormat,
    /// One line per request (method, path, status, client IP, credential name, duration).
    pub access_log: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: LogFormat::Text,
            access_log: true,
        }
    }
}

/// Where the upstream APM Server is, resolved.
#[derive(Debug, Clone)]
pub struct UpstreamAddress {
    pub socket: SocketAddr,
    /// `host:port` as written, for logs and the Host of requests the proxy makes itself.
    pub authority: String,
}

pub fn resolve_path(base_dir: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base_dir.join(path)
    }
}

pub fn parse_rfc3339(key: &str, text: &str) -> Result<SystemTime, ConfigError> {
    humantime::parse_rfc3339_weak(text).map_err(|e| {
        ConfigError::invalid(
            key,
            format!("invalid time {text:?}: {e} (write e.g. \"2027-01-31T00:00:00Z\")"),
        )
    })
}

impl Config {
    /// Read and parse a config file; does not validate (see [`Config::validate`]).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut config = Config::parse(&text).map_err(|message| ConfigError::Parse {
            path: path.to_path_buf(),
            message,
        })?;
        config.base_dir = path
            .parent()
            .map(Path::to_path_buf)
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from("."));
        Ok(config)
    }

    pub fn parse(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e| e.to_string().trim_end().to_string())
    }

    pub fn path(&self, path: &Path) -> PathBuf {
        resolve_path(&self.base_dir, path)
    }

    /// Check every value that can be checked without touching the network. Files named by
    /// the config (certificates, keys file, secret files) are checked by the components that
    /// load them (`tls`, `auth`), which `commands::check` runs as well.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.listen_address()?;
        if self.server.threads == 0 {
            return Err(ConfigError::invalid("server.threads", "must be at least 1"));
        }
        if self.server.max_header_size == 0 || self.server.max_header_size > PINGORA_MAX_HEADER_SIZE
        {
            return Err(ConfigError::invalid(
                "server.max_header_size",
                format!("must be between 1 and {PINGORA_MAX_HEADER_SIZE} bytes"),
            ));
        }
        for (key, d) in [
            ("server.idle_timeout", self.server.idle_timeout),
            ("server.read_timeout", self.server.read_timeout),
            ("server.write_timeout", self.server.write_timeout),
            ("upstream.connect_timeout", self.upstream.connect_timeout),
            ("upstream.read_timeout", self.upstream.read_timeout),
            ("upstream.write_timeout", self.upstream.write_timeout),
        ] {
            if d.0.is_zero() {
                return Err(ConfigError::invalid(key, "must be greater than zero"));
            }
        }
        if self.ssl.enabled && (self.ssl.certificate.is_none() || self.ssl.key.is_none()) {
            return Err(ConfigError::invalid(
                "ssl",
                "ssl.certificate and ssl.key are required when ssl.enabled = true",
            ));
        }
        if self.auth.secret_token.is_none()
            && self.auth.secret_tokens.is_empty()
            && !self.auth.api_key.enabled
            && self.ssl.client_identities.is_empty()
        {
            return Err(ConfigError::invalid(
                "auth",
                "no credential is configured: set auth.secret_token, auth.secret_tokens, \
                 auth.api_key.enabled = true or ssl.client_identities (the proxy never runs open)",
            ));
        }
        let mut names = std::collections::HashSet::new();
        if self.auth.secret_token.is_some() {
            names.insert("default");
        }
        for (i, t) in self.auth.secret_tokens.iter().enumerate() {
            let key = format!("auth.secret_tokens[{i}]");
            if t.name.trim().is_empty() {
                return Err(ConfigError::invalid(
                    format!("{key}.name"),
                    "must not be empty",
                ));
            }
            if !names.insert(t.name.as_str()) {
                return Err(ConfigError::invalid(
                    format!("{key}.name"),
                    format!("duplicate token name {:?}", t.name),
                ));
            }
            if let Some(exp) = &t.expires {
                parse_rfc3339(&format!("{key}.expires"), exp)?;
            }
        }
        if self.ssl.enabled {
            crate::tls::policy::validate(&self.ssl)?;
        }
        if self.ssl.client_auth_mode() != ClientAuthentication::None
            && self.ssl.certificate_authorities.is_empty()
        {
            return Err(ConfigError::invalid(
                "ssl.certificate_authorities",
                "client certificates need at least one CA bundle to verify them",
            ));
        }
        if !self.ssl.client_identities.is_empty()
            && self.ssl.client_auth_mode() == ClientAuthentication::None
        {
            return Err(ConfigError::invalid(
                "ssl.client_identities",
                "set ssl.client_authentication (and ssl.certificate_authorities) to use client identities",
            ));
        }
        crate::auth::client_cert::IdentityMap::from_config(&self.ssl.client_identities)?;
        self.validate_anonymous()?;
        self.upstream_address()?;
        self.trusted_proxies()?;
        crate::logging::parse_filter(&self.log.level)
            .map_err(|e| ConfigError::invalid("log.level", e))?;
        Ok(())
    }

    fn validate_anonymous(&self) -> Result<(), ConfigError> {
        let a = &self.auth.anonymous;
        for (i, path) in a.allow_endpoints.iter().enumerate() {
            let key = format!("auth.anonymous.allow_endpoints[{i}]");
            match crate::routes::classify(path) {
                crate::routes::Endpoint::Protected { kind, .. } if kind.anonymous_checkable() => {}
                crate::routes::Endpoint::Protected { .. } => {
                    return Err(ConfigError::invalid(
                        key,
                        format!(
                            "{path:?}: the proxy cannot check anonymous requests to it against \
                             allow_agent/allow_service (its body is not ndjson)"
                        ),
                    ))
                }
                _ => {
                    return Err(ConfigError::invalid(
                        key,
                        format!("{path:?} is not an APM Server agent endpoint"),
                    ))
                }
            }
        }
        let positive = [
            (
                "auth.anonymous.rate_limit.event_limit",
                u64::from(a.rate_limit.event_limit),
            ),
            (
                "auth.anonymous.rate_limit.ip_limit",
                a.rate_limit.ip_limit as u64,
            ),
            (
                "auth.anonymous.max_concurrent_requests",
                u64::from(a.max_concurrent_requests),
            ),
            ("auth.anonymous.max_request_size", a.max_request_size),
            ("rum.max_event_size", self.rum.max_event_size as u64),
            (
                "auth.failed_attempts.max_failures",
                u64::from(self.auth.failed_attempts.max_failures),
            ),
            (
                "auth.failed_attempts.ip_limit",
                self.auth.failed_attempts.ip_limit as u64,
            ),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(ConfigError::invalid(key, "must be greater than zero"));
            }
        }
        if a.rate_limit.event_limit > 1_000_000 {
            return Err(ConfigError::invalid(
                "auth.anonymous.rate_limit.event_limit",
                "must be at most 1000000 events per second",
            ));
        }
        for (i, h) in self.rum.allow_headers.iter().enumerate() {
            if http::HeaderName::from_bytes(h.as_bytes()).is_err() {
                return Err(ConfigError::invalid(
                    format!("rum.allow_headers[{i}]"),
                    format!("{h:?} is not a valid header name"),
                ));
            }
        }
        Ok(())
    }

    pub fn listen_address(&self) -> Result<SocketAddr, ConfigError> {
        self.server.listen.parse().map_err(|_| {
            ConfigError::invalid(
                "server.listen",
                format!(
                    "{:?} is not an IP:port address (e.g. \"0.0.0.0:8200\")",
                    self.server.listen
                ),
            )
        })
    }

    /// `upstream.url` as a socket address. Only plain `http://host:port` is accepted: TLS to
    /// the upstream is not supported, and a path prefix would change what APM Server routes.
    pub fn upstream_address(&self) -> Result<UpstreamAddress, ConfigError> {
        let key = "upstream.url";
        let url = self.upstream.url.trim();
        let uri: http::Uri = url
            .parse()
            .map_err(|e| ConfigError::invalid(key, format!("{url:?} is not a URL: {e}")))?;
        if uri.scheme_str() != Some("http") {
            return Err(ConfigError::invalid(
                key,
                format!("{url:?}: only http:// upstreams are supported (the proxy terminates TLS)"),
            ));
        }
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(ConfigError::invalid(
                key,
                format!("{url:?}: must not have a path or query"),
            ));
        }
        let host = uri
            .host()
            .ok_or_else(|| ConfigError::invalid(key, format!("{url:?} has no host")))?;
        let port = uri.port_u16().unwrap_or(80);
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let socket = (host, port)
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| ConfigError::invalid(key, format!("cannot resolve host {host:?}")))?;
        Ok(UpstreamAddress {
            socket,
            authority: uri.authority().map(|a| a.to_string()).unwrap_or_default(),
        })
    }

    pub fn trusted_proxies(&self) -> Result<Vec<IpNet>, ConfigError> {
        self.client_ip
            .trusted_proxies
            .iter()
            .enumerate()
            .map(|(i, text)| {
                let text = text.trim();
                text.parse::<IpNet>()
                    .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        ConfigError::invalid(
                            format!("client_ip.trusted_proxies[{i}]"),
                            format!("{text:?} is neither a CIDR (10.0.0.0/8) nor an IP address"),
                        )
                    })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid(extra: &str) -> Result<(), String> {
        let text = format!("[auth]\nsecret_token = \"t\"\n{extra}");
        let mut c = Config::parse(&text)?;
        c.ssl.enabled = false;
        c.validate().map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_valid() {
        valid("").unwrap();
    }

    #[test]
    fn unknown_key_is_rejected_with_its_name() {
        let err = Config::parse("[server]\nlisten_addr = \"x\"\n").unwrap_err();
        assert!(err.contains("listen_addr"), "{err}");
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases = [
            ("[server]\nlisten = \"8200\"", "server.listen"),
            ("[server]\nthreads = 0", "server.threads"),
            (
                "[server]\nmax_header_size = 2000000",
                "server.max_header_size",
            ),
            ("[upstream]\nurl = \"https://apm:8200\"", "upstream.url"),
            (
                "[upstream]\nurl = \"http://apm:8200/prefix\"",
                "upstream.url",
            ),
            (
                "[client_ip]\ntrusted_proxies = [\"10.0.0.0/33\"]",
                "client_ip.trusted_proxies[0]",
            ),
            (
                "[[auth.secret_tokens]]\nname = \"default\"\nsecret = \"x\"",
                "auth.secret_tokens[0].name",
            ),
            (
                "[[auth.secret_tokens]]\nname = \"a\"\nsecret = \"x\"\nexpires = \"soon\"",
                "auth.secret_tokens[0].expires",
            ),
            ("[log]\nlevel = \"apm=loud\"", "log.level"),
        ];
        for (extra, key) in cases {
            let err = valid(extra).unwrap_err();
            assert!(
                err.starts_with(key),
                "{extra:?} gave {err:?}, expected key {key}"
            );
        }
    }

    #[test]
    fn bad_duration_is_a_parse_error_naming_the_key() {
        let err = Config::parse("[server]\nidle_timeout = \"forever\"").unwrap_err();
        assert!(
            err.contains("idle_timeout") && err.contains("invalid duration"),
            "{err}"
        );
    }

    #[test]
    fn no_credential_at_all_is_refused() {
        let mut c = Config::parse("").unwrap();
        c.ssl.enabled = false;
        let err = c.validate().unwrap_err().to_string();
        assert!(err.starts_with("auth:"), "{err}");
    }

    #[test]
    fn trusted_proxies_accept_ips_and_cidrs() {
        let mut c = Config::parse(
            "[auth]\nsecret_token = \"t\"\n[client_ip]\ntrusted_proxies = [\"10.0.0.0/8\", \"::1\"]",
        )
        .unwrap();
        c.ssl.enabled = false;
        let nets = c.trusted_proxies().unwrap();
        assert_eq!(nets.len(), 2);
        assert!(nets[1].contains(&"::1".parse::<IpAddr>().unwrap()));
    }
}
