//! Saves the usage book to its state file every `usage.flush_interval` when something
//! changed, and once more when the server has stopped (`save_if_changed` after the run: the
//! runtimes' tasks are gone by then). A failing save (a read-only directory) is logged once,
//! retried at every tick, and its recovery logged; requests never wait for it.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::usage::{state_file, UsageBook};

pub struct UsageSaver {
    pub book: Arc<UsageBook>,
    pub path: PathBuf,
    pub every: Duration,
    failing: AtomicBool,
}

impl UsageSaver {
    pub fn new(book: Arc<UsageBook>, path: PathBuf, every: Duration) -> Self {
        UsageSaver {
            book,
            path,
            every,
            failing: AtomicBool::new(false),
        }
    }

    pub fn save_if_changed(&self) {
        if !self.book.take_changed() {
            return;
        }
        match state_file::save(&self.path, &self.book.snapshot()) {
            Ok(()) if self.failing.swap(false, Ordering::Relaxed) => {
                tracing::info!(file = %self.path.display(), "usage state saved again");
            }
            Ok(()) => {}
            Err(e) => {
                self.book.mark_changed();
                if !self.failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        file = %self.path.display(),
                        error = %e,
                        "cannot save the usage state (set usage.file to a writable path); retrying"
                    );
                }
            }
        }
    }
}

/// The periodic saves, as a Pingora background service.
pub struct PeriodicSaves(pub Arc<UsageSaver>);

#[async_trait]
impl BackgroundService for PeriodicSaves {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut tick = tokio::time::interval(self.0.every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => self.0.save_if_changed(),
                _ = shutdown.changed() => return,
            }
        }
    }
}
