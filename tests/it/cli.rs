//! The command line: `check` and `run` refuse bad configuration with exit 64 and a message
//! naming the key; the shipped `proxy.toml` is valid; `token generate` and `apikey` work.

use crate::support::*;

fn check_with(dir: &std::path::Path, text: &str) -> (i32, String) {
    let cfg = dir.join("proxy.toml");
    std::fs::write(&cfg, text).unwrap();
    let (code, out, err) = run_cli(&["check", "--config", cfg.to_str().unwrap()]);
    (code, format!("{out}{err}"))
}

#[test]
fn bad_configurations_exit_64_naming_the_problem() {
    let pki = pki();
    let dir = tempfile::tempdir().unwrap();
    let good_tls = format!("[ssl]\ncertificate = {:?}\nkey = {:?}\n", pki.cert, pki.key);
    let token = "[auth]\nsecret_token = \"t\"\n";
    std::fs::write(dir.path().join("garbage-keys.toml"), "[[keys]]\nid = 5\n").unwrap();
    std::fs::write(dir.path().join("not-a-cert.pem"), "hello").unwrap();
    let other = tempfile::tempdir().unwrap();
    let other_key = other.path().join("k.pem");
    std::fs::write(
        &other_key,
        rcgen::KeyPair::generate().unwrap().serialize_pem(),
    )
    .unwrap();
    let cases: Vec<(String, &str)> = vec![
        (
            "[server\nlisten = 1".into(),
            "proxy.toml: TOML parse error at line 1",
        ),
        (
            format!("{good_tls}{token}[server]\nlisten_on = \"x\"\n"),
            "unknown field `listen_on`",
        ),
        (
            format!("{good_tls}{token}[server]\nidle_timeout = \"soon\"\n"),
            "invalid duration \"soon\"",
        ),
        (
            format!("{good_tls}{token}[server]\nlisten = \"localhost\"\n"),
            "server.listen: \"localhost\" is not an IP:port address",
        ),
        (good_tls.clone(), "auth: no credential is configured"),
        (
            format!(
                "{good_tls}[auth]\nsecret_token = {{ env = \"APM_AUTH_PROXY_UNSET_VAR_X\" }}\n"
            ),
            "auth.secret_token: environment variable APM_AUTH_PROXY_UNSET_VAR_X is not set",
        ),
        (
            format!("{good_tls}[auth]\nsecret_token = {{ file = \"missing-token\" }}\n"),
            "auth.secret_token: cannot read secret file",
        ),
        (
            format!("{good_tls}[auth]\nsecret_token = {{ sha256 = \"abc\" }}\n"),
            "auth.secret_token: sha256 must be 64 hexadecimal characters",
        ),
        (
            format!(
                "{good_tls}[auth.api_key]\nenabled = true\nkeys_file = \"garbage-keys.toml\"\n"
            ),
            "auth.api_key.keys_file: keys file",
        ),
        (
            format!("{good_tls}{token}[upstream]\nurl = \"https://apm:8200\"\n"),
            "upstream.url: \"https://apm:8200\": only http:// upstreams are supported",
        ),
        (
            format!("{good_tls}{token}[client_ip]\ntrusted_proxies = [\"10.0.0.0/40\"]\n"),
            "client_ip.trusted_proxies[0]: \"10.0.0.0/40\" is neither a CIDR",
        ),
        (
            format!("{token}[ssl]\ncertificate = \"nope.pem\"\nkey = \"nope-key.pem\"\n"),
            "ssl: cannot read certificate",
        ),
        (
            format!(
                "{token}[ssl]\ncertificate = \"not-a-cert.pem\"\nkey = {:?}\n",
                pki.key
            ),
            "no PEM certificate found",
        ),
        (
            format!(
                "{token}[ssl]\ncertificate = {:?}\nkey = {other_key:?}\n",
                pki.cert
            ),
            "are not usable together",
        ),
        (
            format!("{token}[ssl]\nenabled = true\n"),
            "ssl.certificate and ssl.key are required",
        ),
        (
            format!(
                "{good_tls}{token}[auth.anonymous]\nallow_endpoints = [\"/intake/v2/profile\"]\n"
            ),
            "auth.anonymous.allow_endpoints[0]: \"/intake/v2/profile\": the proxy cannot check",
        ),
        (
            format!("{good_tls}{token}[auth.anonymous.rate_limit]\nevent_limit = 0\n"),
            "auth.anonymous.rate_limit.event_limit: must be greater than zero",
        ),
        (
            format!("{good_tls}{token}[rum]\nallow_headers = [\"bad header\"]\n"),
            "rum.allow_headers[0]: \"bad header\" is not a valid header name",
        ),
        (
            format!("{good_tls}{token}[auth.failed_attempts]\nwindow = \"often\"\n"),
            "invalid duration \"often\"",
        ),
    ];
    for (text, expected) in cases {
        let (code, output) = check_with(dir.path(), &text);
        assert_eq!(code, 64, "{text:?} gave {code}: {output}");
        assert!(
            output
                .lines()
                .any(|l| l.starts_with("apm-auth-proxy: config error: "))
                && output.contains(expected),
            "{text:?}: expected {expected:?} in {output:?}"
        );
        assert!(!output.contains("panicked"), "{output}");
    }
    // `run` refuses the same way, before binding anything (on a port of the test's own,
    // and bounded in time, should it start after all).
    let port = free_port();
    std::fs::write(
        dir.path().join("proxy.toml"),
        format!("{good_tls}[server]\nlisten = \"127.0.0.1:{port}\"\n"),
    )
    .unwrap();
    let (code, _, err) = run_cli(&[
        "run",
        "--config",
        dir.path().join("proxy.toml").to_str().unwrap(),
    ]);
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("config error: auth: no credential"), "{err}");
    let (code, _, err) = run_cli(&["check", "--config", "/nonexistent/proxy.toml"]);
    assert_eq!(code, 64);
    assert!(
        err.contains("cannot read config file /nonexistent/proxy.toml"),
        "{err}"
    );
}

