//! The `proxy.toml` file model: serde structs with their documented defaults, unknown keys
//! rejected. Nothing here validates a value or knows what it is for: each domain module turns
//! its own section into typed settings (see the `settings` module).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::values::{HumanDuration, SecretSource};

/// The whole file. Every section is optional and has documented defaults.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
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
    /// More pools, by name.
    #[serde(default)]
    pub upstreams: Vec<UpstreamConfig>,
    /// Pools chosen by server name.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    #[serde(default)]
    pub client_ip: ClientIpConfig,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub admin: AdminConfig,
    #[serde(default)]
    pub usage: UsageConfig,
}

/// Usage per credential (last used, client IP, requests, events), kept in memory and saved
/// to a state file that survives restarts.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UsageConfig {
    pub enabled: bool,
    /// The state file; default `usage.json` beside the keys file.
    pub file: Option<PathBuf>,
    /// How often a changed state is written (atomically, by rename).
    pub flush_interval: HumanDuration,
}

impl Default for UsageConfig {
    fn default() -> Self {
        UsageConfig {
            enabled: true,
            file: None,
            flush_interval: HumanDuration(Duration::from_secs(5)),
        }
    }
}

/// The admin listener: health, readiness and metrics, plain HTTP, never the agents' port.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    pub enabled: bool,
    pub listen: String,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            enabled: true,
            listen: "127.0.0.1:8300".into(),
        }
    }
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
    /// The whole request head must arrive within this time of its first byte (a head sent
    /// a byte at a time is closed, as HAProxy's `timeout http-request` does).
    pub header_timeout: HumanDuration,
    /// The whole request body must arrive within this time of the request head, however
    /// slowly it trickles in (APM Server's own `read_timeout` bounds the whole read too).
    pub body_deadline: HumanDuration,
    /// Longest silence tolerated while writing a response to a client.
    pub write_timeout: HumanDuration,
    /// Largest request header block accepted, in bytes (Pingora's hard cap is 1 MiB − 1).
    pub max_header_size: usize,
    /// How long the proxy keeps reading the body of a request it rejected, so the client
    /// sees the answer and (when the body ends in time) the connection stays open.
    pub reject_drain_timeout: HumanDuration,
    /// On SIGTERM: the longest in-flight requests get to finish; the process exits as soon
    /// as the last one ends.
    pub shutdown_grace_period: HumanDuration,
    /// On SIGTERM: how long readiness reports 503 while requests are still served, before
    /// the listener closes (for load balancers that need time to notice).
    pub drain_delay: HumanDuration,
    /// Client connections open at once; a new one over the cap is closed at accept, before
    /// its TLS handshake, and the open ones are served as before. Unset: no cap.
    pub max_connections: Option<usize>,
    /// Client connections open at once from one IP address. Unset: no cap.
    pub max_connections_per_ip: Option<usize>,
    /// Largest OTLP export the proxy reads whole (for a service-bound credential, an
    /// anonymous browser, an events rate limit), in bytes, as sent and decompressed; beyond
    /// it: 413 / RESOURCE_EXHAUSTED. gRPC's default message limit, which APM Server keeps.
    pub max_otlp_size: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8200".into(),
            threads: 2,
            idle_timeout: HumanDuration(Duration::from_secs(45)),
            read_timeout: HumanDuration(Duration::from_secs(30)),
            header_timeout: HumanDuration(Duration::from_secs(10)),
            body_deadline: HumanDuration(Duration::from_secs(3600)),
            write_timeout: HumanDuration(Duration::from_secs(30)),
            max_header_size: 1_048_575,
            reject_drain_timeout: HumanDuration(Duration::from_secs(5)),
            shutdown_grace_period: HumanDuration(Duration::from_secs(30)),
            drain_delay: HumanDuration(Duration::ZERO),
            max_connections: None,
            max_connections_per_ip: None,
            max_otlp_size: 4 * 1024 * 1024,
        }
    }
}

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

