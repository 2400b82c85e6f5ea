//! Drain that ends when the work does. Pingora 0.9.1 sleeps the whole grace period after
//! SIGTERM and then cancels whatever is still running; here the waiting happens inside the
//! shutdown watcher instead, while the runtimes still run:
//!
//! 1. SIGTERM: readiness turns 503 at once; requests are still served for `drain_delay`.
//! 2. The agents' listener stops accepting (idle kept-alive connections are closed by
//!    Pingora's cleanup); requests in flight, long agent streams included, run on.
//! 3. As soon as the listener is down and no request is in flight, the process exits 0;
//!    `shutdown_grace_period` (counted from SIGTERM) is only the upper bound.
//!
//! A second SIGTERM, or SIGINT at any time, exits at once. See
//! `shared/reference/pingora-drain.md` for the Pingora internals this relies on.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ListenFds;
use pingora::server::{ShutdownSignal, ShutdownSignalWatch, ShutdownWatch};
use pingora::services::Service;
use tokio::signal::unix::{signal, SignalKind};

use crate::lifecycle::Lifecycle;

/// The agents' listening service, given our own stop signal instead of Pingora's, and
/// counted while it runs (its cleanup closes idle keep-alive connections).
pub struct Drainable<S> {
    pub inner: S,
    pub lifecycle: Arc<Lifecycle>,
}

#[async_trait]
impl<S: Service> Service for Drainable<S> {
    async fn start_service(
        &mut self,
        fds: Option<ListenFds>,
        _pingora_shutdown: ShutdownWatch,
        listeners_per_fd: usize,
    ) {
        self.lifecycle.service_started();
        self.inner
            .start_service(fds, self.lifecycle.stop_watch(), listeners_per_fd)
            .await;
        self.lifecycle.service_stopped();
    }

    fn name(&self) -> &str {
        self.inner.name()
    }

    fn threads(&self) -> Option<usize> {
        self.inner.threads()
    }

    fn listen_addresses(&self) -> Option<Vec<String>> {
        self.inner.listen_addresses()
    }
}

/// Pingora's shutdown watcher, replaced: returns only when the drain is over.
pub struct DrainSignal {
    pub lifecycle: Arc<Lifecycle>,
    pub drain_delay: Duration,
    pub grace: Duration,
}

const IDLE_POLL: Duration = Duration::from_millis(20);

#[async_trait]
impl ShutdownSignalWatch for DrainSignal {
    async fn recv(&self) -> ShutdownSignal {
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::error!("cannot listen for SIGTERM/SIGINT; shutting down");
            return ShutdownSignal::FastShutdown;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => return ShutdownSignal::FastShutdown,
        }
        let deadline = tokio::time::Instant::now() + self.grace;
        self.lifecycle.start_draining();
        tracing::info!(
            in_flight = self.lifecycle.in_flight(),
            drain_delay_s = self.drain_delay.as_secs_f64(),
            grace_s = self.grace.as_secs_f64(),
            "SIGTERM: draining (readiness 503; the process exits when the last request ends)"
        );
        tokio::select! {
            _ = tokio::time::sleep(self.drain_delay) => {}
            _ = tokio::time::sleep_until(deadline) => {}
            _ = term.recv() => return fast("second SIGTERM"),
            _ = int.recv() => return fast("SIGINT"),
        }
        self.lifecycle.stop_listening();
        loop {
            if self.lifecycle.is_idle() {
                tracing::info!("drained: no request in flight; exiting");
                return ShutdownSignal::GracefulTerminate;
            }
            tokio::select! {
                _ = tokio::time::sleep(IDLE_POLL) => {}
                _ = tokio::time::sleep_until(deadline) => {
                    tracing::warn!(
                        in_flight = self.lifecycle.in_flight(),
                        "shutdown_grace_period over: exiting with requests still in flight"
                    );
                    return ShutdownSignal::FastShutdown;
                }
                _ = term.recv() => return fast("second SIGTERM"),
                _ = int.recv() => return fast("SIGINT"),
            }
        }
    }
}

fn fast(why: &str) -> ShutdownSignal {
    tracing::warn!(signal = why, "exiting at once");
    ShutdownSignal::FastShutdown
}
