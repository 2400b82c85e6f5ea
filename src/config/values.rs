//! Value types of the file model that every section shares: human durations and secrets.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// The longest duration any setting accepts.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// A duration written the human way: `"30s"`, `"5m"`, `"1h 30m"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text)
            .map_err(|e| e.to_string())
            .and_then(|d| {
                // Beyond a year no setting here means anything, and deadlines computed from
                // it could overflow.
                if d > MAX_DURATION {
                    Err("longer than a year".to_string())
                } else {
                    Ok(HumanDuration(d))
                }
            })
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
