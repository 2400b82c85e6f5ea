//! An `apm-server.yml` as libbeat reads it: nested maps and dotted keys are the same setting
//! (`apm-server: {host: …}` and `apm-server.host: …`), so the file is flattened to one
//! dotted key per setting.

use std::collections::BTreeMap;

use yaml_rust2::{Yaml, YamlLoader};

/// A setting's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Text(String),
    Number(String),
    Bool(bool),
    List(Vec<Value>),
    Null,
}

impl Value {
    /// The value as libbeat would read it into a string.
    pub fn as_text(&self) -> Option<String> {
        match self {
            Value::Text(s) | Value::Number(s) => Some(s.clone()),
            Value::Bool(b) => Some(b.to_string()),
            Value::List(_) | Value::Null => None,
        }
    }

    /// A list; a single value is a list of one, as libbeat accepts.
    pub fn as_list(&self) -> Vec<String> {
        match self {
            Value::List(items) => items.iter().filter_map(Value::as_text).collect(),
            Value::Null => Vec::new(),
            other => other.as_text().into_iter().collect(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum YamlError {
    #[error("not valid YAML: {0}")]
    Syntax(String),
    #[error("the file's top level is not a map of settings")]
    NotAMap,
}

/// Every setting of the file, by dotted key. A key given twice (nested and dotted) keeps the
/// later one, as libbeat's merge does.
pub fn flatten(text: &str) -> Result<BTreeMap<String, Value>, YamlError> {
    let docs = YamlLoader::load_from_str(text).map_err(|e| YamlError::Syntax(e.to_string()))?;
    let mut out = BTreeMap::new();
    match docs.first() {
        None | Some(Yaml::Null) => {}
        Some(Yaml::Hash(_)) => walk("", &docs[0], &mut out),
        Some(_) => return Err(YamlError::NotAMap),
    }
    Ok(out)
}

fn walk(prefix: &str, node: &Yaml, out: &mut BTreeMap<String, Value>) {
    match node {
        Yaml::Hash(map) => {
            for (k, v) in map {
                let Some(key) = scalar(k).and_then(|v| v.as_text()) else {
                    continue;
                };
                let path = if prefix.is_empty() {
                    key
                } else {
                    format!("{prefix}.{key}")
                };
                walk(&path, v, out);
            }
        }
        other => {
            let value = match other {
                Yaml::Array(items) => Value::List(items.iter().filter_map(scalar).collect()),
                _ => scalar(other).unwrap_or(Value::Null),
            };
            out.insert(prefix.to_string(), value);
        }
    }
}

fn scalar(node: &Yaml) -> Option<Value> {
    Some(match node {
        Yaml::String(s) => Value::Text(s.clone()),
        Yaml::Integer(i) => Value::Number(i.to_string()),
        Yaml::Real(r) => Value::Number(r.clone()),
        Yaml::Boolean(b) => Value::Bool(*b),
        Yaml::Null => Value::Null,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_and_dotted_keys_are_the_same_setting() {
        let flat = flatten(
            "apm-server:\n  host: \":8200\"\n  rum:\n    enabled: true\n    allow_origins: ['*']\n\
             apm-server.auth.secret_token: ${TOKEN}\nmax: 1.5\nempty:\n",
        )
        .unwrap();
        assert_eq!(flat["apm-server.host"], Value::Text(":8200".into()));
        assert_eq!(flat["apm-server.rum.enabled"], Value::Bool(true));
        assert_eq!(flat["apm-server.rum.allow_origins"].as_list(), ["*"]);
        assert_eq!(
            flat["apm-server.auth.secret_token"].as_text().as_deref(),
            Some("${TOKEN}")
        );
        assert_eq!(flat["max"], Value::Number("1.5".into()));
        assert_eq!(flat["empty"], Value::Null);
        assert!(matches!(flatten("- a\n- b\n"), Err(YamlError::NotAMap)));
        assert!(matches!(flatten("a: [\n"), Err(YamlError::Syntax(_))));
        assert!(flatten("").unwrap().is_empty());
    }
}
