//! Certificate reload without restart and without dropping connections: on SIGHUP, and
//! when the files change (see `crate::watch`, which catches Kubernetes Secret updates). A
//! broken new file keeps the last good certificate, is logged with the file and the reason,
//! and counts as a reload failure.

use std::sync::Arc;

use super::{CertResolver, CertSet, TlsSettings};
use crate::metrics::Metrics;
use crate::watch::FileWatch;

pub struct CertificateReloader {
    settings: TlsSettings,
    resolver: Arc<CertResolver>,
    watch: FileWatch,
    metrics: Arc<Metrics>,
}

impl CertificateReloader {
    pub fn new(settings: TlsSettings, resolver: Arc<CertResolver>, metrics: Arc<Metrics>) -> Self {
        CertificateReloader {
            metrics,
            watch: FileWatch::new(settings.watched_files()),
            settings,
            resolver,
        }
    }

    /// Reload when any file changed since the last look.
    pub fn poll(&self) {
        if self.watch.changed() {
            self.reload("file change");
        }
    }

    /// Load the files and serve them to new handshakes; keep the old set on failure.
    pub fn reload(&self, why: &str) -> bool {
        match CertSet::load(&self.settings) {
            Ok(set) => {
                self.resolver.replace(set);
                tracing::info!(trigger = why, "certificates reloaded");
                self.watch.mark_current();
                self.metrics.reload("certificates", true);
                true
            }
            Err(e) => {
                self.metrics.reload("certificates", false);
                tracing::error!(trigger = why, error = %e, "certificate reload failed; still serving the previous certificate");
                false
            }
        }
    }
}