/// A file with several mistakes gets them all at once, one line each, each naming its key.
#[test]
fn every_problem_of_a_file_is_reported_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (code, output) = check_with(
        dir.path(),
        "[server]\nthreads = 0\nlisten = \"nowhere\"\n[ssl]\nenabled = false\n\
         [upstream]\nurl = \"ftp://apm\"\n[client_ip]\ntrusted_proxies = [\"x\"]\n",
    );
    assert_eq!(code, 64, "{output}");
    let keys: Vec<&str> = output
        .lines()
        .filter_map(|l| l.strip_prefix("apm-auth-proxy: config error: "))
        .map(|l| l.split(": ").next().unwrap())
        .collect();
    assert_eq!(
        keys,
        [
            "server.listen",
            "server.threads",
            "client_ip.trusted_proxies[0]",
            "upstream.url",
            "auth"
        ],
        "{output}"
    );
}

#[test]
fn shipped_proxy_toml_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/proxy.toml");
    std::fs::copy(shipped, dir.path().join("proxy.toml")).unwrap();
    let (code, out, err) = run_cli(&[
        "check",
        "--config",
        dir.path().join("proxy.toml").to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("configuration OK: listen 127.0.0.1:8200 (TLS), upstream 127.0.0.1:8201"),
        "{out}"
    );
    assert!(
        err.contains("DEVELOPMENT certificate will be generated"),
        "{err}"
    );
}

#[test]
fn run_reports_a_busy_port() {
    let pki = pki();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("proxy.toml");
    std::fs::write(
        &cfg,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n[ssl]\ncertificate = {:?}\nkey = {:?}\n\
             [upstream]\nurl = \"http://127.0.0.1:9\"\n[auth]\nsecret_token = \"t\"\n",
            pki.cert, pki.key
        ),
    )
    .unwrap();
    let (code, _, err) = run_cli(&["run", "--config", cfg.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!("server.listen: cannot listen on 127.0.0.1:{port}")),
        "{err}"
    );
}

