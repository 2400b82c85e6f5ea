//! The agent-fleet workload of `bench/run.sh`: N agents, each with its own TLS connection
//! and one long chunked `POST /intake/v2/events` (as APM agents stream): the metadata line,
//! then one ~1 KB event every 100 ms for the given seconds, each event carrying the time it
//! was sent. The stand-in upstream (`bench_upstream`) measures when each event arrives; this
//! program asks it for the count and the latencies at the end and prints one line:
//! `agents=N sent=… arrived=… p50_ms=… p99_ms=… ok_answers=…`.
//!
//! Usage: `fleet_load <host:port of the peer> <agents> <seconds> <token> <host:port of the stand-in>`

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

const INTERVAL: Duration = Duration::from_millis(100);

fn tls_config() -> Arc<rustls::ClientConfig> {
    /// The bench's certificate is self-signed: trust whatever the peer shows.
    #[derive(Debug)]
    struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);
    impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
        fn verify_server_cert(
            &self,
            _: &rustls::pki_types::CertificateDer<'_>,
            _: &[rustls::pki_types::CertificateDer<'_>],
            _: &rustls::pki_types::ServerName<'_>,
            _: &[u8],
            _: rustls::pki_types::UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &rustls::pki_types::CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }
        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &rustls::pki_types::CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

fn chunk(data: &[u8]) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    out
}

fn now_micros() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros()
}

/// One agent: connect, stream for `seconds`, end the body, read the answer. Returns whether
/// it was a 2xx.
async fn agent(
    peer: String,
    token: String,
    seconds: u64,
    tls: Arc<rustls::ClientConfig>,
    sent: Arc<AtomicU64>,
    start: tokio::time::Instant,
) -> bool {
    tokio::time::sleep_until(start).await;
    let Ok(tcp) = tokio::net::TcpStream::connect(&peer).await else {
        return false;
    };
    let _ = tcp.set_nodelay(true);
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("server name");
    let Ok(mut stream) = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await
    else {
        return false;
    };
    let head = format!(
        "POST /intake/v2/events HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\nX-Bench-Fleet: 1\r\n\r\n"
    );
    let mut first = head.into_bytes();
    first.extend(chunk(
        b"{\"metadata\":{\"service\":{\"name\":\"fleet\",\"agent\":{\"name\":\"go\",\"version\":\"2.6.0\"}}}}\n",
    ));
    if stream.write_all(&first).await.is_err() {
        return false;
    }
    let padding = "x".repeat(900);
    let mut tick = tokio::time::interval(INTERVAL);
    let end = tokio::time::Instant::now() + Duration::from_secs(seconds);
    tick.tick().await;
    while tokio::time::Instant::now() < end {
        tick.tick().await;
        let event = format!(
            "{{\"transaction\":{{\"ts\":{},\"name\":\"GET /checkout\",\"pad\":\"{padding}\"}}}}\n",
            now_micros()
        );
        if stream.write_all(&chunk(event.as_bytes())).await.is_err() {
            return false;
        }
        sent.fetch_add(1, Ordering::Relaxed);
    }
    if stream.write_all(b"0\r\n\r\n").await.is_err() {
        return false;
    }
    let mut answer = [0u8; 64];
    matches!(
        tokio::time::timeout(Duration::from_secs(30), stream.read(&mut answer)).await,
        Ok(Ok(n)) if n >= 12 && answer[9] == b'2'
    )
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 6 {
        eprintln!(
            "usage: fleet_load <peer host:port> <agents> <seconds> <token> <upstream host:port>"
        );
        std::process::exit(64);
    }
    let (peer, token, upstream) = (args[1].clone(), args[4].clone(), args[5].clone());
    let agents: usize = args[2].parse().expect("agents");
    let seconds: u64 = args[3].parse().expect("seconds");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let _ = reqwest::get(format!("http://{upstream}/fleet/reset")).await;
        let tls = tls_config();
        let sent = Arc::new(AtomicU64::new(0));
        let start = tokio::time::Instant::now() + Duration::from_millis(200);
        let mut tasks = Vec::new();
        for i in 0..agents {
            // Agents start spread over one interval, as a real fleet's do.
            let offset = INTERVAL.mul_f64(i as f64 / agents as f64);
            tasks.push(tokio::spawn(agent(
                peer.clone(),
                token.clone(),
                seconds,
                tls.clone(),
                sent.clone(),
                start + offset,
            )));
        }
        let mut ok = 0;
        for t in tasks {
            ok += usize::from(t.await.unwrap_or(false));
        }
        // Let the last events arrive, then read the stand-in's view.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let stats = reqwest::get(format!("http://{upstream}/fleet/stats"))
            .await
            .expect("stand-in stats")
            .text()
            .await
            .unwrap_or_default();
        println!(
            "agents={agents} sent={} ok_answers={ok} {}",
            sent.load(Ordering::Relaxed),
            stats.trim()
        );
    });
}
