//! The translation table: each APM Server setting the proxy takes over, its `proxy.toml`
//! key, and what happens to the rest. Newer key names win over the deprecated ones they
//! replaced (`auth.secret_token` over `secret_token`, `auth.anonymous.*` over `rum.*`).

use std::collections::BTreeMap;

use toml::{Table, Value as Toml};

use super::model::{list, set, Migration, Settings, APM};
use super::yaml::Value;
use super::ImportOptions;

/// The largest request head the proxy reads (Pingora's cap).
const MAX_HEADER_SIZE: i64 = 1_048_575;

/// Keys the proxy reads, newest name first; every other `auth.`, `ssl.`, `rum.`, `api_key.`
/// or `frontend.` key is listed as not translated.
const TAKEN: &[&str] = &[
    "host",
    "auth.secret_token",
    "secret_token",
    "ssl.enabled",
    "ssl.certificate",
    "ssl.key",
    "ssl.certificate_authorities",
    "ssl.client_authentication",
    "ssl.supported_protocols",
    "ssl.cipher_suites",
    "ssl.curve_types",
    "ssl.verification_mode",
    "rum.enabled",
    "frontend.enabled",
    "rum.allow_origins",
    "frontend.allow_origins",
    "rum.allow_headers",
    "rum.event_rate.limit",
    "rum.event_rate.lru_size",
    "rum.allow_service_names",
    "auth.anonymous.enabled",
    "auth.anonymous.allow_agent",
    "auth.anonymous.allow_service",
    "auth.anonymous.rate_limit.event_limit",
    "auth.anonymous.rate_limit.ip_limit",
    "max_header_size",
    "idle_timeout",
    "read_timeout",
    "write_timeout",
    "shutdown_timeout",
    "max_event_size",
];

/// APM Server's own processing settings under `rum.`: they stay in `apm-server.yml`.
const STAY_WITH_APM_SERVER: &[&str] = &[
    "rum.source_mapping",
    "rum.library_pattern",
    "rum.exclude_from_grouping",
    "rum.response_headers",
];

