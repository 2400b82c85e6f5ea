//! `apm-auth-proxy` binary: hand over to the library.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    apm_auth_proxy::cli::main()
}
