//! The per-event rules the proxy enforces on intake bodies it reads: anonymous agent and
//! service allow-lists, and the service binding of API keys. An [`EventVisitor`] for the
//! streaming [`IntakeReader`](super::IntakeReader): each event's names are the metadata's,
//! with the event's own `context.service` overrides on top, as APM Server resolves them.

use super::decode::Names;
use super::reader::EventVisitor;
use crate::admission::{NameRefused, NameRules};

#[derive(Debug)]
pub struct EventRules {
    rules: NameRules,
    metadata: Names,
}

impl EventRules {
    pub fn new(rules: NameRules) -> Self {
        EventRules {
            rules,
            metadata: Names::default(),
        }
    }
}

impl EventVisitor for EventRules {
    type Reject = NameRefused;

    fn metadata(&mut self, names: Names) -> Result<(), NameRefused> {
        self.rules
            .check_event(names.agent.as_deref(), names.service.as_deref())?;
        self.metadata = names;
        Ok(())
    }

    fn event(&mut self, overrides: Names) -> Result<(), NameRefused> {
        if overrides.agent.is_some() || overrides.service.is_some() {
            let agent = overrides
                .agent
                .as_deref()
                .or(self.metadata.agent.as_deref());
            let service = overrides
                .service
                .as_deref()
                .or(self.metadata.service.as_deref());
            self.rules.check_event(agent, service)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::AnonymousPolicy;
    use crate::intake::decode::Format;
    use crate::intake::reader::{IntakeReader, ScanError};
    use std::sync::Arc;

    fn anonymous(allow_service: &[&str]) -> NameRules {
        let strings = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        NameRules::Anonymous(Arc::new(AnonymousPolicy::new(
            &strings(&["/intake/v2/rum/events"]),
            &strings(&["rum-js", "js-base"]),
            &strings(allow_service),
        )))
    }

    fn scan(rules: NameRules, body: &str) -> Result<u64, ScanError<String>> {
        let format = if body.starts_with("{\"m\"") {
            Format::V3
        } else {
            Format::V2
        };
        let mut reader = IntakeReader::new(None, format, 1 << 20, EventRules::new(rules));
        let fed = reader.feed(body.as_bytes()).and_then(|()| reader.finish());
        fed.map(|()| reader.events()).map_err(|e| match e {
            ScanError::Rejected(r) => ScanError::Rejected(r.to_string()),
            ScanError::EventTooLarge => ScanError::EventTooLarge,
            ScanError::MissingMetadata => ScanError::MissingMetadata,
            ScanError::InvalidJson => ScanError::InvalidJson,
            ScanError::Decompression => ScanError::Decompression,
            ScanError::Ambiguous => ScanError::Ambiguous,
            ScanError::TooLarge => ScanError::TooLarge,
        })
    }

    const V2_META: &str =
        r#"{"metadata":{"service":{"name":"shop","agent":{"name":"rum-js","version":"5"}}}}"#;

    #[test]
    fn metadata_and_overrides_are_checked() {
        let rules = anonymous(&["shop"]);
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
