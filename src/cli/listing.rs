//! `apikey list` and `token list`: each credential with its state and, from the running
//! proxy's usage state file, when it was last used and how many requests it made — the
//! answer to "is anyone still using this before I retire it?".

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;

use super::error::CliError;
use crate::auth::audit::EXPIRY_WARNING;
use crate::auth::keys_file::KeysFile;
use crate::config::ConfigFile;
use crate::usage::{state_file, CredentialKind, UsageRecord, UsageSettings};

/// The usage records the running proxy saved for `file`'s credentials (none when usage is
/// not tracked or nothing was saved yet).
fn usage(file: &ConfigFile) -> Result<Vec<UsageRecord>, CliError> {
    let settings = UsageSettings::try_from(file).map_err(|p| CliError::Config(p.into()))?;
    match settings.file {
        Some(path) => state_file::load(&path).map_err(|e| CliError::Usage(e.to_string())),
        None => Ok(Vec::new()),
    }
}

fn find<'a>(usage: &'a [UsageRecord], kind: CredentialKind, name: &str) -> Option<&'a UsageRecord> {
    usage.iter().find(|u| u.kind == kind && u.name == name)
}

/// `2026-11-29T06:55:48Z (3h ago)`, or `never`.
fn last_used(u: Option<&UsageRecord>, now: SystemTime) -> String {
    let Some(secs) = u.and_then(|u| u.last_used) else {
        return "never".into();
    };
    let at = UNIX_EPOCH + Duration::from_secs(secs);
    let ago = now.duration_since(at).unwrap_or_default();
    let ago = match ago.as_secs() {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    };
    format!("{} ({ago} ago)", humantime::format_rfc3339_seconds(at))
}

/// The usage columns of a list: LAST USED, REQUESTS, REFUSED.
fn usage_cells(u: Option<&UsageRecord>, now: SystemTime) -> [String; 3] {
    [
        last_used(u, now),
        u.map_or(0, |u| u.requests_accepted).to_string(),
        u.map_or(0, |u| u.requests_refused).to_string(),
    ]
}

/// `active`, `expired`, `expires soon` or `revoked`.
fn status(expires: Option<&str>, revoked: bool, now: SystemTime) -> &'static str {
    let expires = expires.and_then(|e| humantime::parse_rfc3339_weak(e).ok());
    match expires {
        _ if revoked => "revoked",
        Some(e) if now >= e => "expired",
        Some(e) if e.duration_since(now).unwrap_or_default() < EXPIRY_WARNING => "expires soon",
        _ => "active",
    }
}

fn usage_json(u: Option<&UsageRecord>) -> serde_json::Value {
    json!({
        "last_used": u.and_then(|u| u.last_used)
            .map(|s| humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(s)).to_string()),
        "last_client_ip": u.and_then(|u| u.last_client_ip),
        "requests_accepted": u.map_or(0, |u| u.requests_accepted),
        "requests_refused": u.map_or(0, |u| u.requests_refused),
        "events_accepted": u.map_or(0, |u| u.events_accepted),
    })
}

/// Columns as wide as their widest cell; the last two (counts) aligned right.
fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let numeric = headers.len().saturating_sub(2);
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (cell, w))| match i >= numeric {
                true => format!("{cell:>w$}"),
                false => format!("{cell:<w$}"),
            })
            .collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut out = line(headers.to_vec());
    for row in &rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

pub fn list_keys(
    file: &ConfigFile,
    keys_path: &Path,
    keys: &KeysFile,
    as_json: bool,
) -> Result<(), CliError> {
    keys.parse_keys(keys_path)
        .map_err(|e| CliError::Usage(e.to_string()))?;
    let usage = usage(file)?;
    let now = SystemTime::now();
    if as_json {
        let list: Vec<_> = keys
            .keys
            .iter()
            .map(|k| {
                let mut v = json!({
                    "id": k.id,
                    "name": k.name,
                    "privileges": k.privileges,
                    "created": k.created,
                    "expires": k.expires,
                    "revoked": k.revoked,
                    "status": status(k.expires.as_deref(), k.revoked.is_some(), now),
                });
                v["usage"] = usage_json(find(&usage, CredentialKind::ApiKey, &k.id));
                v
            })
            .collect();
        println!("{}", serde_json::Value::from(list));
        return Ok(());
    }
    let rows = keys.keys.iter().map(|k| {
        let u = find(&usage, CredentialKind::ApiKey, &k.id);
        let mut row = vec![
            k.id.clone(),
            k.name.clone(),
            k.privileges.join(","),
            k.expires.clone().unwrap_or_else(|| "never".into()),
            status(k.expires.as_deref(), k.revoked.is_some(), now).into(),
        ];
        row.extend(usage_cells(u, now));
        row
    });
    let headers = [
        "ID",
        "NAME",
        "PRIVILEGES",
        "EXPIRES",
        "STATUS",
        "LAST USED",
        "REQUESTS",
        "REFUSED",
    ];
    print!("{}", table(&headers, rows.collect()));
    println!("{} API key(s) in {}", keys.keys.len(), keys_path.display());
    Ok(())
}

