//! The usage state file: JSON, written whole to a temporary file beside it and renamed over
//! it (a reader never sees half a file), readable by the CLI while the proxy runs.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::UsageRecord;

#[derive(Debug, Serialize, Deserialize)]
struct StateFile {
    version: u32,
    credentials: Vec<UsageRecord>,
}

const VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum StateFileError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: not a usage state file: {source}")]
    Parse {
        path: String,
        source: serde_json::Error,
    },
}

/// The records saved at `path`; none when the file does not exist yet.
pub fn load(path: &Path) -> Result<Vec<UsageRecord>, StateFileError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(StateFileError::Read {
                path: path.display().to_string(),
                source,
            })
        }
    };
    serde_json::from_str::<StateFile>(&text)
        .map(|f| f.credentials)
        .map_err(|source| StateFileError::Parse {
            path: path.display().to_string(),
            source,
        })
}

/// Replace the file at `path` with `records`, atomically.
pub fn save(path: &Path, records: &[UsageRecord]) -> std::io::Result<()> {
    let file = StateFile {
        version: VERSION,
        credentials: records.to_vec(),
    };
    let mut text = serde_json::to_vec_pretty(&file).map_err(std::io::Error::other)?;
    text.push(b'\n');
    crate::atomic_file::replace(path, 0o600, &text)
}

#[cfg(test)]
mod tests {
    use super::super::CredentialKind;
    use super::*;

    #[test]
    fn saved_records_load_back_and_a_missing_file_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("usage.json");
        assert!(load(&path).unwrap().is_empty());
        let records = vec![UsageRecord {
            kind: CredentialKind::ApiKey,
            name: "3f2a".into(),
            last_used: Some(1_700_000_000),
            last_client_ip: Some("2001:db8::1".parse().unwrap()),
            requests_accepted: 3,
            requests_refused: 1,
            events_accepted: 40,
        }];
        save(&path, &records).unwrap();
        assert_eq!(load(&path).unwrap(), records);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"kind\": \"api_key\""), "{text}");
        std::fs::write(&path, "{").unwrap();
        assert!(matches!(load(&path), Err(StateFileError::Parse { .. })));
    }
}