/// The TLS part of the translation (`migrate::tls`), handed in so the table does not depend
/// on it.
pub(super) type TlsPart = fn(&Settings<'_>, &mut Table, &mut Migration);

pub fn translate(
    all: &BTreeMap<String, Value>,
    options: &ImportOptions,
    tls: TlsPart,
) -> Migration {
    let apm = Settings(
        all.iter()
            .filter_map(|(k, v)| Some((k.strip_prefix(APM)?, v)))
            .collect(),
    );
    let mut m = Migration::default();
    let mut out = Table::new();
    let text = |key: &str| -> Option<(String, String)> {
        let (k, v) = apm.get(&[key])?;
        Some((format!("{APM}{k}"), v.as_text()?))
    };

    // --- where the proxy listens, and where APM Server goes ---
    let host = text("host")
        .map(|(_, h)| h)
        .unwrap_or_else(|| "localhost:8200".into());
    match listen_address(&host) {
        Ok(listen) => set(&mut out, "server.listen", listen.into()),
        Err(why) => m.untranslated(format!("{APM}host"), why),
    }
    set(
        &mut out,
        "upstream.url",
        format!("http://{}", options.upstream_address).into(),
    );
    m.change(
        "host",
        Some(quoted(&options.upstream_address)),
        "APM Server moves off the agents' address: only the proxy reaches it",
    );

    // --- credentials ---
    if let Some((key, value)) = apm.get(&["auth.secret_token", "secret_token"]) {
        match value.as_text() {
            Some(secret) if !secret.is_empty() => {
                set(&mut out, "auth.secret_token", secret_value(&secret, &mut m));
            }
            _ => m.untranslated(format!("{APM}{key}"), "empty secret token".into()),
        }
    }
    for key in ["auth.secret_token", "secret_token"] {
        if apm.0.contains_key(key) {
            m.change(key, None, "the proxy checks the token now");
        }
    }
    if let Some(token) = &options.upstream_token {
        let mut file = Table::new();
        file.insert("file".into(), super::UPSTREAM_TOKEN_FILE.into());
        set(&mut out, "upstream.secret_token", Toml::Table(file));
        // The key the server reads: by its version when given, else by the file's own style
        // (a file with the pre-7.14 `secret_token` and no `auth.*` key is an older server's).
        let legacy = match options.apm_server_version {
            Some(version) => version < (7, 14),
            None => {
                apm.0.contains_key("secret_token") && !apm.0.keys().any(|k| k.starts_with("auth."))
            }
        };
        let key = if legacy {
            "secret_token"
        } else {
            "auth.secret_token"
        };
        m.change(
            key,
            Some(quoted(token)),
            "the internal token only the proxy sends (replaces the agents' token)",
        );
        if options.apm_server_version.is_none() {
            m.notes.push(format!(
                "the internal token is set as apm-server.{key} (APM Server {}); pass \
                 --apm-server-version to be sure: before 7.14 the key is apm-server.secret_token, \
                 from 7.14 apm-server.auth.secret_token",
                if legacy {
                    "before 7.14, judging by this file's keys"
                } else {
                    "7.14 or later"
                }
            ));
        }
    }
    for (key, value) in &apm.0 {
        let api_key = key.starts_with("api_key.") || key.starts_with("auth.api_key.");
        if !api_key {
            continue;
        }
        if key.ends_with("api_key.enabled") && *value == &Value::Bool(true) {
            m.untranslated(
                format!("{APM}{key}"),
                "API keys kept in Elasticsearch cannot be read by the proxy: create proxy keys \
                 with `apm-auth-proxy apikey create` (set auth.api_key.enabled and keys_file) \
                 and hand them to the agents"
                    .into(),
            );
            m.change(key, Some("false".into()), "the proxy checks API keys now");
        } else if !key.ends_with("api_key.enabled") {
            m.untranslated(
                format!("{APM}{key}"),
                "a setting of Elasticsearch-backed API keys".into(),
            );
        }
    }

    // --- TLS ---
    tls(&apm, &mut out, &mut m);

    // --- RUM and anonymous access ---
    if let Some((_, v)) = apm.get(&["rum.enabled", "frontend.enabled"]) {
        let on = v == &Value::Bool(true);
        set(&mut out, "rum.enabled", on.into());
        if on {
            m.change(
                "rum.enabled",
                Some("true".into()),
                "APM Server still processes RUM events (kept on)",
            );
        }
    }
    list(
        &apm,
        &mut out,
        &["rum.allow_origins", "frontend.allow_origins"],
        "rum.allow_origins",
    );
    list(&apm, &mut out, &["rum.allow_headers"], "rum.allow_headers");
    if let Some((_, v)) = apm.get(&["auth.anonymous.enabled"]) {
        set(
            &mut out,
            "auth.anonymous.enabled",
            (v == &Value::Bool(true)).into(),
        );
    }
    list(
        &apm,
        &mut out,
        &["auth.anonymous.allow_agent"],
        "auth.anonymous.allow_agent",
    );
    list(
        &apm,
        &mut out,
        &["auth.anonymous.allow_service", "rum.allow_service_names"],
        "auth.anonymous.allow_service",
    );
    number(
        &apm,
        &mut out,
        &mut m,
        &[
            "auth.anonymous.rate_limit.event_limit",
            "rum.event_rate.limit",
        ],
        "auth.anonymous.rate_limit.event_limit",
    );
    number(
        &apm,
        &mut out,
        &mut m,
        &[
            "auth.anonymous.rate_limit.ip_limit",
            "rum.event_rate.lru_size",
        ],
        "auth.anonymous.rate_limit.ip_limit",
    );
    for key in apm.0.keys().filter(|k| k.starts_with("auth.anonymous.")) {
        m.change(key, None, "the proxy enforces anonymous access now");
    }
    if apm.0.keys().any(|k| k.starts_with("frontend.rate_limit")) {
        m.untranslated(
            format!("{APM}frontend.rate_limit"),
            "6.x v1 RUM requests per second: the proxy limits events per second \
             (auth.anonymous.rate_limit.event_limit)"
                .into(),
        );
    }

    // --- limits and timeouts ---
    number(
        &apm,
        &mut out,
        &mut m,
        &["max_header_size"],
        "server.max_header_size",
    );
    // APM Server's default (1 MiB) is one byte over what Pingora can read.
    if let Some(Toml::Integer(n)) = out.get("server").and_then(|s| s.get("max_header_size")) {
        let n = *n;
        if n > MAX_HEADER_SIZE {
            set(&mut out, "server.max_header_size", MAX_HEADER_SIZE.into());
            m.notes.push(format!(
                "{APM}max_header_size {n} is read as {MAX_HEADER_SIZE}, the most the proxy \
                 can read (1 MiB − 1)"
            ));
        }
    }
    number(
        &apm,
        &mut out,
        &mut m,
        &["max_event_size"],
        "rum.max_event_size",
    );
    for (from, to) in [
        ("idle_timeout", "server.idle_timeout"),
        ("read_timeout", "server.body_deadline"),
        ("write_timeout", "server.write_timeout"),
        ("shutdown_timeout", "server.shutdown_grace_period"),
    ] {
        if let Some((key, value)) = text(from) {
            match duration(&value) {
                Some(d) => set(&mut out, to, d.into()),
                None => m.untranslated(key, format!("{value:?} is not a duration")),
            }
        }
    }

    // --- everything else under auth/ssl/rum is named, never dropped ---
    for key in apm.0.keys() {
        let ours = ["auth.", "ssl.", "rum.", "frontend."]
            .iter()
            .any(|p| key.starts_with(p));
        let taken = TAKEN.contains(key)
            || key.starts_with("auth.api_key.")
            || key.starts_with("frontend.rate_limit");
        let stays = STAY_WITH_APM_SERVER.iter().any(|p| key.starts_with(p));
        if stays {
            m.notes.push(format!(
                "{APM}{key} stays in apm-server.yml: APM Server applies it to what the proxy forwards"
            ));
        } else if ours && !taken {
            m.untranslated(format!("{APM}{key}"), "no proxy setting does this".into());
        }
    }
    let others = all.keys().filter(|k| !k.starts_with(APM)).count();
    if others > 0 {
        m.notes.push(format!(
            "{others} settings outside apm-server.* (output, logging, …) stay in apm-server.yml"
        ));
    }
    if !apm.0.contains_key("max_event_size") {
        m.notes.push(
            "apm-server.max_event_size stays APM Server's to enforce on authenticated agents; \
             the proxy applies rum.max_event_size to the bodies it reads"
                .into(),
        );
    }
    m.proxy_toml = toml::to_string(&out).unwrap_or_default();
    m
}

/// A secret as `proxy.toml` holds it: `${VAR}` becomes `{ env = "VAR" }`.
fn secret_value(secret: &str, m: &mut Migration) -> Toml {
    match env_reference(secret) {
        Some((var, default)) => {
            if default.is_some() {
                m.notes.push(format!(
                    "the secret token's default (${{{var}:…}}) is not carried over: {var} must be set"
                ));
            }
            let mut t = Table::new();
            t.insert("env".into(), var.into());
            Toml::Table(t)
        }
        None => {
            m.notes.push(
                "the secret token is written inline, as it was in apm-server.yml; prefer \
                 { env = \"…\" } or { file = \"…\" }"
                    .into(),
            );
            secret.into()
        }
    }
}

/// `${VAR}` or `${VAR:default}`: the variable and the default.
fn env_reference(value: &str) -> Option<(String, Option<String>)> {
    let inner = value.trim().strip_prefix("${")?.strip_suffix('}')?;
    let (var, default) = match inner.split_once(':') {
        Some((v, d)) => (v, Some(d.to_string())),
        None => (inner, None),
    };
    let valid = !var.is_empty()
        && var
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.');
    valid.then(|| (var.to_string(), default))
}

/// APM Server's `host` as the proxy's `server.listen` (an IP:port).
fn listen_address(host: &str) -> Result<String, String> {
    if host.starts_with("unix:") {
        return Err("a Unix socket: the proxy listens on TCP; set server.listen".into());
    }
    if env_reference(host).is_some() || host.contains("${") {
        return Err("an environment reference: set server.listen to the address".into());
    }
    let (name, port) = match host.rsplit_once(':') {
        Some((name, port)) if port.parse::<u16>().is_ok() => (name, port),
        _ => (host, "8200"),
    };
    let ip = match name.trim_start_matches('[').trim_end_matches(']') {
        "" | "0.0.0.0" => "0.0.0.0".to_string(),
        "localhost" | "127.0.0.1" => "127.0.0.1".to_string(),
        other if other.parse::<std::net::IpAddr>().is_ok() => {
            let ip: std::net::IpAddr = other
                .parse()
                .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED.into());
            return Ok(std::net::SocketAddr::new(ip, port.parse().unwrap_or(8200)).to_string());
        }
        _ => "0.0.0.0".to_string(),
    };
    Ok(format!("{ip}:{port}"))
}