#[test]
fn token_generate_prints_a_strong_token_and_its_digest() {
    let (code, out, err) = run_cli(&["token", "generate"]);
    assert_eq!(code, 0);
    let token = out.trim();
    assert_eq!(token.len(), 43, "256 bits, URL-safe base64: {token}");
    assert!(token
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    let digest: String = sha256(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert!(err.contains(&digest), "{err}");
    let (_, again, _) = run_cli(&["token", "generate"]);
    assert_ne!(again.trim(), token);
}

#[test]
fn apikey_cli_rejects_unknown_privileges_and_ids() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("proxy.toml");
    std::fs::write(&cfg, API_KEYS).unwrap();
    let c = cfg.to_str().unwrap();
    let (code, _, err) = run_cli(&[
        "apikey",
        "--config",
        c,
        "create",
        "--name",
        "x",
        "--privileges",
        "event:read",
    ]);
    assert_eq!(code, 64);
    assert!(err.contains("unknown privilege \"event:read\""), "{err}");
    let (code, _, err) = run_cli(&["apikey", "--config", c, "revoke", "nope"]);
    assert_eq!(code, 1);
    assert!(err.contains("no key with id \"nope\""), "{err}");
    let (code, out, _) = run_cli(&[
        "apikey",
        "--config",
        c,
        "create",
        "--name",
        "svc",
        "--privileges",
        "event:write,sourcemap:write",
        "--expires-in",
        "90d",
    ]);
    assert_eq!(code, 0);
    assert!(out.contains("Credentials ...."), "{out}");
    let stored = std::fs::read_to_string(dir.path().join("keys.toml")).unwrap();
    let secret = out
        .lines()
        .find(|l| l.starts_with("API Key ...."))
        .unwrap()
        .split_whitespace()
        .nth(3)
        .unwrap();
    assert!(!stored.contains(secret), "the keys file holds digests only");
    assert!(
        stored.contains("\"event:write\"") && stored.contains("\"sourcemap:write\""),
        "{stored}"
    );
    assert!(stored.contains("expires = "), "{stored}");
}

/// `import` over an APM Server configuration of each major version (tests/fixtures): the
/// proxy.toml it writes passes `check` (beside the certificates it names, with the variable
/// it references set), the report says what to change in apm-server.yml and what was not
/// translated, and an existing file is only replaced with `--force`.
#[test]
fn import_writes_a_proxy_toml_that_passes_check_for_each_major_version() {
    let pki = pki();
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/apm-server");
    for (version, untranslated) in [
        ("6.8", &[][..]),
        (
            "7.17",
            &[
                "apm-server.auth.api_key.enabled",
                "apm-server.ssl.key_passphrase",
            ][..],
        ),
        ("8.19", &[][..]),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let certs = dir.path().join("certs");
        std::fs::create_dir(&certs).unwrap();
        std::fs::copy(&pki.cert, certs.join("apm.crt")).unwrap();
        std::fs::copy(&pki.key, certs.join("apm.key")).unwrap();
        std::fs::write(certs.join("ca.crt"), &pki.ca_pem).unwrap();
        let yml = dir.path().join("apm-server.yml");
        std::fs::copy(format!("{fixtures}/{version}.yml"), &yml).unwrap();
        let out = dir.path().join("proxy.toml");
        let (yml, out_path) = (yml.to_str().unwrap(), out.to_str().unwrap());
        let (code, _, report) = run_cli(&["import", yml, "--out", out_path]);
        assert_eq!(code, 0, "{version}: {report}");
        assert!(
            report.contains("set    apm-server.host: \"127.0.0.1:8201\""),
            "{version}: {report}"
        );
        for key in untranslated {
            let listed = report
                .split("NOT translated")
                .nth(1)
                .is_some_and(|rest| rest.contains(key));
            assert!(
                listed,
                "{version}: {key} not listed as not translated: {report}"
            );
        }
        if untranslated.is_empty() {
            assert!(report.contains("Every auth, TLS and RUM setting was translated"));
        }
        let check = bounded(BIN, std::time::Duration::from_secs(60))
            .args(["check", "--config", out_path])
            .env("APM_SECRET_TOKEN", "token-from-the-environment")
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "{version}: check failed: {}\n{}",
            String::from_utf8_lossy(&check.stderr),
            std::fs::read_to_string(&out).unwrap()
        );
        let (again, _, err) = run_cli(&["import", yml, "--out", out_path]);
        assert_eq!(again, 64, "{err}");
        assert!(err.contains("pass --force"), "{err}");
        assert_eq!(run_cli(&["import", yml, "--out", out_path, "--force"]).0, 0);
    }
}

