//! Test harness: certificates made at test time, a stand-in APM Server that records what it
//! receives, and the real `apm-auth-proxy` binary started on an ephemeral loopback port.
#![allow(dead_code)]

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

pub const BIN: &str = env!("CARGO_BIN_EXE_apm-auth-proxy");

/// A CA and a server certificate for localhost / 127.0.0.1 / ::1 signed by it.
pub struct Pki {
    pub dir: tempfile::TempDir,
    pub ca_pem: String,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A test CA that issues server and client certificates.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
    pub pem: String,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let pem = issuer.pem();
        Ca { issuer, pem }
    }

    /// (certificate PEM, key PEM) for the given SANs; `client` makes it a client certificate.
    pub fn issue(&self, cn: &str, sans: &[&str], client: bool) -> (String, String) {
        let (uris, names): (Vec<&str>, Vec<&str>) = sans.iter().partition(|s| s.contains("://"));
        let mut params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        for uri in uris {
            params.subject_alt_names.push(rcgen::SanType::URI(
                rcgen::string::Ia5String::try_from(uri).unwrap(),
            ));
        }
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![if client {
            rcgen::ExtendedKeyUsagePurpose::ClientAuth
        } else {
            rcgen::ExtendedKeyUsagePurpose::ServerAuth
        }];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// A server certificate for localhost written into a fresh directory, as a `Pki`.
    pub fn server_pki(&self, sans: &[&str]) -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let (cert_pem, key_pem) = self.issue("server", sans, false);
        let (cert, key) = (
            dir.path().join("server.pem"),
            dir.path().join("server-key.pem"),
        );
        std::fs::write(&cert, cert_pem).unwrap();
        std::fs::write(&key, key_pem).unwrap();
        Pki {
            dir,
            ca_pem: self.pem.clone(),
            cert,
            key,
        }
    }
}

pub fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "apm-auth-proxy test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ])
    .unwrap()
    .signed_by(&leaf_key, &ca)
    .unwrap();
    let cert = dir.path().join("server.pem");
    let key = dir.path().join("server-key.pem");
    std::fs::write(&cert, leaf.pem()).unwrap();
    std::fs::write(&key, leaf_key.serialize_pem()).unwrap();
    Pki {
        ca_pem: ca.pem(),
        dir,
        cert,
        key,
    }
}

/// One request as the stand-in APM Server saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub uri: String,
    pub headers: http::HeaderMap,
    /// The body, when it is at most `KEEP_BODY` bytes.
    pub body: Vec<u8>,
    pub body_len: usize,
    pub body_sha256: Vec<u8>,
    /// When each body chunk arrived.
    pub chunk_times: Vec<Instant>,
    /// False when the body stream ended in an error (the proxy aborted it).
    pub complete: bool,
}

const KEEP_BODY: usize = 8 << 20;

/// The stand-in APM Server: HTTP/1.1 on loopback, answers like APM Server with auth off.
pub struct Upstream {
    pub addr: SocketAddr,
    records: Arc<Mutex<Vec<Recorded>>>,
    /// Requests whose head has arrived (recorded or not yet).
    started: Arc<std::sync::atomic::AtomicUsize>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Upstream {
    pub fn start() -> Upstream {
        Self::start_on("127.0.0.1:0".parse().unwrap())
    }

    /// Start on `addr` (used to bring an upstream back on the port it had).
    pub fn start_on(addr: SocketAddr) -> Upstream {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let records = Arc::new(Mutex::new(Vec::new()));
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(addr))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let recs = records.clone();
        let started = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let heads = started.clone();
        runtime.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let recs = recs.clone();
                let heads = heads.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        heads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        handle(req, recs.clone())
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Upstream {
            addr,
            records,
            started,
            runtime: Some(runtime),
        }
    }

    /// Stop listening and close every connection.
    pub fn stop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }

    /// How many requests have reached the upstream, finished or still streaming.
    pub fn started(&self) -> usize {
        self.started.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.records.lock().unwrap().clone()
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn handle(
    req: Request<Incoming>,
    records: Arc<Mutex<Vec<Recorded>>>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let (parts, mut body) = req.into_parts();
    let mut hash = ring::digest::Context::new(&ring::digest::SHA256);
    let (mut kept, mut len, mut times, mut complete) = (Vec::new(), 0usize, Vec::new(), true);
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Some(data) = frame.data_ref() {
                    times.push(Instant::now());
                    hash.update(data);
                    len += data.len();
                    if kept.len() + data.len() <= KEEP_BODY {
                        kept.extend_from_slice(data);
                    }
                }
            }
            Err(_) => {
                complete = false;
                break;
            }
        }
    }
    let path = parts.uri.path().to_string();
    records.lock().unwrap().push(Recorded {
        method: parts.method.to_string(),
        uri: parts.uri.to_string(),
        headers: parts.headers,
        body: if len <= KEEP_BODY { kept } else { Vec::new() },
        body_len: len,
        body_sha256: hash.finish().as_ref().to_vec(),
        chunk_times: times,
        complete,
    });
    let (status, body): (u16, &'static [u8]) = match path.as_str() {
        "/" => (
            200,
            b"{\"build_date\":\"2024-01-01T00:00:00Z\",\"build_sha\":\"abc\",\"publish_ready\":true,\"version\":\"7.17.0\"}",
        ),
        p if p.starts_with("/intake/") => (202, b""),
        p if p.starts_with("/config/") => (
            200,
            b"{\"sanitize_field_names\":\"foo,bar,baz\",\"transaction_sample_rate\":\"0.5\"}",
        ),
        _ => (200, b"{}"),
    };
    let mut response = Response::builder().status(status);
    if path.contains("/rum/") {
        // APM Server with RUM on echoes the origin itself; the proxy must not duplicate it.
        response = response.header("Access-Control-Allow-Origin", "set-by-upstream");
    }
    Ok(response.body(Full::new(Bytes::from_static(body))).unwrap())
}

