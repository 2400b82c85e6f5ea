//! Who is still using which credential: per secret token (by name), API key (by id) and
//! client-certificate identity (by name), the last time it was used and from which client
//! IP, the requests the proxy accepted and refused with it and the events it forwarded.
//! Kept in memory (one lookup and a few atomic adds per request), saved by the running
//! proxy to a state file ([`state_file`]) that `apikey list` and `token list` read and that
//! the next start continues from. Never a secret.

mod settings;
pub mod state_file;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::auth::Identity;

pub use settings::UsageSettings;

pub use crate::credential::CredentialKind;

/// Where a kind's credentials are kept in the book.
fn index(kind: CredentialKind) -> usize {
    kind as usize
}

/// One credential's usage, as saved and shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRecord {
    pub kind: CredentialKind,
    /// The token's or certificate identity's name, the API key's id.
    pub name: String,
    /// Seconds since the Unix epoch.
    pub last_used: Option<u64>,
    pub last_client_ip: Option<IpAddr>,
    pub requests_accepted: u64,
    pub requests_refused: u64,
    pub events_accepted: u64,
}

/// JWT identities tracked at most (the first ones seen; each is a few hundred bytes).
pub const MAX_JWT_IDENTITIES: usize = 10_000;

/// One credential's live counters.
#[derive(Default)]
struct Tally {
    accepted: AtomicU64,
    refused: AtomicU64,
    events: AtomicU64,
    last_used: AtomicU64,
    last_ip: Mutex<Option<IpAddr>>,
}

/// Every credential's usage since tracking began (the state file's history included).
#[derive(Default)]
pub struct UsageBook {
    /// By kind, then by name: a lookup borrows the identity's name, no allocation.
    kinds: [RwLock<HashMap<Arc<str>, Arc<Tally>>>; CredentialKind::ALL.len()],
    changed: AtomicBool,
}

impl UsageBook {
    /// A book that continues from saved `records`.
    pub fn with_history(records: Vec<UsageRecord>) -> UsageBook {
        let book = UsageBook::default();
        for r in records {
            let tally = Tally {
                accepted: r.requests_accepted.into(),
                refused: r.requests_refused.into(),
                events: r.events_accepted.into(),
                last_used: r.last_used.unwrap_or(0).into(),
                last_ip: Mutex::new(r.last_client_ip),
            };
            if let Ok(mut map) = book.kinds[index(r.kind)].write() {
                map.insert(r.name.into(), Arc::new(tally));
            }
        }
        book
    }

    /// A request made with `who`'s credential ended: accepted (forwarded, with `events`
    /// events) or refused by the proxy. Anonymous requests are not tracked.
    pub fn record(&self, who: &Identity, accepted: bool, events: u64, ip: IpAddr, now: SystemTime) {
        let Some((kind, name)) = who.credential() else {
            return;
        };
        let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let count = |tally: &Tally| {
            if accepted {
                tally.accepted.fetch_add(1, Ordering::Relaxed);
                tally.events.fetch_add(events, Ordering::Relaxed);
            } else {
                tally.refused.fetch_add(1, Ordering::Relaxed);
            }
            tally.last_used.fetch_max(secs, Ordering::Relaxed);
            if let Ok(mut last) = tally.last_ip.lock() {
                *last = Some(ip);
            }
        };
        let map = &self.kinds[index(kind)];
        let known = map
            .read()
            .ok()
            .and_then(|m| m.get(&**name).map(|t| count(t)));
        if known.is_none() {
            // First use since the start (and not in the history): one write lock per credential.
            // JWT identities come from the identity provider, not from this config: at most
            // MAX_JWT_IDENTITIES of them are tracked (a RUM app's logged-in users are many).
            if let Ok(mut m) = map.write() {
                let full = kind == CredentialKind::Jwt && m.len() >= MAX_JWT_IDENTITIES;
                if !full || m.contains_key(&**name) {
                    count(m.entry(name.clone()).or_default());
                }
            }
        }
        self.changed.store(true, Ordering::Relaxed);
    }

    /// Every credential's usage, by kind and name.
    pub fn snapshot(&self) -> Vec<UsageRecord> {
        let mut all = Vec::new();
        for kind in CredentialKind::ALL {
            let Ok(map) = self.kinds[index(kind)].read() else {
                continue;
            };
            for (name, t) in map.iter() {
                let last_used = t.last_used.load(Ordering::Relaxed);
                all.push(UsageRecord {
                    kind,
                    name: name.to_string(),
                    last_used: (last_used > 0).then_some(last_used),
                    last_client_ip: t.last_ip.lock().ok().and_then(|ip| *ip),
                    requests_accepted: t.accepted.load(Ordering::Relaxed),
                    requests_refused: t.refused.load(Ordering::Relaxed),
                    events_accepted: t.events.load(Ordering::Relaxed),
                });
            }
        }
        all.sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
        all
    }

    /// Something is still to be saved (a save that failed).
    pub fn mark_changed(&self) {
        self.changed.store(true, Ordering::Relaxed);
    }

    /// Whether anything was recorded since the last call (the saver writes only then).
    pub fn take_changed(&self) -> bool {
        self.changed.swap(false, Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn token(name: &str) -> Identity {
        Identity::SecretToken {
            name: name.into(),
            upstream: None,
            rate_limit: None,
        }
    }

    #[test]
    fn counts_per_credential_continue_from_history() {
        let ip: IpAddr = "192.0.2.9".parse().unwrap();
        let t0 = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let book = UsageBook::with_history(vec![UsageRecord {
            kind: CredentialKind::Token,
            name: "ci".into(),
            last_used: Some(1_600_000_000),
            last_client_ip: None,
            requests_accepted: 10,
            requests_refused: 1,
            events_accepted: 100,
        }]);
        assert!(!book.take_changed());
        book.record(&token("ci"), true, 5, ip, t0);
        book.record(&token("ci"), false, 0, ip, t0);
        book.record(&token("new"), true, 0, ip, t0);
        book.record(&Identity::Anonymous, true, 3, ip, t0);
        assert!(book.take_changed());
        assert!(!book.take_changed());
        let all = book.snapshot();
        assert_eq!(all.len(), 2, "anonymous is not a credential: {all:?}");
        assert_eq!(
            all[0],
            UsageRecord {
                kind: CredentialKind::Token,
                name: "ci".into(),
                last_used: Some(1_700_000_000),
                last_client_ip: Some(ip),
                requests_accepted: 11,
                requests_refused: 2,
                events_accepted: 105,
            }
        );
        assert_eq!(all[1].name, "new");
        // A clock that steps back never moves "last used" back.
        book.record(&token("ci"), true, 0, ip, t0 - Duration::from_secs(60));
        assert_eq!(book.snapshot()[0].last_used, Some(1_700_000_000));
    }
}
