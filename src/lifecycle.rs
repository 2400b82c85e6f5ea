//! The process's lifecycle state, shared by the proxy (requests in flight, draining), the
//! admin listener (readiness) and the shutdown sequence: one place the three agree on.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use tokio::sync::watch;

/// Why the proxy is not ready, as `/readyz` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotReady {
    Starting,
    Draining,
    UpstreamUnreachable,
}

impl NotReady {
    pub fn reason(self) -> &'static str {
        match self {
            NotReady::Starting => "starting",
            NotReady::Draining => "draining",
            NotReady::UpstreamUnreachable => "upstream unreachable",
        }
    }
}

pub struct Lifecycle {
    in_flight: AtomicUsize,
    draining: AtomicBool,
    /// Listening services still running (their listener open or their cleanup not done).
    services_running: AtomicUsize,
    /// Flipped to stop the agents' listener (ours, not Pingora's: Pingora's flips only after
    /// the drain, when the admin listener must still answer).
    stop_tx: watch::Sender<bool>,
    /// Whether the upstream answers: `None` until it has been checked.
    upstream: OnceLock<UpstreamProbe>,
}

/// Asked by readiness: `None` until checked, then whether every upstream pool answers.
pub type UpstreamProbe = Box<dyn Fn() -> Option<bool> + Send + Sync>;

impl Default for Lifecycle {
    fn default() -> Self {
        Lifecycle {
            in_flight: AtomicUsize::new(0),
            draining: AtomicBool::new(false),
            services_running: AtomicUsize::new(0),
            stop_tx: watch::channel(false).0,
            upstream: OnceLock::new(),
        }
    }
}

impl Lifecycle {
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Stop accepting connections on the agents' listener.
    pub fn stop_listening(&self) {
        self.stop_tx.send_replace(true);
    }

    pub fn stop_watch(&self) -> watch::Receiver<bool> {
        self.stop_tx.subscribe()
    }

    pub fn service_started(&self) {
        self.services_running.fetch_add(1, Ordering::SeqCst);
    }

    pub fn service_stopped(&self) {
        self.services_running.fetch_sub(1, Ordering::SeqCst);
    }

    /// Nothing left to wait for: listeners closed and every request finished.
    pub fn is_idle(&self) -> bool {
        self.services_running.load(Ordering::SeqCst) == 0 && self.in_flight() == 0
    }

    /// How readiness learns whether the upstream answers (set once, at start).
    pub fn set_upstream_probe(&self, probe: UpstreamProbe) {
        let _ = self.upstream.set(probe);
    }

    /// `Ok` when ready for traffic, else why not.
    pub fn readiness(&self) -> Result<(), NotReady> {
        if self.is_draining() {
            return Err(NotReady::Draining);
        }
        match self.upstream.get().and_then(|probe| probe()) {
            None => Err(NotReady::Starting),
            Some(false) => Err(NotReady::UpstreamUnreachable),
            Some(true) => Ok(()),
        }
    }
}

/// One request in flight, from the proxy's first look at it until its context is dropped
/// (after the response was written and logged).
pub struct InFlight(Arc<Lifecycle>);

impl InFlight {
    pub fn new(lifecycle: &Arc<Lifecycle>) -> InFlight {
        lifecycle.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(lifecycle.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_follows_start_upstream_and_drain() {
        let l = Arc::new(Lifecycle::default());
        assert_eq!(l.readiness(), Err(NotReady::Starting));
        let state = Arc::new(std::sync::Mutex::new(None));
        let probe = state.clone();
        l.set_upstream_probe(Box::new(move || *probe.lock().unwrap()));
        assert_eq!(l.readiness(), Err(NotReady::Starting));
        *state.lock().unwrap() = Some(true);
        assert_eq!(l.readiness(), Ok(()));
        *state.lock().unwrap() = Some(false);
        assert_eq!(l.readiness(), Err(NotReady::UpstreamUnreachable));
        *state.lock().unwrap() = Some(true);
        l.start_draining();
        assert_eq!(l.readiness(), Err(NotReady::Draining));
    }

    #[test]
    fn idle_once_requests_end_and_listeners_close() {
        let l = Arc::new(Lifecycle::default());
        l.service_started();
        let request = InFlight::new(&l);
        assert_eq!(l.in_flight(), 1);
        assert!(!l.is_idle());
        l.service_stopped();
        assert!(!l.is_idle());
        drop(request);
        assert!(l.is_idle());
    }
}
