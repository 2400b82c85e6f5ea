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
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
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
