//! Which agent and service names a caller may send events for: anonymous callers by
//! APM Server's `auth.anonymous` allow-lists, API keys by the services they are bound to.
//! Plain data and functions: the names come from the streaming intake reader or the
//! agent-config query.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

/// `auth.anonymous` when enabled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnonymousPolicy {
    endpoints: HashSet<String>,
    /// Empty = any.
    allow_agent: HashSet<String>,
    /// Empty = any.
    allow_service: HashSet<String>,
}

/// A name a caller may not use (APM Server's 403).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameRefused {
    AnonymousAgent(String),
    AnonymousService(String),
    KeyService(String),
}

impl NameRefused {
    pub fn label(&self) -> &'static str {
        match self {
            NameRefused::AnonymousAgent(_) => "anonymous_agent_not_allowed",
            NameRefused::AnonymousService(_) => "anonymous_service_not_allowed",
            NameRefused::KeyService(_) => "key_service_not_allowed",
        }
    }
}

impl fmt::Display for NameRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (who, what, name) = match self {
            NameRefused::AnonymousAgent(n) => ("anonymous access", "agent", n),
            NameRefused::AnonymousService(n) => ("anonymous access", "service", n),
            NameRefused::KeyService(n) => ("API Key", "service", n),
        };
        write!(
            f,
            "unauthorized: {who} not permitted for {what} {}",
            go_quote(name)
        )
    }
}

impl AnonymousPolicy {
    pub fn new(endpoints: &[String], allow_agent: &[String], allow_service: &[String]) -> Self {
        AnonymousPolicy {
            endpoints: endpoints.iter().cloned().collect(),
            allow_agent: allow_agent.iter().cloned().collect(),
            allow_service: allow_service.iter().cloned().collect(),
        }
    }

    pub fn allows_endpoint(&self, path: &str) -> bool {
        self.endpoints.contains(path)
    }

    /// APM Server's check for event ingest: the agent, then the service (exact matches).
    pub fn check_event(
        &self,
        agent: Option<&str>,
        service: Option<&str>,
    ) -> Result<(), NameRefused> {
        let agent = agent.unwrap_or("");
        if !self.allow_agent.is_empty() && !self.allow_agent.contains(agent) {
            return Err(NameRefused::AnonymousAgent(agent.to_string()));
        }
        self.check_service(service)
    }

    /// Agent config queries name only a service.
    pub fn check_service(&self, service: Option<&str>) -> Result<(), NameRefused> {
        let service = service.unwrap_or("");
        if !self.allow_service.is_empty() && !self.allow_service.contains(service) {
            return Err(NameRefused::AnonymousService(service.to_string()));
        }
        Ok(())
    }
}

/// An API key's `services` binding (empty = any service).
pub fn check_key_service(services: &[String], service: Option<&str>) -> Result<(), NameRefused> {
    let service = service.unwrap_or("");
    if services.is_empty() || services.iter().any(|s| s == service) {
        return Ok(());
    }
    Err(NameRefused::KeyService(service.to_string()))
}

/// The names rules an admitted request's events must follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameRules {
    Anonymous(Arc<AnonymousPolicy>),
    /// An API key restricted to these services.
    BoundKey(Arc<[String]>),
    /// No name rule: the body is read only to count its events (a credential with an
    /// events rate limit).
    Any,
}

impl NameRules {
    /// An agent-config query names only a service.
    pub fn check_service(&self, service: Option<&str>) -> Result<(), NameRefused> {
        match self {
            NameRules::Anonymous(policy) => policy.check_service(service),
            NameRules::BoundKey(services) => check_key_service(services, service),
            NameRules::Any => Ok(()),
        }
    }

    /// An event's resolved agent and service.
    pub fn check_event(
        &self,
        agent: Option<&str>,
        service: Option<&str>,
    ) -> Result<(), NameRefused> {
        match self {
            NameRules::Anonymous(policy) => policy.check_event(agent, service),
            NameRules::BoundKey(services) => check_key_service(services, service),
            NameRules::Any => Ok(()),
        }
    }

    pub fn is_anonymous(&self) -> bool {
        matches!(self, NameRules::Anonymous(_))
    }
}

/// Go's `%q` for the names in messages: a JSON string is the same for everything a name
/// sensibly holds, and it escapes whatever a hostile client put in.
fn go_quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn rum_defaults(allow_agent: &[&str], allow_service: &[&str]) -> AnonymousPolicy {
        AnonymousPolicy::new(
            &strings(&[
                "/intake/v2/rum/events",
                "/intake/v3/rum/events",
                "/config/v1/rum/agents",
            ]),
            &strings(allow_agent),
            &strings(allow_service),
        )
    }

    #[test]
    fn defaults_follow_apm_server() {
        let p = rum_defaults(&["rum-js", "js-base"], &[]);
        assert!(p.allows_endpoint("/intake/v2/rum/events"));
        assert!(p.allows_endpoint("/intake/v3/rum/events"));
        assert!(p.allows_endpoint("/config/v1/rum/agents"));
        assert!(!p.allows_endpoint("/intake/v2/events"));
        assert!(p.check_event(Some("rum-js"), Some("anything")).is_ok());
        assert!(p.check_event(Some("js-base"), None).is_ok());
        assert_eq!(
            p.check_event(Some("go"), Some("svc"))
                .unwrap_err()
                .to_string(),
            "unauthorized: anonymous access not permitted for agent \"go\""
        );
        assert!(p.check_event(None, Some("svc")).is_err());
    }

    #[test]
    fn service_allow_list_and_empty_lists() {
        let p = rum_defaults(&[], &["shop"]);
        assert!(p.check_event(Some("anything"), Some("shop")).is_ok());
        assert_eq!(
            p.check_event(Some("rum-js"), Some("Shop"))
                .unwrap_err()
                .to_string(),
            "unauthorized: anonymous access not permitted for service \"Shop\""
        );
        assert!(p.check_service(Some("shop")).is_ok());
        assert!(p.check_service(None).is_err());
    }

    #[test]
    fn service_bound_keys() {
        let bound = strings(&["a", "b"]);
        assert!(check_key_service(&bound, Some("a")).is_ok());
        assert!(check_key_service(&[], Some("x")).is_ok());
        assert_eq!(
            check_key_service(&bound, Some("c\""))
                .unwrap_err()
                .to_string(),
            "unauthorized: API Key not permitted for service \"c\\\"\""
        );
        assert!(check_key_service(&bound, None).is_err());
    }
}
