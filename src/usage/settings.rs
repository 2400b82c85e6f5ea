//! `[usage]` as typed settings.

use std::path::PathBuf;
use std::time::Duration;

use crate::config::{ConfigFile, Problems};

#[derive(Debug, Clone)]
pub struct UsageSettings {
    /// `None`: usage is not tracked.
    pub file: Option<PathBuf>,
    pub flush_interval: Duration,
}

impl TryFrom<&ConfigFile> for UsageSettings {
    type Error = Problems;

    fn try_from(file: &ConfigFile) -> Result<UsageSettings, Problems> {
        let mut problems = Problems::default();
        let u = &file.usage;
        let flush_interval = problems.nonzero("usage.flush_interval", u.flush_interval);
        let beside_keys = || {
            let keys = &file.auth.api_key.keys_file;
            keys.parent().unwrap_or(keys).join("usage.json")
        };
        let path = u.file.clone().unwrap_or_else(beside_keys);
        problems.finish(|| UsageSettings {
            file: u.enabled.then_some(path),
            flush_interval,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_file_sits_beside_the_keys_file_unless_named() {
        let file =
            ConfigFile::parse("[auth.api_key]\nkeys_file = \"/etc/proxy/keys.toml\"\n").unwrap();
        let s = UsageSettings::try_from(&file).unwrap();
        assert_eq!(s.file, Some(PathBuf::from("/etc/proxy/usage.json")));
        let file = ConfigFile::parse("[usage]\nfile = \"/var/lib/p/u.json\"\n").unwrap();
        let s = UsageSettings::try_from(&file).unwrap();
        assert_eq!(s.file, Some(PathBuf::from("/var/lib/p/u.json")));
        let off = ConfigFile::parse("[usage]\nenabled = false\n").unwrap();
        assert_eq!(UsageSettings::try_from(&off).unwrap().file, None);
        let bad = ConfigFile::parse("[usage]\nflush_interval = \"0s\"\n").unwrap();
        assert!(UsageSettings::try_from(&bad)
            .unwrap_err()
            .to_string()
            .starts_with("usage.flush_interval"));
    }
}
