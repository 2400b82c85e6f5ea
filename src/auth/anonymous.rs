//! What anonymous callers may do (APM Server's `auth.anonymous`): which endpoints, and which
//! agent and service names their events may carry. Also the service binding of API keys,
//! which uses the same names. Plain data and functions: the names come from the streaming
//! intake reader or the agent-config query.

use std::collections::HashSet;

use crate::config::Config;

/// `auth.anonymous` when enabled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnonymousPolicy {
    endpoints: HashSet<String>,
    /// Empty = any.
    allow_agent: HashSet<String>,
    /// Empty = any.
    allow_service: HashSet<String>,
}

impl AnonymousPolicy {
    /// `None` when anonymous access is off.
    pub fn from_config(config: &Config) -> Option<AnonymousPolicy> {
        if !config.anonymous_enabled() {
            return None;
        }
        let a = &config.auth.anonymous;
        Some(AnonymousPolicy {
            endpoints: a.allow_endpoints.iter().cloned().collect(),
            allow_agent: a.allow_agent.iter().cloned().collect(),
            allow_service: a.allow_service.iter().cloned().collect(),
        })
    }

    pub fn allows_endpoint(&self, path: &str) -> bool {
        self.endpoints.contains(path)
    }

    /// APM Server's check for event ingest: the agent, then the service (exact matches).
    pub fn check_event(&self, agent: Option<&str>, service: Option<&str>) -> Result<(), String> {
        let agent = agent.unwrap_or("");
        if !self.allow_agent.is_empty() && !self.allow_agent.contains(agent) {
            return Err(format!(
                "unauthorized: anonymous access not permitted for agent {}",
                go_quote(agent)
            ));
        }
        self.check_service(service)
    }

    /// Agent config queries name only a service.
    pub fn check_service(&self, service: Option<&str>) -> Result<(), String> {
        let service = service.unwrap_or("");
        if !self.allow_service.is_empty() && !self.allow_service.contains(service) {
            return Err(format!(
                "unauthorized: anonymous access not permitted for service {}",
                go_quote(service)
            ));
        }
        Ok(())
    }
}

/// An API key's `services` binding (empty = any service).
pub fn check_key_service(services: &[String], service: Option<&str>) -> Result<(), String> {
    let service = service.unwrap_or("");
    if services.is_empty() || services.iter().any(|s| s == service) {
        return Ok(());
    }
    Err(format!(
        "unauthorized: API Key not permitted for service {}",
        go_quote(service)
    ))
}

/// Go's `%q` for the names in messages: a JSON string is the same for everything a name
/// sensibly holds, and it escapes whatever a hostile client put in.
fn go_quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(extra: &str) -> AnonymousPolicy {
        let text = format!("[auth]\nsecret_token = \"t\"\n[rum]\nenabled = true\n{extra}");
        AnonymousPolicy::from_config(&Config::parse(&text).unwrap()).unwrap()
    }

    #[test]
    fn defaults_follow_apm_server() {
        let p = policy("");
        assert!(p.allows_endpoint("/intake/v2/rum/events"));
        assert!(p.allows_endpoint("/intake/v3/rum/events"));
        assert!(p.allows_endpoint("/config/v1/rum/agents"));
        assert!(!p.allows_endpoint("/intake/v2/events"));
        assert!(p.check_event(Some("rum-js"), Some("anything")).is_ok());
        assert!(p.check_event(Some("js-base"), None).is_ok());
        assert_eq!(
            p.check_event(Some("go"), Some("svc")).unwrap_err(),
            "unauthorized: anonymous access not permitted for agent \"go\""
        );
        assert!(p.check_event(None, Some("svc")).is_err());
    }

    #[test]
    fn service_allow_list_and_empty_lists() {
        let p = policy("[auth.anonymous]\nallow_agent = []\nallow_service = [\"shop\"]\n");
        assert!(p.check_event(Some("anything"), Some("shop")).is_ok());
        assert_eq!(
            p.check_event(Some("rum-js"), Some("Shop")).unwrap_err(),
            "unauthorized: anonymous access not permitted for service \"Shop\""
        );
        assert!(p.check_service(Some("shop")).is_ok());
        assert!(p.check_service(None).is_err());
    }

    #[test]
    fn anonymous_follows_rum_unless_set() {
        let off = Config::parse("[auth]\nsecret_token = \"t\"\n").unwrap();
        assert!(AnonymousPolicy::from_config(&off).is_none());
        let forced = Config::parse(
            "[auth]\nsecret_token = \"t\"\n[auth.anonymous]\nenabled = false\n[rum]\nenabled = true\n",
        )
        .unwrap();
        assert!(AnonymousPolicy::from_config(&forced).is_none());
    }

    #[test]
    fn service_bound_keys() {
        let bound = vec!["a".to_string(), "b".to_string()];
        assert!(check_key_service(&bound, Some("a")).is_ok());
        assert!(check_key_service(&[], Some("x")).is_ok());
        assert_eq!(
            check_key_service(&bound, Some("c\"")).unwrap_err(),
            "unauthorized: API Key not permitted for service \"c\\\"\""
        );
        assert!(check_key_service(&bound, None).is_err());
    }
}
