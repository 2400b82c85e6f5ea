//! `apm-auth-proxy` binary: parse the command line and hand over to the library.
#![forbid(unsafe_code)]

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = apm_auth_proxy::cli::Cli::parse();
    apm_auth_proxy::commands::execute(cli)
}
