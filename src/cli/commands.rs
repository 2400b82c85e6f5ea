//! Runs a parsed command and turns its failure into a message and an exit code.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use base64::Engine;

use super::error::CliError;
use super::{ApikeyCommand, Cli, Command, CreateKeyArgs, TokenCommand};
use crate::admin::AdminSettings;
use crate::auth::keys_file::{self, KeysFile};
use crate::config::{ConfigError, ConfigFile};
use crate::digest::{sha256, to_hex};
use crate::server::{self, Mode};
use crate::settings::Settings;

pub fn execute(cli: Cli) -> ExitCode {
    let result = match cli.command.unwrap_or(Command::Run) {
        Command::Run => run(&cli.config),
        Command::Check => check(&cli.config),
        Command::Apikey(cmd) => apikey(&cli.config, cmd),
        Command::Token(TokenCommand::Generate) => {
            generate_token();
            Ok(())
        }
        Command::Health { admin } => health(&cli.config, admin.as_deref()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn generate_token() {
    let token =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(keys_file::random_bytes::<32>());
    println!("{token}");
    eprintln!(
        "sha256: {}  (store this in proxy.toml as `secret = {{ sha256 = \"…\" }}` to keep \
         the token itself off the disk)",
        to_hex(&sha256(token.as_bytes()))
    );
}

/// `GET /readyz` on the admin listener: `Ok` when ready.
fn health(path: &Path, admin: Option<&str>) -> Result<(), CliError> {
    let addr = match admin {
        Some(url) => admin_address(url)?,
        None => {
            let settings = AdminSettings::try_from(&ConfigFile::load(path)?.admin)
                .map_err(ConfigError::from)?;
            let listen = settings.listen.ok_or_else(|| {
                CliError::Usage("the admin listener is off (admin.enabled = false)".into())
            })?;
            reachable(listen)
        }
    };
    match crate::admin::probe(addr, "/readyz", Duration::from_secs(5)) {
        Ok((200, body)) => {
            println!("{body}");
            Ok(())
        }
        Ok((status, body)) => Err(CliError::Runtime(format!("{status} {body}"))),
        Err(e) => Err(CliError::Runtime(e)),
    }
}

/// `http://host:port` (or `host:port`) as a socket address.
fn admin_address(url: &str) -> Result<SocketAddr, CliError> {
    let hostport = url.trim_start_matches("http://").trim_end_matches('/');
    hostport
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| CliError::Usage(format!("--admin {url:?} is not http://host:port")))
}

/// A wildcard listen address is reached on loopback.
fn reachable(listen: SocketAddr) -> SocketAddr {
    match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, listen.port()).into(),
        IpAddr::V6(ip) if ip.is_unspecified() => (Ipv6Addr::LOCALHOST, listen.port()).into(),
        _ => listen,
    }
}

fn run(path: &Path) -> Result<(), CliError> {
    let settings = Settings::load(path)?;
    crate::logging::init(&settings.log);
    let prepared = server::prepare(settings, Mode::Run)?;
    server::run(prepared)?;
    Ok(())
}

fn check(path: &Path) -> Result<(), CliError> {
    let file = ConfigFile::load(path)?;
    for (key, source) in [
        ("auth.secret_token", file.auth.secret_token.as_ref()),
        ("upstream.secret_token", file.upstream.secret_token.as_ref()),
    ] {
        if source.is_some_and(|s| s.is_inline()) {
            eprintln!(
                "warning: {key} is written inline in the config file; prefer file, env or sha256"
            );
        }
    }
    let p = server::prepare(Settings::try_from(&file)?, Mode::Check)?;
    if p.dev_certificate {
        eprintln!(
            "warning: ssl certificate files are missing; a self-signed DEVELOPMENT \
             certificate will be generated on first run"
        );
    }
    if let Some(left) = p.certificate.as_ref().map(|c| c.seconds_until_expiry()) {
        if left < 14 * 24 * 3600 {
            let when = if left <= 0 {
                "has EXPIRED".to_string()
            } else {
                format!(
                    "expires in {} days {} hours",
                    left / 86_400,
                    left % 86_400 / 3600
                )
            };
            eprintln!("warning: a served certificate {when} (within 14 days)");
        }
    }
    let s = &p.settings;
    println!(
        "configuration OK: listen {} ({}), upstream {}, {} secret token(s), API keys {}",
        s.server.listen,
        if s.tls.is_some() { "TLS" } else { "plain HTTP" },
        upstreams_summary(&s.upstream),
        p.credentials.token_count(),
        if s.auth.keys_file.is_some() {
            format!("enabled ({} in keys file)", p.credentials.api_key_count())
        } else {
            "disabled".to_string()
        }
    );
    Ok(())
}

