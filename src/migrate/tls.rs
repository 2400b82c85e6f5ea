//! `apm-server.ssl.*`: what the proxy's listener takes over. libbeat's protocol, cipher
//! suite and curve names are mapped to the proxy's; what the proxy never offers (TLS below
//! 1.2, CBC and static-RSA suites, P-521) is left out with a note.

use toml::{Table, Value as Toml};

use super::model::{list, set, Migration, Settings, APM};
use super::yaml::Value;

pub(super) fn translate(apm: &Settings<'_>, out: &mut Table, m: &mut Migration) {
    // libbeat: TLS is on when an `ssl` section exists and `enabled` is not false.
    let section = apm.0.keys().any(|k| k.starts_with("ssl."));
    let enabled = section && apm.0.get("ssl.enabled") != Some(&&Value::Bool(false));
    if !enabled {
        set(out, "ssl.enabled", false.into());
        m.notes.push(
            "APM Server served plain HTTP, so the proxy does too (ssl.enabled = false); give it \
             ssl.certificate and ssl.key to terminate TLS for the agents"
                .into(),
        );
        return;
    }
    for key in ["ssl.certificate", "ssl.key"] {
        if let Some((_, v)) = apm.get(&[key]) {
            if let Some(path) = v.as_text() {
                set(out, key, path.into());
            }
        }
    }
    list(
        apm,
        out,
        &["ssl.certificate_authorities"],
        "ssl.certificate_authorities",
    );
    if let Some((_, v)) = apm.get(&["ssl.client_authentication"]) {
        if let Some(mode) = v.as_text() {
            set(
                out,
                "ssl.client_authentication",
                mode.to_ascii_lowercase().into(),
            );
        }
    }
    if apm.0.contains_key("ssl.key_passphrase") {
        m.untranslated(
            format!("{APM}ssl.key_passphrase"),
            "the proxy reads unencrypted PEM keys: decrypt it (`openssl pkey -in key.pem -out \
             plain.pem`) and point ssl.key at the result"
                .into(),
        );
    }
    if apm.0.contains_key("ssl.verification_mode") {
        m.notes.push(format!(
            "{APM}ssl.verification_mode has no effect on a server; client certificates are \
             verified against ssl.certificate_authorities"
        ));
    }
    let mapped =
        |key: &str, map: fn(&str) -> Option<&'static str>| -> Vec<(String, Option<&'static str>)> {
            apm.get(&[key])
                .map(|(_, v)| v.as_list())
                .unwrap_or_default()
                .into_iter()
                .map(|name| {
                    let to = map(&name);
                    (name, to)
                })
                .collect()
        };
    for (key, map, what) in [
        (
            "ssl.supported_protocols",
            protocol as fn(&str) -> Option<&'static str>,
            "TLS 1.2 and 1.3 only",
        ),
        (
            "ssl.cipher_suites",
            cipher_suite,
            "forward-secret AEAD suites only",
        ),
        ("ssl.curve_types", curve, "X25519, P-256 and P-384 only"),
    ] {
        let names = mapped(key, map);
        if names.is_empty() {
            continue;
        }
        let kept: Vec<Toml> = names
            .iter()
            .filter_map(|(_, to)| to.map(Toml::from))
            .collect();
        for (name, _) in names.iter().filter(|(_, to)| to.is_none()) {
            m.notes.push(format!(
                "{APM}{key}: {name} is left out — the proxy offers {what}"
            ));
        }
        if kept.is_empty() {
            m.notes.push(format!(
                "{APM}{key}: nothing left, the proxy's defaults apply"
            ));
        } else {
            set(out, key, Toml::Array(kept));
        }
    }
    m.change(
        "ssl.enabled",
        Some("false".into()),
        "the proxy terminates TLS now",
    );
}

/// libbeat protocol names the proxy offers.
fn protocol(name: &str) -> Option<&'static str> {
    match name {
        "TLSv1.2" => Some("TLSv1.2"),
        "TLSv1.3" => Some("TLSv1.3"),
        _ => None,
    }
}

/// libbeat cipher suite names (with its `POLY1205` typo) → rustls names; CBC and static-RSA
/// suites are not offered.
fn cipher_suite(name: &str) -> Option<&'static str> {
    Some(match name.to_ascii_uppercase().as_str() {
        "ECDHE-ECDSA-AES-128-GCM-SHA256" => "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        "ECDHE-ECDSA-AES-256-GCM-SHA384" => "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        "ECDHE-RSA-AES-128-GCM-SHA256" => "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        "ECDHE-RSA-AES-256-GCM-SHA384" => "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305" => "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        "ECDHE-RSA-CHACHA20-POLY1305" | "ECDHE-RSA-CHACHA20-POLY1205" => {
            "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"
        }
        _ => return None,
    })
}

fn curve(name: &str) -> Option<&'static str> {
    Some(match name.to_ascii_uppercase().as_str() {
        "P-256" => "P-256",
        "P-384" => "P-384",
        "X25519" => "X25519",
        _ => return None,
    })
}
