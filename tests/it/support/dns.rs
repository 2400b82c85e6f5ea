//! A DNS server on loopback for discovery tests: answers A queries for one name with the
//! addresses the test sets (TTL 0), and empty answers for anything else. It runs on a runtime
//! of its own and stops when dropped.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

pub struct DnsServer {
    pub addr: SocketAddr,
    records: Arc<Mutex<Vec<Ipv4Addr>>>,
    _runtime: tokio::runtime::Runtime,
}

impl DnsServer {
    /// Answer `name` (without the trailing dot) with `ips`.
    pub fn start(name: &str, ips: &[Ipv4Addr]) -> DnsServer {
        let runtime = super::server_runtime();
        let socket = runtime
            .block_on(tokio::net::UdpSocket::bind("127.0.0.1:0"))
            .unwrap();
        let addr = socket.local_addr().unwrap();
        let records = Arc::new(Mutex::new(ips.to_vec()));
        let (name, answers) = (name.to_ascii_lowercase(), records.clone());
        // Ends when the runtime is dropped with the server.
        runtime.spawn(async move {
            let mut buf = [0u8; 1500];
            while let Ok((len, from)) = socket.recv_from(&mut buf).await {
                let ips = answers.lock().unwrap().clone();
                if let Some(reply) = answer(&buf[..len], &name, &ips) {
                    let _ = socket.send_to(&reply, from).await;
                }
            }
        });
        DnsServer {
            addr,
            records,
            _runtime: runtime,
        }
    }

    /// From now on, answer with `ips`.
    pub fn set(&self, ips: &[Ipv4Addr]) {
        *self.records.lock().unwrap() = ips.to_vec();
    }
}

/// The response to one query: its question echoed, A records for `name`.
fn answer(query: &[u8], name: &str, ips: &[Ipv4Addr]) -> Option<Vec<u8>> {
    if query.len() < 12 {
        return None;
    }
    // The question: labels up to the root, then type and class.
    let mut pos = 12;
    let mut labels = Vec::new();
    loop {
        let len = *query.get(pos)? as usize;
        pos += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(query.get(pos..pos + len)?).to_ascii_lowercase());
        pos += len;
    }
    let qtype = u16::from_be_bytes([*query.get(pos)?, *query.get(pos + 1)?]);
    let question_end = pos + 4;
    let matches = qtype == 1 && labels.join(".") == name;
    let count = if matches { ips.len() as u16 } else { 0 };
    let mut reply = Vec::with_capacity(question_end + 16 * ips.len());
    reply.extend_from_slice(&query[0..2]); // id
    let rd = query[2] & 0x01;
    reply.extend_from_slice(&[0x80 | rd, 0x80]); // QR, RD copied, RA, NOERROR
    reply.extend_from_slice(&[0, 1]); // one question
    reply.extend_from_slice(&count.to_be_bytes());
    reply.extend_from_slice(&[0, 0, 0, 0]); // no authority, no additional
    reply.extend_from_slice(query.get(12..question_end)?);
    if matches {
        for ip in ips {
            reply.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4]);
            reply.extend_from_slice(&ip.octets());
        }
    }
    Some(reply)
}
