//! What changed between two credential sets, for the audit log: credentials added, removed,
//! revoked, and those whose expiry passed. Names and ids only, never a secret.

use std::time::{Duration, SystemTime};

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

/// Credentials that expire within this get a warning (the log, `check`, the lists).
pub const EXPIRY_WARNING: Duration = Duration::from_secs(14 * 24 * 3600);

/// Credentials still valid at `now` that expire within [`EXPIRY_WARNING`], with the time
/// left.
pub fn expiring_soon(
    states: &[CredentialState],
    now: SystemTime,
) -> impl Iterator<Item = (&CredentialState, Duration)> {
    states.iter().filter_map(move |c| {
        let left = c.expires_at?.duration_since(now).ok()?;
        (!c.revoked && !left.is_zero() && left <= EXPIRY_WARNING).then_some((c, left))
    })
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
    use crate::credential::CredentialKind;
    use std::time::Duration;

    fn key(name: &str, revoked: bool, expires_at: Option<SystemTime>) -> CredentialState {
        CredentialState {
            kind: CredentialKind::ApiKey,
            name: name.into(),
            display_name: format!("{name}-name"),
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

    #[test]
    fn credentials_expiring_within_two_weeks_are_flagged() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let day = Duration::from_secs(86_400);
        let state = |name: &str, expires: Option<SystemTime>, revoked| CredentialState {
            kind: CredentialKind::Token,
            name: name.into(),
            display_name: name.into(),
            revoked,
            expires_at: expires,
        };
        let states = [
            state("soon", Some(now + 3 * day), false),
            state("later", Some(now + 30 * day), false),
            state("gone", Some(now - day), false),
            state("revoked", Some(now + day), true),
            state("never", None, false),
        ];
        let flagged: Vec<(&str, Duration)> = expiring_soon(&states, now)
            .map(|(c, left)| (c.name.as_str(), left))
            .collect();
        assert_eq!(flagged, [("soon", 3 * day)]);
    }
}
