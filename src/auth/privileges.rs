//! The three things an APM credential can be allowed to do, and sets of them.

/// The three things an APM credential can be allowed to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    EventWrite,
    AgentConfigRead,
    SourcemapWrite,
}

impl Action {
    pub const ALL: [Action; 3] = [
        Action::EventWrite,
        Action::AgentConfigRead,
        Action::SourcemapWrite,
    ];

    /// The privilege name, as in Elasticsearch's `apm` application privileges.
    pub const fn name(self) -> &'static str {
        match self {
            Action::EventWrite => "event:write",
            Action::AgentConfigRead => "config_agent:read",
            Action::SourcemapWrite => "sourcemap:write",
        }
    }

    const fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// A set of [`Action`]s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Privileges(u8);

#[derive(Debug, thiserror::Error)]
#[error("unknown privilege {0:?}: use event:write, config_agent:read or sourcemap:write")]
pub struct UnknownPrivilege(pub String);

impl Privileges {
    pub const ALL: Privileges = Privileges(0b111);
    /// What APM Server lets anonymous callers do (where anonymous access is open).
    pub const ANONYMOUS: Privileges =
        Privileges(Action::EventWrite.bit() | Action::AgentConfigRead.bit());

    pub fn allows(self, action: Action) -> bool {
        self.0 & action.bit() != 0
    }

    pub fn parse_list<S: AsRef<str>>(names: &[S]) -> Result<Privileges, UnknownPrivilege> {
        names.iter().try_fold(Privileges(0), |acc, name| {
            let name = name.as_ref().trim();
            Action::ALL
                .iter()
                .find(|a| a.name() == name)
                .map(|a| Privileges(acc.0 | a.bit()))
                .ok_or_else(|| UnknownPrivilege(name.to_string()))
        })
    }

    /// The privileges both sets hold.
    pub fn intersect(self, other: Privileges) -> Privileges {
        Privileges(self.0 & other.0)
    }

    /// The known privileges among `names`; unknown names are left out (a token's `scope`
    /// carries other applications' scopes too).
    pub fn known_in<'a>(names: impl IntoIterator<Item = &'a str>) -> Privileges {
        names.into_iter().fold(Privileges(0), |acc, name| {
            match Action::ALL.iter().find(|a| a.name() == name) {
                Some(a) => Privileges(acc.0 | a.bit()),
                None => acc,
            }
        })
    }

    pub fn names(self) -> Vec<&'static str> {
        Action::ALL
            .iter()
            .filter(|a| self.allows(**a))
            .map(|a| a.name())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn privilege_lists_parse_by_name() {
        let p = Privileges::parse_list(&["event:write", " sourcemap:write"]).unwrap();
        assert!(p.allows(Action::EventWrite) && p.allows(Action::SourcemapWrite));
        assert!(!p.allows(Action::AgentConfigRead));
        assert_eq!(p.names(), ["event:write", "sourcemap:write"]);
        assert_eq!(
            Privileges::parse_list(&["event:read"]).unwrap_err().to_string(),
            "unknown privilege \"event:read\": use event:write, config_agent:read or sourcemap:write"
        );
    }
}
