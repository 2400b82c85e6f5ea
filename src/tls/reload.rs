//! Certificate reload without restart and without dropping connections: on SIGHUP, and
//! when the files change. Files are identified by what their path resolves to (inode,
//! size, mtime of the symlink target), which catches Kubernetes Secret updates: those swap a
//! `..data` symlink instead of writing the files. A broken new file keeps the last good
//! certificate, is logged with the file and the reason, and counts as a reload failure.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::TlsSettings;
use super::{CertResolver, CertSet};

type Fingerprint = Vec<Option<(PathBuf, u64, u64, u64, i64, i64)>>;

pub struct CertificateReloader {
    settings: TlsSettings,
    resolver: Arc<CertResolver>,
    files: Vec<PathBuf>,
    seen: Mutex<Fingerprint>,
    failures: AtomicU64,
}

impl CertificateReloader {
    pub fn new(settings: TlsSettings, resolver: Arc<CertResolver>) -> Self {
        let files = settings.watched_files();
        let seen = Mutex::new(fingerprint(&files));
        CertificateReloader {
            settings,
            resolver,
            files,
            seen,
            failures: AtomicU64::new(0),
        }
    }

    /// Reload failures since start (for metrics).
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Reload when any file changed since the last look.
    pub fn poll(&self) {
        let now = fingerprint(&self.files);
        {
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            if *seen == now {
                return;
            }
            // Remember it even if the load fails, so a broken file is reported once, not at
            // every poll; the next change (e.g. the key after the certificate) tries again.
            *seen = now;
        }
        self.reload("file change");
    }

    /// Load the files and serve them to new handshakes; keep the old set on failure.
    pub fn reload(&self, why: &str) -> bool {
        match CertSet::load(&self.settings) {
            Ok(set) => {
                self.resolver.replace(set);
                tracing::info!(trigger = why, "certificates reloaded");
                *self.seen.lock().unwrap_or_else(|e| e.into_inner()) = fingerprint(&self.files);
                true
            }
            Err(e) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                tracing::error!(trigger = why, error = %e, "certificate reload failed; still serving the previous certificate");
                false
            }
        }
    }
}

fn fingerprint(files: &[PathBuf]) -> Fingerprint {
    files
        .iter()
        .map(|f| {
            let target = std::fs::canonicalize(f).ok()?;
            let m = std::fs::metadata(&target).ok()?;
            Some((
                target,
                m.dev(),
                m.ino(),
                m.size(),
                m.mtime(),
                m.mtime_nsec(),
            ))
        })
        .collect()
}