impl ClientAuthentication {
    /// As written in `ssl.client_authentication`.
    pub fn as_str(self) -> &'static str {
        match self {
            ClientAuthentication::None => "none",
            ClientAuthentication::Optional => "optional",
            ClientAuthentication::Required => "required",
        }
    }
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// APM Server's single secret token (`auth.secret_token`), named "default".
    pub secret_token: Option<SecretSource>,
    /// Further named tokens, valid at the same time (rotation), each with an optional expiry.
    pub secret_tokens: Vec<NamedToken>,
    pub api_key: ApiKeyConfig,
    pub anonymous: AnonymousConfig,
    pub failed_attempts: FailedAttemptsConfig,
    /// How often the keys file and secret files are checked for changes ("0s": SIGHUP only).
    pub reload_interval: HumanDuration,
    /// Identity providers whose signed tokens (JWT) are credentials.
    pub jwt: Vec<super::jwt::JwtIssuerConfig>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            secret_token: None,
            secret_tokens: Vec::new(),
            api_key: ApiKeyConfig::default(),
            anonymous: AnonymousConfig::default(),
            failed_attempts: FailedAttemptsConfig::default(),
            reload_interval: HumanDuration(Duration::from_secs(5)),
            jwt: Vec::new(),
        }
    }
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
    /// Largest anonymous request body once decompressed (beyond: 413); bounds the work a
    /// small compressed body can cause.
    pub max_decompressed_size: u64,
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
            // APM Server 6.x's `max_unzipped_size`.
            max_decompressed_size: 30 * 1024 * 1024,
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

impl ConfigFile {
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
    /// The only upstream pool this token may reach.
    pub upstream: Option<String>,
    /// Its own rate limit: `"200/s"` (events), `"50 requests/s"`, optionally `" burst <n>"`.
    pub rate_limit: Option<String>,
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
    /// The pool's name (`[[upstreams]]` only; `[upstream]` is the pool `default`).
    pub name: Option<String>,
    /// One APM Server, plain HTTP: `http://host:port`. Exactly one of `url`, `urls` and
    /// `discovery` (`[upstream]` without any means `http://127.0.0.1:8201`).
    pub url: Option<String>,
    /// Several APM Servers, a static pool.
    pub urls: Vec<String>,
    /// Members from DNS: every A/AAAA record of a name, re-resolved.
    pub discovery: Option<DiscoveryConfig>,
    /// `round_robin` (default), `random`, or `client_ip` (consistent hashing by client IP).
    pub balance: Balance,
    pub health_check: HealthCheckConfig,
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

/// Below APM Server's own idle timeout (`apm-server.idle_timeout`, 45 s): a pooled connection
/// is dropped by the proxy before the server closes it, since an event POST sent on a
/// connection the server has just closed is answered 502 (never replayed).
const UPSTREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
const APM_SERVER_IDLE_TIMEOUT: Duration = Duration::from_secs(45);
const _: () = assert!(UPSTREAM_IDLE_TIMEOUT.as_secs() < APM_SERVER_IDLE_TIMEOUT.as_secs());

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            name: None,
            url: None,
            urls: Vec::new(),
            discovery: None,
            balance: Balance::RoundRobin,
            health_check: HealthCheckConfig::default(),
            connect_timeout: HumanDuration(Duration::from_secs(5)),
            read_timeout: HumanDuration(Duration::from_secs(60)),
            write_timeout: HumanDuration(Duration::from_secs(60)),
            idle_timeout: HumanDuration(UPSTREAM_IDLE_TIMEOUT),
            secret_token: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscoveryConfig {
    /// `host:port` whose A/AAAA records are the members.
    pub dns: String,
    /// How often the name is resolved again.
    #[serde(default = "DiscoveryConfig::default_interval")]
    pub interval: HumanDuration,
    /// A DNS server (`ip:port`) to ask instead of the system resolver.
    pub resolver: Option<String>,
}

impl DiscoveryConfig {
    fn default_interval() -> HumanDuration {
        HumanDuration(Duration::from_secs(10))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    RoundRobin,
    Random,
    /// Consistent hashing by client IP: a client keeps its member while it is healthy.
    ClientIp,
}

/// Active checks of every member: `GET /` expecting 200.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthCheckConfig {
    pub interval: HumanDuration,
    pub timeout: HumanDuration,
    /// Consecutive successes that make an unhealthy member healthy again.
    pub rise: usize,
    /// Consecutive failures that make a healthy member unhealthy.
    pub fall: usize,
}

impl Default for HealthCheckConfig {
    fn default() -> Self {
        HealthCheckConfig {
            interval: HumanDuration(Duration::from_secs(5)),
            timeout: HumanDuration(Duration::from_secs(1)),
            rise: 2,
            fall: 2,
        }
    }
}

/// `[[routes]]`: requests for these server names (TLS SNI or `Host`) go to this pool.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// `apm.team-a.example.com`, `*.team-a.example.com` (one label).
    pub server_names: Vec<String>,
    pub upstream: String,
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
