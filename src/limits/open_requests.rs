//! A cap on the anonymous requests one client IP may have open at once, so a single browser
//! (or a script posing as many) cannot hold the proxy's connections and upstream slots.
//! A slot is released when its [`Slot`] is dropped, i.e. when the request ends however it
//! ends. Memory is bounded by the number of requests in flight.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

#[derive(Debug)]
pub struct OpenRequests {
    max: u32,
    open: Arc<Mutex<HashMap<IpAddr, u32>>>,
}

/// One open request; dropping it frees the slot.
#[derive(Debug)]
pub struct Slot {
    ip: IpAddr,
    open: Arc<Mutex<HashMap<IpAddr, u32>>>,
}

impl PartialEq for Slot {
    fn eq(&self, other: &Self) -> bool {
        self.ip == other.ip && Arc::ptr_eq(&self.open, &other.open)
    }
}

impl Eq for Slot {}

impl OpenRequests {
    pub fn new(max: u32) -> Self {
        OpenRequests {
            max,
            open: Arc::default(),
        }
    }

    /// A slot for `ip`, or `None` when it already has `max` requests open.
    pub fn acquire(&self, ip: IpAddr) -> Option<Slot> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(ip).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(Slot {
            ip,
            open: Arc::clone(&self.open),
        })
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.open.lock().unwrap().len()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_capped_per_ip_and_released_on_drop() {
        let limit = OpenRequests::new(2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let first = limit.acquire(a).unwrap();
        let _second = limit.acquire(a).unwrap();
        assert!(limit.acquire(a).is_none());
        let other = limit.acquire(b);
        assert!(other.is_some(), "another IP is not affected");
        drop(first);
        assert!(limit.acquire(a).is_some());
        drop(other);
        drop(_second);
        assert_eq!(limit.tracked(), 0, "idle IPs are forgotten");
    }
}