/// A Go duration (`45s`, `1m30s`, `3600s`, `500ms`) as the proxy writes it.
fn duration(go: &str) -> Option<String> {
    let d = humantime::parse_duration(go.trim()).ok()?;
    Some(if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    })
}

fn quoted(s: &str) -> String {
    format!("{s:?}")
}

fn number(apm: &Settings<'_>, out: &mut Table, m: &mut Migration, keys: &[&str], to: &str) {
    if let Some((key, v)) = apm.get(keys) {
        match v.as_text().and_then(|t| t.parse::<i64>().ok()) {
            Some(n) if n > 0 => set(out, to, n.into()),
            _ => m.untranslated(
                format!("{APM}{key}"),
                format!("{v:?} is not a positive number"),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{import, ImportOptions};
    use super::*;

    fn options() -> ImportOptions {
        ImportOptions {
            upstream_address: "127.0.0.1:8201".into(),
            upstream_token: None,
            apm_server_version: None,
        }
    }

    fn run(yaml: &str) -> (Migration, Table) {
        let m = import(yaml, &options()).unwrap();
        let table: Table = toml::from_str(&m.proxy_toml).unwrap();
        (m, table)
    }

    fn at<'a>(t: &'a Table, dotted: &str) -> &'a Toml {
        let mut here = t;
        let mut parts = dotted.split('.').peekable();
        while let Some(p) = parts.next() {
            let v = here
                .get(p)
                .unwrap_or_else(|| panic!("no {dotted} in {t:#?}"));
            if parts.peek().is_none() {
                return v;
            }
            here = v.as_table().unwrap();
        }
        unreachable!()
    }

    fn untranslated(m: &Migration) -> Vec<&str> {
        m.untranslated.iter().map(|u| u.key.as_str()).collect()
    }

    #[test]
    fn six_eight_keys() {
        let (m, t) = run(include_str!("../../tests/fixtures/apm-server/6.8.yml"));
        assert_eq!(at(&t, "server.listen").as_str(), Some("0.0.0.0:8200"));
        assert_eq!(
            at(&t, "upstream.url").as_str(),
            Some("http://127.0.0.1:8201")
        );
        assert_eq!(
            at(&t, "auth.secret_token").as_str(),
            Some("six-eight-token")
        );
        assert_eq!(at(&t, "rum.enabled").as_bool(), Some(true));
        assert_eq!(
            at(&t, "auth.anonymous.rate_limit.event_limit").as_integer(),
            Some(300)
        );
        assert_eq!(
            at(&t, "auth.anonymous.rate_limit.ip_limit").as_integer(),
            Some(1000)
        );
        assert_eq!(at(&t, "server.body_deadline").as_str(), Some("30s"));
        assert_eq!(at(&t, "server.shutdown_grace_period").as_str(), Some("5s"));
        assert_eq!(at(&t, "rum.max_event_size").as_integer(), Some(307200));
        assert_eq!(
            at(&t, "server.max_header_size").as_integer(),
            Some(1_048_575)
        );
        assert_eq!(at(&t, "ssl.certificate").as_str(), Some("certs/apm.crt"));
        let protocols = at(&t, "ssl.supported_protocols").as_array().unwrap();
        assert_eq!(protocols, &vec![Toml::from("TLSv1.2")]);
        let suites = at(&t, "ssl.cipher_suites").as_array().unwrap();
        assert_eq!(
            suites,
            &vec![Toml::from("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256")]
        );
        assert!(m.notes.iter().any(|n| n.contains("TLSv1.0 is left out")));
        assert!(m
            .notes
            .iter()
            .any(|n| n.contains("ECDHE-ECDSA-AES-128-CBC-SHA is left out")));
        assert!(m
            .notes
            .iter()
            .any(|n| n.contains("rum.library_pattern stays")));
        assert!(untranslated(&m).is_empty(), "{:?}", m.untranslated);
        let changes: Vec<(&str, Option<&str>)> = m
            .apm_server_changes
            .iter()
            .map(|c| (c.key.as_str(), c.value.as_deref()))
            .collect();
        assert!(changes.contains(&("apm-server.host", Some("\"127.0.0.1:8201\""))));
        assert!(changes.contains(&("apm-server.secret_token", None)));
        assert!(changes.contains(&("apm-server.ssl.enabled", Some("false"))));
        assert!(changes.contains(&("apm-server.rum.enabled", Some("true"))));
    }

    #[test]
    fn seven_seventeen_keys_with_env_references_mtls_and_what_cannot_be_translated() {
        let (m, t) = run(include_str!("../../tests/fixtures/apm-server/7.17.yml"));
        assert_eq!(at(&t, "server.listen").as_str(), Some("0.0.0.0:8200"));
        assert_eq!(
            at(&t, "auth.secret_token.env").as_str(),
            Some("APM_SECRET_TOKEN")
        );
        assert_eq!(at(&t, "auth.anonymous.enabled").as_bool(), Some(true));
        assert_eq!(
            at(&t, "auth.anonymous.allow_agent").as_array().unwrap(),
            &vec![Toml::from("rum-js"), Toml::from("js-base")]
        );
        assert_eq!(
            at(&t, "auth.anonymous.rate_limit.event_limit").as_integer(),
            Some(500)
        );
        assert_eq!(at(&t, "rum.allow_headers").as_array().unwrap().len(), 1);
        assert_eq!(
            at(&t, "ssl.client_authentication").as_str(),
            Some("optional")
        );
        assert_eq!(
            at(&t, "ssl.certificate_authorities").as_array().unwrap(),
            &vec![Toml::from("certs/ca.crt")]
        );
        assert_eq!(
            at(&t, "ssl.curve_types").as_array().unwrap(),
            &vec![Toml::from("P-256")]
        );
        assert_eq!(at(&t, "server.idle_timeout").as_str(), Some("90s"));
        assert_eq!(at(&t, "server.body_deadline").as_str(), Some("3600s"));
        let missing = untranslated(&m);
        for key in [
            "apm-server.auth.api_key.enabled",
            "apm-server.auth.api_key.limit",
            "apm-server.auth.api_key.elasticsearch.hosts",
            "apm-server.ssl.key_passphrase",
            "apm-server.auth.anonymous.experimental_setting",
        ] {
            assert!(missing.contains(&key), "{key} not listed in {missing:?}");
        }
        assert!(m.notes.iter().any(|n| n.contains("rum.response_headers")));
        assert!(m
            .apm_server_changes
            .iter()
            .any(|c| c.key == "apm-server.auth.api_key.enabled"
                && c.value.as_deref() == Some("false")));
    }

    #[test]
    fn eight_and_nine_keys_without_tls_and_with_an_upstream_token() {
        let yaml = include_str!("../../tests/fixtures/apm-server/8.19.yml");
        let with_token = ImportOptions {
            upstream_token: Some("internal".into()),
            apm_server_version: Some((8, 19)),
            ..options()
        };
        let m = import(yaml, &with_token).unwrap();
        let t: Table = toml::from_str(&m.proxy_toml).unwrap();
        assert_eq!(at(&t, "server.listen").as_str(), Some("127.0.0.1:8200"));
        assert_eq!(
            at(&t, "auth.secret_token").as_str(),
            Some("eight-nineteen-token")
        );
        assert_eq!(
            at(&t, "upstream.secret_token.file").as_str(),
            Some(crate::migrate::UPSTREAM_TOKEN_FILE),
            "the token itself is never written into proxy.toml"
        );
        assert!(!m.proxy_toml.contains("internal"));
        assert_eq!(at(&t, "ssl.enabled").as_bool(), Some(false));
        assert_eq!(at(&t, "rum.enabled").as_bool(), Some(false));
        assert_eq!(at(&t, "server.write_timeout").as_str(), Some("10s"));
        assert!(untranslated(&m).is_empty(), "{:?}", m.untranslated);
        let token_change = m
            .apm_server_changes
            .iter()
            .find(|c| c.key == "apm-server.auth.secret_token")
            .unwrap();
        assert_eq!(token_change.value.as_deref(), Some("\"internal\""));
        assert!(m.notes.iter().any(|n| n.contains("outside apm-server.*")));
    }

    #[test]
    fn the_internal_token_is_advised_under_the_key_the_server_version_reads() {
        let yaml = include_str!("../../tests/fixtures/apm-server/8.19.yml");
        let token_key = |version| {
            let o = ImportOptions {
                upstream_token: Some("internal".into()),
                apm_server_version: version,
                ..options()
            };
            let m = import(yaml, &o).unwrap();
            let c = m
                .apm_server_changes
                .iter()
                .find(|c| c.value.as_deref() == Some("\"internal\""));
            c.unwrap().key.clone()
        };
        assert_eq!(token_key(Some((7, 10))), "apm-server.secret_token");
        assert_eq!(token_key(Some((7, 14))), "apm-server.auth.secret_token");
        assert_eq!(
            token_key(None),
            "apm-server.auth.secret_token",
            "8.x keys in the file"
        );
    }

    #[test]
    fn hosts_and_durations() {
        assert_eq!(listen_address(":8200").unwrap(), "0.0.0.0:8200");
        assert_eq!(listen_address("localhost").unwrap(), "127.0.0.1:8200");
        assert_eq!(listen_address("10.0.0.5:9000").unwrap(), "10.0.0.5:9000");
        assert_eq!(listen_address("[::1]:8200").unwrap(), "[::1]:8200");
        assert!(listen_address("unix:/run/apm.sock").is_err());
        assert!(listen_address("${HOST}:8200").is_err());
        assert_eq!(duration("1m30s").as_deref(), Some("90s"));
        assert_eq!(duration("500ms").as_deref(), Some("500ms"));
        assert_eq!(duration("soon"), None);
        assert_eq!(env_reference("${A_B}"), Some(("A_B".to_string(), None)));
        assert_eq!(
            env_reference("${A:x}"),
            Some(("A".to_string(), Some("x".to_string())))
        );
        assert_eq!(env_reference("$A"), None);
    }
}