/// The default pool's address, and how many more pools there are.
fn upstreams_summary(u: &crate::upstream::UpstreamSettings) -> String {
    let mut text = u.pools[0].authority.clone();
    if u.pools.len() > 1 {
        text.push_str(&format!(" (+{} more pools)", u.pools.len() - 1));
    }
    text
}

fn apikey(path: &Path, cmd: ApikeyCommand) -> Result<(), CliError> {
    let file = ConfigFile::load(path)?;
    let keys_path = file.auth.api_key.keys_file.clone();
    let mut keys = KeysFile::load(&keys_path).map_err(|e| CliError::Usage(e.to_string()))?;
    if !file.auth.api_key.enabled {
        eprintln!(
            "warning: auth.api_key.enabled is false in {}; the proxy refuses API keys until it is enabled",
            path.display()
        );
    }
    match cmd {
        ApikeyCommand::Create(args) => create_key(&keys_path, &mut keys, args),
        ApikeyCommand::List => list_keys(&keys_path, &keys),
        ApikeyCommand::Revoke { id } => {
            let Some(record) = keys.keys.iter_mut().find(|k| k.id == id) else {
                return Err(CliError::Runtime(
                    keys_file::KeysFileError::UnknownId(id).to_string(),
                ));
            };
            if record.revoked.is_none() {
                record.revoked = Some(keys_file::format_time(SystemTime::now()));
            }
            keys.save(&keys_path)
                .map_err(|e| CliError::Io(e.to_string()))?;
            println!("revoked {id}; send SIGHUP to a running proxy (or restart it) to apply");
            Ok(())
        }
    }
}

fn list_keys(keys_path: &Path, keys: &KeysFile) -> Result<(), CliError> {
    keys.parse_keys(keys_path)
        .map_err(|e| CliError::Usage(e.to_string()))?;
    println!(
        "{:<22} {:<20} {:<45} {:<21} STATUS",
        "ID", "NAME", "PRIVILEGES", "EXPIRES"
    );
    let now = SystemTime::now();
    for k in &keys.keys {
        let expired = k
            .expires
            .as_deref()
            .and_then(|e| humantime::parse_rfc3339_weak(e).ok())
            .is_some_and(|e| now >= e);
        let status = if k.revoked.is_some() {
            "revoked"
        } else if expired {
            "expired"
        } else {
            "active"
        };
        println!(
            "{:<22} {:<20} {:<45} {:<21} {status}",
            k.id,
            k.name,
            k.privileges.join(","),
            k.expires.as_deref().unwrap_or("never"),
        );
    }
    println!("{} API key(s) in {}", keys.keys.len(), keys_path.display());
    Ok(())
}

fn create_key(keys_path: &Path, file: &mut KeysFile, args: CreateKeyArgs) -> Result<(), CliError> {
    let services: Vec<String> = args
        .services
        .iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    let key = keys_file::new_key(
        &args.name,
        &args.privileges,
        args.expires_in,
        &services,
        args.upstream.as_deref(),
        SystemTime::now(),
    )
    .map_err(|e| CliError::Usage(e.to_string()))?;
    file.keys.push(key.record.clone());
    file.save(keys_path)
        .map_err(|e| CliError::Io(e.to_string()))?;
    let r = &key.record;
    if args.json {
        let out = serde_json::json!({
            "id": r.id,
            "name": r.name,
            "privileges": r.privileges,
            "expires": r.expires,
            "services": r.services,
            "upstream": r.upstream,
            "api_key": key.secret,
            "credentials": key.credential,
        });
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    } else {
        println!("API Key created:\n");
        println!("Name ........... {}", r.name);
        println!(
            "Expiration ..... {}",
            r.expires.as_deref().unwrap_or("never")
        );
        println!("Privileges ..... {}", r.privileges.join(", "));
        println!("Id ............. {}", r.id);
        println!("API Key ........ {} (won't be shown again)", key.secret);
        println!(
            "Credentials .... {} (use it as \"Authorization: ApiKey <credentials>\", won't be shown again)",
            key.credential
        );
        eprintln!(
            "\nstored a SHA-256 digest in {}; send SIGHUP to a running proxy to load it",
            keys_path.display()
        );
    }
    Ok(())
}