/// One rule for the command line: whatever is wrong with it exits 64 (EX_USAGE), whether
/// clap or the command finds it; `--help` exits 0.
#[test]
fn command_line_mistakes_exit_64_and_help_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("proxy.toml");
    std::fs::write(&cfg, API_KEYS).unwrap();
    let c = cfg.to_str().unwrap();
    for args in [
        &[
            "apikey",
            "--config",
            c,
            "create",
            "--name",
            "x",
            "--expires-in",
            "90x",
        ][..],
        &[
            "apikey",
            "--config",
            c,
            "create",
            "--name",
            "x",
            "--rate-limit",
            "lots",
        ],
        &[
            "apikey",
            "--config",
            c,
            "create",
            "--name",
            "x",
            "--privileges",
            "bogus",
        ],
        &["apikey", "--config", c, "rotate", "some-id"],
        &["no-such-command"],
        &["import", "apm-server.yml", "--upstream-token"],
    ] {
        let (code, _, err) = run_cli(args);
        assert_eq!(code, 64, "{args:?}: {err}");
        assert!(!err.trim().is_empty(), "{args:?}: says what is wrong");
    }
    let (code, out, _) = run_cli(&["--help"]);
    assert_eq!(code, 0);
    assert!(out.contains("Usage:"), "{out}");
}

/// `health` without a config file asks the admin listener's default address: exit 1 (or 0
/// if a proxy answers there), never a configuration error.
#[test]
fn health_without_a_config_asks_the_default_admin_address() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("proxy.toml");
    let (code, out, err) = run_cli(&["health", "--config", missing.to_str().unwrap()]);
    match code {
        1 => assert!(err.contains("127.0.0.1:8300"), "{err}"),
        0 => assert!(out.contains("ready"), "{out}"),
        other => panic!("exit {other}: {err}"),
    }
}

/// A key for a pool that does not exist is refused when it is made, and `check` refuses a
/// keys file naming one, with every other problem of the file found in the same run.
#[test]
fn unknown_upstream_pools_are_refused_by_apikey_create_and_check() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("proxy.toml");
    let config = format!(
        "[ssl]\nenabled = false\n[auth]\nsecret_token = \"t-1234567890\"\n{API_KEYS}\
         [upstream]\nurl = \"http://127.0.0.1:8201\"\n"
    );
    std::fs::write(&cfg, &config).unwrap();
    let c = cfg.to_str().unwrap();
    let create = |pool: &str| {
        run_cli(&[
            "apikey",
            "--config",
            c,
            "create",
            "--name",
            "x",
            "--upstream",
            pool,
        ])
    };
    let (code, _, err) = create("team-a");
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("--upstream \"team-a\": no such pool"), "{err}");
    let (code, _, err) = create("default");
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains(
            "a running proxy applies it within auth.reload_interval (5s), or at once on SIGHUP"
        ),
        "{err}"
    );
    // The pool goes away from the config: `check` names the key, and the missing
    // certificate of the same file in the same run.
    let keys = std::fs::read_to_string(dir.path().join("keys.toml")).unwrap();
    std::fs::write(
        dir.path().join("keys.toml"),
        keys.replace("\"default\"", "\"gone\""),
    )
    .unwrap();
    let (code, output) = check_with(
        dir.path(),
        &config.replace(
            "[ssl]\nenabled = false\n",
            "[ssl]\ncertificate = \"nope.crt\"\nkey = \"nope.key\"\n",
        ),
    );
    assert_eq!(code, 64, "{output}");
    assert!(
        output.contains("names the upstream pool \"gone\", which is not configured"),
        "{output}"
    );
    assert!(
        output.contains("nope.crt"),
        "both problems in one run: {output}"
    );
}

