//! Open TCP connections, read from `/proc`: for `/metrics` when it is scraped (the sockets
//! whose inode is one of our descriptors, in state ESTABLISHED), and for the connection caps.
//! Counting them here costs nothing per connection (Pingora has no connection-close hook to
//! count with).

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// (connections to `local_port`, connections to any of `remotes`).
pub fn count_established(local_port: u16, remotes: &[SocketAddr]) -> Option<(i64, i64)> {
    let ours = socket_inodes()?;
    let (mut inbound, mut outbound) = (0, 0);
    for table in ["/proc/self/net/tcp", "/proc/self/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let Some(entry) = parse_line(line) else {
                continue;
            };
            if entry.state != 0x01 || !ours.contains(&entry.inode) {
                continue;
            }
            if entry.local.port() == local_port {
                inbound += 1;
            }
            if remotes.iter().any(|r| same_endpoint(entry.remote, *r)) {
                outbound += 1;
            }
        }
    }
    Some((inbound, outbound))
}

/// The peers of the ESTABLISHED connections to `local_port`, IPv4-mapped addresses as IPv4.
/// Read from the network namespace's tables without matching descriptors (a readlink per
/// open descriptor would cost milliseconds at 10 k connections): a socket on our listening
/// port is ours.
pub fn inbound_peers(local_port: u16) -> Option<Vec<IpAddr>> {
    let mut peers = Vec::new();
    let mut readable = false;
    for table in ["/proc/self/net/tcp", "/proc/self/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        readable = true;
        peers.extend(
            text.lines()
                .skip(1)
                .filter_map(parse_line)
                .filter(|e| e.state == 0x01 && e.local.port() == local_port)
                .map(|e| canonical(e.remote.ip())),
        );
    }
    readable.then_some(peers)
}

fn socket_inodes() -> Option<HashSet<u64>> {
    let dir = std::fs::read_dir("/proc/self/fd").ok()?;
    Some(
        dir.flatten()
            .filter_map(|e| std::fs::read_link(e.path()).ok())
            .filter_map(|target| {
                let t = target.to_str()?;
                t.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
            })
            .collect(),
    )
}

/// IPv4-mapped IPv6 addresses compare equal to their IPv4 form.
fn same_endpoint(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port() && canonical(a.ip()) == canonical(b.ip())
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

struct Entry {
    local: SocketAddr,
    remote: SocketAddr,
    state: u8,
    inode: u64,
}

fn parse_line(line: &str) -> Option<Entry> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    Some(Entry {
        local: parse_addr(fields.get(1)?)?,
        remote: parse_addr(fields.get(2)?)?,
        state: u8::from_str_radix(fields.get(3)?, 16).ok()?,
        inode: fields.get(9)?.parse().ok()?,
    })
}

/// `0100007F:1F90` (IPv4) or 32 hex digits (IPv6): each 32-bit word is the address's bytes
/// as they lie in memory, printed as a native-endian number; then the port in hex.
fn parse_addr(text: &str) -> Option<SocketAddr> {
    let (ip, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let words: Vec<u32> = (0..ip.len() / 8)
        .map(|i| u32::from_str_radix(&ip[i * 8..i * 8 + 8], 16))
        .collect::<Result<_, _>>()
        .ok()?;
    let ip = match words.as_slice() {
        [w] => IpAddr::V4(Ipv4Addr::from(w.to_ne_bytes())),
        [a, b, c, d] => {
            let mut bytes = [0u8; 16];
            for (i, w) in [a, b, c, d].into_iter().enumerate() {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_addresses_decode() {
        assert_eq!(
            parse_addr("0100007F:1F90"),
            Some("127.0.0.1:8080".parse().unwrap())
        );
        assert_eq!(
            parse_addr("00000000000000000000000001000000:0050"),
            Some("[::1]:80".parse().unwrap())
        );
        assert_eq!(
            parse_addr("0000000000000000FFFF00000100007F:0050"),
            Some("[::ffff:127.0.0.1]:80".parse().unwrap())
        );
        assert!(same_endpoint(
            "[::ffff:127.0.0.1]:80".parse().unwrap(),
            "127.0.0.1:80".parse().unwrap()
        ));
    }

    #[test]
    fn our_own_connection_is_counted() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = std::net::TcpStream::connect(addr).unwrap();
        let _server = listener.accept().unwrap();
        let (inbound, outbound) = count_established(addr.port(), &[addr]).unwrap();
        assert_eq!((inbound, outbound), (1, 1));
    }
}
