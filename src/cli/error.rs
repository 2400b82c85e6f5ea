//! Every way a command can fail, with its exit code (sysexits.h where one fits).

use std::fmt;

use crate::config::ConfigError;
use crate::server::StartupError;

#[derive(Debug)]
pub enum CliError {
    /// The configuration is unusable: every problem, each naming its key.
    Config(ConfigError),
    /// TLS material, secrets or the keys file named by the configuration are unusable.
    Startup(StartupError),
    /// A command-line value is wrong (e.g. an unknown privilege).
    Usage(String),
    /// A file could not be written.
    Io(String),
    /// The command could not do what it was asked (bind, an unknown key id…).
    Runtime(String),
}

impl CliError {
    /// `EX_USAGE`: the configuration (or command line) is wrong.
    pub const EXIT_CONFIG: u8 = 64;
    /// `EX_IOERR`: a file could not be written.
    pub const EXIT_IO: u8 = 74;
    pub const EXIT_RUNTIME: u8 = 1;

    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Config(_) | CliError::Usage(_) => Self::EXIT_CONFIG,
            CliError::Startup(
                StartupError::Listen { .. } | StartupError::Pingora(_) | StartupError::Metrics(_),
            ) => Self::EXIT_RUNTIME,
            CliError::Startup(_) => Self::EXIT_CONFIG,
            CliError::Io(_) => Self::EXIT_IO,
            CliError::Runtime(_) => Self::EXIT_RUNTIME,
        }
    }
}

impl From<ConfigError> for CliError {
    fn from(e: ConfigError) -> CliError {
        CliError::Config(e)
    }
}

impl From<StartupError> for CliError {
    fn from(e: StartupError) -> CliError {
        match e {
            StartupError::Config(c) => CliError::Config(c),
            other => CliError::Startup(other),
        }
    }
}

impl fmt::Display for CliError {
    /// One line per configuration problem, each prefixed so it stands out in a log; other
    /// messages (a TOML parser's, with its source excerpt) are printed as they are.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            CliError::Config(ConfigError::Invalid(problems)) => {
                for (i, p) in problems.iter().enumerate() {
                    if i > 0 {
                        f.write_str("\n")?;
                    }
                    write!(f, "apm-auth-proxy: config error: {p}")?;
                }
                return Ok(());
            }
            CliError::Config(e) => format!("config error: {e}"),
            CliError::Startup(e @ (StartupError::Listen { .. } | StartupError::Pingora(_))) => {
                format!("error: {e}")
            }
            CliError::Startup(e) => format!("config error: {e}"),
            CliError::Usage(m) | CliError::Io(m) | CliError::Runtime(m) => m.clone(),
        };
        write!(f, "apm-auth-proxy: {text}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Problem, Problems};

    #[test]
    fn every_config_problem_gets_its_own_line_and_exit_64() {
        let mut p = Problems::default();
        p.add("server.threads", "must be at least 1");
        p.add("log.level", "bad");
        let e = CliError::from(ConfigError::from(p));
        assert_eq!(e.exit_code(), 64);
        assert_eq!(
            e.to_string(),
            "apm-auth-proxy: config error: server.threads: must be at least 1\n\
             apm-auth-proxy: config error: log.level: bad"
        );
        let listen = StartupError::Listen {
            key: "server.listen",
            addr: "127.0.0.1:1".into(),
            source: std::io::Error::from(std::io::ErrorKind::AddrInUse),
        };
        assert_eq!(CliError::from(listen).exit_code(), 1);
        assert_eq!(CliError::Io("x".into()).exit_code(), 74);
        let single = CliError::from(ConfigError::from(Problem::new("auth", "none")));
        assert_eq!(
            single.to_string(),
            "apm-auth-proxy: config error: auth: none"
        );
    }
}
