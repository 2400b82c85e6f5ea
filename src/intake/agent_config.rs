//! Agent configuration requests (`/config/v1/agents`, `/config/v1/rum/agents`): the service a
//! query names — in the query string as Go's `url.ParseQuery` reads it, or in a POSTed JSON
//! body — checked against the caller's name rules, and the answer trimmed for anonymous
//! callers to what APM Server gives them (`transaction_sample_rate` only).

use bytes::Bytes;

use crate::admission::{NameRules, Rejection, Reply};

/// Largest agent-config answer the proxy trims for anonymous callers.
pub const ANSWER_LIMIT: usize = 64 * 1024;

/// The first value of `name` in a query string, decoded as Go's `url.ParseQuery` does:
/// pairs split on `&`, a pair containing `;` dropped (Go ≥ 1.17), `+` and `%XX` decoded.
pub fn query_param(query: &str, name: &str) -> Option<String> {
    query
        .split('&')
        .filter(|pair| !pair.contains(';'))
        .find_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode_component(key) == name).then(|| decode_component(value))
        })
}

fn decode_component(text: &str) -> String {
    let plus_as_space = text.replace('+', " ");
    percent_encoding::percent_decode_str(&plus_as_space)
        .decode_utf8_lossy()
        .into_owned()
}

/// The service a POSTed query names (`{"service": {"name": …}}`).
pub fn service_in_body(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Query {
        service: Option<Service>,
    }
    #[derive(serde::Deserialize)]
    struct Service {
        name: Option<String>,
    }
    serde_json::from_slice::<Query>(body)
        .ok()
        .and_then(|q| q.service)
        .and_then(|s| s.name)
}

/// May a caller under `rules` ask for `service`'s configuration?
pub fn check_service(rules: &NameRules, service: Option<&str>) -> Result<(), Reply> {
    rules
        .check_service(service)
        .map_err(|refused| Reply::plain(Rejection::NameNotPermitted(refused)))
}

/// Collects an upstream answer for an anonymous caller and trims it at the end.
#[derive(Debug, Default)]
pub struct AnswerTrimmer {
    answer: Vec<u8>,
    overflowed: bool,
}

impl AnswerTrimmer {
    /// Take one chunk of the answer; at the end, the trimmed answer.
    pub fn push(&mut self, chunk: Option<Bytes>, end_of_stream: bool) -> Option<Bytes> {
        if let Some(chunk) = chunk {
            if self.answer.len() + chunk.len() <= ANSWER_LIMIT && !self.overflowed {
                self.answer.extend_from_slice(&chunk);
            } else {
                // Not an agent configuration: answer with no settings rather than all.
                self.overflowed = true;
                self.answer.clear();
            }
        }
        end_of_stream.then(|| trim(&self.answer))
    }
}

/// APM Server gives anonymous callers only `transaction_sample_rate` of an agent config.
pub fn trim(answer: &[u8]) -> Bytes {
    let pretty = answer.starts_with(b"{\n");
    let mut kept = serde_json::Map::new();
    if let Ok(serde_json::Value::Object(mut settings)) = serde_json::from_slice(answer) {
        if let Some(rate) = settings.remove("transaction_sample_rate") {
            kept.insert("transaction_sample_rate".into(), rate);
        }
    }
    let value = serde_json::Value::Object(kept);
    let mut text = if pretty {
        serde_json::to_vec_pretty(&value)
    } else {
        serde_json::to_vec(&value)
    }
    .unwrap_or_else(|_| b"{}".to_vec());
    text.push(b'\n');
    Bytes::from(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::{AnonymousPolicy, NameRefused};
    use std::sync::Arc;

    #[test]
    fn queries_decode_as_go_does() {
        assert_eq!(
            query_param("a=1&service.name=my+svc%21", "service.name").as_deref(),
            Some("my svc!")
        );
        assert_eq!(
            query_param("service.name=sh%6Fp&x=1", "service.name").as_deref(),
            Some("shop")
        );
        assert_eq!(query_param("service.namex=1", "service.name"), None);
        // Go drops a pair holding ';' — the proxy must read the same value as APM Server.
        assert_eq!(
            query_param("x=1;service.name=shop&service.name=evil", "service.name").as_deref(),
            Some("evil")
        );
    }

    #[test]
    fn the_service_of_a_query_is_checked_against_the_rules() {
        let policy = AnonymousPolicy::new(&[], &[], &["shop".into()]);
        let rules = NameRules::Anonymous(Arc::new(policy));
        assert!(check_service(&rules, Some("shop")).is_ok());
        let refused = check_service(&rules, Some("ads")).unwrap_err();
        assert_eq!(
            refused.rejection,
            Rejection::NameNotPermitted(NameRefused::AnonymousService("ads".into()))
        );
        assert!(check_service(&rules, None).is_err());
        let bound = NameRules::BoundKey(Arc::from(vec!["shop".to_string()]));
        assert!(check_service(
            &bound,
            service_in_body(br#"{"service":{"name":"shop"}}"#).as_deref()
        )
        .is_ok());
        assert!(check_service(
            &bound,
            service_in_body(br#"{"service":{"name":"ads"}}"#).as_deref()
        )
        .is_err());
        assert_eq!(service_in_body(b"not json"), None);
    }

    #[test]
    fn anonymous_agent_config_keeps_only_the_sample_rate() {
        let full = br#"{"sanitize_field_names":"foo,bar,baz","transaction_sample_rate":"0.1"}"#;
        assert_eq!(&trim(full)[..], b"{\"transaction_sample_rate\":\"0.1\"}\n");
        assert_eq!(&trim(b"{\n  \"capture_body\": \"all\"\n}\n")[..], b"{}\n");
        assert_eq!(&trim(b"not json")[..], b"{}\n");
    }

    #[test]
    fn an_oversized_answer_becomes_no_settings() {
        let mut t = AnswerTrimmer::default();
        assert_eq!(
            t.push(Some(Bytes::from(vec![b' '; ANSWER_LIMIT])), false),
            None
        );
        let end = t.push(
            Some(Bytes::from_static(b"{\"transaction_sample_rate\":1}")),
            true,
        );
        assert_eq!(end.as_deref(), Some(&b"{}\n"[..]));
    }
}
