//! Real clients for the proxy under test: reqwest (HTTP/1.1 and HTTP/2), curl, and the
//! answer they got, in one shape.

use std::time::Duration;

use super::proxy::{bounded, Proxy};

/// Runtime for async test bodies.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A reqwest client trusting `ca_pem` only; HTTP/2 by ALPN when `h2`, else HTTP/1.1 only;
/// optionally presenting a client certificate (PEM certificate, PEM key).
pub fn client_for(ca_pem: &str, h2: bool, identity: Option<(&str, &str)>) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .tls_built_in_root_certs(false)
        .timeout(Duration::from_secs(60));
    if !h2 {
        b = b.http1_only();
    }
    if let Some((cert, key)) = identity {
        b = b.identity(reqwest::Identity::from_pem(format!("{cert}{key}").as_bytes()).unwrap());
    }
    b.build().unwrap()
}

impl Proxy {
    /// A reqwest client trusting the proxy's CA.
    pub fn client(&self, h2: bool) -> reqwest::Client {
        client_for(&self.ca_pem, h2, None)
    }

    /// An HTTP/1.1 client connecting from `local` (any 127.0.0.0/8 address on loopback), so a
    /// test can be several client IPs.
    pub fn client_from(&self, local: std::net::IpAddr) -> reqwest::Client {
        reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).unwrap())
            .tls_built_in_root_certs(false)
            .timeout(Duration::from_secs(60))
            .http1_only()
            .local_address(local)
            .build()
            .unwrap()
    }
}

/// What a client got back.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub content_type: Option<String>,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
    /// The HTTP version the answer came over.
    pub version: reqwest::Version,
}

impl Answer {
    pub async fn from(resp: reqwest::Response) -> Answer {
        Answer {
            status: resp.status().as_u16(),
            content_type: resp
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_string()),
            headers: resp.headers().clone(),
            version: resp.version(),
            body: resp.text().await.unwrap(),
        }
    }

    /// Every value of a header (to check it appears exactly once).
    pub fn header_values(&self, name: &str) -> Vec<&str> {
        header_values(&self.headers, name)
    }
}

/// Every value of `name` in `headers`.
pub fn header_values<'a>(headers: &'a reqwest::header::HeaderMap, name: &str) -> Vec<&'a str> {
    headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect()
}

/// Send `req` with `headers`, as agents do: no JSON `Accept` unless one is given (reqwest
/// would send `*/*`, which makes the proxy pretty-print like APM Server does for curl).
pub async fn send(mut req: reqwest::RequestBuilder, headers: &[(&str, &str)]) -> Answer {
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("accept"))
    {
        req = req.header("Accept", "text/plain");
    }
    for (k, v) in headers {
        if k.eq_ignore_ascii_case("authorization") {
            super::proxy::register_presented(v);
        }
        req = req.header(*k, *v);
    }
    Answer::from(req.send().await.unwrap()).await
}

pub async fn post(
    client: &reqwest::Client,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<reqwest::Body>,
) -> Answer {
    send(client.post(url).body(body.into()), headers).await
}

/// A browser's CORS preflight before a POST to `url` from `origin` that will send
/// `request_headers` (`Access-Control-Request-Headers`; none when empty).
pub async fn preflight(
    client: &reqwest::Client,
    url: &str,
    origin: &str,
    request_headers: &str,
) -> Answer {
    let mut req = client
        .request(reqwest::Method::OPTIONS, url)
        .header("Origin", origin)
        .header("Access-Control-Request-Method", "POST");
    if !request_headers.is_empty() {
        req = req.header("Access-Control-Request-Headers", request_headers);
    }
    send(req, &[]).await
}

pub async fn get(client: &reqwest::Client, url: &str, headers: &[(&str, &str)]) -> Answer {
    send(client.get(url), headers).await
}

/// A POST whose body the test feeds chunk by chunk (send `Ok(bytes)`, drop the sender to end
/// it): the sender, and the answer to come. Call inside a runtime.
pub fn streamed_post(
    client: &reqwest::Client,
    url: &str,
    headers: &[(&str, &str)],
) -> (
    tokio::sync::mpsc::Sender<Result<Vec<u8>, std::io::Error>>,
    tokio::task::JoinHandle<Answer>,
) {
    let (tx, body) = super::bodies::channel_body();
    let request = client.post(url).body(body);
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let answer = tokio::spawn(async move {
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        send(request, &headers).await
    });
    (tx, answer)
}

/// curl with `args` (bounded to a minute); (stdout, stderr).
pub fn curl(args: &[&str]) -> (String, String) {
    for arg in args {
        if let Some(value) = arg.strip_prefix("Authorization:") {
            super::proxy::register_presented(value);
        }
    }
    let out = bounded("curl", Duration::from_secs(60))
        .args(["--max-time", "30"])
        .args(args)
        .output()
        .expect("curl is installed");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// curl to the proxy's `/` with its CA and extra `args`; the HTTP status, `000` when the
/// connection or handshake failed.
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
    curl(&all).0
}

/// A TLS connection to the proxy speaking HTTP/1.1 (by ALPN) with nothing on top, for tests
/// that write a request byte by byte.
pub async fn raw_tls(proxy: &Proxy) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    raw_tls_alpn(proxy, b"http/1.1").await
}

/// A TLS connection to the proxy negotiating `alpn`, with nothing on top.
pub async fn raw_tls_alpn(
    proxy: &Proxy,
    alpn: &[u8],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(proxy.ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", proxy.port))
        .await
        .unwrap();
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap()
}

/// Read one HTTP/1.1 response off a raw connection: (status, body). The body is read by its
/// `Content-Length`, or to the last chunk when chunked.
pub async fn read_response(
    stream: &mut (impl tokio::io::AsyncRead + Unpin),
) -> std::io::Result<(u16, String)> {
    use tokio::io::AsyncReadExt;
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        data.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&data[..head_end]).to_ascii_lowercase();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or(std::io::ErrorKind::InvalidData)?;
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    let complete = |body: &[u8]| match length {
        Some(n) => body.len() >= n,
        None => !head.contains("chunked") || body.ends_with(b"0\r\n\r\n"),
    };
    while !complete(&data[head_end..]) {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        data.extend_from_slice(&buf[..n]);
    }
    Ok((
        status,
        String::from_utf8_lossy(&data[head_end..]).into_owned(),
    ))
}
