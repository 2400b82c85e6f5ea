//! `jwt verify`: a token checked as the running proxy would check it — the issuers' keys
//! fetched now — with the identity it stands for, or the reason it is refused.

use std::io::Read;
use std::time::SystemTime;

use super::error::CliError;
use crate::auth::jwt::{fetch, JwtVerifier};
use crate::auth::{AuthSettings, Identity};
use crate::config::{ConfigError, ConfigFile};

pub fn verify(file: &ConfigFile, token: &str) -> Result<(), CliError> {
    let token = match token {
        "-" => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| CliError::Usage(format!("standard input: {e}")))?;
            text.trim().to_string()
        }
        t => t.trim().to_string(),
    };
    let auth = AuthSettings::try_from(&file.auth).map_err(ConfigError::from)?;
    if auth.jwt.is_empty() {
        return Err(CliError::Usage(
            "no [[auth.jwt]] issuer is configured".into(),
        ));
    }
    let verifier = JwtVerifier::new(auth.jwt);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Runtime(e.to_string()))?;
    for issuer in verifier.issuers() {
        let s = &issuer.settings;
        let fetched = runtime.block_on(async {
            let client = fetch::client(s)?;
            fetch::keys(s, &client).await
        });
        match fetched {
            Ok(keys) => {
                eprintln!(
                    "issuer {:?}: {} usable key(s) ({} left out)",
                    s.name,
                    keys.keys.len(),
                    keys.skipped
                );
                issuer.set_keys(keys);
            }
            Err(e) => eprintln!("issuer {:?}: its keys cannot be fetched: {e}", s.name),
        }
    }
    match verifier.verify(token.as_bytes(), SystemTime::now()) {
        Ok(identity) => {
            print_identity(&identity);
            Ok(())
        }
        Err(refusal) => Err(CliError::Runtime(format!(
            "refused ({}): {}",
            refusal.label(),
            refusal.explain()
        ))),
    }
}

fn print_identity(identity: &Identity) {
    let Identity::Jwt {
        name,
        privileges,
        services,
        upstream,
        rate_limit,
        ..
    } = identity
    else {
        return;
    };
    let (issuer, subject) = name.split_once('/').unwrap_or(("", name));
    println!("accepted by issuer {issuer:?} as jwt:{name}");
    println!("  subject ...... {subject}");
    println!("  privileges ... {}", privileges.names().join(", "));
    let services = if services.is_empty() {
        "any".to_string()
    } else {
        services.join(", ")
    };
    println!("  services ..... {services}");
    println!(
        "  pool ......... {}",
        upstream
            .as_deref()
            .unwrap_or("(by route, else the default)")
    );
    if let Some(limit) = rate_limit {
        println!("  rate limit ... {limit}");
    }
}
