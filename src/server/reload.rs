//! The background reloader: credentials (the keys file and secret files) and certificates
//! are re-read when their files change — polled every `auth.reload_interval` and
//! `ssl.reload_interval`, Kubernetes symlink swaps included — and on SIGHUP. A broken file
//! keeps the last good set, is logged with the reason and counted as a reload failure. Every
//! credential change seen (added, revoked, removed, expired) is an audit log line.
//! Pingora installs no SIGHUP handler, so without this one SIGHUP would kill the process.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::auth::audit::{self, Change};
use crate::auth::{AuthSettings, Authenticator, CredentialState, CredentialStore};
use crate::metrics::Metrics;
use crate::tls::CertificateReloader;
use crate::watch::FileWatch;

pub struct Reloader {
    auth: AuthSettings,
    authenticator: Arc<Authenticator>,
    credential_files: FileWatch,
    /// The credentials as last loaded, and when expiries were last looked at.
    known: Mutex<(Vec<CredentialState>, SystemTime)>,
    certificates: Option<CertificateReloader>,
    /// Reload outcomes, and the handshake failures reported once a minute.
    metrics: Arc<Metrics>,
    certificate_poll: Option<Duration>,
    /// When the expiring credentials were last warned about.
    expiry_warned: Mutex<Option<SystemTime>>,
}

const DAY: Duration = Duration::from_secs(86_400);

impl Reloader {
    pub fn new(
        auth: AuthSettings,
        authenticator: Arc<Authenticator>,
        loaded: Vec<CredentialState>,
        certificates: Option<CertificateReloader>,
        certificate_poll: Option<Duration>,
        metrics: Arc<Metrics>,
    ) -> Reloader {
        Reloader {
            metrics,
            credential_files: FileWatch::new(auth.watched_files()),
            known: Mutex::new((loaded, SystemTime::now())),
            auth,
            authenticator,
            certificates,
            certificate_poll,
            expiry_warned: Mutex::new(None),
        }
    }

    fn reload_credentials(&self, trigger: &str) {
        match CredentialStore::load(&self.auth) {
            Ok(store) => {
                let now_known = store.describe();
                tracing::info!(
                    trigger,
                    secret_tokens = store.token_count(),
                    api_keys = store.api_key_count(),
                    "credentials reloaded"
                );
                self.authenticator.replace(store);
                self.metrics.reload("credentials", true);
                let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
                let mut removed = Vec::new();
                for (change, c) in audit::changes(&known.0, &now_known, &mut removed) {
                    audit_line(change, c);
                }
                for c in &removed {
                    audit_line(Change::Removed, c);
                }
                known.0 = now_known;
                drop(known);
                // A reloaded set is looked at again at the next tick.
                *self.expiry_warned.lock().unwrap_or_else(|e| e.into_inner()) = None;
            }
            Err(e) => {
                self.metrics.reload("credentials", false);
                for problem in e.iter() {
                    tracing::error!(
                        trigger,
                        file = %problem.key,
                        error = %problem.problem,
                        "credential reload failed; keeping the previous credentials"
                    );
                }
            }
        }
    }

    /// Credentials that expire within two weeks: a WARN line each, at start, after a reload
    /// and then once a day.
    fn warn_expiring(&self, now: SystemTime) {
        let mut last = self.expiry_warned.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_some_and(|t| now.duration_since(t).unwrap_or_default() < DAY) {
            return;
        }
        *last = Some(now);
        let known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        for (c, left) in audit::expiring_soon(&known.0, now) {
            tracing::warn!(
                credential_kind = c.kind.as_str(),
                credential = %c.name,
                days_left = left.as_secs() / 86_400,
                "credential expires soon: rotate it before it is refused"
            );
        }
    }

    /// Credentials whose expiry passed since the last look get an audit line.
    fn report_expiries(&self) {
        let now = SystemTime::now();
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        for c in audit::expired_between(&known.0, known.1, now) {
            audit_line(Change::Expired, c);
        }
        known.1 = now;
    }

    fn on_signal(&self) {
        self.credential_files.mark_current();
        self.reload_credentials("SIGHUP");
        if let Some(c) = &self.certificates {
            c.reload("SIGHUP");
        }
    }
}

/// One audit line: the credential changed under `user.target.*` in ECS, with the id the
/// access lines give it (`api_key:<id>`, `token:<name>`) and its human name.
fn audit_line(change: Change, c: &CredentialState) {
    tracing::info!(
        target: "audit",
        action = change.label(),
        credential_kind = c.kind.as_str(),
        target_credential = %format_args!("{}:{}", c.kind, c.name),
        target_credential_name = ?c.display_name,
        "credential {}: {}:{}", change.label(), c.kind, c.name
    );
}

fn ticker(every: Option<Duration>) -> tokio::time::Interval {
    // Off: a tick an hour that does nothing.
    let mut t = tokio::time::interval(every.unwrap_or(Duration::from_secs(3600)));
    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    t
}

#[async_trait]
impl BackgroundService for Reloader {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hangup = match signal(SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGHUP; reload on signal is unavailable");
                None
            }
        };
        let mut certificates = ticker(self.certificate_poll);
        let mut credentials = ticker(self.auth.reload_interval);
        let mut report = tokio::time::interval(Duration::from_secs(60));
        let mut reported = 0;
        loop {
            tokio::select! {
                Some(_) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => None } } => {
                    self.on_signal();
                }
                _ = certificates.tick() => {
                    if let (Some(c), Some(_)) = (&self.certificates, self.certificate_poll) {
                        c.poll();
                    }
                }
                _ = credentials.tick() => {
                    if self.auth.reload_interval.is_some() && self.credential_files.changed() {
                        self.reload_credentials("file change");
                    }
                    self.report_expiries();
                    self.warn_expiring(SystemTime::now());
                }
                _ = report.tick() => crate::limits::report_handshake_failures(&self.metrics, &mut reported),
                _ = shutdown.changed() => return,
            }
        }
    }
}
