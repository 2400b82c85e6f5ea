//! What changed between two credential sets, for the audit log: credentials added, removed,
//! revoked, and those whose expiry passed. Names and ids only, never a secret.

use std::time::SystemTime;

use super::store::CredentialState;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Added,
    Removed,
    Revoked,
    Expired,
}

impl Change {
    pub fn label(self) -> &'static str {
        match self {
            Change::Added => "added",
            Change::Removed => "removed",
            Change::Revoked => "revoked",
            Change::Expired => "expired",
        }
    }
}

/// Changes from `before` to `after` (both sorted by kind and name, as `describe` gives).
pub fn changes<'a>(
    before: &[CredentialState],
    after: &'a [CredentialState],
    removed: &mut Vec<CredentialState>,
) -> Vec<(Change, &'a CredentialState)> {
    let find = |list: &[CredentialState], c: &CredentialState| {
        list.iter()
            .position(|o| o.kind == c.kind && o.name == c.name)
    };
    let mut out = Vec::new();
    for c in after {
        match find(before, c) {
            None => out.push((Change::Added, c)),
            Some(i) if c.revoked && !before[i].revoked => out.push((Change::Revoked, c)),
            Some(_) => {}
        }
    }
    removed.extend(before.iter().filter(|c| find(after, c).is_none()).cloned());
    out
}

/// Credentials whose expiry fell in `(since, now]`.
pub fn expired_between(
    states: &[CredentialState],
    since: SystemTime,
    now: SystemTime,
) -> impl Iterator<Item = &CredentialState> {
    states
        .iter()
        .filter(move |c| c.expires_at.is_some_and(|e| e > since && e <= now))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn key(name: &str, revoked: bool, expires_at: Option<SystemTime>) -> CredentialState {
        CredentialState {
            kind: "api_key",
            name: name.into(),
            revoked,
            expires_at,
        }
    }

    #[test]
    fn additions_revocations_removals_and_expiries() {
        let now = SystemTime::now();
        let before = vec![
            key("a", false, None),
            key("b", false, None),
            key("gone", false, None),
        ];
        let after = vec![
            key("a", false, None),
            key("b", true, None),
            key("c", false, Some(now + Duration::from_secs(60))),
        ];
        let mut removed = Vec::new();
        let got: Vec<(Change, &str)> = changes(&before, &after, &mut removed)
            .into_iter()
            .map(|(c, s)| (c, s.name.as_str()))
            .collect();
        assert_eq!(got, [(Change::Revoked, "b"), (Change::Added, "c")]);
        assert_eq!(removed, [key("gone", false, None)]);
        let later = now + Duration::from_secs(61);
        let expired: Vec<&str> = expired_between(&after, now, later)
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(expired, ["c"]);
        assert_eq!(expired_between(&after, later, later).count(), 0);
    }
}
