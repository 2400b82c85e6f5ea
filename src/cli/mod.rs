//! The command line: the clap model here, `commands` runs it, `error` gives every failure
//! its exit code.

mod commands;
mod error;
mod jwt;
mod listing;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::limits::RateSpec;

/// TLS-terminating authentication proxy for Elastic APM Server.
///
/// Agents talk HTTPS to the proxy with `Authorization: Bearer <secret token>` or
/// `Authorization: ApiKey base64(id:key)`; the proxy checks the credential exactly as APM
/// Server would, removes it and streams the request to an APM Server running without auth.
#[derive(Debug, Parser)]
#[command(name = "apm-auth-proxy", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Configuration file (used when no subcommand is given: same as `run`).
    #[arg(
        short,
        long,
        global = true,
        default_value = "proxy.toml",
        env = "APM_AUTH_PROXY_CONFIG"
    )]
    pub config: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy (the default command).
    Run,
    /// Validate the configuration: syntax, values, files, certificates, credentials.
    /// Exits 0 when everything is usable, 64 with a message naming the key otherwise.
    Check,
    /// Manage API keys in the keys file named by `auth.api_key.keys_file`.
    #[command(subcommand)]
    Apikey(ApikeyCommand),
    /// Secret-token helpers.
    #[command(subcommand)]
    Token(TokenCommand),
    /// JWT helpers: which `[[auth.jwt]]` issuer accepts a token, as whom, or why not.
    #[command(subcommand)]
    Jwt(JwtCommand),
    /// Translate an existing apm-server.yml (6.x – 9.x key names) into a proxy.toml, and
    /// print the changes to make to the apm-server.yml so APM Server runs behind the proxy,
    /// and every setting that could not be translated.
    Import(ImportArgs),
    /// Ask a running proxy's admin listener whether it is ready (`GET /readyz`), or with
    /// `--live` whether it is alive (`GET /livez`): exit 0 when it is, 1 when it is not or
    /// cannot be reached. For container health checks (use `--live` where a failing check
    /// restarts the container: an APM Server outage makes the proxy unready, not broken).
    Health {
        /// Ask `/livez` (the process serves) instead of `/readyz` (it can forward).
        #[arg(long)]
        live: bool,
        /// The admin listener, e.g. `http://127.0.0.1:8300`; default: `admin.listen` from
        /// the configuration.
        #[arg(long)]
        admin: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ApikeyCommand {
    /// Create a key. Prints its id, secret and the base64 `id:secret` credential for agents
    /// once; only a SHA-256 digest of the secret is stored.
    Create(CreateKeyArgs),
    /// List the keys in the keys file (never their secrets), with when each was last used
    /// and its requests, from the running proxy's usage state file.
    List {
        /// Print the list as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Give a key a new secret, keeping its id, name, privileges, services, pool and limit.
    /// Prints the new credential once; the old secret stays valid for `--grace`, then is
    /// refused. A running proxy picks the change up like any keys-file change.
    Rotate {
        /// The key id printed by `apikey create` or `apikey list`.
        #[arg(allow_hyphen_values = true)]
        id: String,
        /// How long the old secret stays valid, e.g. `24h` (`0s`: refused at once).
        #[arg(long, value_parser = humantime::parse_duration)]
        grace: std::time::Duration,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key by id. A running proxy applies it within `auth.reload_interval`, or at
    /// once on SIGHUP.
    Revoke {
        /// The key id printed by `apikey create` or `apikey list`.
        #[arg(allow_hyphen_values = true)]
        id: String,
    },
}

#[derive(Debug, Args)]
pub struct CreateKeyArgs {
    /// A human name for the key (e.g. the service or team that uses it).
    #[arg(long)]
    pub name: String,
    /// Comma-separated privileges: event:write, config_agent:read, sourcemap:write.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "event:write,config_agent:read"
    )]
    pub privileges: Vec<String>,
    /// Lifetime such as `90d` or `12h`; the key never expires when omitted.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub expires_in: Option<std::time::Duration>,
    /// Comma-separated service names the key may send data for: events and agent-config
    /// queries for any other service are refused (403), and endpoints whose bodies the proxy
    /// does not read are closed to the key. Default: every service.
    #[arg(long, value_delimiter = ',')]
    pub services: Vec<String>,
    /// The upstream pool (`[[upstreams]] name`) this key may reach, and no other.
    #[arg(long)]
    pub upstream: Option<String>,
    /// The key's own rate limit: `200/s` (events), `"50 requests/s"`, optionally followed by
    /// `" burst <n>"` (default burst: three times the rate).
    #[arg(long)]
    pub rate_limit: Option<RateSpec>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The APM Server configuration to read.
    pub file: PathBuf,
    /// Write the proxy.toml here instead of printing it.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Replace `--out` when it exists.
    #[arg(long)]
    pub force: bool,
    /// Where APM Server will listen once it runs behind the proxy (its new `apm-server.host`;
    /// the proxy's `upstream.url`).
    #[arg(long, default_value = "127.0.0.1:8201")]
    pub upstream: String,
    /// Generate an internal token that the proxy sends upstream and APM Server requires, so
    /// that only the proxy can write to it. Written to `upstream-token` (mode 0600) beside
    /// `--out`, which it needs; the proxy.toml names the file.
    #[arg(long, requires = "out")]
    pub upstream_token: bool,
    /// The APM Server's version (`7.10`, `8.19`…): which key its token setting has (before
    /// 7.14 `apm-server.secret_token`). Default: judged by the file's keys.
    #[arg(long, value_parser = parse_version)]
    pub apm_server_version: Option<(u32, u32)>,
}

/// `major.minor[.patch]` as (major, minor).
fn parse_version(text: &str) -> Result<(u32, u32), String> {
    let mut parts = text.trim().split('.');
    let number = |p: Option<&str>| p.and_then(|p| p.parse::<u32>().ok());
    match (number(parts.next()), number(parts.next())) {
        (Some(major), Some(minor)) => Ok((major, minor)),
        _ => Err(format!("{text:?} is not a version such as 8.19")),
    }
}

#[derive(Debug, Subcommand)]
pub enum JwtCommand {
    /// Check a token as the proxy would (fetching the issuers' keys now): the issuer, the
    /// identity, its privileges, services and pool; or exactly why it is refused. Exit 0 when
    /// accepted, 1 when refused.
    Verify {
        /// The token (`eyJ…`), or `-` to read it from standard input.
        token: String,
    },
    /// List the JWT identities the running proxy has seen (`<issuer>/<subject>`), with when
    /// each was last used and its requests, from its usage state file.
    List {
        /// Print the list as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Print a random 256-bit secret token (URL-safe base64) and its SHA-256 digest, which
    /// can be stored in `proxy.toml` instead of the token itself.
    Generate,
    /// List the configured secret tokens (by name, never their secrets) with when each was
    /// last used and its requests, from the running proxy's usage state file.
    List {
        /// Print the list as JSON.
        #[arg(long)]
        json: bool,
    },
}

pub use commands::execute;
pub use error::CliError;

/// The binary's `main`: parse the arguments and run the command. A command line clap refuses
/// exits 64 like every other bad value (`--help` and `--version` exit 0).
pub fn main() -> std::process::ExitCode {
    use clap::error::ErrorKind;
    match <Cli as clap::Parser>::try_parse() {
        Ok(cli) => execute(cli),
        Err(e) => {
            let _ = e.print();
            let code = match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => 0,
                _ => CliError::EXIT_CONFIG,
            };
            std::process::ExitCode::from(code)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_id_that_starts_with_a_hyphen_is_a_value_not_a_flag() {
        let cli = Cli::try_parse_from(["apm-auth-proxy", "apikey", "revoke", "-3xYz"]).unwrap();
        match cli.command {
            Some(Command::Apikey(ApikeyCommand::Revoke { id })) => assert_eq!(id, "-3xYz"),
            other => panic!("parsed as {other:?}"),
        }
    }
}
