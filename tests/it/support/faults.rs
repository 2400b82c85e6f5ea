//! Upstreams that fail on purpose, for the fault matrix: a black hole (connections never
//! complete), and an upstream that resets the connection in the middle of a request or of its
//! response. Both answer the proxy's readiness checks (`GET /`) so the member stays in the pool
//! and the fault is met by real requests.

use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A listener whose accept queue is full and never drained: connects to it hang (SYNs are
/// dropped) until the connecting side gives up — a host that went dark.
pub struct BlackHole {
    pub addr: SocketAddr,
    _listener: socket2::Socket,
    _queued: Vec<TcpStream>,
}

impl BlackHole {
    pub fn start() -> BlackHole {
        use socket2::{Domain, Socket, Type};
        let listener = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        listener.set_reuse_address(true).unwrap();
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        listener.bind(&any.into()).unwrap();
        // Backlog 0: the queue holds one connection; fill it and the next connect hangs.
        listener.listen(0).unwrap();
        let addr = listener.local_addr().unwrap().as_socket().unwrap();
        let mut queued = Vec::new();
        for _ in 0..4 {
            match TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
                Ok(stream) => queued.push(stream),
                Err(_) => {
                    return BlackHole {
                        addr,
                        _listener: listener,
                        _queued: queued,
                    };
                }
            }
        }
        panic!("the accept queue of {addr} never filled: connects cannot be black-holed here");
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// Where [`Resetting`] cuts the connection.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Reset {
    /// After the request head and the first bytes of its body.
    MidRequest,
    /// After the head and part of the body of a 200 answer announcing 100 bytes.
    MidResponse,
}

/// The part of the answer [`Reset::MidResponse`] sends before the reset.
pub const PARTIAL_BODY: &str = "{\"transaction_sample_rate\":";

/// An upstream that takes each request (other than readiness checks) and resets its
/// connection (RST, not FIN) at the configured point.
pub struct Resetting {
    pub addr: SocketAddr,
    requests: Arc<AtomicUsize>,
    _runtime: tokio::runtime::Runtime,
}

impl Resetting {
    pub fn start(at: Reset) -> Resetting {
        let (runtime, listener, addr) = super::listening_on("127.0.0.1:0".parse().unwrap());
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = requests.clone();
        runtime.spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, at, counter.clone()));
            }
        });
        Resetting {
            addr,
            requests,
            _runtime: runtime,
        }
    }

    /// Requests (not readiness checks) that reached this upstream.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

async fn serve(mut stream: tokio::net::TcpStream, at: Reset, requests: Arc<AtomicUsize>) {
    let mut seen = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(i) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    };
    if seen.starts_with(b"GET / ") {
        let ok = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}";
        let _ = stream.write_all(ok.as_bytes()).await;
        return;
    }
    requests.fetch_add(1, Ordering::SeqCst);
    match at {
        Reset::MidRequest => {
            while seen.len() <= head_end {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => seen.extend_from_slice(&buf[..n]),
                }
            }
        }
        Reset::MidResponse => {
            let partial = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{PARTIAL_BODY}"
            );
            let _ = stream.write_all(partial.as_bytes()).await;
            let _ = stream.flush().await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // SO_LINGER 0: closing sends RST, as a crashed or killed server does.
    let _ = stream.set_zero_linger();
    drop(stream);
}

/// How [`Closing`] ends a kept-alive connection.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Closing {
    /// Answers, keeps the connection (no `connection: close`) and closes it 50 ms later with
    /// a FIN, as a server with a short keep-alive timeout does: the proxy's pooled connection
    /// goes stale while idle.
    WhenIdle,
    /// Answers the first request of each connection; a second one on the same connection is
    /// read whole and the connection closed without an answer — the server timed the
    /// connection out just as the proxy reused it.
    OnReuse,
}

/// An HTTP/1.1 upstream whose kept-alive connections die under the proxy's pool. Answers
/// 202 `{}` to every request it answers; counts requests (whole heads and bodies received)
/// and connections; readiness checks (`GET /`) are answered and not counted.
pub struct ClosingUpstream {
    pub addr: SocketAddr,
    requests: Arc<AtomicUsize>,
    connections: Arc<AtomicUsize>,
    _runtime: tokio::runtime::Runtime,
}

impl ClosingUpstream {
    pub fn start(how: Closing) -> ClosingUpstream {
        let (runtime, listener, addr) = super::listening_on("127.0.0.1:0".parse().unwrap());
        let requests = Arc::new(AtomicUsize::new(0));
        let connections = Arc::new(AtomicUsize::new(0));
        let (counted, opened) = (requests.clone(), connections.clone());
        runtime.spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve_then_close(
                    stream,
                    how,
                    counted.clone(),
                    opened.clone(),
                ));
            }
        });
        ClosingUpstream {
            addr,
            requests,
            connections,
            _runtime: runtime,
        }
    }

    /// Requests (not readiness checks) received whole, answered or not.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// Connections that carried at least one request (not readiness checks).
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// One request read whole (head and `content-length` body) from `seen` + the stream; false
/// when the connection ends first. Consumes the request's bytes from `seen`.
async fn read_request(stream: &mut tokio::net::TcpStream, seen: &mut Vec<u8>) -> Option<Vec<u8>> {
    let mut buf = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(i) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    };
    let head = String::from_utf8_lossy(&seen[..head_end]).to_ascii_lowercase();
    let body_len: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap());
    while seen.len() < head_end + body_len {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
    Some(seen.drain(..head_end + body_len).collect())
}

async fn serve_then_close(
    mut stream: tokio::net::TcpStream,
    how: Closing,
    requests: Arc<AtomicUsize>,
    connections: Arc<AtomicUsize>,
) {
    let mut seen = Vec::new();
    let mut answered = 0;
    while let Some(request) = read_request(&mut stream, &mut seen).await {
        if request.starts_with(b"GET / ") {
            let ok = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}";
            let _ = stream.write_all(ok.as_bytes()).await;
            return;
        }
        requests.fetch_add(1, Ordering::SeqCst);
        if answered == 0 {
            connections.fetch_add(1, Ordering::SeqCst);
        }
        if how == Closing::OnReuse && answered == 1 {
            return; // read, never answered: closed under the proxy's feet
        }
        let ok = "HTTP/1.1 202 Accepted\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
        if stream.write_all(ok.as_bytes()).await.is_err() {
            return;
        }
        answered += 1;
        if how == Closing::WhenIdle {
            tokio::time::sleep(Duration::from_millis(50)).await;
            return;
        }
    }
}
