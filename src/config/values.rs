//! Value types of the file model that every section shares: human durations and secrets.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// A duration written the human way: `"30s"`, `"5m"`, `"1h 30m"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text)
            .map(HumanDuration)
            .map_err(|e| {
                serde::de::Error::custom(format!(
                    "invalid duration {text:?}: {e} (write e.g. \"30s\")"
                ))
            })
    }
}

/// A secret as written in the config file: `"inline"` or `{ file | env | sha256 | value = … }`.
/// Which one is given, and whether it suits its key, is checked by the owner of the key.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum SecretSource {
    Inline(String),
    Ref(SecretRef),
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretRef {
    pub value: Option<String>,
    pub file: Option<PathBuf>,
    pub env: Option<String>,
    pub sha256: Option<String>,
}

impl SecretSource {
    /// True when the secret is written in the config file itself.
    pub fn is_inline(&self) -> bool {
        match self {
            SecretSource::Inline(_) => true,
            SecretSource::Ref(r) => r.value.is_some(),
        }
    }
}
