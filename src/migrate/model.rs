//! What a migration is made of, shared by the translation table (`rules`) and its TLS part
//! (`tls`): the result (`Migration` and its entries), the settings read, and the helpers that
//! write `proxy.toml` keys.

use std::collections::BTreeMap;

use toml::{Table, Value as Toml};

use super::yaml::Value;

/// A change to make to `apm-server.yml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub key: String,
    /// The new value as YAML, or `None`: remove the setting.
    pub value: Option<String>,
    pub why: &'static str,
}

/// A setting of `apm-server.yml` the proxy cannot take over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Untranslated {
    pub key: String,
    pub why: String,
}

#[derive(Debug, Default)]
pub struct Migration {
    pub proxy_toml: String,
    pub apm_server_changes: Vec<Change>,
    pub untranslated: Vec<Untranslated>,
    /// Things the user should know (values adapted, settings that stay with APM Server).
    pub notes: Vec<String>,
}

/// Settings read under `apm-server.`.
pub(super) struct Settings<'a>(pub(super) BTreeMap<&'a str, &'a Value>);

impl<'a> Settings<'a> {
    /// The first of `keys` that is set (newest name first).
    pub(super) fn get(&self, keys: &[&str]) -> Option<(&'a str, &'a Value)> {
        keys.iter()
            .find_map(|k| self.0.get_key_value(*k).map(|(k, v)| (*k, *v)))
    }
}

pub(super) const APM: &str = "apm-server.";

impl Migration {
    pub(super) fn untranslated(&mut self, key: String, why: String) {
        if !self.untranslated.iter().any(|u| u.key == key) {
            self.untranslated.push(Untranslated { key, why });
        }
    }

    pub(super) fn change(&mut self, key: &str, value: Option<String>, why: &'static str) {
        let key = format!("{APM}{key}");
        self.apm_server_changes.retain(|c| c.key != key);
        self.apm_server_changes.push(Change { key, value, why });
    }
}

pub(super) fn list(apm: &Settings<'_>, out: &mut Table, keys: &[&str], to: &str) {
    if let Some((_, v)) = apm.get(keys) {
        let items: Vec<Toml> = v.as_list().into_iter().map(Toml::from).collect();
        set(out, to, Toml::Array(items));
    }
}

/// Set a dotted key in a nested table.
pub(super) fn set(table: &mut Table, dotted: &str, value: Toml) {
    let mut parts: Vec<&str> = dotted.split('.').collect();
    let last = parts.pop().unwrap_or(dotted);
    let mut here = table;
    for part in parts {
        let entry = here
            .entry(part.to_string())
            .or_insert_with(|| Toml::Table(Table::new()));
        let Toml::Table(next) = entry else {
            return;
        };
        here = next;
    }
    here.insert(last.to_string(), value);
}