/// `import --upstream-token` never writes the token into proxy.toml: it goes to a 0600 file
/// beside it, which the proxy.toml names, and `check` passes without an inline warning.
#[test]
fn import_keeps_the_upstream_token_in_a_private_file() {
    use std::os::unix::fs::PermissionsExt;
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/apm-server");
    let dir = tempfile::tempdir().unwrap();
    let yml = dir.path().join("apm-server.yml");
    std::fs::copy(format!("{fixtures}/8.19.yml"), &yml).unwrap();
    let out = dir.path().join("proxy.toml");
    let (yml, out_path) = (yml.to_str().unwrap(), out.to_str().unwrap());
    let (code, _, report) = run_cli(&[
        "import",
        yml,
        "--out",
        out_path,
        "--upstream-token",
        "--apm-server-version",
        "7.10",
    ]);
    assert_eq!(code, 0, "{report}");
    let token_file = dir.path().join("upstream-token");
    let token = std::fs::read_to_string(&token_file).unwrap();
    let token = token.trim();
    register_secret(token);
    let mode = std::fs::metadata(&token_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let toml = std::fs::read_to_string(&out).unwrap();
    assert!(!toml.contains(token), "{toml}");
    assert!(toml.contains("upstream-token"), "{toml}");
    // A 7.10 server reads the token as apm-server.secret_token.
    assert!(
        report.contains(&format!("set    apm-server.secret_token: \"{token}\"")),
        "{report}"
    );
    let (code, _, err) = run_cli(&["check", "--config", out_path]);
    assert_eq!(code, 0, "{err}");
    assert!(
        !err.contains("upstream.secret_token is written inline"),
        "{err}"
    );
}

/// `check` validates every `[[auth.jwt]]`: one key source, asymmetric algorithms only, https
/// (or localhost) for fetching, known privileges, an existing pool — all in one run.
#[test]
fn check_validates_jwt_issuers() {
    let dir = tempfile::tempdir().unwrap();
    let (code, output) = check_with(
        dir.path(),
        "[ssl]\nenabled = false\n\
         [[auth.jwt]]\nname = \"a\"\nissuer = \"https://idp.example.com\"\ndiscovery = true\n\
         jwks_file = \"jwks.json\"\nalgorithms = [\"HS256\"]\n\
         [[auth.jwt]]\nname = \"b\"\nissuer = \"https://other.example.com\"\n\
         jwks_url = \"http://keys.example.com/jwks\"\nprivileges = [\"everything\"]\nupstream = \"nowhere\"\n",
    );
    assert_eq!(code, 64, "{output}");
    for expected in [
        "auth.jwt[0]: set exactly one of jwks_file, jwks_url or discovery = true",
        "auth.jwt[0].algorithms[0]: \"HS256\" is refused",
        "auth.jwt[1].jwks_url: \"http://keys.example.com/jwks\": keys are fetched over https",
        "auth.jwt[1].privileges: unknown privilege \"everything\"",
        "auth.jwt[1].upstream: no pool named \"nowhere\"",
    ] {
        assert!(output.contains(expected), "{expected}\n{output}");
    }
    let (code, output) = check_with(
        dir.path(),
        "[ssl]\nenabled = false\n[[auth.jwt]]\nname = \"a\"\nissuer = \"https://idp.example.com\"\ndiscovery = true\n",
    );
    assert_eq!(code, 0, "an issuer alone is a credential: {output}");
}
