//! `apm-auth-proxy` binary: parse the command line and hand over to the library.
#![forbid(unsafe_code)]

use clap::Parser;

fn main() -> std::process::ExitCode {
    apm_auth_proxy::cli::execute(apm_auth_proxy::cli::Cli::parse())
}