/// The JWT identities the running proxy has seen (from its usage state file): they come from
/// the identity provider, so the usage is the only list there is.
pub fn list_jwt(file: &ConfigFile, as_json: bool) -> Result<(), CliError> {
    let usage = usage(file)?;
    let now = SystemTime::now();
    let mut seen: Vec<&UsageRecord> = usage
        .iter()
        .filter(|u| u.kind == CredentialKind::Jwt)
        .collect();
    seen.sort_by(|a, b| a.name.cmp(&b.name));
    if as_json {
        let list: Vec<_> = seen
            .iter()
            .map(|u| {
                let mut v = json!({ "name": u.name });
                v["usage"] = usage_json(Some(u));
                v
            })
            .collect();
        println!("{}", serde_json::Value::from(list));
        return Ok(());
    }
    let rows = seen.iter().map(|u| {
        let mut row = vec![u.name.clone()];
        row.extend(usage_cells(Some(u), now));
        row
    });
    let headers = ["ISSUER/SUBJECT", "LAST USED", "REQUESTS", "REFUSED"];
    print!("{}", table(&headers, rows.collect()));
    println!(
        "{} JWT identit{} seen",
        seen.len(),
        if seen.len() == 1 { "y" } else { "ies" }
    );
    Ok(())
}

pub fn list_tokens(file: &ConfigFile, as_json: bool) -> Result<(), CliError> {
    let usage = usage(file)?;
    let now = SystemTime::now();
    let mut tokens: Vec<(&str, Option<&str>, Option<&str>)> = Vec::new();
    if file.auth.secret_token.is_some() {
        tokens.push(("default", None, None));
    }
    for t in &file.auth.secret_tokens {
        tokens.push((&t.name, t.expires.as_deref(), t.upstream.as_deref()));
    }
    if as_json {
        let list: Vec<_> = tokens
            .iter()
            .map(|(name, expires, upstream)| {
                let mut v = json!({
                    "name": name,
                    "expires": expires,
                    "upstream": upstream,
                    "status": status(*expires, false, now),
                });
                v["usage"] = usage_json(find(&usage, CredentialKind::Token, name));
                v
            })
            .collect();
        println!("{}", serde_json::Value::from(list));
        return Ok(());
    }
    let rows = tokens.iter().map(|(name, expires, _)| {
        let u = find(&usage, CredentialKind::Token, name);
        let mut row = vec![
            name.to_string(),
            expires.unwrap_or("never").to_string(),
            status(*expires, false, now).into(),
        ];
        row.extend(usage_cells(u, now));
        row
    });
    let headers = [
        "NAME",
        "EXPIRES",
        "STATUS",
        "LAST USED",
        "REQUESTS",
        "REFUSED",
    ];
    print!("{}", table(&headers, rows.collect()));
    println!("{} secret token(s)", tokens.len());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_and_last_used_read_as_a_person_would() {
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let soon = humantime::format_rfc3339_seconds(now + Duration::from_secs(86_400)).to_string();
        let later =
            humantime::format_rfc3339_seconds(now + Duration::from_secs(30 * 86_400)).to_string();
        let past = humantime::format_rfc3339_seconds(now - Duration::from_secs(1)).to_string();
        assert_eq!(status(Some(&soon), false, now), "expires soon");
        assert_eq!(status(Some(&later), false, now), "active");
        assert_eq!(status(Some(&past), false, now), "expired");
        assert_eq!(status(None, true, now), "revoked");
        assert_eq!(last_used(None, now), "never");
        let u = UsageRecord {
            kind: CredentialKind::Token,
            name: "t".into(),
            last_used: Some(1_800_000_000 - 3 * 3600),
            last_client_ip: None,
            requests_accepted: 1,
            requests_refused: 0,
            events_accepted: 0,
        };
        assert_eq!(last_used(Some(&u), now), "2027-01-15T05:00:00Z (3h ago)");
    }

    #[test]
    fn columns_fit_their_widest_cell() {
        let id = "a".repeat(24);
        let text = table(
            &["ID", "NAME", "REQUESTS", "REFUSED"],
            vec![vec![id.clone(), "shop".into(), "12345".into(), "0".into()]],
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], format!("{:<24}  NAME  REQUESTS  REFUSED", "ID"));
        assert_eq!(lines[1], format!("{id}  shop     12345        0"));
    }
}
