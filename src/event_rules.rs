//! The per-event rules the proxy enforces on intake bodies it reads: anonymous agent and
//! service allow-lists, and the service binding of API keys. An [`EventVisitor`] for the
//! streaming [`crate::intake::IntakeReader`]: each event's names are the metadata's, with
//! the event's own `context.service` overrides on top, as APM Server resolves them.

use std::sync::Arc;

use crate::auth::anonymous::{check_key_service, AnonymousPolicy};
use crate::intake::{EventVisitor, Names};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameRules {
    Anonymous(Arc<AnonymousPolicy>),
    /// An API key restricted to these services.
    BoundKey(Arc<[String]>),
}

impl NameRules {
    /// An agent-config query names only a service.
    pub fn check_service(&self, service: Option<&str>) -> Result<(), String> {
        match self {
            NameRules::Anonymous(policy) => policy.check_service(service),
            NameRules::BoundKey(services) => check_key_service(services, service),
        }
    }

    fn check(&self, agent: Option<&str>, service: Option<&str>) -> Result<(), String> {
        match self {
            NameRules::Anonymous(policy) => policy.check_event(agent, service),
            NameRules::BoundKey(services) => check_key_service(services, service),
        }
    }
}

#[derive(Debug)]
pub struct EventRules {
    rules: NameRules,
    metadata: Names,
    /// Events that passed the rules so far.
    events: u64,
}

impl EventRules {
    pub fn new(rules: NameRules) -> Self {
        EventRules {
            rules,
            metadata: Names::default(),
            events: 0,
        }
    }

    pub fn events(&self) -> u64 {
        self.events
    }
}

impl EventVisitor for EventRules {
    /// APM Server's 403 message.
    type Reject = String;

    fn metadata(&mut self, names: Names) -> Result<(), String> {
        self.rules
            .check(names.agent.as_deref(), names.service.as_deref())?;
        self.metadata = names;
        Ok(())
    }

    fn event(&mut self, overrides: Names) -> Result<(), String> {
        if overrides.agent.is_some() || overrides.service.is_some() {
            let agent = overrides
                .agent
                .as_deref()
                .or(self.metadata.agent.as_deref());
            let service = overrides
                .service
                .as_deref()
                .or(self.metadata.service.as_deref());
            self.rules.check(agent, service)?;
        }
        self.events += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::intake::{IntakeReader, ScanError};

    fn anonymous(extra: &str) -> NameRules {
        let text = format!("[auth]\nsecret_token = \"t\"\n[rum]\nenabled = true\n{extra}");
        NameRules::Anonymous(Arc::new(
            AnonymousPolicy::from_config(&Config::parse(&text).unwrap()).unwrap(),
        ))
    }

    fn scan(rules: NameRules, body: &str) -> Result<u64, ScanError<String>> {
        let mut reader = IntakeReader::new(None, 1 << 20, EventRules::new(rules));
        reader.feed(body.as_bytes())?;
        Ok(reader.finish()?.events())
    }

    const V2_META: &str =
        r#"{"metadata":{"service":{"name":"shop","agent":{"name":"rum-js","version":"5"}}}}"#;

    #[test]
    fn metadata_and_overrides_are_checked() {
        let rules = anonymous("[auth.anonymous]\nallow_service = [\"shop\"]\n");
        let ok = format!("{V2_META}\n{{\"transaction\":{{}}}}\n{{\"span\":{{}}}}\n");
        assert_eq!(scan(rules.clone(), &ok), Ok(2));
        let bad = format!(
            "{V2_META}\n{{\"transaction\":{{}}}}\n{{\"error\":{{\"context\":{{\"service\":{{\"name\":\"other\"}}}}}}}}\n"
        );
        assert_eq!(
            scan(rules.clone(), &bad),
            Err(ScanError::Rejected(
                "unauthorized: anonymous access not permitted for service \"other\"".into()
            ))
        );
        let v3 = "{\"m\":{\"se\":{\"n\":\"shop\",\"a\":{\"n\":\"go\"}}}}\n";
        assert_eq!(
            scan(rules, v3),
            Err(ScanError::Rejected(
                "unauthorized: anonymous access not permitted for agent \"go\"".into()
            ))
        );
    }

    #[test]
    fn an_override_of_the_agent_alone_keeps_the_metadata_service() {
        let rules = NameRules::BoundKey(Arc::from(vec!["shop".to_string()]));
        let body = format!(
            "{V2_META}\n{{\"transaction\":{{\"context\":{{\"service\":{{\"agent\":{{\"name\":\"x\"}}}}}}}}}}\n"
        );
        assert_eq!(scan(rules.clone(), &body), Ok(1));
        let v3 = "{\"m\":{\"se\":{\"n\":\"shop\"}}}\n{\"x\":{\"c\":{\"se\":{\"n\":\"ads\"}}}}\n";
        assert_eq!(
            scan(rules, v3),
            Err(ScanError::Rejected(
                "unauthorized: API Key not permitted for service \"ads\"".into()
            ))
        );
    }
}
