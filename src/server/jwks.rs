//! Keeps each `[[auth.jwt]]` issuer's keys current: fetched at start, then every
//! `refresh_interval`, and again when a token names a key the set lacks — at most every
//! `min_refresh_interval`, so random `kid`s cannot make the proxy hammer the identity
//! provider. A failed fetch keeps the last good set (WARN once per failure streak, counted).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::time::Instant;

use crate::auth::jwt::{fetch, Issuer, JwtVerifier};
use crate::metrics::Metrics;

/// How often a key-refresh request from the request path is looked for.
const POLL: Duration = Duration::from_millis(250);

pub struct JwksRefresher {
    pub verifier: Arc<JwtVerifier>,
    pub metrics: Arc<Metrics>,
}

#[async_trait]
impl BackgroundService for JwksRefresher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let tasks: Vec<_> = (self.verifier.issuers().iter())
            .map(|issuer| tokio::spawn(keep_current(issuer.clone(), self.metrics.clone())))
            .collect();
        let _ = shutdown.changed().await;
        for t in tasks {
            t.abort();
        }
    }
}

async fn keep_current(issuer: Arc<Issuer>, metrics: Arc<Metrics>) {
    let s = &issuer.settings;
    let client = match fetch::client(s) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(issuer = %s.name, error = %e, "cannot fetch the issuer's keys: its tokens are refused");
            issuer.mark_attempted();
            return;
        }
    };
    let mut last: Option<Instant> = None;
    let mut failing = false;
    loop {
        let due = last.is_none_or(|t| t.elapsed() >= s.refresh_interval);
        let asked = last.is_some_and(|t| t.elapsed() >= s.min_refresh_interval)
            && issuer.take_refresh_request();
        if due || asked {
            last = Some(Instant::now());
            match fetch::keys(s, &client).await {
                Ok(set) => {
                    if failing {
                        tracing::info!(issuer = %s.name, "issuer keys fetched again");
                    }
                    failing = false;
                    metrics.jwks_fetched(&s.name, true, set.keys.len());
                    issuer.set_keys(set);
                }
                Err(e) => {
                    metrics.jwks_fetched(&s.name, false, 0);
                    if !failing {
                        let kept = issuer.keys().is_some();
                        tracing::warn!(
                            issuer = %s.name, error = %e, kept_last_good_keys = kept,
                            "cannot fetch the issuer's keys{}",
                            if kept { "; the last good set stays" } else { ": its tokens are refused until they are fetched" }
                        );
                    }
                    failing = true;
                }
            }
            issuer.mark_attempted();
        }
        tokio::time::sleep(POLL).await;
    }
}
