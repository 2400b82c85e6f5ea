//! `apm-auth-proxy` binary: hand over to the library.
#![forbid(unsafe_code)]

/// mimalloc (v2, without transparent huge pages) instead of glibc's malloc: the request path
/// allocates and frees per request (the request's future, header maps, buffers), and glibc's
/// bins and consolidation were ≈ 10 % of a keep-alive request's CPU. Measured on the
/// bench's keep-alive POSTs: −22 % CPU per request; refusals unchanged; +5 % resident memory
/// per open connection (`bench/RESULTS.md`). v3 and huge pages doubled the memory per agent.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    apm_auth_proxy::cli::main()
}