pub fn sha256(data: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, data)
        .as_ref()
        .to_vec()
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The real proxy binary, running with a config written for the test.
pub struct Proxy {
    pub port: u16,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub log: PathBuf,
    child: Child,
    pub ca_pem: String,
}

/// The `[ssl]`, `[server]` and `[upstream]` sections for a test; `extra` adds the rest.
pub fn config_text(pki: &Pki, port: u16, upstream: &str, extra: &str) -> String {
    config_text_tls(pki, port, upstream, "", extra)
}

/// Like `config_text`, with `ssl_extra` lines added to the `[ssl]` section.
pub fn config_text_tls(
    pki: &Pki,
    port: u16,
    upstream: &str,
    ssl_extra: &str,
    extra: &str,
) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\nthreads = 1\nreject_drain_timeout = \"2s\"\n\
         shutdown_grace_period = \"0s\"\n\
         [ssl]\ncertificate = {cert:?}\nkey = {key:?}\n{ssl_extra}\n\
         [upstream]\nurl = \"{upstream}\"\nconnect_timeout = \"1s\"\nread_timeout = \"5s\"\n\
         {extra}\n",
        cert = pki.cert,
        key = pki.key,
    )
}

impl Proxy {
    /// Start the proxy in front of `upstream` with `extra` config (auth sections etc.).
    pub fn start(pki: &Pki, upstream: &str, extra: &str) -> Proxy {
        Self::start_with(pki, upstream, extra, |_| {})
    }

    /// Like `start`, with a hook to write files (keys file, secret files) into the config
    /// directory before the proxy starts.
    pub fn start_with(
        pki: &Pki,
        upstream: &str,
        extra: &str,
        prepare: impl FnOnce(&Path),
    ) -> Proxy {
        Self::start_tls(pki, upstream, "", extra, prepare)
    }

    /// The general form: `ssl_extra` goes into `[ssl]`, `extra` after the harness's sections.
    pub fn start_tls(
        pki: &Pki,
        upstream: &str,
        ssl_extra: &str,
        extra: &str,
        prepare: impl FnOnce(&Path),
    ) -> Proxy {
        let mut dir = tempfile::tempdir().unwrap();
        prepare(dir.path());
        for _attempt in 0..3 {
            let port = free_port();
            let config = dir.path().join("proxy.toml");
            std::fs::write(
                &config,
                config_text_tls(pki, port, upstream, ssl_extra, extra),
            )
            .unwrap();
            let log = dir.path().join("proxy.log");
            let child = Command::new(BIN)
                .args(["run", "--config"])
                .arg(&config)
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .unwrap();
            let mut proxy = Proxy {
                port,
                dir,
                config,
                log,
                child,
                ca_pem: pki.ca_pem.clone(),
            };
            if proxy.wait_ready(Duration::from_secs(20)) {
                return proxy;
            }
            // Port taken in between, most likely: try another one.
            let _ = proxy.child.kill();
            let _ = proxy.child.wait();
            dir = std::mem::replace(&mut proxy.dir, tempfile::tempdir().unwrap());
        }
        panic!("the proxy did not start");
    }

    fn wait_ready(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                eprintln!("proxy exited with {status}:\n{}", self.log_text());
                return false;
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A reqwest client trusting the test CA; `h2` selects HTTP/2 (by ALPN) or HTTP/1.1.
    pub fn client(&self, h2: bool) -> reqwest::Client {
        let builder = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).unwrap())
            .tls_built_in_root_certs(false)
            .timeout(Duration::from_secs(60));
        let builder = if h2 { builder } else { builder.http1_only() };
        builder.build().unwrap()
    }

    pub fn ca_file(&self) -> PathBuf {
        let path = self.dir.path().join("ca.pem");
        if !path.exists() {
            std::fs::File::create(&path)
                .unwrap()
                .write_all(self.ca_pem.as_bytes())
                .unwrap();
        }
        path
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `curl` to the proxy's `/` with its CA and extra `args`; the HTTP status, `000` when
/// the connection or handshake failed.
pub fn curl_status(proxy: &Proxy, args: &[&str]) -> String {
    let ca = proxy.ca_file();
    let url = proxy.url("/");
    let mut all = vec![
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--cacert",
        ca.to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    all.push(&url);
    let out = Command::new("curl")
        .args(&all)
        .output()
        .expect("curl is installed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Run the binary with `args` and return (exit code, stdout, stderr).
pub fn run_cli(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Create an API key with the real CLI in `dir` (keys file `dir/keys.toml`); returns
/// (id, base64 credential).
pub fn create_key(dir: &Path, privileges: &str, extra: &[&str]) -> (String, String) {
    let cfg = dir.join("keys-cli.toml");
    std::fs::write(
        &cfg,
        "[auth.api_key]\nenabled = true\nkeys_file = \"keys.toml\"\n",
    )
    .unwrap();
    let mut args = vec![
        "apikey",
        "--config",
        cfg.to_str().unwrap(),
        "create",
        "--name",
        "test",
        "--json",
    ];
    args.extend(["--privileges", privileges]);
    args.extend_from_slice(extra);
    let (code, out, err) = run_cli(&args);
    assert_eq!(code, 0, "apikey create failed: {err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    (
        v["id"].as_str().unwrap().to_string(),
        v["credentials"].as_str().unwrap().to_string(),
    )
}

pub const API_KEYS: &str = "[auth.api_key]\nenabled = true\nkeys_file = \"keys.toml\"\n";

/// Runtime for async test bodies.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}
