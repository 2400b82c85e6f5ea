//! The open-file limit. Container runtimes and systemd commonly start a process with a soft
//! `RLIMIT_NOFILE` of 1,024 under a far higher hard limit; every client connection takes a
//! descriptor and every streaming agent a second one upstream, so at that soft limit accepts
//! fail from about 500 agents on. As Go programs (APM Server among them) do, the soft limit
//! is raised to the hard limit at start, and a cap that still cannot fit is warned about.

use nix::sys::resource::{getrlimit, setrlimit, Resource};

/// Descriptors beyond the connections': listeners, the admin listener, watched files,
/// the resolver, logs.
const RESERVED: u64 = 64;

/// What start-up found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFileLimit {
    pub was: u64,
    pub now: u64,
    pub hard: u64,
}

/// Raise the soft limit to the hard one; the limit in force afterwards.
pub fn raise() -> std::io::Result<OpenFileLimit> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    }
    let (now, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    Ok(OpenFileLimit {
        was: soft,
        now,
        hard,
    })
}

/// Descriptors `max_connections` client connections can need: one each, one more upstream
/// for each (an agent streaming events holds both), and the reserve.
pub fn needed_for(max_connections: usize) -> u64 {
    (max_connections as u64)
        .saturating_mul(2)
        .saturating_add(RESERVED)
}

/// Raise the limit, log what was done, and warn when `max_connections` cannot fit.
pub fn raise_and_report(max_connections: Option<usize>) {
    let limit = match raise() {
        Ok(limit) => limit,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read or raise the open-file limit (RLIMIT_NOFILE)");
            return;
        }
    };
    if limit.now != limit.was {
        tracing::info!(
            from = limit.was,
            to = limit.now,
            "open-file limit (RLIMIT_NOFILE) raised to the hard limit"
        );
    }
    match max_connections {
        Some(cap) if needed_for(cap) > limit.now => tracing::warn!(
            open_file_limit = limit.now,
            max_connections = cap,
            needed = needed_for(cap),
            "server.max_connections cannot be reached: each connection may need two descriptors \
             (client and upstream); raise the hard open-file limit (e.g. --ulimit nofile=…) or \
             lower server.max_connections"
        ),
        None if limit.now < 4096 => tracing::warn!(
            open_file_limit = limit.now,
            "the open-file limit allows about {} streaming agents; set server.max_connections \
             below that, or raise the hard limit",
            limit.now.saturating_sub(RESERVED) / 2
        ),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cap_needs_two_descriptors_per_connection_and_a_reserve() {
        assert_eq!(needed_for(6000), 12_064);
        assert_eq!(needed_for(usize::MAX), u64::MAX);
    }
}
