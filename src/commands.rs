//! The CLI edge: runs a parsed command, reports errors with context, picks the exit code.

use std::process::ExitCode;
use std::time::SystemTime;

use base64::Engine;

use crate::auth::keys_file::{self, KeysFile};
use crate::cli::{ApikeyCommand, Cli, Command, CreateKeyArgs, TokenCommand};
use crate::config::Config;
use crate::secrets::{sha256, to_hex};
use crate::server::{self, Mode, StartupError};

/// `EX_USAGE` from sysexits.h: the configuration (or command line) is wrong.
pub const EXIT_CONFIG: u8 = 64;
/// `EX_CANTCREAT`/`EX_IOERR` family: a file could not be written.
pub const EXIT_IO: u8 = 74;

fn fail(code: u8, message: impl std::fmt::Display) -> ExitCode {
    eprintln!("apm-auth-proxy: {message}");
    ExitCode::from(code)
}

pub fn execute(cli: Cli) -> ExitCode {
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => run(&cli.config),
        Command::Check => check(&cli.config),
        Command::Apikey(cmd) => apikey(&cli.config, cmd),
        Command::Token(TokenCommand::Generate) => {
            let token = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(keys_file::random_bytes::<32>());
            println!("{token}");
            eprintln!(
                "sha256: {}  (store this in proxy.toml as `secret = {{ sha256 = \"…\" }}` to keep \
                 the token itself off the disk)",
                to_hex(&sha256(token.as_bytes()))
            );
            ExitCode::SUCCESS
        }
    }
}

fn load(path: &std::path::Path) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|e| fail(EXIT_CONFIG, format!("config error: {e}")))
}

fn startup_exit(e: StartupError) -> ExitCode {
    let code = match e {
        StartupError::Pingora(_) | StartupError::Listen { .. } => 1,
        _ => EXIT_CONFIG,
    };
    fail(code, format!("config error: {e}"))
}

fn run(path: &std::path::Path) -> ExitCode {
    let config = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    crate::logging::init(&config.log);
    let prepared = match server::prepare(config, Mode::Run) {
        Ok(p) => p,
        Err(e) => return startup_exit(e),
    };
    match server::run(prepared) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => startup_exit(e),
    }
}

fn check(path: &std::path::Path) -> ExitCode {
    let config = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    for (key, inline) in [
        (
            "auth.secret_token",
            config
                .auth
                .secret_token
                .as_ref()
                .is_some_and(|s| s.is_inline()),
        ),
        (
            "upstream.secret_token",
            config
                .upstream
                .secret_token
                .as_ref()
                .is_some_and(|s| s.is_inline()),
        ),
    ] {
        if inline {
            eprintln!(
                "warning: {key} is written inline in the config file; prefer file, env or sha256"
            );
        }
    }
    match server::prepare(config, Mode::Check) {
        Ok(p) => {
            if p.dev_certificate {
                eprintln!(
                    "warning: ssl certificate files are missing; a self-signed DEVELOPMENT \
                     certificate will be generated on first run"
                );
            }
            if let Some(left) = p.certificate.as_ref().map(|c| c.seconds_until_expiry()) {
                if left < 14 * 24 * 3600 {
                    eprintln!(
                        "warning: a served certificate {} (within 14 days)",
                        if left <= 0 {
                            "has EXPIRED".to_string()
                        } else {
                            format!(
                                "expires in {} days {} hours",
                                left / 86_400,
                                left % 86_400 / 3600
                            )
                        }
                    );
                }
            }
            println!(
                "configuration OK: listen {} ({}), upstream {}, {} secret token(s), API keys {}",
                p.config.server.listen,
                if p.config.ssl.enabled {
                    "TLS"
                } else {
                    "plain HTTP"
                },
                p.upstream.authority,
                p.credentials.token_count(),
                if p.config.auth.api_key.enabled {
                    format!("enabled ({} in keys file)", p.credentials.api_key_count())
                } else {
                    "disabled".to_string()
                }
            );
            ExitCode::SUCCESS
        }
        Err(e) => startup_exit(e),
    }
}

fn apikey(path: &std::path::Path, cmd: ApikeyCommand) -> ExitCode {
    let config = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let keys_path = config.path(&config.auth.api_key.keys_file);
    let mut file = match KeysFile::load(&keys_path) {
        Ok(f) => f,
        Err(e) => return fail(EXIT_CONFIG, e),
    };
    if !config.auth.api_key.enabled {
        eprintln!(
            "warning: auth.api_key.enabled is false in {}; the proxy refuses API keys until it is enabled",
            path.display()
        );
    }
    match cmd {
        ApikeyCommand::Create(args) => create_key(&keys_path, &mut file, args),
        ApikeyCommand::List => {
            if let Err(e) = file.parse_keys(&keys_path) {
                return fail(EXIT_CONFIG, e);
            }
            println!(
                "{:<22} {:<20} {:<45} {:<21} STATUS",
                "ID", "NAME", "PRIVILEGES", "EXPIRES"
            );
            let now = SystemTime::now();
            for k in &file.keys {
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
            println!("{} API key(s) in {}", file.keys.len(), keys_path.display());
            ExitCode::SUCCESS
        }
        ApikeyCommand::Revoke { id } => {
            let Some(record) = file.keys.iter_mut().find(|k| k.id == id) else {
                return fail(1, keys_file::KeysFileError::UnknownId(id));
            };
            if record.revoked.is_none() {
                record.revoked = Some(keys_file::format_time(SystemTime::now()));
            }
            if let Err(e) = file.save(&keys_path) {
                return fail(EXIT_IO, e);
            }
            println!("revoked {id}; send SIGHUP to a running proxy (or restart it) to apply");
            ExitCode::SUCCESS
        }
    }
}

fn create_key(keys_path: &std::path::Path, file: &mut KeysFile, args: CreateKeyArgs) -> ExitCode {
    let services: Vec<String> = args
        .services
        .iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    let key = match keys_file::new_key(
        &args.name,
        &args.privileges,
        args.expires_in,
        &services,
        SystemTime::now(),
    ) {
        Ok(k) => k,
        Err(e) => return fail(EXIT_CONFIG, e),
    };
    file.keys.push(key.record.clone());
    if let Err(e) = file.save(keys_path) {
        return fail(EXIT_IO, e);
    }
    let r = &key.record;
    if args.json {
        let out = serde_json::json!({
            "id": r.id,
            "name": r.name,
            "privileges": r.privileges,
            "expires": r.expires,
            "services": r.services,
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
    ExitCode::SUCCESS
}
