//! Slow and silent clients: a request head must arrive within `server.header_timeout` of its
//! first byte, a connection waits `server.idle_timeout` for a request's first byte, and
//! neither wait counts against the other.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

const TOKEN: &str = "slow-clients-token-5e02";

fn intake_request(body: &str) -> String {
    format!(
        "POST /intake/v2/events HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/x-ndjson\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Whether the peer closed the connection within `limit` (EOF or an error); panics on data.
async fn closed_within(stream: &mut (impl tokio::io::AsyncRead + Unpin), limit: Duration) -> bool {
    let mut buf = [0u8; 256];
    match tokio::time::timeout(limit, stream.read(&mut buf)).await {
        Err(_) => false,
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(n)) => panic!("answered: {:?}", String::from_utf8_lossy(&buf[..n])),
    }
}

/// A head sent a header line at a time, each well within any per-read timeout, is closed
/// without an answer once `header_timeout` has passed since its first byte; nothing reaches
/// the upstream and the close is counted.
#[test]
fn a_head_dribbled_past_the_header_timeout_is_closed() {
    let pki = pki();
    let upstream = Upstream::start();
    let proxy = Proxy::builder(&pki, &upstream.url())
        .token(TOKEN)
        .config("[server]\nheader_timeout = \"1s\"\n")
        .start();
    rt().block_on(async {
        let mut tls = raw_tls(&proxy).await;
        tls.write_all(b"POST /intake/v2/events HTTP/1.1\r\nHost: localhost\r\n")
            .await
            .unwrap();
        // A header line every 200 ms for at most 10 s.
        let mut lines = 0;
        let mut closed = false;
        while lines < 50 && !closed {
            let line = format!("X-Pad-{lines}: 1\r\n");
            closed = tls.write_all(line.as_bytes()).await.is_err()
                || closed_within(&mut tls, Duration::from_millis(200)).await;
            lines += 1;
        }
        assert!(closed, "still open after {lines} header lines over 10 s");
        let counted = metric_samples(&proxy).await;
        assert_eq!(
            sample(
                &counted,
                "apm_auth_proxy_limited_total{limit=\"header_timeout\"}"
            ),
            1.0
        );
    });
    assert!(upstream.requests().is_empty());
}

/// The head deadline starts at each request's first byte and ends with the head: a head in
/// three pieces within it is served, a kept-alive connection idle for twice the deadline
/// still serves the next request, and a body taking longer than the deadline is not cut.
#[test]
fn the_head_deadline_counts_from_each_requests_first_byte() {
    let pki = pki();
    let upstream = Upstream::start();
    let proxy = Proxy::builder(&pki, &upstream.url())
        .token(TOKEN)
        .config("[server]\nheader_timeout = \"1s\"\nidle_timeout = \"30s\"\n")
        .start();
    rt().block_on(async {
        let mut tls = raw_tls(&proxy).await;
        let request = intake_request("{\"metadata\":{}}\n");
        for piece in request.as_bytes().chunks(request.len() / 3 + 1) {
            tls.write_all(piece).await.unwrap();
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert_eq!(read_response(&mut tls).await.unwrap().0, 202);
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (head_and_metadata, event) = request.split_at(request.len() - 1);
        tls.write_all(head_and_metadata.as_bytes()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        tls.write_all(event.as_bytes()).await.unwrap();
        assert_eq!(read_response(&mut tls).await.unwrap().0, 202);
    });
    let requests = upstream.requests();
    assert_eq!(requests.len(), 2);
    assert!(requests.iter().all(|r| r.complete));
}

/// A connection that sends nothing, new or kept alive, HTTP/1.1 or HTTP/2, is closed after
/// `idle_timeout`.
#[test]
fn silent_connections_are_closed_after_the_idle_timeout() {
    let pki = pki();
    let upstream = Upstream::start();
    let proxy = Proxy::builder(&pki, &upstream.url())
        .token(TOKEN)
        .config("[server]\nidle_timeout = \"1s\"\n")
        .start();
    rt().block_on(async {
        let mut fresh = raw_tls(&proxy).await;
        assert!(closed_within(&mut fresh, Duration::from_secs(10)).await);
        let mut kept = raw_tls(&proxy).await;
        kept.write_all(intake_request("{\"metadata\":{}}\n").as_bytes())
            .await
            .unwrap();
        assert_eq!(read_response(&mut kept).await.unwrap().0, 202);
        assert!(closed_within(&mut kept, Duration::from_secs(10)).await);
        // HTTP/2: the preface and an empty SETTINGS frame, then silence. The proxy's own
        // SETTINGS (and acknowledgement) come back; then the connection is closed.
        let mut h2 = raw_tls_alpn(&proxy, b"h2").await;
        h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
            .await
            .unwrap();
        let mut buf = [0u8; 1024];
        let mut closed = false;
        for _ in 0..100 {
            match tokio::time::timeout(Duration::from_millis(100), h2.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => {
                    closed = true;
                    break;
                }
                Ok(Ok(_)) | Err(_) => {}
            }
        }
        assert!(closed, "an idle HTTP/2 connection still open after 10 s");
    });
    assert_eq!(upstream.requests().len(), 1);
}

/// New TLS handshakes take turns (at most 4 per worker at once, so a burst of new connections
/// cannot queue ahead of the established ones' data), and a turn is given up after 2 ms: 40
/// clients stalled mid-handshake — silent, or half a ClientHello — never hold up another
/// client's handshake (were turns kept for a whole handshake, the next client would wait for
/// the stalled ones' 60 s handshake timeout).
#[test]
fn clients_stalled_in_their_handshake_do_not_hold_up_others() {
    let pki = pki();
    let upstream = Upstream::start();
    let proxy = Proxy::builder(&pki, &upstream.url()).token(TOKEN).start();
    rt().block_on(async {
        let mut stalled = Vec::new();
        for i in 0..40 {
            let mut tcp = tokio::net::TcpStream::connect((proxy.host, proxy.port))
                .await
                .unwrap();
            if i % 2 == 1 {
                // A TLS record header announcing 512 bytes of ClientHello, and 4 of them.
                tcp.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc])
                    .await
                    .unwrap();
            }
            stalled.push(tcp);
        }
        let client = proxy.client(false);
        let answer = tokio::time::timeout(
            Duration::from_secs(20),
            post(
                &client,
                &proxy.url("/intake/v2/events"),
                &[("Authorization", &format!("Bearer {TOKEN}"))],
                "{\"metadata\":{}}\n",
            ),
        )
        .await
        .expect("a new client's request within 20 s, stalled handshakes around it");
        assert_eq!(answer.status, 202, "{}", answer.body);
        // The stalled clients were still mid-handshake all along.
        for tcp in &mut stalled {
            let mut byte = [0u8; 1];
            let read = tokio::time::timeout(Duration::from_millis(10), tcp.read(&mut byte)).await;
            assert!(read.is_err(), "a stalled handshake ended early: {read:?}");
        }
    });
}
