//! Readiness needs to know the upstream answers: every interval it is asked `GET /` (what
//! APM Server answers without auth) over a fresh connection; any HTTP answer counts.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::lifecycle::Lifecycle;

/// The check says what it is, in the upstream's logs too.
pub const USER_AGENT: &str = concat!(
    "apm-auth-proxy/",
    env!("CARGO_PKG_VERSION"),
    " (upstream check)"
);

pub struct UpstreamCheck {
    pub lifecycle: Arc<Lifecycle>,
    pub address: SocketAddr,
    /// `Host` of the check request.
    pub authority: String,
    /// `Authorization` for an APM Server that requires the proxy's upstream token.
    pub authorization: Option<String>,
    pub interval: Duration,
    pub timeout: Duration,
}

impl UpstreamCheck {
    async fn answers(&self) -> bool {
        let attempt = async {
            let mut stream = tokio::net::TcpStream::connect(self.address).await?;
            let auth = self
                .authorization
                .as_deref()
                .map(|a| format!("Authorization: {a}\r\n"))
                .unwrap_or_default();
            let request = format!(
                "GET / HTTP/1.1\r\nHost: {}\r\nUser-Agent: {USER_AGENT}\r\n{auth}\
                 Connection: close\r\n\r\n",
                self.authority
            );
            stream.write_all(request.as_bytes()).await?;
            let mut head = [0u8; 12];
            stream.read_exact(&mut head).await?;
            Ok::<bool, std::io::Error>(head.starts_with(b"HTTP/1."))
        };
        matches!(
            tokio::time::timeout(self.timeout, attempt).await,
            Ok(Ok(true))
        )
    }
}

#[async_trait]
impl BackgroundService for UpstreamCheck {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut every = tokio::time::interval(self.interval);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last = None;
        loop {
            tokio::select! {
                _ = every.tick() => {
                    let answering = self.answers().await;
                    if last != Some(answering) {
                        if answering {
                            tracing::info!(upstream = %self.address, "the upstream answers");
                        } else {
                            tracing::warn!(upstream = %self.address, "the upstream does not answer; /readyz reports 503");
                        }
                        last = Some(answering);
                    }
                    self.lifecycle.set_upstream_answering(answering);
                }
                _ = shutdown.changed() => return,
            }
        }
    }
}
